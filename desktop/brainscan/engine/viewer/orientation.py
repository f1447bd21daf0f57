"""Where the patient is on screen, how big things are, and what a pixel holds (Qt-free).

The view transform (:class:`ViewTransform`: rotation by quarter turns, flips, invert) has one owner,
the evented :class:`ViewTransformModel`; the slice view, the heat map above it, the actions and the
orientation letters all follow it.

DICOM's patient coordinates (PS3.3 C.7.6.2.1.1): +x towards the patient's Left, +y Posterior, +z Head.
Image Orientation (Patient) gives the direction cosines of a row (the way the column index grows:
the picture's right) and of a column (the way the row index grows: the picture's bottom). The letter
at an edge names the patient direction that points towards that edge: a row cosine of +x puts "L" on
the right edge and "R" on the left.

Screen and picture vectors are (x right, y down); :meth:`ViewTransform.matrix` maps a picture
direction to the screen direction it is drawn along: first the rotation (clockwise), then the flips,
exactly as :func:`transform_array` draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from brainscan.engine.input.dicom_pixels import apply_window
from brainscan.engine.input.frames import Frame
from brainscan.engine.viewer.display import DisplayImage, WindowLevel
from brainscan.engine.viewer.evented import EventedField, EventedModel

ROTATIONS = (0, 90, 180, 270)
# the letter of each patient axis's positive and negative direction
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))
# a round scale-bar length, in mm: 1, 2, 5 times a power of ten
_ROUND_STEPS = (1.0, 2.0, 5.0)
SCALE_BAR_FRACTION = 0.2  # of the view's width
# shown in the corner only when a setting says so (never by default)
CORNER_IDENTIFIERS = (("PatientName", "Name"), ("PatientID", "ID"), ("PatientBirthDate", "Born"))


# -- the view transform ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewTransform:
    """How the picture is drawn: ``rotation`` clockwise (degrees), then flipped, and maybe inverted."""

    rotation: int = 0
    flip_h: bool = False
    flip_v: bool = False
    invert: bool = False

    def __post_init__(self) -> None:
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation {self.rotation!r} is not one of {ROTATIONS} (degrees clockwise)")

    @property
    def is_identity(self) -> bool:
        return self == ViewTransform()

    def matrix(self) -> np.ndarray:
        """The 2 x 2 integer matrix taking a picture direction (x right, y down) to its screen direction."""
        quarter = np.array([[0, -1], [1, 0]])  # clockwise on a y-down screen: right -> down, down -> left
        rotate = np.linalg.matrix_power(quarter, self.rotation // 90)
        flip = np.diag([-1 if self.flip_h else 1, -1 if self.flip_v else 1])
        return flip @ rotate

    def rotated(self, clockwise: bool = True) -> ViewTransform:
        """Turn what is on screen a quarter (a flip reverses the sense the stored rotation takes)."""
        step = 90 if clockwise else -90
        if self.flip_h != self.flip_v:
            step = -step
        return ViewTransform((self.rotation + step) % 360, self.flip_h, self.flip_v, self.invert)

    @property
    def swaps_axes(self) -> bool:
        return self.rotation in (90, 270)


class ViewTransformModel(EventedModel[ViewTransform]):
    """The one owner of the view transform: the actions change it, the slice view and the letters follow it."""

    rotation = EventedField()
    flip_h = EventedField()
    flip_v = EventedField()
    invert = EventedField()

    def __init__(self, value: ViewTransform | None = None) -> None:
        super().__init__(value or ViewTransform())

    def rotate(self, clockwise: bool = True) -> None:
        self.set(self.value.rotated(clockwise))

    def toggle(self, name: str) -> None:
        """Flip the bool field ``name`` (``flip_h``, ``flip_v`` or ``invert``)."""
        self.update(**{name: not getattr(self.value, name)})

    def reset(self) -> None:
        self.set(ViewTransform())


def transform_array(array: np.ndarray, transform: ViewTransform) -> np.ndarray:
    """``array`` (H x W, or H x W x C) as drawn under ``transform`` (the orientation only, not invert)."""
    out = np.rot90(array, -(transform.rotation // 90), axes=(0, 1))
    if transform.flip_h:
        out = out[:, ::-1]
    if transform.flip_v:
        out = out[::-1]
    return out


def picture_pixel(transform: ViewTransform, shape: tuple[int, int], row: int, col: int) -> tuple[int, int]:
    """The picture's (row, col) drawn at (``row``, ``col``) of the transformed array; ``shape`` is the picture's."""
    height, width = shape
    shown_h, shown_w = (width, height) if transform.swaps_axes else (height, width)
    if transform.flip_v:
        row = shown_h - 1 - row
    if transform.flip_h:
        col = shown_w - 1 - col
    h, w = shown_h, shown_w
    for _ in range(transform.rotation // 90):  # undo each clockwise quarter: out[i, j] = a[h_a - 1 - j, i]
        h, w = w, h  # the shape before this quarter
        row, col = h - 1 - col, row
    return row, col


# -- orientation letters ---------------------------------------------------------------------------
def _floats(text: str | None, count: int) -> np.ndarray | None:
    if not text:
        return None
    try:
        values = [float(v) for v in str(text).split("\\")]
    except ValueError:
        return None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        return None
    return np.asarray(values, dtype=float)


def direction_cosines(tags: dict[str, str]) -> tuple[np.ndarray, np.ndarray] | None:
    """The row and column direction cosines of a frame's Image Orientation (Patient), or None."""
    values = _floats(tags.get("ImageOrientationPatient"), 6)
    if values is None:
        return None
    row, column = values[:3], values[3:]
    if np.linalg.norm(row) < 1e-6 or np.linalg.norm(column) < 1e-6:
        return None
    return row / np.linalg.norm(row), column / np.linalg.norm(column)


