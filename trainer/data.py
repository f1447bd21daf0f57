"""The training pictures: listing class folders, decoding, and resizing them once.

Pictures are decoded by the engine's loader when it is available (so training sees exactly
what the application sees) and resized with the engine's :func:`resize_for_model`, the one
preprocessing path. A whole data set of 224 x 224 pictures fits in memory as uint8
(5708 x 224 x 224 x 3 = 860 MB), so decoding happens once per run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from brainscan.engine.contract import ModelContract
from brainscan.engine.preprocess import resize_for_model
from trainer.errors import TrainerError

CLASSES_4 = ("glioma", "meningioma", "notumor", "pituitary")
# Folder names used by other releases of the same data set.
LABEL_ALIASES = {
    "glioma_tumor": "glioma",
    "meningioma_tumor": "meningioma",
    "no_tumor": "notumor",
    "pituitary_tumor": "pituitary",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain-tumor-mri" / "Training"


@dataclass(frozen=True)
class Sample:
    """One picture file and its class index."""

    path: Path
    label: int


def canonical_label(folder_name: str) -> str:
    """The class name for a folder name, applying :data:`LABEL_ALIASES`."""
    name = folder_name.strip().lower()
    return LABEL_ALIASES.get(name, name)


def list_samples(root: str | Path, classes: Sequence[str] = CLASSES_4) -> list[Sample]:
    """Every picture under ``root/<class folder>/``, sorted by class then path.

    Folders whose (aliased) name is not one of ``classes`` are ignored.

    Raises
    ------
    TrainerError
        When ``root`` is missing or a class has no pictures.
    """
    root = Path(root)
    if not root.is_dir():
        raise TrainerError(f"{root}: data folder not found (expected one sub-folder per class: {', '.join(classes)})")
    by_class: dict[str, list[Path]] = {c: [] for c in classes}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = canonical_label(folder.name)
        if label in by_class:
            by_class[label].extend(
                sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            )
    empty = [c for c, paths in by_class.items() if not paths]
    if empty:
        raise TrainerError(f"{root}: no pictures for class(es) {', '.join(empty)}")
    return [Sample(path, classes.index(c)) for c in classes for path in by_class[c]]


def _cv2_picture(path: str | Path) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    picture = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if picture is None:
        raise TrainerError(f"{path}: cannot decode this picture")
    return cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)


def _engine_loader() -> Callable[[str | Path], np.ndarray] | None:
    try:
        from brainscan.engine.loading import load_picture
    except ImportError:
        return None
    return load_picture


def decoder_name() -> str:
    """Which decoder :func:`read_picture` uses (recorded in the model's provenance)."""
    return "cv2.imdecode" if _engine_loader() is None else "brainscan.engine.loading.load_picture"


def read_picture(path: str | Path) -> np.ndarray:
    """Decode a file into the 8-bit RGB picture (H x W x 3, uint8) the engine would see.

    Uses ``brainscan.engine.loading.load_picture`` when the engine has it, else OpenCV.
    """
    loader = _engine_loader()
    if loader is None:
        return _cv2_picture(path)
    picture = loader(path)
    picture = np.asarray(getattr(picture, "pixels", picture))
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    return picture


def load_pictures(
    paths: Iterable[str | Path],
    contract: ModelContract,
    *,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Decode and resize every picture once: an N x H x W x 3 uint8 array at the input size."""
    paths = list(paths)
    height, width = contract.input_size
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)

    def work(index: int) -> int:
        out[index] = resize_for_model(read_picture(paths[index]), contract)
        return index

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(work, range(len(paths))):
            if progress is not None:
                progress(1)
    return out
