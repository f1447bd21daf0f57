"""Screening as a generator of per-frame results.

:func:`screen` decodes frames ahead on a small thread pool, classifies them in batches and yields
one :class:`FrameResult` per :class:`~brainscan.engine.input.frames.FrameRef`, in input order. A file
that cannot be read becomes an ``error`` result with its message; it never stops the batch. The
command line writes the results as they come (:mod:`brainscan.engine.results.store`), the viewer shows
them; both can stop consuming at any time (cancel).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.input.picture_checks import check_picture, heat_outside, picture_facts
from brainscan.engine.model.cam import CLASS_INDEPENDENT, METHODS, cam_on_picture
from brainscan.engine.model.inference import Classifier, Prediction, tumour_probability
from brainscan.engine.results.record import FrameResult, describe_failure
from brainscan.engine.run.decode_ahead import DECODE_AHEAD_BYTES, DecodeBudget, decode_ahead, frame_bytes

BATCH_BYTES = 64 << 20  # a batch is classified early when its frames hold this much
# Frames per inference batch. Measured with `brainscan screen` on 400 Kaggle JPGs (2 cores, model 0.3.0, two rounds):
# batch 1: 6.3-6.5 s and 240 MB peak; 2: 5.9-6.3 s, 284 MB; 4: 5.9 s, 381 MB; 8: 6.0 s, 568 MB. Larger batches
# do not run faster on a CPU but onnxruntime's working memory grows with them, so 4.
DEFAULT_BATCH_SIZE = 4


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


def cam_target(method: str, class_index: int) -> int:
    """The class a heat map of ``method`` is asked for: ``class_index``, or 0 for a class-independent method."""
    return 0 if method in CLASS_INDEPENDENT else class_index


def heat_map_for(
    prediction: Prediction, classifier: Classifier, method: str, target: int, shape: tuple[int, int]
) -> np.ndarray:
    """The heat map of ``method`` for class ``target`` over a picture of ``shape`` (height, width), as screening
    writes it (the trainer's pointing game measures this very map)."""
    return cam_on_picture(method, prediction.features, classifier.cam_weight, target, shape, classifier.contract,
                          prediction.head_maps)


def heat_peak(heat: np.ndarray) -> tuple[int, int]:
    """The (row, column) of a heat map's maximum, the first in row-major order (``cam_peak`` in results.csv)."""
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(peak[0]), int(peak[1])


def classified(
    ref: FrameRef, frame: Frame, prediction: Prediction, classifier: Classifier, *, cam_method: str | None,
    keep_frames: bool,
) -> FrameResult:
    """The ``ok`` result of one classified frame, with its heat map's peak (and the map, when kept), the picture
    checks' verdict and the heat map's share outside the head (about 1 ms per frame, 224 or 512 px)."""
    classes = classifier.classes
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
    facts = picture_facts(frame.picture)  # measured once: the checks and the heat-outside share
    result.in_domain, result.domain_reason = check_picture(frame, facts)
    if prediction.domain_score is not None:
        result.domain_score = prediction.domain_score
        if result.in_domain and prediction.domain_score > 1.0:
            result.in_domain = False
            result.domain_reason = (
                f"unlike the training pictures (domain score {prediction.domain_score:.2f}; above 1 is out of domain)"
            )
    if cam_method is not None:
        heat = heat_map_for(prediction, classifier, cam_method, cam_target(cam_method, index), frame.picture.shape[:2])
        result.cam_peak = heat_peak(heat)
        result.heat_outside = heat_outside(heat, facts.mask)
        if keep_frames:
            result.heat = heat
    if keep_frames:
        result.frame = frame
        result.prediction = prediction
    return result


def _flush(
    batch: deque[tuple[FrameRef, Frame | BaseException]],
    classifier: Classifier,
    budget: DecodeBudget,
    result_of: Callable[[FrameRef, Frame, Prediction], FrameResult],
) -> Iterator[FrameResult]:
    """Classify a batch, then yield its results in order, letting go of each frame once its consumer is done."""
    frames = [item for _, item in batch if isinstance(item, Frame)]
    predictions = iter(_predict_isolated(classifier, frames)) if frames else iter(())
    frames.clear()
    while batch:
        ref, item = batch.popleft()
        nbytes = frame_bytes(item)
        try:
            if not isinstance(item, Frame):
                yield FrameResult(ref, "error", error=describe_failure(ref, item))
                continue
            prediction = next(predictions)
            if isinstance(prediction, BaseException):
                yield FrameResult(ref, "error", error=describe_failure(ref, prediction))
                continue
            yield result_of(ref, item, prediction)
        finally:
            del item
            budget.let_go(nbytes)


def screen(
    refs: Iterable[FrameRef],
    classifier: Classifier,
    *,
    cam_method: str | None = "gradcam",
    batch_size: int = DEFAULT_BATCH_SIZE,
    keep_frames: bool = False,
    decode_workers: int = 2,
) -> Iterator[FrameResult]:
    """Classify every frame of ``refs``, yielding one result per frame in order.

    Parameters
    ----------
    cam_method:
        One of :data:`brainscan.engine.model.cam.METHODS` to compute the heat map of the predicted
        class (``heat``, at the picture's size, and its peak), or ``None`` for none.
    keep_frames:
        Keep the decoded :class:`Frame` and :class:`Prediction` on each result (the viewer and
        overlay writing need them; plain screening does not, so memory stays flat).
    """
    if cam_method is not None and cam_method not in METHODS:
        raise ValueError(f"unknown CAM method {cam_method!r}; choose one of {', '.join(METHODS)} or none")
    budget = DecodeBudget(DECODE_AHEAD_BYTES)
    batch: deque[tuple[FrameRef, Frame | BaseException]] = deque()
    batch_bytes = 0

    def result_of(ref: FrameRef, frame: Frame, prediction: Prediction) -> FrameResult:
        return classified(ref, frame, prediction, classifier, cam_method=cam_method, keep_frames=keep_frames)

    for ref, item in decode_ahead(refs, workers=decode_workers, ahead=max(2 * batch_size, 4), budget=budget):
        batch.append((ref, item))
        batch_bytes += frame_bytes(item)
        del item
        if len(batch) >= batch_size or batch_bytes >= BATCH_BYTES:
            budget.use(batch_bytes)
            batch_bytes = 0
            yield from _flush(batch, classifier, budget, result_of)
    if batch:
        budget.use(batch_bytes)
        yield from _flush(batch, classifier, budget, result_of)
