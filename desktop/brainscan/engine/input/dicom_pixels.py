"""DICOM pixel data to the 8-bit picture, as a chain of small pure functions.

The order is the one the standard gives (PS3.3 C.11, and :data:`brainscan.engine.model.contract.PICTURE_RULE`):

1. decode the stored values of one frame (:func:`decode_frame`);
2. the modality LUT, rescale slope and intercept or a Modality LUT Sequence (:func:`modality_lut`);
3. the VOI window, from the tags when they are sane, else the full range of the values
   (:data:`PERCENTILES`, :func:`voi_window`);
4. MONOCHROME1 inversion (:func:`invert_monochrome1`);
5. linear to 0-255 (:func:`apply_window`).

Colour images (RGB, YBR_* converted to RGB by pydicom, PALETTE COLOR through its LUT) skip steps 2-4.

The window mapping is the plain linear one, ``lower = center - width / 2`` to 0 and
``upper = center + width / 2`` to 255, the same levels a viewer gives pyqtgraph. It differs from
PS3.3 C.11.2.1.2.1 (which maps ``center - 0.5 ± (width - 1) / 2``) by less than one grey level for
any width above 255, and unlike it is defined for widths below 1 (float or finely rescaled data).

"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from brainscan.engine.errors import DicomError
from brainscan.engine.input.dicom_decode import decode_frame
from brainscan.engine.input.dicom_header import (
    _first_float,
    frame_attribute,
    is_colour,
    photometric,
    source_name,
)

if TYPE_CHECKING:  # pydicom is imported where a DICOM file is met, never for a run over pictures
    from pydicom.dataset import Dataset

WINDOW_BLOCK_PIXELS = 1 << 20  # rows of this many pixels are windowed at a time (apply_window)
# The fallback window of the model's picture: the full range (0th to 100th percentile). The
# training pictures are 8-bit exports scaled from their full range, and a clipped window brightens
# the picture: on the 860 grouped-validation pictures wrapped as 12-bit values, the shipped model
# scored 0.980 with the full range, 0.977 with 0.1-99.9 and 0.967 with 0.5-99.5 (0.987 as stored;
# bench/window_fallback.py). The pair stays symmetric, so a MONOCHROME1 twin gets the mirror window.
PERCENTILES = (0.0, 100.0)
# The viewer's "Auto" display preset: a little clipping gives more contrast to look at.
DISPLAY_PERCENTILES = (0.5, 99.5)

# What makes a Window Center / Window Width pair "sane" for the data it comes with.
SANE_ROBUST_PERCENTILES = (1.0, 99.0)
SANE_MIN_WIDTH_FRACTION = 0.01  # of the robust (1st-99th percentile) range
SANE_MIN_SIGNAL_INSIDE = 0.05  # fraction of the signal (above the Otsu threshold) inside the window


class Window(NamedTuple):
    """A VOI window in modality values and where it came from (``"tags"`` or ``"percentile"``)."""

    center: float
    width: float
    source: str


# -- the grey chain ------------------------------------------------------------------------------
def modality_lut(array: np.ndarray, ds: Dataset, frame: int = 0) -> np.ndarray:
    """Stored values to modality values (float64), PS3.3 C.11.1.

    Rescale Slope and Intercept (per frame for enhanced objects) are applied in float64, so 16-bit
    values never overflow. A Modality LUT Sequence is applied by pydicom and wins over rescale,
    as the standard says only one of them is present.
    """
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(array, ds), dtype=np.float64)
    slope = _first_float(frame_attribute(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first_float(
        frame_attribute(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    )
    values = array.astype(np.float64)
    if slope is not None and slope != 0 and slope != 1:
        values *= slope
    if intercept:
        values += intercept
    return values


def modality_values(array: np.ndarray, ds: Dataset, frame: int = 0) -> np.ndarray:
    """:func:`modality_lut` as float32, computed a block of rows at a time: the same values, without a
    float64 copy of the whole frame."""
    step = max(1, WINDOW_BLOCK_PIXELS // max(1, array[0].size)) if array.ndim else 1
    if "ModalityLUTSequence" in ds or array.ndim == 0 or array.shape[0] <= step:
        return modality_lut(array, ds, frame).astype(np.float32)
    values = np.empty(array.shape, np.float32)
    for top in range(0, array.shape[0], step):
        values[top : top + step] = modality_lut(array[top : top + step], ds, frame)
    return values


def percentile_window(values: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> Window:
    """The window from the given low and high percentiles (order statistics, no interpolation).

    Order statistics keep the window of a MONOCHROME1 image exactly the mirror of its MONOCHROME2
    twin's. A flat image falls back to its min-max range, a constant one to a width of 1.
    """
    if tuple(percentiles) == (0.0, 100.0):  # the full range: the same order statistics, with no sorted copy
        low, high = float(values.min()), float(values.max())
    else:
        flat = values.reshape(-1)
        low, high = (float(v) for v in np.percentile(flat, percentiles, method="nearest"))
        if high <= low:
            low, high = float(flat.min()), float(flat.max())
    if high <= low:
        return Window(low, 1.0, "percentile")
    return Window((low + high) / 2, high - low, "percentile")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold between background and signal, over the minimum to 99.9th-percentile range."""
    flat = values.reshape(-1)
    low, high = float(flat.min()), float(np.percentile(flat, 99.9))
    if high <= low:
        return low
    counts, edges = np.histogram(flat, bins=bins, range=(low, high))
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts, dtype=np.float64)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centers)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def is_sane_window(values: np.ndarray, center: float, width: float) -> bool:
    """Whether a window from the tags shows the data it comes with.

    Sane means: a positive width of at least :data:`SANE_MIN_WIDTH_FRACTION` of the robust
    (1st-99th percentile) range; overlapping that range; and holding at least
    :data:`SANE_MIN_SIGNAL_INSIDE` of the signal (pixels above Otsu's threshold) rather than
    saturating it all to white or black. A placeholder such as center 11 width 22 on MR data
    reaching 1000 holds background noise only and fails the last test.
    """
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        return False
    lower, upper = center - width / 2, center + width / 2
    p_low, p_high = (float(v) for v in np.percentile(values, SANE_ROBUST_PERCENTILES, method="nearest"))
    if p_high <= p_low:  # (nearly) constant data: any window containing it will do
        return lower <= p_low <= upper
    if width < SANE_MIN_WIDTH_FRACTION * (p_high - p_low) or upper <= p_low or lower >= p_high:
        return False
    signal = values[values > otsu_threshold(values)]
    if signal.size == 0:
        return True
    inside = np.count_nonzero((signal >= lower) & (signal <= upper))
    return inside >= SANE_MIN_SIGNAL_INSIDE * signal.size


