"""Tumour boxes: reading them, carrying them between picture sizes, and the pointing game.

A box is kept in pixels of one picture (``x0, y0`` inclusive top-left, ``x1, y1`` exclusive
bottom-right, floats). The figshare boxes of ``../shared/data/figshare-boxes`` come as YOLO text
(``label x_center y_center width height``, fractions of the picture; labels 0 pituitary,
1 meningioma, 2 glioma).

The pointing game (Zhang et al. 2016, "Top-down neural attention by excitation backprop"): a heat
map *hits* when its peak lies inside the box grown by a tolerance (15 px at 512 px in the issue's
yardstick, i.e. ``tolerance_fraction = 15 / 512`` of the picture's longer side).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.errors import TrainerError

YOLO_LABELS = {0: "pituitary", 1: "meningioma", 2: "glioma"}
POINTING_TOLERANCE = 15 / 512  # of the picture's longer side


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in the pixels of one picture of ``width`` x ``height``."""

    x0: float
    y0: float
    x1: float
    y1: float
    width: int
    height: int
    label: str = ""

    def scaled_to(self, width: int, height: int) -> Box:
        """The same box on the picture resized (whole, no crop) to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Box(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy, width, height, self.label)

    def mirrored(self) -> Box:
        """The same box on the picture mirrored left to right."""
        return Box(self.width - self.x1, self.y0, self.width - self.x0, self.y1, self.width, self.height, self.label)

    def cropped(self, left: float, top: float, scale_x: float, scale_y: float, width: int, height: int) -> Box:
        """The box on a picture cut from this one at (``left``, ``top``) and resized by ``scale_x``, ``scale_y``.

        ``left`` and ``top`` are in this picture's pixels (the cut's top-left corner, not necessarily
        whole); the scales are new pixels per old pixel; the new picture is ``width`` x ``height``.
        The box is not clipped (see :meth:`clipped`).
        """
        return Box((self.x0 - left) * scale_x, (self.y0 - top) * scale_y, (self.x1 - left) * scale_x,
                   (self.y1 - top) * scale_y, width, height, self.label)

    def clipped(self) -> Box:
        """The part of the box inside its picture (empty boxes keep ``x0 == x1`` or ``y0 == y1``)."""
        x0, x1 = (min(max(v, 0.0), float(self.width)) for v in (self.x0, self.x1))
        y0, y1 = (min(max(v, 0.0), float(self.height)) for v in (self.y0, self.y1))
        return Box(x0, y0, x1, y1, self.width, self.height, self.label)

    def contains(self, row: float, col: float, tolerance: float = 0.0) -> bool:
        """Whether pixel (row, col) lies in the box grown by ``tolerance`` pixels on every side.

        A pixel index names the unit square ``[col, col + 1) x [row, row + 1)``; it is inside when
        that square overlaps the grown box.
        """
        return (self.x0 - tolerance <= col + 1 and col <= self.x1 + tolerance
                and self.y0 - tolerance <= row + 1 and row <= self.y1 + tolerance)

    def mask(self) -> np.ndarray:
        """A boolean (height x width) mask of the pixels whose centres lie in the box."""
        rows = np.arange(self.height) + 0.5
        cols = np.arange(self.width) + 0.5
        inside_rows = (rows >= self.y0) & (rows < self.y1)
        inside_cols = (cols >= self.x0) & (cols < self.x1)
        return inside_rows[:, None] & inside_cols[None, :]


def read_yolo_box(path: Path, width: int, height: int) -> Box:
    """The first box of a YOLO text file, in pixels of a ``width`` x ``height`` picture."""
    fields = Path(path).read_text(encoding="ascii").split()
    if len(fields) < 5:
        raise ValueError(f"{path}: expected 'label x_center y_center width height', got {' '.join(fields)!r}")
    label = YOLO_LABELS.get(int(float(fields[0])), fields[0])
    xc, yc, bw, bh = (float(value) for value in fields[1:5])
    return Box((xc - bw / 2) * width, (yc - bh / 2) * height, (xc + bw / 2) * width, (yc + bh / 2) * height,
               width, height, label)


def pointing_hit(peak: tuple[int, int], box: Box, tolerance_fraction: float = POINTING_TOLERANCE) -> bool:
    """Whether a heat map's peak (row, col) lies on the tumour, with the pointing game's tolerance."""
    tolerance = tolerance_fraction * max(box.width, box.height)
    return box.contains(peak[0], peak[1], tolerance)


def hit_region_share(box: Box, tolerance_fraction: float = POINTING_TOLERANCE) -> float:
    """The share of the picture's pixels that :func:`pointing_hit` counts as on the tumour: the hit rate of a
    peak drawn uniformly at random (the pointing game's chance level for this box)."""
    tolerance = tolerance_fraction * max(box.width, box.height)
    rows, cols = np.arange(box.height), np.arange(box.width)
    inside_rows = (box.y0 - tolerance <= rows + 1) & (rows <= box.y1 + tolerance)
    inside_cols = (box.x0 - tolerance <= cols + 1) & (cols <= box.x1 + tolerance)
    return float(inside_rows.mean() * inside_cols.mean())


def heat_inside_share(heat: np.ndarray, box: Box) -> float:
    """The share of a (height x width, non-negative) heat map's mass that lies in the box."""
    if heat.shape != (box.height, box.width):
        raise ValueError(f"heat map {heat.shape} does not match the box's picture {(box.height, box.width)}")
    total = float(heat.sum())
    return float(heat[box.mask()].sum()) / total if total > 0 else 0.0


def read_box_table(csv_path: str | Path, paths: list[str], input_size: int) -> np.ndarray:
    """N x 4 boxes (x0, y0, x1, y1 in model-input pixels) for ``paths`` from ``training-boxes.csv`` (NaN: none).

    Pictures are matched by ``class/file`` name; a box follows the pad-to-square and resize of preprocessing.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise TrainerError(
            f"{csv_path}: no box table (make it with `python -m trainer match-boxes --kaggle "
            f"../shared/data/brain-tumor-mri/Training --boxes ../shared/data/figshare-boxes --out runs/boxes`)"
        )
    boxes = np.full((len(paths), 4), np.nan, dtype=np.float32)
    by_name: dict[str, int] = {}
    for index, path in enumerate(paths):
        by_name.setdefault("/".join(Path(path).parts[-2:]), index)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            index = by_name.get("/".join(Path(row["path"]).parts[-2:]))
            if index is None:
                continue
            width, height = float(row["width"]), float(row["height"])
            side = max(width, height)  # padded to a square, then resized
            left, top = (side - width) // 2, (side - height) // 2
            scale = input_size / side
            boxes[index] = [(float(row["x0"]) + left) * scale, (float(row["y0"]) + top) * scale,
                            (float(row["x1"]) + left) * scale, (float(row["y1"]) + top) * scale]
    return boxes
