"""Screening as a generator of per-frame results.

:func:`screen` decodes frames ahead on a small thread pool, classifies them in batches and yields
one :class:`FrameResult` per :class:`~brainscan.engine.loading.FrameRef`, in input order. A file
that cannot be read becomes an ``error`` result with its message; it never stops the batch. The
command line writes the results as they come (:mod:`brainscan.engine.results`), the viewer shows
them; both can stop consuming at any time (cancel).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from brainscan.engine.cam import CLASS_INDEPENDENT, METHODS, cam_on_picture
from brainscan.engine.errors import BrainscanError
from brainscan.engine.inference import Classifier, Prediction, tumour_probability
from brainscan.engine.loading import Frame, FrameRef, load_frame

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


def _load(ref: FrameRef) -> Frame | BaseException:
    try:
        return load_frame(ref)
    except Exception as exc:  # every file gets a result: the batch goes on
        return exc


def decode_ahead(refs: Iterable[FrameRef], workers: int = 2, ahead: int = 16) -> Iterator[tuple[FrameRef, Frame | BaseException]]:
    """Decode frames on a thread pool, ``ahead`` frames in advance, yielding them in order."""
    iterator = iter(refs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="brainscan-decode") as pool:
        pending: deque[tuple[FrameRef, Future]] = deque()
        for ref in iterator:
            pending.append((ref, pool.submit(_load, ref)))
            if len(pending) >= ahead:
                break
        try:
            while pending:
                ref, future = pending.popleft()
                following = next(iterator, None)
                if following is not None:
                    pending.append((following, pool.submit(_load, following)))
                yield ref, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def _predict_isolated(classifier: Classifier, frames: list[Frame]) -> list[Prediction | BaseException]:
    """Predict a batch; if the batch fails, retry one by one so only the bad frame fails."""
    try:
        return list(classifier.predict([f.picture for f in frames]))
    except Exception:
        results: list[Prediction | BaseException] = []
        for frame in frames:
            try:
                results.append(classifier.predict([frame.picture])[0])
            except Exception as exc:
                results.append(exc)
        return results


def screen(
    refs: Iterable[FrameRef],
    classifier: Classifier,
    *,
    cam_method: str | None = "gradcam",
    batch_size: int = 8,
    keep_frames: bool = False,
    decode_workers: int = 2,
) -> Iterator[FrameResult]:
    """Classify every frame of ``refs``, yielding one result per frame in order.

    Parameters
    ----------
    cam_method:
        One of :data:`brainscan.engine.cam.METHODS` to compute the heat map of the predicted
        class (``heat``, at the picture's size, and its peak), or ``None`` for none.
    keep_frames:
        Keep the decoded :class:`Frame` and :class:`Prediction` on each result (the viewer and
        overlay writing need them; plain screening does not, so memory stays flat).
    """
    if cam_method is not None and cam_method not in METHODS:
        raise ValueError(f"unknown CAM method {cam_method!r}; choose one of {', '.join(METHODS)} or none")
    classes = classifier.classes
    batch: list[tuple[FrameRef, Frame | BaseException]] = []

    def flush() -> Iterator[FrameResult]:
        frames = [item for _, item in batch if isinstance(item, Frame)]
        predictions = iter(_predict_isolated(classifier, frames)) if frames else iter(())
        for ref, item in batch:
            if not isinstance(item, Frame):
                yield FrameResult(ref, "error", error=describe_failure(ref, item))
                continue
            prediction = next(predictions)
            if isinstance(prediction, BaseException):
                yield FrameResult(ref, "error", error=describe_failure(ref, prediction))
                continue
            yield _result(ref, item, prediction)
        batch.clear()

    def _result(ref: FrameRef, frame: Frame, prediction: Prediction) -> FrameResult:
        index = prediction.label_index
        result = FrameResult(
            ref,
            "ok",
            probabilities=prediction.probabilities,
            label=classes[index],
            confidence=prediction.confidence,
            tumour_probability=tumour_probability(prediction.probabilities, classes),
            size=(int(frame.picture.shape[0]), int(frame.picture.shape[1])),
            window_source=frame.window_source,
            identifiers=dict(frame.identifiers),
        )
        if cam_method is not None:
            target = 0 if cam_method in CLASS_INDEPENDENT else index
            heat = cam_on_picture(
                cam_method, prediction.features, classifier.cam_weight, target, frame.picture.shape[:2], classifier.contract
            )
            peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
            result.cam_peak = (int(peak[0]), int(peak[1]))
            if keep_frames:
                result.heat = heat
        if keep_frames:
            result.frame = frame
            result.prediction = prediction
        return result

    for ref, item in decode_ahead(refs, workers=decode_workers, ahead=max(2 * batch_size, 4)):
        batch.append((ref, item))
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()