def voi_window(values: np.ndarray, ds: Dataset, frame: int = 0) -> Window:
    """The VOI window (in modality values): Window Center/Width when sane, else the full range.

    Only the first of multi-valued Window Center/Width is considered; enhanced objects are read
    from their Frame VOI LUT Sequence. Sanity is judged on the values as displayed (negated for
    MONOCHROME1), so an image and its MONOCHROME1 twin get the same verdict.
    """
    center = _first_float(frame_attribute(ds, frame, "FrameVOILUTSequence", "WindowCenter"))
    width = _first_float(frame_attribute(ds, frame, "FrameVOILUTSequence", "WindowWidth"))
    if center is not None and width is not None:
        # judged as displayed: MONOCHROME1 shows its low values bright
        mirror = -1.0 if photometric(ds) == "MONOCHROME1" else 1.0
        if is_sane_window(values * mirror, center * mirror, width):
            return Window(center, width, "tags")
    return percentile_window(values)


def invert_monochrome1(values: np.ndarray, window: Window, ds: Dataset) -> tuple[np.ndarray, Window]:
    """MONOCHROME1 shows low values bright: negate values and window so the picture comes out inverted.

    Inverting before quantisation (rather than ``255 - picture``) keeps a MONOCHROME1 image and its
    MONOCHROME2 twin bit-identical, with no rounding ties going different ways.
    """
    if photometric(ds) != "MONOCHROME1":
        return values, window
    return -values, Window(-window.center, window.width, window.source)


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map ``center ± width / 2`` linearly to 0..255 (uint8), clipping outside; see the module notes.

    Computed in float64 a block of rows at a time (:data:`WINDOW_BLOCK_PIXELS`), so a large frame
    needs only its 8-bit result besides its values, not five float64 copies of it.
    """
    width = max(float(width), np.finfo(np.float64).tiny)
    lower = float(center) - width / 2
    values = np.asarray(values)
    if values.ndim == 0 or values.size <= WINDOW_BLOCK_PIXELS:
        return _window_block(values, lower, width)
    picture = np.empty(values.shape, np.uint8)
    step = max(1, WINDOW_BLOCK_PIXELS // max(1, values[0].size))
    for start in range(0, values.shape[0], step):
        picture[start : start + step] = _window_block(values[start : start + step], lower, width)
    return picture


def _window_block(values: np.ndarray, lower: float, width: float) -> np.ndarray:
    scaled = (values.astype(np.float64, copy=False) - lower) * 255.0 / width
    return np.floor(np.clip(scaled, 0.0, 255.0) + 0.5).astype(np.uint8)


def replace_non_finite(values: np.ndarray) -> np.ndarray | None:
    """Float values with NaN and -inf set to the lowest finite value and +inf to the highest.

    Returns the array unchanged when all values are finite (always for integers), and None when none
    is: such a picture has nothing to show (float TIFF or DICOM Float Pixel Data; fuzzing finding).
    """
    if values.dtype.kind != "f":
        return values
    finite = np.isfinite(values)
    if finite.all():
        return values
    if not finite.any():
        return None
    low, high = values[finite].min(), values[finite].max()
    return np.where(finite, values, np.where(values == np.inf, high, low)).astype(values.dtype)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """Replicate an H x W uint8 picture into H x W x 3."""
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


# -- colour -------------------------------------------------------------------------------------
def colour_to_rgb8(array: np.ndarray, ds: Dataset) -> np.ndarray:
    """An RGB (already converted from YBR by pydicom) or PALETTE COLOR frame to H x W x 3 uint8."""
    if photometric(ds) == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        array = apply_color_lut(array, ds)
        if array.dtype != np.uint8:  # 16-bit LUT entries
            array = (array.astype(np.uint32) >> 8).astype(np.uint8)
    if array.dtype != np.uint8:
        array = replace_non_finite(array)
        if array is None:
            raise DicomError(source_name(ds), "holds no finite pixel value (all NaN or infinite)", "check how it was exported")
        window = percentile_window(array.astype(np.float64))
        array = apply_window(array, window.center, window.width)
    return np.ascontiguousarray(array[..., :3])


# -- the whole chain ---------------------------------------------------------------------------
def to_picture(ds: Dataset, frame_index: int = 0) -> tuple[np.ndarray, np.ndarray | None, Window | None]:
    """One frame of a dataset as the picture the model sees.

    Returns
    -------
    picture:
        H x W x 3 uint8 (:data:`~brainscan.engine.model.contract.PICTURE_RULE`).
    values:
        H x W float32 modality values (before any MONOCHROME1 inversion), None for colour.
    window:
        The :class:`Window` used (in modality values), None for colour.
    """
    array = decode_frame(ds, frame_index)
    if is_colour(ds):
        return colour_to_rgb8(array, ds), None, None
    if array.ndim != 2:
        raise DicomError(
            source_name(ds),
            f"decoded to an array of shape {array.shape}, not one grey frame",
            "check Samples per Pixel and Number of Frames in the header",
        )
    values = replace_non_finite(modality_values(array, ds, frame_index))
    if values is None:
        raise DicomError(source_name(ds), "holds no finite pixel value (all NaN or infinite)", "check how it was exported")
    window = voi_window(values, ds, frame_index)
    shown, shown_window = invert_monochrome1(values, window, ds)
    grey = apply_window(shown, shown_window.center, shown_window.width)
    return grey_to_rgb(grey), values, window
