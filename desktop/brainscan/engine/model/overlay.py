"""Heat-map overlays drawn in numpy/OpenCV, shared by the CLI's PNGs and the viewer's export."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

BLEND_BLOCK_PIXELS = 1 << 20  # rows of this many pixels are blended at a time (blend)
COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "hot": cv2.COLORMAP_HOT,
}


@cache
def colormap_lut(name: str) -> np.ndarray:
    """The 256 x 3 uint8 RGB lookup table of a colour map (index = heat * 255)."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, COLORMAPS[name]).reshape(256, 3)
    lut = np.ascontiguousarray(bgr[:, ::-1])
    lut.setflags(write=False)
    return lut


def colorize(heat: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map a [0, 1] heat map (H x W) to RGB (H x W x 3 uint8)."""
    index = np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return colormap_lut(colormap)[index]


def blend(
    picture: np.ndarray,
    heat: np.ndarray,
    *,
    colormap: str = "jet",
    opacity: float = 0.45,
    threshold: float = 0.0,
) -> np.ndarray:
    """Lay ``heat`` over ``picture`` (both H x W); pixels under ``threshold`` stay uncoloured."""
    if picture.shape[:2] != heat.shape:
        raise ValueError(f"heat map {heat.shape} does not match picture {picture.shape[:2]}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    height, width = heat.shape
    step = max(1, BLEND_BLOCK_PIXELS // max(1, width))
    if height <= step:
        return _blend_rows(picture, heat, colormap, opacity, threshold)
    # a block of rows at a time: a large picture needs its result, not a dozen float32 copies of it
    mixed = None
    for top in range(0, height, step):
        block = _blend_rows(picture[top : top + step], heat[top : top + step], colormap, opacity, threshold)
        if mixed is None:
            mixed = np.empty((height, *block.shape[1:]), block.dtype)
        mixed[top : top + step] = block
    return mixed


def _blend_rows(picture: np.ndarray, heat: np.ndarray, colormap: str, opacity: float, threshold: float) -> np.ndarray:
    colours = colorize(heat, colormap).astype(np.float32)
    alpha = np.where(heat >= threshold, opacity, 0.0).astype(np.float32)[..., None]
    mixed = picture.astype(np.float32) * (1.0 - alpha) + colours * alpha
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def caption(picture: np.ndarray, text: str) -> np.ndarray:
    """Append a dark strip with ``text`` under ``picture`` (for saved overlays)."""
    width = picture.shape[1]
    scale = max(0.35, min(1.0, width / 900))
    strip_height = int(28 * scale + 10)
    strip = np.zeros((strip_height, width, 3), dtype=np.uint8)
    cv2.putText(strip, text, (6, strip_height - 10), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([picture, strip])


def write_png(path, rgb: np.ndarray) -> None:
    """Write an RGB picture as PNG (OpenCV wants BGR), raising OSError when it cannot."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(f"{path}: could not encode the overlay as PNG")
    with open(path, "wb") as handle:
        handle.write(encoded.tobytes())
