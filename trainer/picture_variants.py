"""Real-world variants of a training picture, in numpy, with the geometry needed to move a box.

The Kaggle pictures are head-cropped 8-bit exports; pictures met in use are not: the figshare
originals keep a black margin round the head, other hospitals export with other gamma, contrast,
blur and noise. A variant shrinks the picture onto a black canvas (the margin of an uncropped
slice) at a random place, then changes gamma and contrast and adds blur or noise, and says how a
point of the original maps into it (``scale`` and ``offset``), so tumour boxes follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Placement:
    """Where the original lies in the variant: ``variant = original * scale + offset`` (x, y)."""

    scale: float
    offset_x: float
    offset_y: float

    def map_box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        s = self.scale
        return (x0 * s + self.offset_x, y0 * s + self.offset_y, x1 * s + self.offset_x, y1 * s + self.offset_y)


IDENTITY = Placement(1.0, 0.0, 0.0)


def with_margin(picture: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, Placement]:
    """The picture shrunk by ``scale`` onto a black canvas of its own size, at a random place."""
    height, width = picture.shape[:2]
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = cv2.resize(picture, (new_w, new_h), interpolation=cv2.INTER_AREA)
    left = int(rng.integers(0, width - new_w + 1))
    top = int(rng.integers(0, height - new_h + 1))
    canvas = np.zeros_like(picture)
    canvas[top : top + new_h, left : left + new_w] = small
    return canvas, Placement(new_w / width, float(left), float(top))


def photometric(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma, contrast, then blur or noise: another scanner's and exporter's look, same anatomy."""
    values = picture.astype(np.float32) / 255.0
    values = values ** float(np.exp(rng.uniform(np.log(0.6), np.log(1.7))))
    values = (values - values.mean()) * rng.uniform(0.75, 1.3) + values.mean()
    values = np.clip(values * 255.0, 0, 255)
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 1.4)
        values = cv2.GaussianBlur(values, (0, 0), sigma)
    else:
        values = values + rng.normal(0, rng.uniform(1.0, 8.0), values.shape[:2])[..., None]
    return np.clip(values, 0, 255).astype(np.uint8)


def field_variant(picture: np.ndarray, rng: np.random.Generator,
                  scale_range: tuple[float, float] = (0.5, 0.95)) -> tuple[np.ndarray, Placement]:
    """One random variant (margin, then photometric) and where the original lies in it."""
    shrunk, placement = with_margin(picture, float(rng.uniform(*scale_range)), rng)
    return photometric(shrunk, rng), placement
