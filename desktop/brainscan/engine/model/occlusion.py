"""The occlusion map: a slow, model-agnostic check beside the fast heat maps (Zeiler and Fergus 2014).

A black square (0, the training pictures' background) of :data:`PATCH` pixels is laid on the model's
input picture at a grid of positions :data:`STRIDE` pixels apart (each square centred on its grid
cell, clipped at the border: 14 x 14 positions on a 224 input), and the network is run on every
occluded copy. The map is the drop of the class's logit, ``original - occluded``: positive where
hiding the region takes evidence for the class away, negative where it removes evidence against.
It reads only the model's logits, so unlike the CAM methods it assumes nothing about the graph.

Cost: one forward pass per position, so 196 passes (plus the original) on a 224 input. Measured with
:func:`occlusion_map` on one 512 px figshare slice (pituitary ``1000.jpg``), the shipped model
(0.4.0, mirror averaged inside the graph), batch 16, onnxruntime on 2 CPU cores: 2.3-2.6 s with the cores
to itself (four runs), 6-7 s while another process shared them; the CAM maps of the same slice come with
the one pass that classifies it (10 ms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from brainscan.engine.errors import Cancelled
from brainscan.engine.model.cam import map_on_picture
from brainscan.engine.model.contract import ModelContract
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.preprocess import normalize, resize_for_model

OCCLUSION = "occlusion"  # the method's name beside the CAM methods (brainscan explain --method, the viewer)
OCCLUSION_TITLE = "Occlusion"
PATCH = 32  # side of the black square, in model-input pixels
STRIDE = 16  # distance between square centres: 14 x 14 positions on a 224 input
BATCH_SIZE = 16  # occluded pictures per forward pass
FILL = 0  # the square's value in the 8-bit picture: black, the background of the training pictures


@dataclass(frozen=True)
class OcclusionStep:
    """Where an occlusion run stands: ``done`` of ``total`` positions; ``drops`` (rows x cols) on the last step only."""

    done: int
    total: int
    drops: np.ndarray | None = None


def grid_centres(size: int, stride: int = STRIDE) -> np.ndarray:
    """The centres of the squares along one side of ``size`` pixels: one per ``stride``-wide cell, mid-cell.

    ``round(size / stride)`` cells spread evenly over the side (centres 8, 24, ..., 216 for 224 and 16),
    so a map of one value per centre, resized bilinearly to ``size``, puts each value on its square.
    """
    if size < 1 or stride < 1:
        raise ValueError(f"size {size} and stride {stride} must be positive")
    cells = max(1, round(size / stride))
    return ((np.arange(cells) + 0.5) * size / cells).astype(int)


def occlusion_boxes(input_size: tuple[int, int], patch: int = PATCH, stride: int = STRIDE) -> list[tuple[int, ...]]:
    """The squares as (top, bottom, left, right), row by row, centred on :func:`grid_centres`, clipped."""
    if patch < 1:
        raise ValueError(f"the occluding square's side must be positive, got {patch}")
    height, width = input_size
    half = patch // 2
    rows, cols = grid_centres(height, stride), grid_centres(width, stride)
    return [(max(0, r - half), min(height, r - half + patch), max(0, c - half), min(width, c - half + patch))
            for r in rows for c in cols]


def _target_logits(classifier: Classifier, batch: np.ndarray, target: int) -> np.ndarray:
    """The raw logit of ``target`` for each input-size uint8 picture, with the contract's engine-side mirror
    averaging as :meth:`Classifier.predict` applies it (a mirror averaged inside the graph needs nothing)."""
    tensor = normalize(batch, classifier.contract)
    if "hflip" in classifier.contract.test_time_augmentation:
        logits, _, _ = classifier.run_outputs(np.concatenate([tensor, tensor[..., ::-1]]))
        return (logits[: len(batch), target] + logits[len(batch) :, target]) / 2
    logits, _, _ = classifier.run_outputs(tensor)
    return logits[:, target]


def occlusion_steps(
    classifier: Classifier, picture: np.ndarray, target: int, *, patch: int = PATCH, stride: int = STRIDE,
    batch_size: int = BATCH_SIZE,
) -> Iterator[OcclusionStep]:
    """Compute the occlusion map of class ``target`` for an 8-bit RGB ``picture``, a batch at a time.

    Yields ``OcclusionStep(0, total)`` before any work, one step after each batch, and the last with the
    map of logit drops (float32, one per position). A caller stops it by no longer iterating (the viewer's
    worker) or through :func:`occlusion_map`'s ``cancelled``.
    """
    if not 0 <= target < classifier.contract.num_classes:
        raise ValueError(f"target class {target} is out of range for {classifier.contract.num_classes} classes")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    model_picture = resize_for_model(picture, classifier.contract)
    boxes = occlusion_boxes(model_picture.shape[:2], patch, stride)
    shape = (len(grid_centres(model_picture.shape[0], stride)), len(grid_centres(model_picture.shape[1], stride)))
    jobs: list[tuple[int, ...] | None] = [None, *boxes]  # None: the picture itself, for the original logit
    drops = np.zeros(len(boxes), dtype=np.float32)
    original: float | None = None
    yield OcclusionStep(0, len(boxes))
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        batch = np.repeat(model_picture[None], len(chunk), axis=0)
        for occluded, box in zip(batch, chunk, strict=True):
            if box is not None:
                top, bottom, left, right = box
                occluded[top:bottom, left:right] = FILL
        logits = _target_logits(classifier, batch, target)
        if original is None:
            original, logits = float(logits[0]), logits[1:]
        done = start + len(chunk) - 1  # positions finished (the original is not one)
        drops[done - len(logits) : done] = original - logits
        last = done == len(boxes)
        yield OcclusionStep(done, len(boxes), drops.reshape(shape).copy() if last else None)


def occlusion_map(
    classifier: Classifier, picture: np.ndarray, target: int, *, patch: int = PATCH, stride: int = STRIDE,
    batch_size: int = BATCH_SIZE, progress: Callable[[int, int], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> np.ndarray:
    """The raw occlusion map (rows x cols float32 logit drops; 14 x 14 on a 224 input) of class ``target``.

    ``progress(done, total)`` is called after each batch (and once with 0 before the first);
    ``cancelled()`` is asked before each batch and, when it says True, :class:`Cancelled` is raised.
    Slow: see the module's note for the time per picture.
    """
    for step in occlusion_steps(classifier, picture, target, patch=patch, stride=stride, batch_size=batch_size):
        if progress is not None:
            progress(step.done, step.total)
        if step.drops is not None:
            return step.drops
        if cancelled is not None and cancelled():
            raise Cancelled(f"the occlusion map was cancelled after {step.done} of {step.total} positions")
    raise AssertionError("occlusion_steps ended without its map")  # pragma: no cover (it always ends with one)


def occlusion_on_picture(drops: np.ndarray, picture_shape: tuple[int, int], contract: ModelContract) -> np.ndarray:
    """The occlusion map laid over the original picture (height x width, in [0, 1]) as the CAM maps are.

    Only the evidence for the class is drawn: drops under zero (hiding the region made the class more
    likely) count as none, as the gradient CAMs apply a ReLU; a map with no positive drop is all zero.
    """
    return map_on_picture(np.maximum(drops, 0).astype(np.float32), picture_shape, contract)