def direction_letters(vector: np.ndarray, threshold: float = 0.3) -> str:
    """The patient direction of ``vector``: its main axis's letter first, then any other axis over ``threshold``
    (a plane oblique by more than about 17 degrees reads e.g. "PH"); "" for a zero vector."""
    order = np.argsort(-np.abs(vector))
    letters = ""
    for axis in order:
        if abs(vector[axis]) > threshold or (not letters and abs(vector[axis]) > 1e-6):
            letters += _AXIS_LETTERS[axis][0 if vector[axis] > 0 else 1]
    return letters


@dataclass(frozen=True)
class EdgeLetters:
    """The patient directions towards the left, right, top and bottom edges of the view."""

    left: str
    right: str
    top: str
    bottom: str


def edge_letters(tags: dict[str, str], transform: ViewTransform = ViewTransform()) -> EdgeLetters | None:
    """The four edge letters of a frame drawn under ``transform``; None without an orientation (raster pictures)."""
    cosines = direction_cosines(tags)
    if cosines is None:
        return None
    row, column = cosines
    inverse = transform.matrix().T  # orthogonal: the picture direction drawn along each screen direction

    def towards(screen: tuple[int, int]) -> str:
        picture = inverse @ np.asarray(screen)
        return direction_letters(picture[0] * row + picture[1] * column)

    return EdgeLetters(left=towards((-1, 0)), right=towards((1, 0)), top=towards((0, -1)), bottom=towards((0, 1)))


# -- scale bar -------------------------------------------------------------------------------------
def pixel_spacing(tags: dict[str, str]) -> tuple[float, float] | None:
    """Pixel Spacing (mm between rows, mm between columns), or None when absent or not positive."""
    values = _floats(tags.get("PixelSpacing"), 2)
    if values is None or not (values > 0).all():
        return None
    return float(values[0]), float(values[1])


def round_length(limit: float) -> float:
    """The largest 1, 2, 5 x 10^n not above ``limit`` (> 0)."""
    exponent = math.floor(math.log10(limit))
    best = 10.0 ** exponent
    for step in _ROUND_STEPS:
        if step * 10.0 ** exponent <= limit * (1 + 1e-9):
            best = step * 10.0 ** exponent
    return best


@dataclass(frozen=True)
class ScaleBar:
    """A horizontal bar of ``length_mm`` drawn ``length_px`` screen pixels long."""

    length_mm: float
    length_px: float

    @property
    def label(self) -> str:
        value = self.length_mm
        if value >= 10:
            return f"{value / 10:g} cm"
        return f"{value:g} mm"


