"""Carrying the figshare tumour boxes over to the Kaggle Training pictures cut from them.

``python -m trainer match-boxes`` finds, for every figshare original (512 x 512, with its YOLO box),
the Kaggle Training pictures made from it, measures how each was made (mirrored or not, the crop and
the scales), carries the box there, and writes ``training-boxes.csv``, ``matching.md`` and a gallery.

No recipe is assumed. Measured on the data (``runs/boxes/matching.md``): every twin found is the whole
original resized to 224 x 224, not a head crop, and 1972 of the 3179 are mirrored left to right (916
originals have both an upright and a mirrored twin); crops are still looked for. Per original:

1. **shortlist**: 32 x 32 grey thumbnails (zero mean, unit norm) of the whole picture and of the head's
   bounding box (blurred brightness above :data:`HEAD_THRESHOLD`, largest component), the original's
   upright and mirrored; Kaggle pictures of every class whose whole thumbnail correlates with the
   original's by :data:`SHORTLIST_WHOLE` or more (a resize of the whole picture), or whose head
   thumbnail does by :data:`SHORTLIST_HEAD` or more (a crop), are candidates (at most
   :data:`CANDIDATES` per orientation);
2. **alignment**: ``cv2.findTransformECC`` (affine) from the guess of the better thumbnail (whole: a
   plain resize; head: the two head boxes); the result is a crop when its shear terms are negligible,
   and the crop's corner and scales are its translation and diagonal;
3. **error**: the original warped onto the Kaggle picture, a grey gain and offset fitted (the two
   exports need not share a grey scale), then the mean absolute difference in grey levels (the
   ``match_error``) and the *outliers*: the share of pixels where the difference, smoothed over
   :data:`OUTLIER_SMOOTHING` pixels, exceeds :data:`OUTLIER_LEVEL`. A pair is a twin when the outliers
   are at most :data:`MAX_OUTLIERS` and the error at most :data:`MAX_ERROR`. The outliers decide:
   twins differ by JPEG noise, which is fine-grained and smooths away (measured: at most 0.24 %
   outliers), while neighbouring slices of the same patient, which ECC aligns too, differ in
   coherent patches of anatomy (5.3 % or more). The mean error alone cannot tell them apart
   (twins up to 4.5 grey levels, neighbours from 2.5).

A Kaggle picture keeps its best original. A twin filed under another class than its original is
counted and listed, never given a box. The 512-pixel originals are only read here, never trained on.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from trainer.boxes import Box, read_yolo_box
from trainer.errors import TrainerError

TUMOUR_CLASSES = ("glioma", "meningioma", "pituitary")
KAGGLE_CLASSES = (*TUMOUR_CLASSES, "notumor")
THUMB = 32  # thumbnail side
HEAD_THRESHOLD = 30  # grey level of the blurred picture that starts the head
SHORTLIST_WHOLE = 0.99  # whole-picture thumbnail correlation that makes a candidate (twins: >= 0.9997)
SHORTLIST_HEAD = 0.95  # head-box thumbnail correlation that makes a candidate
CANDIDATES = 6  # most candidates per original and orientation
OUTLIER_SMOOTHING = 1.0  # Gaussian sigma (pixels) of the difference before outliers are counted
OUTLIER_LEVEL = 8  # grey levels: a pixel whose smoothed difference exceeds this is an outlier
MAX_OUTLIERS = 0.01  # share of outlier pixels that still makes a twin
MAX_ERROR = 6.0  # mean absolute grey difference after alignment that still makes a twin
MAX_SHEAR = 0.01  # off-diagonal warp terms, relative to the scale, that still make a crop
_ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5)


@dataclass(frozen=True)
class Alignment:
    """How a Kaggle picture was cut from an original: ``kaggle = resize(crop(mirror?(original)))``.

    ``left``, ``top``: the crop's corner in the (mirrored) original's pixels; ``scale_x``,
    ``scale_y``: Kaggle pixels per original pixel; ``error``: mean absolute grey difference after
    alignment; ``outliers``: the share of pixels whose smoothed difference exceeds :data:`OUTLIER_LEVEL`;
    ``found_by``: the thumbnail that shortlisted the pair (``whole`` or ``head``).
    """

    mirrored: bool
    left: float
    top: float
    scale_x: float
    scale_y: float
    error: float
    outliers: float
    found_by: str

    @property
    def is_twin(self) -> bool:
        """Whether the aligned original reproduces the Kaggle picture up to JPEG noise."""
        return self.outliers <= MAX_OUTLIERS and self.error <= MAX_ERROR

    def carry(self, box: Box, width: int, height: int) -> Box:
        """The original's box on the Kaggle picture of ``width`` x ``height``, clipped to it."""
        source = box.mirrored() if self.mirrored else box
        return source.cropped(self.left, self.top, self.scale_x, self.scale_y, width, height).clipped()

    def is_whole_resize(self, original: tuple[int, int], kaggle: tuple[int, int], tolerance: float = 1.0) -> bool:
        """Whether the crop is the whole original (corners within ``tolerance`` original pixels); sizes (w, h)."""
        right = self.left + kaggle[0] / self.scale_x
        bottom = self.top + kaggle[1] / self.scale_y
        misses = (self.left, self.top, right - original[0], bottom - original[1])
        return max(abs(value) for value in misses) <= tolerance


