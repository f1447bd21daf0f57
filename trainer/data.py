"""The training pictures: listing data roots, mapping folder names to classes, decoding once.

A data root is either a folder of class sub-folders, or a Kaggle-style split layout whose
``Training``/``Testing`` (or ``train``/``test``/``val``) sub-folders each hold class folders.
Several roots can be combined. Folder names are mapped to classes through
:data:`LABEL_ALIASES` (``glioma_tumor`` -> ``glioma``, ``no_tumor`` -> ``notumor``, ...), the
run's own ``label_aliases``, and for the binary task :data:`BINARY_MAP` (the four classes, or a
``yes``/``no`` set, to ``tumor``/``notumor``).

Pictures are decoded by the engine's loader (so training sees exactly what the application
sees) and resized with the engine's :func:`resize_for_model`, the one preprocessing path. A
file that cannot be decoded is reported and skipped, never fatal. A whole data set of
224 x 224 pictures fits in memory as uint8 (5708 x 224 x 224 x 3 = 860 MB), so decoding
happens once per run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainscan.engine.input.frames import FrameRef, kind_of
from brainscan.engine.input.loading import load_frame
from brainscan.engine.input.raster_headers import sniff_file
from brainscan.engine.model.contract import ModelContract
from brainscan.engine.model.preprocess import resize_for_model
from trainer.errors import TrainerError

CLASSES_4 = ("glioma", "meningioma", "notumor", "pituitary")
CLASSES_BINARY = ("notumor", "tumor")
TASK_CLASSES = {"4class": CLASSES_4, "binary": CLASSES_BINARY}
# Folder names used by other releases of the same data sets.
LABEL_ALIASES = {
    "glioma_tumor": "glioma",
    "glioma-tumor": "glioma",
    "meningioma_tumor": "meningioma",
    "meningioma-tumor": "meningioma",
    "no_tumor": "notumor",
    "no-tumor": "notumor",
    "no tumor": "notumor",
    "normal": "notumor",
    "pituitary_tumor": "pituitary",
    "pituitary-tumor": "pituitary",
}
# The binary task: any tumour class, or a yes/no set, to tumor / notumor.
BINARY_MAP = {
    "glioma": "tumor",
    "meningioma": "tumor",
    "pituitary": "tumor",
    "yes": "tumor",
    "tumour": "tumor",
    "tumor": "tumor",
    "notumor": "notumor",
    "notumour": "notumor",
    "no": "notumor",
}
# Split folder names of the Kaggle layouts and what they mean.
SPLIT_FOLDERS = {
    "training": "training",
    "train": "training",
    "testing": "testing",
    "test": "testing",
    "validation": "validation",
    "val": "validation",
}
UNSPLIT = "unsplit"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain-tumor-mri" / "Training"


@dataclass(frozen=True)
class Sample:
    """One picture file, its class index, and where it came from."""

    path: Path
    label: int
    split: str = UNSPLIT  # "training", "testing", "validation" or "unsplit"
    root: int = 0  # index of its data root
    folder: str = ""  # the class folder's own name (before aliases)


@dataclass
class Listing:
    """What :func:`scan_data` found: the samples, and what it left out and why."""

    roots: tuple[Path, ...]
    samples: list[Sample]
    ignored_folders: list[str] = field(default_factory=list)  # "path: reason"
    ignored_files: int = 0  # files without a picture suffix


def canonical_label(folder_name: str, task: str = "4class", aliases: Mapping[str, str] | None = None) -> str:
    """The class name for a folder name: the run's aliases, :data:`LABEL_ALIASES`, then the task's map."""
    name = folder_name.strip().lower()
    extra = {k.strip().lower(): v for k, v in (aliases or {}).items()}
    name = extra.get(name, name)
    name = LABEL_ALIASES.get(name, name)
    if task == "binary":
        name = BINARY_MAP.get(name, name)
    return name


def _split_of(folder: Path) -> str | None:
    return SPLIT_FOLDERS.get(folder.name.strip().lower())


def _pictures_in(folder: Path) -> tuple[list[Path], int]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    pictures = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return pictures, len(files) - len(pictures)


def scan_data(
    roots: str | Path | Sequence[str | Path],
    classes: Sequence[str] = CLASSES_4,
    *,
    task: str = "4class",
    aliases: Mapping[str, str] | None = None,
    splits: Sequence[str] | None = None,
    every_class: bool = True,
) -> Listing:
    """Every picture under the roots, labelled, sorted by class, then root, then folder and path.

    Parameters
    ----------
    roots:
        Folders of class sub-folders, or of split folders (``Training``/``Testing``) of them.
    splits:
        Keep only these splits (``"training"``, ``"testing"``, ``"validation"``, ``"unsplit"``
        for roots without a split layout); ``None`` keeps all.
    every_class:
        Refuse roots that lack a class (training needs them all); an external set scored by a model may hold
        some of its classes only (``figshare-boxes``: the three tumour types).

    Raises
    ------
    TrainerError
        When a root is missing, or a class has no pictures (with ``every_class``; else when none has).
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    roots = tuple(Path(r) for r in roots)
    by_class: dict[str, list[Sample]] = {c: [] for c in classes}
    ignored: list[str] = []
    ignored_files = 0
    for index, root in enumerate(roots):
        if not root.is_dir():
            raise TrainerError(
                f"{root}: data folder not found (expected one sub-folder per class: {', '.join(classes)}, "
                "or Training/Testing folders holding them)"
            )
        subfolders = sorted(p for p in root.iterdir() if p.is_dir())
        layout = [(sub, _split_of(sub)) for sub in subfolders]
        if any(split for _, split in layout):
            class_folders = []
            for sub, split in layout:
                if split is None:
                    ignored.append(f"{sub}: not a split folder beside {', '.join(s for _, s in layout if s)}")
                    continue
                class_folders.extend((folder, split) for folder in sorted(p for p in sub.iterdir() if p.is_dir()))
        else:
            class_folders = [(sub, UNSPLIT) for sub in subfolders]
        for folder, split in class_folders:
            label = canonical_label(folder.name, task, aliases)
            if label not in by_class:
                ignored.append(f"{folder}: {folder.name!r} is not a class of this task ({', '.join(classes)})")
                continue
            if splits is not None and split not in splits:
                continue
            pictures, others = _pictures_in(folder)
            ignored_files += others
            by_class[label].extend(
                Sample(path, classes.index(label), split, index, folder.name) for path in pictures
            )
    empty = [c for c, samples in by_class.items() if not samples]
    if empty and (every_class or len(empty) == len(by_class)):
        where = ", ".join(str(r) for r in roots)
        chosen = f" in the splits {', '.join(splits)}" if splits is not None else ""
        raise TrainerError(f"{where}: no pictures for class(es) {', '.join(empty)}{chosen}")
    samples = [s for c in classes for s in by_class[c]]
    return Listing(roots, samples, ignored, ignored_files)