def scale_bar(
    spacing: tuple[float, float] | None,
    screen_per_pixel: float,
    view_width: float,
    transform: ViewTransform = ViewTransform(),
    fraction: float = SCALE_BAR_FRACTION,
) -> ScaleBar | None:
    """A round length near ``fraction`` of ``view_width`` (screen pixels) at ``screen_per_pixel`` (the zoom).

    The bar runs along the screen's width: the picture's columns, or its rows when rotated a quarter.
    None without a spacing (raster pictures) or a usable zoom.
    """
    if spacing is None or screen_per_pixel <= 0 or view_width <= 0:
        return None
    mm_per_pixel = spacing[0] if transform.swaps_axes else spacing[1]
    screen_per_mm = screen_per_pixel / mm_per_pixel
    length = round_length(view_width * fraction / screen_per_mm)
    return ScaleBar(length, length * screen_per_mm)


# -- the pixel probe -------------------------------------------------------------------------------
def value_unit(tags: dict[str, str]) -> str:
    """The unit of the stored values: Rescale Type when it names one, "HU" for CT, else "" (MR is unitless)."""
    rescale = tags.get("RescaleType", "").strip()
    if rescale and rescale.upper() != "US":
        return rescale
    return "HU" if tags.get("Modality", "").upper() == "CT" else ""


@dataclass(frozen=True)
class Probe:
    """What one picture pixel holds: its stored value (modality value after rescale) and what is drawn."""

    row: int
    col: int
    stored: tuple[float, ...]
    unit: str
    displayed: tuple[int, ...]

    def text(self) -> str:
        stored = " ".join(f"{v:.6g}" for v in self.stored)
        unit = f" {self.unit}" if self.unit else ""
        shown = "/".join(str(v) for v in self.displayed)
        return f"({self.col}, {self.row}): {stored}{unit} · shown {shown}"


def probe(frame: Frame, display: DisplayImage, window: WindowLevel, row: int, col: int, *,
          inverted_view: bool = False) -> Probe | None:
    """The values at the picture's (``row``, ``col``); None outside the picture."""
    height, width = frame.picture.shape[:2]
    if not (0 <= row < height and 0 <= col < width):
        return None
    if frame.values is not None:
        stored: tuple[float, ...] = (float(frame.values[row, col]),)
        unit = value_unit(frame.tags)
    else:
        pixel = np.atleast_1d(frame.picture[row, col])
        same = pixel.size == 1 or bool((pixel == pixel[0]).all())
        stored = (float(pixel[0]),) if same else tuple(float(v) for v in pixel)
        unit = ""
    low, high = display.levels(window)
    shown = np.atleast_1d(np.asarray(display.array[row, col], dtype=np.float32))
    drawn = apply_window(shown.reshape(1, -1), (low + high) / 2, high - low).reshape(-1)
    if inverted_view:
        drawn = 255 - drawn
    if drawn.size > 1 and bool((drawn == drawn[0]).all()):
        drawn = drawn[:1]
    return Probe(row, col, stored, unit, tuple(int(v) for v in drawn))


# -- corner text -------------------------------------------------------------------------------------
def slice_position(tags: dict[str, str]) -> float | None:
    """Slice Location, else Image Position (Patient) along the plane's normal (mm), or None."""
    location = _floats(tags.get("SliceLocation"), 1)
    if location is not None:
        return float(location[0])
    cosines = direction_cosines(tags)
    position = _floats(tags.get("ImagePositionPatient"), 3)
    if cosines is None or position is None:
        return None
    return float(position @ np.cross(*cosines))


def corner_lines(frame: Frame, slice_text: str, *, show_identifiers: bool = False) -> list[str]:
    """The corner text of a frame: series, slice and its position; patient identifiers only when asked."""
    tags = frame.tags
    lines = []
    if show_identifiers:
        lines += [f"{label}: {frame.identifiers[key]}" for key, label in CORNER_IDENTIFIERS if frame.identifiers.get(key)]
    series = " · ".join(text for text in (tags.get("SeriesNumber", ""), tags.get("SeriesDescription", "")) if text)
    if series:
        lines.append(f"Series {series}")
    where = slice_text
    position = slice_position(tags)
    if position is not None:
        where += f" · {position:.2f} mm"
    if where:
        lines.append(where)
    return lines