@dataclass(frozen=True)
class Match:
    """A Kaggle picture (``path`` relative to the Kaggle root) and the original it was cut from."""

    path: str
    kaggle_class: str
    figshare_id: str
    figshare_class: str
    box: Box
    alignment: Alignment
    original_size: tuple[int, int]  # width, height


@dataclass
class KaggleIndex:
    """Every readable Kaggle picture's relative path, class folder and thumbnails (rows)."""

    root: Path
    paths: list[str]
    classes: list[str]
    whole: np.ndarray
    head: np.ndarray
    unreadable: list[str] = field(default_factory=list)


@dataclass
class MatchReport:
    """What matching found: the carried boxes and everything ``matching.md`` counts."""

    matches: list[Match]
    index: KaggleIndex
    originals: Counter
    no_twin: Counter
    disagreements: list[Match]
    pairs: np.ndarray  # (error, outlier share) of every aligned candidate pair, twins or not
    contested: list[tuple[str, str, str]]  # (Kaggle path, kept id, dropped id): twinned by two originals
    not_crops: int  # aligned pairs rejected for shear
    seconds: float = 0.0


# -- pictures and thumbnails ---------------------------------------------------------------------
def read_grey(path: Path) -> np.ndarray | None:
    """A picture as 8-bit grey (colour-encoded JPGs too), or None when it cannot be decoded."""
    return cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_GRAYSCALE)


def head_extent(picture: np.ndarray, threshold: int = HEAD_THRESHOLD) -> tuple[int, int, int, int]:
    """The bounding box ``(x0, y0, x1, y1)`` of the largest bright component: the head's extent.

    The whole picture when nothing is brighter than ``threshold`` (after a 5 x 5 blur, which keeps
    JPEG noise in the background out).
    """
    mask = (cv2.GaussianBlur(picture, (5, 5), 0) > threshold).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count < 2:
        return 0, 0, picture.shape[1], picture.shape[0]
    x, y, w, h = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), :4]
    return int(x), int(y), int(x + w), int(y + h)


