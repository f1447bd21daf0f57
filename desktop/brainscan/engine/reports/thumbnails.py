"""Small overlay thumbnails written while screening, so that reports survive resume and memory stays flat.

One PNG per classified frame under ``DIR/thumbnails/``, named from the input path and frame the
same way as the CLI's ``--save-overlays`` files; the reports read them back at the end.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from brainscan.engine.model.overlay import blend, colormap_lut

THUMBNAILS_DIR = "thumbnails"
MAX_SIDE = 192
DEFAULT_THRESHOLD = 0.2  # heat under it stays uncoloured: the viewer's default, and the CLI's


def frame_stem(path: str | Path, frame: int) -> str:
    """A file-name-safe stem for one frame of one input (path digest keeps equal names apart)."""
    path = Path(path)
    digest = hashlib.sha1(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in path.stem)[:60]
    return f"{stem}-f{int(frame)}-{digest}"


def thumbnail_name(path: str | Path, frame: int) -> str:
    return f"{frame_stem(path, frame)}.png"


def shrink(picture: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """``picture`` scaled down (area interpolation) so that its longer side is at most ``max_side``."""
    height, width = picture.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return picture
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


def make_thumbnail(
    picture: np.ndarray,
    heat: np.ndarray | None,
    *,
    colormap: str = "jet",
    opacity: float = 0.45,
    threshold: float = DEFAULT_THRESHOLD,
    max_side: int = MAX_SIDE,
) -> np.ndarray:
    """The picture with its heat map blended in (when there is one) where the heat reaches ``threshold``, as the
    viewer draws it and its PNG export writes it, at most ``max_side`` pixels a side."""
    small = shrink(picture, max_side)
    if heat is None:
        return np.ascontiguousarray(small)
    small_heat = cv2.resize(heat.astype(np.float32), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    return blend(small, np.clip(small_heat, 0.0, 1.0), colormap=colormap, opacity=opacity,
                 threshold=threshold)


def colour_bar(colormap: str, width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal colour bar of ``colormap``: low heat on the left, high on the right (H x W x 3 uint8)."""
    ramp = np.linspace(0, 255, width).round().astype(np.uint8)
    row = colormap_lut(colormap)[ramp]
    return np.ascontiguousarray(np.repeat(row[None, :, :], height, axis=0))


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB picture encoded as PNG."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError("could not encode the picture as PNG")
    return encoded.tobytes()
