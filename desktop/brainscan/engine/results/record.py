"""What screening found for one frame: in memory (:class:`FrameResult`) and as a typed row (:class:`FrameRecord`).

:class:`FrameResult` is what :func:`~brainscan.engine.run.screening.screen` yields: the values plus the
decoded frame, the network's prediction and the heat map while someone needs them. :class:`FrameRecord`
is one row of ``results.csv`` with its values typed; the command line, the reports, the DICOM outputs and
the viewer all pass it around (its CSV and JSON forms are in :mod:`~brainscan.engine.results.rows`).
:func:`frame_key` is the one identity of a frame, the same for every spelling of the file's path.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainscan.engine.errors import BrainscanError
from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.model.inference import Prediction

log = logging.getLogger(__name__)

FrameKey = tuple[str, int]
"""The resolved file and the frame number (:func:`frame_key`)."""

RECORD_IDENTIFIERS = {"patient_name": "PatientName", "patient_id": "PatientID", "patient_birth_date": "PatientBirthDate"}
"""The patient identifiers a record may carry: its key (the CSV column) and the DICOM keyword it comes from."""


def frame_key(path: str | os.PathLike[str], frame: int, *, origin: str | os.PathLike[str] | None = None) -> FrameKey:
    """The identity of a frame: its file resolved (links followed) and its frame number.

    Every spelling of one file's path, relative or absolute, gives the same key. A relative
    ``path`` is resolved from ``origin`` (the working folder when None): the results store
    passes the folder its first run was started in, the viewer the current one.
    """
    return (os.path.realpath(os.path.join(origin or os.getcwd(), os.fspath(path))), int(frame))


@dataclass
class FrameResult:
    """What screening found for one frame: a prediction, or an error a person can read."""

    ref: FrameRef
    status: str
    probabilities: np.ndarray | None = None
    label: str = ""
    confidence: float = math.nan
    tumour_probability: float = math.nan
    error: str = ""
    frame: Frame | None = None
    prediction: Prediction | None = None
    heat: np.ndarray | None = None
    cam_peak: tuple[int, int] | None = None
    size: tuple[int, int] | None = None
    window_source: str = ""
    identifiers: dict[str, str] = field(default_factory=dict)
    in_domain: bool | None = None  # None: not judged (an error); False: the picture is not what the model knows
    domain_reason: str = ""  # why a frame is out of domain, one line
    domain_score: float = math.nan  # the model's domain guard: distance over its threshold (<= 1 in domain)
    heat_outside: float = math.nan  # share of the heat map outside the head (foreground mask), 0..1

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class FrameRecord:
    """One frame's row of the results, typed.

    Attributes
    ----------
    path:
        The file, exactly (undecodable bytes and control characters included).
    frame:
        The frame number within the file (0 for single-frame files).
    status:
        ``"ok"`` or ``"error"``.
    confidence, tumour_probability:
        NaN when there are none (an error).
    probabilities:
        Per class of the model, in its order; NaN when absent (every class of an error).
    cam_method:
        The heat-map method whose peak ``cam_peak`` (row, column) is; "" without one.
    width, height:
        The model picture's size, None when unknown.
    series_uid:
        The Series Instance UID as written (de-identified when the run is), "" for raster images.
    series_index, series_length:
        The slice's 0-based position in its sorted series and the series' length; None outside a series.
    identifiers:
        Patient identifiers by :data:`RECORD_IDENTIFIERS` key; only those present.
    in_domain, domain_reason:
        Whether the frame is the kind of picture the model knows (None when not judged: an error),
        and why not, in one line.
    domain_score:
        The model's domain guard: how far the frame lies from the training pictures, over the guard's
        threshold (at most 1 is in domain); NaN when the model has no guard or the frame failed.
    heat_outside:
        The share of the heat map outside the head (NaN without a heat map).
    """

    path: Path
    frame: int
    status: str
    label: str = ""
    confidence: float = math.nan
    tumour_probability: float = math.nan
    probabilities: Mapping[str, float] = field(default_factory=dict)
    cam_method: str = ""
    cam_peak: tuple[int, int] | None = None
    width: int | None = None
    height: int | None = None
    series_uid: str = ""
    series_index: int | None = None
    series_length: int | None = None
    window_source: str = ""
    error: str = ""
    identifiers: Mapping[str, str] = field(default_factory=dict)
    in_domain: bool | None = None
    domain_reason: str = ""
    domain_score: float = math.nan
    heat_outside: float = math.nan

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def name(self) -> str:
        """The file's name, without its folder."""
        return self.path.name

    def probability(self, name: str) -> float:
        """The probability of class ``name``, NaN when there is none."""
        return self.probabilities.get(name, math.nan)

    @classmethod
    def from_result(
        cls,
        result: FrameResult,
        classes: tuple[str, ...],
        cam_method: str | None,
        uid_map: Callable[[str], str] | None = None,
    ) -> FrameRecord:
        """The record of a result.

        Parameters
        ----------
        classes:
            The model's classes, in the order of ``result.probabilities``.
        cam_method:
            The heat-map method the result was screened with (kept for classified frames only).
        uid_map:
            Applied to the Series Instance UID (``--deidentify``: the run's one mapping).
        """
        ref = result.ref
        series_uid = ref.series_uid
        if series_uid and uid_map is not None:
            series_uid = uid_map(series_uid)
        if result.probabilities is None:
            probabilities = dict.fromkeys(classes, math.nan)
        else:
            probabilities = {name: float(value) for name, value in zip(classes, result.probabilities, strict=True)}
        height, width = result.size if result.size is not None else (None, None)
        return cls(
            path=Path(ref.path),
            frame=int(ref.frame),
            status=result.status,
            label=result.label,
            confidence=float(result.confidence),
            tumour_probability=float(result.tumour_probability),
            probabilities=probabilities,
            cam_method=(cam_method or "") if result.ok else "",
            cam_peak=None if result.cam_peak is None else (int(result.cam_peak[0]), int(result.cam_peak[1])),
            width=None if width is None else int(width),
            height=None if height is None else int(height),
            series_uid=series_uid,
            series_index=ref.series_index if ref.series_uid else None,
            series_length=ref.series_length if ref.series_uid else None,
            window_source=result.window_source,
            error=result.error,
            identifiers={key: value for key, keyword in RECORD_IDENTIFIERS.items()
                         if (value := result.identifiers.get(keyword, ""))},
            in_domain=result.in_domain,
            domain_reason=result.domain_reason,
            domain_score=float(result.domain_score),
            heat_outside=float(result.heat_outside),
        )


def describe_failure(ref: FrameRef, exc: BaseException) -> str:
    """A one-line message for a failed frame; unexpected exceptions are logged with their traceback."""
    if isinstance(exc, BrainscanError):
        return str(exc)
    log.error("unexpected error reading %s", ref.path, exc_info=exc)
    return f"{ref.path}: could not be read ({type(exc).__name__}: {exc})"