def class_folder_names(roots: str | Path | Sequence[str | Path]) -> list[str]:
    """The class folders' own names under the roots (inside split folders where the layout has them)."""
    names: list[str] = []
    for root in [roots] if isinstance(roots, (str, Path)) else roots:
        subfolders = sorted(p for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
        if any(_split_of(sub) for sub in subfolders):
            subfolders = [f for sub in subfolders if _split_of(sub) for f in sorted(sub.iterdir()) if f.is_dir()]
        names.extend(sub.name for sub in subfolders)
    return names


def is_tumour_yes_no(roots: str | Path | Sequence[str | Path], aliases: Mapping[str, str] | None = None) -> bool:
    """Whether the roots hold a tumour yes/no set (no tumour type folder; tumour and no-tumour folders after
    the aliases and :data:`BINARY_MAP`), such as ``yes``/``no``."""
    names = class_folder_names(roots)
    types = {canonical_label(n, "4class", aliases) for n in names} & (set(CLASSES_4) - {"notumor"})
    return not types and {canonical_label(n, "binary", aliases) for n in names} >= set(CLASSES_BINARY)


def list_samples(
    roots: str | Path | Sequence[str | Path],
    classes: Sequence[str] = CLASSES_4,
    *,
    task: str = "4class",
    aliases: Mapping[str, str] | None = None,
    splits: Sequence[str] | None = None,
) -> list[Sample]:
    """The samples of :func:`scan_data`."""
    return scan_data(roots, classes, task=task, aliases=aliases, splits=splits).samples


def read_frame(path: str | Path):
    """The engine's decoded :class:`~brainscan.engine.input.frames.Frame` of a file's first picture."""
    path = Path(path)
    return load_frame(FrameRef(path, kind=kind_of(sniff_file(path))))


def read_picture(path: str | Path) -> np.ndarray:
    """Decode a file into the 8-bit RGB picture (H x W x 3, uint8) the engine would see."""
    return read_frame(path).picture


def decoder_name() -> str:
    """The decoder :func:`read_picture` uses (recorded in the model's provenance)."""
    return "brainscan.engine.input.loading.load_frame"


@dataclass
class Decoded:
    """Decoded pictures at the input size, and the files that could not be decoded."""

    pictures: np.ndarray  # M x H x W x 3 uint8, one per readable file, in the order given
    kept: np.ndarray  # indices (into the paths given) of the M readable files
    problems: list[tuple[str, str]]  # (path, why) for every file skipped
    sizes: list[tuple[int, int]]  # original (height, width) per readable file
    formats: list[str]  # e.g. "JPEG, 8-bit grey", per readable file


def decode_pictures(
    paths: Iterable[str | Path],
    contract: ModelContract,
    *,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> Decoded:
    """Decode and resize every picture once; files that fail are reported and skipped."""
    paths = list(paths)
    height, width = contract.input_size
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    problems: list[tuple[str, str]] = []
    sizes: list[tuple[int, int]] = [(0, 0)] * len(paths)
    formats = [""] * len(paths)

    def work(index: int) -> int:
        try:
            frame = read_frame(paths[index])
            out[index] = resize_for_model(frame.picture, contract)
        except Exception as exc:  # one broken file never stops the batch; it is reported
            problems.append((str(paths[index]), f"{type(exc).__name__}: {exc}"))
        else:
            ok[index] = True
            sizes[index] = tuple(frame.picture.shape[:2])
            formats[index] = frame.tags.get("Format", frame.ref.kind)
        return index

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(work, range(len(paths))):
            if progress is not None:
                progress(1)
    kept = np.flatnonzero(ok)
    problems.sort()
    return Decoded(
        out[kept] if len(kept) < len(paths) else out,
        kept,
        problems,
        [sizes[i] for i in kept],
        [formats[i] for i in kept],
    )


def load_pictures(
    paths: Iterable[str | Path],
    contract: ModelContract,
    *,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Decode and resize every picture once: an N x H x W x 3 uint8 array at the input size.

    Raises
    ------
    TrainerError
        Naming the files that cannot be decoded (use :func:`decode_pictures` to skip them).
    """
    decoded = decode_pictures(paths, contract, workers=workers, progress=progress)
    if decoded.problems:
        listed = "; ".join(f"{p}: {why}" for p, why in decoded.problems[:3])
        raise TrainerError(f"{len(decoded.problems)} picture(s) cannot be decoded: {listed}")
    return decoded.pictures