def thumbnail(picture: np.ndarray) -> np.ndarray:
    """The picture as a 32 x 32 area-averaged grey vector of zero mean and unit norm (correlation signature)."""
    small = cv2.resize(picture, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small -= small.mean()
    return small / max(float(np.linalg.norm(small)), 1e-6)


def thumbnails(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The thumbnails of the whole picture and of its head's bounding box."""
    x0, y0, x1, y1 = head_extent(picture)
    return thumbnail(picture), thumbnail(picture[y0:y1, x0:x1])


def _read_thumbnails(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    picture = read_grey(path)
    return None if picture is None else thumbnails(picture)


def index_kaggle(root: Path, classes: tuple[str, ...] = KAGGLE_CLASSES, mapper: Callable = map) -> KaggleIndex:
    """Thumbnails of every picture in ``root/<class>/`` (all classes, to catch twins filed elsewhere).

    ``mapper`` maps over the files (a thread pool's ``map`` reads them in parallel).
    """
    files = [(name, path) for name in classes for path in sorted((root / name).glob("*.jpg"))]
    paths, labels, whole, head, unreadable = [], [], [], [], []
    for (name, path), pair in zip(files, mapper(_read_thumbnails, [path for _, path in files]), strict=True):
        relative = path.relative_to(root).as_posix()
        if pair is None:
            unreadable.append(relative)
            continue
        paths.append(relative)
        labels.append(name)
        whole.append(pair[0])
        head.append(pair[1])
    if not paths:
        raise TrainerError(f"no Kaggle pictures under {root}/<{'|'.join(classes)}>/*.jpg")
    return KaggleIndex(root, paths, labels, np.stack(whole), np.stack(head), unreadable)


def shortlists(index: KaggleIndex, whole: np.ndarray, head: np.ndarray,
               chunk: int = 256) -> list[list[tuple[int, str]]]:
    """Candidate Kaggle pictures for each row of thumbnails: [(Kaggle row, ``whole`` or ``head``)], best first.

    A whole-picture correlation of :data:`SHORTLIST_WHOLE` (a resize) or a head-box correlation of
    :data:`SHORTLIST_HEAD` (a crop) makes a candidate; resizes rank first. The correlations are one
    matrix product per ``chunk`` rows (far cheaper than one per original).
    """
    picks = []
    for start in range(0, len(whole), chunk):
        by_whole = whole[start:start + chunk] @ index.whole.T
        by_head = head[start:start + chunk] @ index.head.T
        for row_whole, row_head in zip(by_whole, by_head, strict=True):
            is_whole = row_whole >= SHORTLIST_WHOLE
            score = np.where(is_whole, 1 + row_whole, row_head)
            rows = np.flatnonzero(is_whole | (row_head >= SHORTLIST_HEAD))
            rows = rows[np.argsort(-score[rows])][:CANDIDATES]
            picks.append([(int(k), "whole" if is_whole[k] else "head") for k in rows])
    return picks


# -- alignment -------------------------------------------------------------------------------------
def _initial_warp(original: np.ndarray, kaggle: np.ndarray, found_by: str) -> np.ndarray:
    """A first guess of the warp from Kaggle pixel centres to original pixel centres (2 x 3)."""
    if found_by == "whole":
        ox0, oy0, ox1, oy1 = 0, 0, original.shape[1], original.shape[0]
        kx0, ky0, kx1, ky1 = 0, 0, kaggle.shape[1], kaggle.shape[0]
    else:
        ox0, oy0, ox1, oy1 = head_extent(original)
        kx0, ky0, kx1, ky1 = head_extent(kaggle)
    ax, ay = (ox1 - ox0) / max(kx1 - kx0, 1), (oy1 - oy0) / max(ky1 - ky0, 1)
    # edges e map as e_o = o0 + (e_k - k0) * a; centres sit at index + 0.5
    return np.array([[ax, 0, ox0 - kx0 * ax + 0.5 * ax - 0.5], [0, ay, oy0 - ky0 * ay + 0.5 * ay - 0.5]],
                    dtype=np.float32)


def alignment_error(smoothed: np.ndarray, kaggle: np.ndarray, warp: np.ndarray) -> tuple[float, float]:
    """Mean absolute grey difference between the Kaggle picture and the warped original, after a
    least-squares grey gain and offset (so a different grey export is not an error), and the share
    of pixels where the difference, smoothed (JPEG noise averages out, anatomy does not), exceeds
    :data:`OUTLIER_LEVEL`."""
    height, width = kaggle.shape
    warped = cv2.warpAffine(smoothed, warp, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    x, y = warped.ravel(), kaggle.astype(np.float32).ravel()
    x_centred = x - x.mean()
    spread = float(x_centred @ x_centred)
    gain = float(x_centred @ (y - y.mean())) / spread if spread > 0 else 0.0
    difference = (y.mean() + gain * x_centred - y).reshape(height, width)
    smoothed_difference = cv2.GaussianBlur(difference, (0, 0), OUTLIER_SMOOTHING)
    return float(np.abs(difference).mean()), float(np.mean(np.abs(smoothed_difference) > OUTLIER_LEVEL))


def align(original: np.ndarray, kaggle: np.ndarray, *, mirrored: bool, found_by: str) -> Alignment | None:
    """Fit the warp that makes the (mirrored) original the Kaggle picture; None when it is no crop.

    The original is smoothed (sigma half its down-scaling) so that sampling it at Kaggle pixel
    centres acts like the area averaging of a resize.
    """
    source = np.ascontiguousarray(original[:, ::-1]) if mirrored else original
    warp = guess = _initial_warp(source, kaggle, found_by)
    smoothed = cv2.GaussianBlur(source, (0, 0), max(0.5 * float(guess[0, 0]), 0.5)).astype(np.float32)
    with contextlib.suppress(cv2.error):  # no convergence: judge the first guess
        _, warp = cv2.findTransformECC(kaggle.astype(np.float32), smoothed, guess.copy(), cv2.MOTION_AFFINE,
                                       _ECC_CRITERIA, None, 3)
    (ax, shear_x, cx), (shear_y, ay, cy) = warp.astype(np.float64)
    if ax <= 0 or ay <= 0 or max(abs(shear_x), abs(shear_y)) > MAX_SHEAR * min(ax, ay):
        return None
    error, outliers = alignment_error(smoothed, kaggle, warp)
    # centre c_k maps to c_o = a * c_k + c; the crop's corner (Kaggle edge 0) is c_o of centre -0.5, plus 0.5
    return Alignment(mirrored, cx + 0.5 - 0.5 * ax, cy + 0.5 - 0.5 * ay, 1 / ax, 1 / ay, error, outliers,
                     found_by)


# -- matching -------------------------------------------------------------------------------------
def _originals(boxes_root: Path) -> list[tuple[str, Path]]:
    """Every (class, picture) of ``boxes_root/<class>/ID.jpg`` that has its ``ID.txt`` box."""
    found = [(name, path) for name in TUMOUR_CLASSES for path in sorted((boxes_root / name).glob("*.jpg"))
             if path.with_suffix(".txt").is_file()]
    if not found:
        raise TrainerError(f"no figshare originals with boxes under {boxes_root}/<class>/ID.jpg + ID.txt")
    return found


def match_original(name: str, path: Path, candidates: list[tuple[bool, int, str]],
                   index: KaggleIndex) -> tuple[list[Match], list[tuple[float, float]], int]:
    """Align one original with its candidates ``(mirrored, Kaggle row, found_by)``.

    Returns its twins (of any class), every aligned pair's (error, outlier share), and how many
    pairs were no crop (shear).
    """
    original = read_grey(path) if candidates else None
    if original is None:
        return [], [], 0
    box = read_yolo_box(path.with_suffix(".txt"), original.shape[1], original.shape[0])
    twins, errors, not_crops = [], [], 0
    for mirrored, row, found_by in candidates:
        kaggle = read_grey(index.root / index.paths[row])
        alignment = align(original, kaggle, mirrored=mirrored, found_by=found_by)
        if alignment is None:
            not_crops += 1
            continue
        errors.append((alignment.error, alignment.outliers))
        if alignment.is_twin:
            carried = alignment.carry(box, kaggle.shape[1], kaggle.shape[0])
            twins.append(Match(index.paths[row], index.classes[row], path.stem, name, carried, alignment,
                               (original.shape[1], original.shape[0])))
    return twins, errors, not_crops


def _candidates(index: KaggleIndex, originals: list[tuple[str, Path]], mapper: Callable) -> list[list]:
    """Every original's candidates ``(mirrored, Kaggle row, found_by)``, upright and mirrored."""
    pairs = list(mapper(_read_thumbnails, [path for _, path in originals]))
    blank = np.zeros(THUMB * THUMB, np.float32)  # an unreadable original correlates with nothing
    whole = np.stack([blank if pair is None else pair[0] for pair in pairs])
    head = np.stack([blank if pair is None else pair[1] for pair in pairs])
    mirror = np.s_[:, :, ::-1]
    flipped = [m.reshape(-1, THUMB, THUMB)[mirror].reshape(len(m), -1) for m in (whole, head)]
    upright, mirrored = shortlists(index, whole, head), shortlists(index, *flipped)
    return [[(False, *c) for c in up] + [(True, *c) for c in down]
            for up, down in zip(upright, mirrored, strict=True)]


def match_boxes(kaggle_root: Path, boxes_root: Path, workers: int = 2) -> MatchReport:
    """Match every original under ``boxes_root`` against every picture under ``kaggle_root``."""
    start = time.perf_counter()
    originals = _originals(Path(boxes_root))
    with ThreadPoolExecutor(max(1, workers)) as pool:  # OpenCV's calls release the GIL
        index = index_kaggle(Path(kaggle_root), mapper=pool.map)
        candidates = _candidates(index, originals, pool.map)
        results = list(pool.map(lambda item: match_original(*item[0], item[1], index),
                                zip(originals, candidates, strict=True)))
    best: dict[str, Match] = {}
    contested = []
    for twin in (twin for twins, _, _ in results for twin in twins):
        held = best.get(twin.path)
        if held is None:
            best[twin.path] = twin
            continue
        keep, drop = sorted((held, twin), key=lambda m: m.alignment.error)
        contested.append((twin.path, keep.figshare_id, drop.figshare_id))
        best[twin.path] = keep
    kept = sorted(best.values(), key=lambda m: m.path)
    twinned = {(m.figshare_class, m.figshare_id) for m in kept}
    no_twin = Counter(name for name, path in originals if (name, path.stem) not in twinned)
    errors = [pair for _, pairs, _ in results for pair in pairs]
    return MatchReport([m for m in kept if m.kaggle_class == m.figshare_class], index,
                       Counter(name for name, _ in originals), no_twin,
                       [m for m in kept if m.kaggle_class != m.figshare_class], np.array(errors).reshape(-1, 2),
                       contested, sum(rejects for _, _, rejects in results), time.perf_counter() - start)


# -- outputs --------------------------------------------------------------------------------------
CSV_COLUMNS = ("path", "class", "figshare_id", "x0", "y0", "x1", "y1", "width", "height", "match_error",
               "outliers", "mirrored")


def write_csv(matches: list[Match], path: Path) -> None:
    """``training-boxes.csv``: one row per Kaggle picture given a box (pixels of that picture)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for m in matches:
            b = m.box
            writer.writerow([m.path, m.kaggle_class, m.figshare_id, *(f"{v:.2f}" for v in (b.x0, b.y0, b.x1, b.y1)),
                             b.width, b.height, f"{m.alignment.error:.3f}", f"{m.alignment.outliers:.5f}",
                             int(m.alignment.mirrored)])


def _count_rows(report: MatchReport) -> list[str]:
    """The per-class table of ``matching.md``."""
    folder = Counter(report.index.classes)
    boxed = Counter(m.kaggle_class for m in report.matches)
    mirrored = Counter(m.kaggle_class for m in report.matches if m.alignment.mirrored)
    twinned = Counter(name for name, _ in {(m.figshare_class, m.figshare_id) for m in report.matches})
    rows = ["| class | originals | with a twin here | original without twin | Kaggle pictures | given a box "
            "| of them mirrored | Kaggle without twin |", "| --- |" + " ---: |" * 7]
    for name in KAGGLE_CLASSES:
        originals = report.originals.get(name, 0)
        rows.append(f"| {name} | {originals} | {twinned[name]} | {report.no_twin[name]} | {folder[name]} "
                    f"| {boxed[name]} | {mirrored[name]} | {folder[name] - boxed[name]} |")
    return rows


def _error_rows(report: MatchReport) -> list[str]:
    """The error distribution: accepted twins' quantiles, and every aligned pair by outlier share."""
    errors = np.array([m.alignment.error for m in report.matches])
    outliers = np.array([m.alignment.outliers for m in report.matches]) * 100
    q = (0, 0.5, 0.9, 0.99, 1)
    rows = ["| twins (given a box) | min | median | 90 % | 99 % | max |", "| --- |" + " ---: |" * 5]
    if len(errors):
        rows.append("| match_error (grey levels) | " + " | ".join(f"{v:.2f}" for v in np.quantile(errors, q)) + " |")
        rows.append("| outliers (% of pixels) | " + " | ".join(f"{v:.2f}" for v in np.quantile(outliers, q)) + " |")
    edges = (0, 0.1, 0.5, 1, 2, 5, 10, 20, 100)
    rows += ["", "Every aligned candidate pair (twins or not), by outlier share:", "",
             "| outliers (%) | pairs | match_error median | match_error range |", "| --- | ---: | ---: | --- |"]
    for low, high in itertools.pairwise(edges):
        inside = report.pairs[(report.pairs[:, 1] * 100 >= low) & (report.pairs[:, 1] * 100 < high), 0]
        spread = f"{inside.min():.2f}-{inside.max():.2f}" if len(inside) else ""
        median = f"{np.median(inside):.2f}" if len(inside) else ""
        rows.append(f"| {low}-{high} | {len(inside)} | {median} | {spread} |")
    return rows


def _crop_lines(report: MatchReport) -> list[str]:
    """How the twins were cut from their originals (measured, not assumed)."""
    alignments = [m.alignment for m in report.matches]
    if not alignments:
        return ["No twins."]
    whole = sum(m.alignment.is_whole_resize(m.original_size, (m.box.width, m.box.height)) for m in report.matches)
    found = Counter(a.found_by for a in alignments)
    per_original = Counter((m.figshare_class, m.figshare_id) for m in report.matches)
    per_orientation = Counter((m.figshare_class, m.figshare_id, m.alignment.mirrored) for m in report.matches)
    both = {key[:2] for key in per_orientation if (*key[:2], not key[2]) in per_orientation}
    span = {key: (min(getattr(a, key) for a in alignments), max(getattr(a, key) for a in alignments))
            for key in ("left", "top", "scale_x", "scale_y")}
    return [
        f"- {whole} of {len(alignments)} twins are the whole original resized (crop corner and far "
        "side within 1 original pixel of the picture's edges); the rest are crops.",
        f"- shortlisted by the whole-picture thumbnail: {found['whole']}; by the head-box thumbnail: "
        f"{found['head']}.",
        f"- mirrored left to right: {sum(a.mirrored for a in alignments)}.",
        f"- originals with more than one twin: {sum(n > 1 for n in per_original.values())}; with an upright and "
        f"a mirrored twin: {len(both)}; with two or more twins of one orientation (copies inside the Kaggle set): "
        f"{sum(n > 1 for n in per_orientation.values())}.",
        "- crop corner (original pixels): left " + "{:.2f} to {:.2f}".format(*span["left"])
        + ", top " + "{:.2f} to {:.2f}".format(*span["top"]) + "; scales (Kaggle pixels per original pixel): x "
        + "{:.4f} to {:.4f}".format(*span["scale_x"]) + ", y " + "{:.4f} to {:.4f}".format(*span["scale_y"]) + ".",
    ]


def _method_lines() -> list[str]:
    """The matching method with its settings, for ``matching.md``."""
    return [
        f"1. Shortlist: {THUMB} x {THUMB} grey thumbnails (zero mean, unit norm) of each whole picture and of its "
        f"head box (5 x 5 blur above grey {HEAD_THRESHOLD}, largest component); the original upright and mirrored "
        f"against every Kaggle picture of every class; a candidate has a whole-picture correlation >= "
        f"{SHORTLIST_WHOLE} or a head-box correlation >= {SHORTLIST_HEAD} (at most {CANDIDATES} per orientation).",
        "2. Alignment: `cv2.findTransformECC` (affine) from the plain resize (whole) or the two head boxes (head), "
        "on the original smoothed like a resize; the crop's corner and scales are the warp's translation and "
        "diagonal; the box is mirrored when the twin is, then cut, scaled and clipped to the Kaggle picture.",
        "3. Error: the original warped onto the Kaggle picture, a grey gain and offset fitted by least squares, "
        "then the mean absolute difference (`match_error`) and the share of pixels where the difference, "
        f"smoothed by a Gaussian of sigma {OUTLIER_SMOOTHING} px, exceeds {OUTLIER_LEVEL} grey levels (`outliers`: "
        "JPEG noise averages out, differing anatomy does not). A Kaggle picture keeps its best original.", "",
    ]


def matching_markdown(report: MatchReport, kaggle_root: Path, boxes_root: Path) -> str:
    """``matching.md``: counts, class disagreements, how the crops were found, the error distribution."""
    lines = [
        "# Figshare tumour boxes carried to the Kaggle Training pictures", "",
        "RESEARCH USE ONLY. Written by `python -m trainer match-boxes` (`trainer/box_matching.py`).", "",
        f"Kaggle root `{kaggle_root}` ({len(report.index.paths)} readable pictures, "
        f"{len(report.index.unreadable)} unreadable); originals `{boxes_root}` "
        f"({sum(report.originals.values())} with a box). {report.seconds:.0f} s.", "",
        "## Counts", "", *_count_rows(report), "",
        "*originals*: figshare ids with a box; *with a twin here*: those carried to at least one Kaggle picture of "
        "their class; *original without twin*: those matched by no Kaggle picture at all (their twins may sit "
        "in the Testing split, or among the 20 % of figshare ids not shipped with boxes); *given a box*: Kaggle pictures in "
        "`training-boxes.csv`; *Kaggle without twin*: pictures of the folder no original matched (other sources, "
        "the figshare ids without boxes, or class disagreements).",
        f"Kaggle pictures twinned by more than one original (the lowest `match_error` kept): {len(report.contested)}"
        + "".join(f"; `{path}` kept {kept}, dropped {dropped}" for path, kept, dropped in report.contested[:20])
        + ".", "",
        "## Class disagreements", "",
        f"{len(report.disagreements)} Kaggle pictures are twins of an original of another class; "
        "no box carried:", "",
        *[f"- `{m.path}` (folder {m.kaggle_class}) = figshare {m.figshare_class} {m.figshare_id} "
          f"(match_error {m.alignment.error:.2f})" for m in report.disagreements], "",
        "## How the crop was found", "", *_method_lines(),
        f"Pairs aligned: {len(report.pairs)}; rejected as no crop (shear above {MAX_SHEAR:.0%} of the scale): "
        f"{report.not_crops}.", "", *_crop_lines(report), "",
        "## Errors", "",
        f"Threshold: a twin has `outliers` of at most {MAX_OUTLIERS:.0%} of its pixels and a `match_error` (mean "
        f"absolute difference, grey levels 0-255, after alignment and a grey gain and offset) of at most "
        f"{MAX_ERROR}. The outliers decide; the mean error alone overlaps between twins and neighbouring slices "
        "of the same patient (see the table below).", "", *_error_rows(report), "",
        "The gallery (`gallery.png`) shows twins of each class spread over the error range, worst included: "
        "the Kaggle picture with its carried box (green) beside the original (mirrored when the twin is) with "
        "its own box (yellow).", "",
    ]
    return "\n".join(lines)


def _gallery_pick(matches: list[Match], count: int) -> list[Match]:
    """About ``count`` twins, the same number per class, spread from the best to the worst error."""
    per_class = max(1, count // len(TUMOUR_CLASSES))
    picked = []
    for name in TUMOUR_CLASSES:
        ranked = sorted((m for m in matches if m.kaggle_class == name), key=lambda m: m.alignment.error)
        if ranked:
            picked += [ranked[round(i)] for i in np.linspace(0, len(ranked) - 1, min(per_class, len(ranked)))]
    return picked


def _rectangle(picture: np.ndarray, box: Box, colour: tuple[int, int, int]) -> None:
    cv2.rectangle(picture, (round(box.x0), round(box.y0)), (max(round(box.x1) - 1, 0), max(round(box.y1) - 1, 0)),
                  colour, 1)


def write_gallery(matches: list[Match], kaggle_root: Path, boxes_root: Path, path: Path, count: int = 12) -> None:
    """A PNG of about ``count`` twins: each Kaggle picture with its box beside its original with its box."""
    tiles = []
    for m in _gallery_pick(matches, count):
        kaggle = cv2.cvtColor(read_grey(kaggle_root / m.path), cv2.COLOR_GRAY2BGR)
        _rectangle(kaggle, m.box, (0, 255, 0))
        height, width = kaggle.shape[:2]
        source = boxes_root / m.figshare_class / f"{m.figshare_id}.jpg"
        original = read_grey(source)
        box = read_yolo_box(source.with_suffix(".txt"), original.shape[1], original.shape[0])
        if m.alignment.mirrored:
            original, box = np.ascontiguousarray(original[:, ::-1]), box.mirrored()
        original = cv2.resize(original, (width, height), interpolation=cv2.INTER_AREA)
        original = cv2.cvtColor(original, cv2.COLOR_GRAY2BGR)
        _rectangle(original, box.scaled_to(width, height), (0, 220, 255))
        caption = np.zeros((22, 2 * width + 4, 3), np.uint8)
        text = f"{m.path} = {m.figshare_id}{' mirrored' if m.alignment.mirrored else ''} err {m.alignment.error:.2f}"
        cv2.putText(caption, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        pair = np.hstack([kaggle, np.zeros((height, 4, 3), np.uint8), original])
        tiles.append(cv2.copyMakeBorder(np.vstack([caption, pair]), 4, 4, 4, 4, cv2.BORDER_CONSTANT))
    if not tiles:
        return
    tile_h, tile_w = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, tile_h - t.shape[0], 0, tile_w - t.shape[1], cv2.BORDER_CONSTANT)
             for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 3)
    cv2.imwrite(str(path), np.vstack([np.hstack(tiles[i:i + 3]) for i in range(0, len(tiles), 3)]))


def write_outputs(report: MatchReport, kaggle_root: Path, boxes_root: Path, out: Path) -> dict[str, Path]:
    """``training-boxes.csv``, ``matching.md`` and ``gallery.png`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "training-boxes.csv", "markdown": out / "matching.md", "gallery": out / "gallery.png"}
    write_csv(report.matches, paths["csv"])
    paths["markdown"].write_text(matching_markdown(report, kaggle_root, boxes_root), encoding="utf-8")
    write_gallery(report.matches, Path(kaggle_root), Path(boxes_root), paths["gallery"])
    return paths
