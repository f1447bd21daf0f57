"""Screening as a generator of per-frame results.

:func:`screen` decodes frames ahead on a small thread pool, classifies them in batches and yields
one :class:`FrameResult` per :class:`~brainscan.engine.input.frames.FrameRef`, in input order. A file
that cannot be read becomes an ``error`` result with its message; it never stops the batch. The
command line writes the results as they come (:mod:`brainscan.engine.results.store`), the viewer shows
them; both can stop consuming at any time (cancel).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.input.picture_checks import check_picture, heat_outside, picture_facts
from brainscan.engine.model.cam import CLASS_INDEPENDENT, METHODS, cam_on_picture
from brainscan.engine.model.inference import Classifier, Prediction, tumour_probability
from brainscan.engine.results.record import FrameResult, describe_failure
from brainscan.engine.run.decode_ahead import DECODE_AHEAD_BYTES, DecodeBudget, decode_ahead, frame_bytes
from brainscan.engine.run.tuning import QUEUED, tuner_for

BATCH_BYTES = 64 << 20  # a batch is classified early when its frames hold this much
# Frames per inference batch where a caller fixes it (the viewer, the self-test). `brainscan screen` measures
# its plan instead (engine/run/tuning.py). Measured with `brainscan screen` on 400 Kaggle JPGs (2 cores, model
# 0.3.0, two rounds): batch 1: 6.3-6.5 s and 240 MB peak; 2: 5.9-6.3 s, 284 MB; 4: 5.9 s, 381 MB; 8: 6.0 s,
# 568 MB; onnxruntime's working memory grows with the batch.
DEFAULT_BATCH_SIZE = 4
def _predict_isolated(classifier: Classifier, pictures: list[np.ndarray]) -> list[Prediction | BaseException]:
    """Predict a batch; if the batch fails, retry one by one so only the bad frame fails."""
    try:
        return list(classifier.predict(pictures))
    except Exception:
        results: list[Prediction | BaseException] = []
        for picture in pictures:
            try:
                results.append(classifier.predict([picture])[0])
            except Exception as exc:
                results.append(exc)
        return results


def grey_if_grey(picture: np.ndarray) -> np.ndarray:
    """The one channel of an RGB picture whose three channels are equal (a grey source, as most MRI slices
    are), else the picture: :func:`~brainscan.engine.input.picture_checks.picture_facts` gives the very same
    figures for both (OpenCV's grey of three equal channels is that channel; their colourfulness is 0) and
    skips the grey conversion and the colour measure (0.35 against 0.55 ms per 224 px picture)."""
    if picture.ndim == 3 and picture.shape[2] == 3 and np.array_equal(picture[..., 0], picture[..., 1]) and (
            np.array_equal(picture[..., 1], picture[..., 2])):
        return np.ascontiguousarray(picture[..., 0])
    return picture


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
    facts = picture_facts(grey_if_grey(frame.picture))  # measured once: the checks and the heat-outside share
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


def _results(
    batch: list[tuple[FrameRef, Frame | BaseException]],
    predictions: list[Prediction | BaseException],
    budget: DecodeBudget,
    result_of: Callable[[FrameRef, Frame, Prediction], FrameResult],
) -> Iterator[FrameResult]:
    """Yield a classified batch's results in order, letting go of each frame once its consumer is done."""
    found = iter(predictions)
    for index, (ref, item) in enumerate(batch):
        nbytes = frame_bytes(item)
        batch[index] = (ref, None)  # type: ignore[assignment]  # the batch no longer holds the frame
        try:
            if not isinstance(item, Frame):
                yield FrameResult(ref, "error", error=describe_failure(ref, item))
                continue
            prediction = next(found)
            if isinstance(prediction, BaseException):
                yield FrameResult(ref, "error", error=describe_failure(ref, prediction))
                continue
            yield result_of(ref, item, prediction)
        finally:
            del item
            budget.let_go(nbytes)


def _take_batch(
    decoded: Iterator[tuple[FrameRef, Frame | BaseException]], size: int, budget: DecodeBudget
) -> list[tuple[FrameRef, Frame | BaseException]]:
    """The next ``size`` decoded frames (fewer at the end, or once they hold :data:`BATCH_BYTES`), moved to
    the budget's ``in use``."""
    batch: list[tuple[FrameRef, Frame | BaseException]] = []
    held = 0
    for ref, item in decoded:
        batch.append((ref, item))
        held += frame_bytes(item)
        del item
        if len(batch) >= size or held >= BATCH_BYTES:
            break
    budget.use(held)
    return batch


def decode_workers_for(refs: Iterable[FrameRef]) -> int:
    """Decoding threads for ``refs``: one for a list of raster pictures (their decoder runs one at a time:
    :data:`brainscan.engine.input.raster.DECODER_MESSAGES`, and a second thread only adds hand-overs), else two
    (DICOM decoders run side by side)."""
    if isinstance(refs, Sequence) and all(ref.kind == "raster" for ref in refs):
        return 1
    return 2


def screen(
    refs: Iterable[FrameRef],
    classifier: Classifier,
    *,
    cam_method: str | None = "gradcam",
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    keep_frames: bool = False,
    decode_workers: int | None = None,
    lanes: int | None = 1,
    remember_plan: bool = True,
) -> Iterator[FrameResult]:
    """Classify every frame of ``refs``, yielding one result per frame in order.

    Frames are decoded ahead on ``decode_workers`` threads; up to ``lanes`` batches are classified at once
    on their own threads (onnxruntime lets go of the GIL), while this generator's consumer computes the
    heat maps and writes the results of the batches before them.

    Parameters
    ----------
    cam_method:
        One of :data:`brainscan.engine.model.cam.METHODS` to compute the heat map of the predicted
        class (``heat``, at the picture's size, and its peak), or ``None`` for none.
    batch_size, lanes:
        Frames per batch and batches at once (by default one batch of :data:`DEFAULT_BATCH_SIZE` at a
        time, as the viewer runs it). None: measured (:mod:`brainscan.engine.run.tuning`: the plan
        remembered for this machine and model, else a few plans tried on the first frames), lanes up to
        one per ``classifier.threads``-sized share of the cores (one when onnxruntime's own threads take
        them all); a given one is kept. The results do not depend on either beyond float noise.
    keep_frames:
        Keep the decoded :class:`Frame` and :class:`Prediction` on each result (the viewer and
        overlay writing need them; plain screening does not, so memory stays flat).
    decode_workers:
        Decoding threads; None: :func:`decode_workers_for` ``refs``.
    remember_plan:
        Remember a measured plan in the user's cache folder for the next run.
    """
    if cam_method is not None and cam_method not in METHODS:
        raise ValueError(f"unknown CAM method {cam_method!r}; choose one of {', '.join(METHODS)} or none")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    tuner = tuner_for(classifier, batch_size=batch_size, lanes=lanes, remember=remember_plan)
    most = tuner.largest
    budget = DecodeBudget(DECODE_AHEAD_BYTES)

    def result_of(ref: FrameRef, frame: Frame, prediction: Prediction) -> FrameResult:
        return classified(ref, frame, prediction, classifier, cam_method=cam_method, keep_frames=keep_frames)

    if decode_workers is None:
        decode_workers = decode_workers_for(refs)
    decoded = decode_ahead(refs, workers=decode_workers, ahead=max(2 * (most.lanes + QUEUED) * most.batch_size, 4),
                           budget=budget)
    in_flight: deque[tuple[list[tuple[FrameRef, Frame | BaseException]], Future | None]] = deque()
    with ThreadPoolExecutor(max_workers=most.lanes, thread_name_prefix="brainscan-infer") as lanes_pool:

        def start_batches() -> None:
            while tuner.may_submit(len(in_flight)):
                batch = _take_batch(decoded, tuner.plan.batch_size, budget)
                if not batch:
                    return
                frames = [item.picture for _, item in batch if isinstance(item, Frame)]
                future = lanes_pool.submit(_predict_isolated, classifier, frames) if frames else None
                in_flight.append((batch, future))
                tuner.submitted(len(frames))

        try:
            start_batches()
            while in_flight:
                batch, future = in_flight.popleft()
                predictions = future.result() if future is not None else []
                tuner.finished(len(predictions))
                start_batches()  # the lanes work on while this batch's heat maps are made and written
                yield from _results(batch, predictions, budget, result_of)
                del batch, predictions
        finally:
            for _, future in in_flight:
                if future is not None:
                    future.cancel()
            in_flight.clear()
            decoded.close()
