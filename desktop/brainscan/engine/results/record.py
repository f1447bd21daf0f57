"""What screening found for one frame (:class:`FrameResult`), and the one-line message of a failure.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from brainscan.engine.errors import BrainscanError
from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.model.inference import Prediction

log = logging.getLogger(__name__)


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

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def describe_failure(ref: FrameRef, exc: BaseException) -> str:
    """A one-line message for a failed frame; unexpected exceptions are logged with their traceback."""
    if isinstance(exc, BrainscanError):
        return str(exc)
    log.error("unexpected error reading %s", ref.path, exc_info=exc)
    return f"{ref.path}: could not be read ({type(exc).__name__}: {exc})"


