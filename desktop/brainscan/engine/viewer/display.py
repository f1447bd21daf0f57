"""Window/level for the viewer: what array is shown, its default window, presets and mouse dragging.

A DICOM frame is shown from its modality values (so window/level works on the real data, not on
the 8-bit picture); a raster picture from its grey levels. Windows are always expressed in the
frame's own units (modality values, or 0-255), as the DICOM tags state them; a MONOCHROME1 frame
is displayed negated, with its window mirrored, the way :func:`~brainscan.engine.dicom_pixels.invert_monochrome1`
does it for the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainscan.engine.input.dicom_pixels import (
    DISPLAY_PERCENTILES,
    apply_window,
    grey_to_rgb,
    otsu_threshold,
    percentile_window,
)
from brainscan.engine.input.frames import Frame

# How many screen pixels of drag sweep the frame's robust value range once.
DRAG_PIXELS_PER_RANGE = 400.0
MIN_WIDTH_FRACTION = 1e-3  # of the robust range


@dataclass(frozen=True)
class WindowLevel:
    """A display window in the frame's units: ``center ± width / 2`` spans black to white."""

    center: float
    width: float
    source: str = ""

    @property
    def lower(self) -> float:
        return self.center - self.width / 2

    @property
    def upper(self) -> float:
        return self.center + self.width / 2

    def describe(self) -> str:
        text = f"W {self.width:.4g} / L {self.center:.4g}"
        return f"{text} ({self.source})" if self.source else text


@dataclass(frozen=True)
class DisplayImage:
    """The array the slice view draws and how to turn a window into its levels.

    Attributes
    ----------
    array:
        H x W float32 (grey: modality values, or grey levels) or H x W x 3 uint8 (colour).
    inverted:
        The array is the negated values of a MONOCHROME1 frame.
    default:
        The window the frame was converted with (tags when sane, else percentiles).
    robust_range:
        The 1st to 99th percentile of the values, for drag sensitivity.
    """

    array: np.ndarray
    inverted: bool
    default: WindowLevel
    robust_range: float
    value_range: tuple[float, float]

    def levels(self, window: WindowLevel) -> tuple[float, float]:
        """pyqtgraph levels (low, high) of ``window`` for :attr:`array`."""
        if self.inverted:
            return (-window.upper, -window.lower)
        return (window.lower, window.upper)


def grey_values(frame: Frame) -> np.ndarray | None:
    """The grey values to window: modality values, or the picture's single grey channel; None for colour."""
    if frame.values is not None:
        return frame.values
    picture = frame.picture
    if picture.ndim == 2:
        return picture.astype(np.float32)
    if np.array_equal(picture[..., 0], picture[..., 1]) and np.array_equal(picture[..., 0], picture[..., 2]):
        return picture[..., 0].astype(np.float32)
    return None


def display_image(frame: Frame) -> DisplayImage:
    """What the slice view draws for ``frame`` and the window it starts with."""
    values = grey_values(frame)
    if values is None:  # colour: levels act on all channels of the 8-bit picture
        return DisplayImage(frame.picture, False, WindowLevel(127.5, 255.0, "8-bit"), 255.0, (0.0, 255.0))
    low, high = (float(v) for v in np.percentile(values, (1.0, 99.0)))
    robust = max(high - low, float(values.max() - values.min()), 1e-6) if high <= low else high - low
    value_range = (float(values.min()), float(values.max()))
    if frame.values is None:
        default = WindowLevel(127.5, 255.0, "8-bit")
    elif frame.window is not None:
        default = WindowLevel(float(frame.window[0]), float(frame.window[1]), str(frame.window_source or "tags"))
    else:
        auto = percentile_window(values)
        default = WindowLevel(auto.center, auto.width, "percentile")
    inverted = frame.values is not None and bool(frame.inverted)
    array = -values if inverted else values
    return DisplayImage(np.ascontiguousarray(array, dtype=np.float32), inverted, default, robust, value_range)


def drag_window(start: WindowLevel, dx: float, dy: float, robust_range: float) -> WindowLevel:
    """The window after dragging ``(dx, dy)`` screen pixels from ``start``.

    As in most DICOM viewers, horizontal motion changes the width (right: wider, less contrast)
    and vertical motion the center (down: lower center, a brighter picture). ``dx`` and ``dy``
    are screen pixels, y pointing down.
    """
    step = robust_range / DRAG_PIXELS_PER_RANGE
    width = max(start.width + dx * step, robust_range * MIN_WIDTH_FRACTION)
    center = start.center - dy * step
    return WindowLevel(center, width, "manual")


# -- presets ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowPreset:
    name: str
    window: WindowLevel
    tip: str = ""


def _from_bounds(low: float, high: float, source: str) -> WindowLevel:
    if high <= low:
        high = low + 1.0
    return WindowLevel((low + high) / 2, high - low, source)


def window_presets(frame: Frame) -> list[WindowPreset]:
    """The windows offered for ``frame``: from its tags when sane, automatic, full range and MR presets.

    MR values carry no absolute scale, so the MR presets are defined on the tissue of the frame
    itself (the pixels above Otsu's background threshold), not as fixed numbers.
    """
    values = grey_values(frame)
    if values is None:
        return [WindowPreset("8-bit picture", WindowLevel(127.5, 255.0, "8-bit"), "the picture as stored")]
    presets: list[WindowPreset] = []
    if frame.values is not None and frame.window is not None and str(frame.window_source) == "tags":
        presets.append(
            WindowPreset(
                "From the DICOM tags",
                WindowLevel(float(frame.window[0]), float(frame.window[1]), "tags"),
                "Window Center / Width stored in the file (judged sane for this data)",
            )
        )
    auto = percentile_window(values, DISPLAY_PERCENTILES)
    presets.append(
        WindowPreset("Auto (0.5–99.5 %)", WindowLevel(auto.center, auto.width, "auto"), "the 0.5th to 99.5th percentile")
    )
    presets.append(
        WindowPreset(
            "Full range",
            _from_bounds(float(values.min()), float(values.max()), "full range"),
            "the minimum to the maximum value",
        )
    )
    background = otsu_threshold(values)
    tissue = values[values > background]
    if tissue.size < 16:
        tissue = values.reshape(-1)
    t = {p: float(v) for p, v in zip((2, 5, 50, 95, 99.5, 99.9), np.percentile(tissue, (2, 5, 50, 95, 99.5, 99.9)), strict=True)}
    presets += [
        WindowPreset(
            "MR brain",
            _from_bounds(float(values.min()), t[99.5], "MR brain"),
            "background black, brightest tissue white: general viewing",
        ),
        WindowPreset(
            "MR grey/white contrast",
            _from_bounds(t[5], t[95], "MR contrast"),
            "the 5th to 95th percentile of the tissue: grey/white matter contrast",
        ),
        WindowPreset(
            "MR bright lesions",
            _from_bounds(t[50], t[99.9], "MR bright"),
            "the median to the brightest tissue: enhancing or T2/FLAIR-bright lesions",
        ),
    ]
    return presets


def windowed_picture(display: DisplayImage, window: WindowLevel) -> np.ndarray:
    """The 8-bit RGB picture as drawn with ``window`` (what an export shows)."""
    array = display.array
    low, high = display.levels(window)
    if array.ndim == 3:
        return apply_window(array.astype(np.float32), (low + high) / 2, high - low)
    return grey_to_rgb(apply_window(array, (low + high) / 2, high - low))
