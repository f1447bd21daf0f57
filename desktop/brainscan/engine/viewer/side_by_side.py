"""Two viewports side by side (issue 15, feature 4): the layout, what the right view shows, and the slice rule.

The viewer shows one view, or two side by side (:data:`LAYOUTS`). In the mode ``"heat_vs_plain"`` the
right view shows the left's frame again without the heat map; in ``"two_series"`` it shows another open
series (:attr:`SideBySide.right_series`, a :class:`~brainscan.engine.viewer.state.SeriesGroup` key), with
its own heat map. With :attr:`SideBySide.sync` on, slice, zoom and pan move together.

A slice of the left series is matched in the right series by :func:`map_slice`: when both are DICOM
stacks whose slices share one normal (:class:`StackGeometry`), the right slice nearest the left's
position along that normal; otherwise the same place in the stack, the index scaled by the lengths.
Everything here is plain Python; the Qt views (:mod:`brainscan.gui.side_by_side`) bind to
:class:`SideBySideModel`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainscan.engine.input.dicom_series import (
    PARALLEL_TOLERANCE,
    common_normal,
    headers_from_dataset,
    read_header,
)
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.viewer.evented import EventedField, EventedModel

LAYOUTS = ("single", "side_by_side")
MODES = ("heat_vs_plain", "two_series")
TIE_MM = 1e-3  # two slices this close to equally near are a tie, broken towards the lower index


@dataclass(frozen=True)
class SideBySide:
    """What the central area shows.

    Attributes
    ----------
    layout:
        ``"single"`` (one view) or ``"side_by_side"`` (two).
    mode:
        ``"heat_vs_plain"`` (the same frame twice, the heat map on the left only) or ``"two_series"``
        (the right view shows :attr:`right_series`).
    right_series:
        The key of the series shown on the right in ``"two_series"`` ("": the first other open series).
    sync:
        Slice, zoom and pan of the two views move together.
    """

    layout: str = "single"
    mode: str = "heat_vs_plain"
    right_series: str = ""
    sync: bool = True

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout {self.layout!r} is not one of {LAYOUTS}")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")

    @property
    def two_views(self) -> bool:
        return self.layout == "side_by_side"


class SideBySideModel(EventedModel[SideBySide]):
    """The one owner of the side-by-side state: the actions, the chooser and the views bind to it."""

    layout = EventedField()
    mode = EventedField()
    right_series = EventedField()
    sync = EventedField()

    def __init__(self, value: SideBySide | None = None) -> None:
        super().__init__(value or SideBySide())

    @property
    def two_views(self) -> bool:
        return self.value.two_views

    def set_two_views(self, on: bool) -> None:
        self.layout = "side_by_side" if on else "single"


def right_group(state: SideBySide, group_keys: Sequence[str], left_group: str | None) -> str | None:
    """The key of the series the right view steps through: the left's own in ``"heat_vs_plain"``; else the
    chosen series while it is open, or the first open series that is not the left's (the left's when alone)."""
    if state.mode == "heat_vs_plain":
        return left_group
    if state.right_series in group_keys:
        return state.right_series
    others = [key for key in group_keys if key != left_group]
    return others[0] if others else left_group


def right_shows_heat(state: SideBySide) -> bool:
    """Whether the right view draws a heat map (its own frame's): only when it shows another series."""
    return state.mode == "two_series"


def follows_left_window(state: SideBySide, left_modality: str, right_modality: str) -> bool:
    """Whether the right view takes the left's window/level: always for the same frame, and for another series of
    the same modality (pictures without one count as alike); another modality keeps its own window."""
    if state.mode == "heat_vs_plain":
        return True
    return left_modality.strip().upper() == right_modality.strip().upper()


# -- matching slices ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StackGeometry:
    """Where the slices of one stack lie.

    Attributes
    ----------
    count:
        The number of slices (frames) in the stack.
    normal:
        The unit slice normal they share (DICOM), or None (pictures, or slices that disagree or lack geometry).
    origins:
        Each slice's Image Position (Patient) in mm, in stack order (None with ``normal``).
    """

    count: int
    normal: tuple[float, float, float] | None = None
    origins: tuple[tuple[float, float, float], ...] | None = None

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"a stack has no negative count of slices ({self.count})")
        if (self.normal is None) != (self.origins is None):
            raise ValueError("a stack's normal and slice origins are given together or not at all")
        if self.origins is not None and len(self.origins) != self.count:
            raise ValueError(f"{len(self.origins)} slice origins for a stack of {self.count} slices")

    @property
    def has_positions(self) -> bool:
        return self.normal is not None


@dataclass(frozen=True)
class SliceMatch:
    """The right slice matched to a left one.

    Attributes
    ----------
    index:
        The slice of the right stack (0-based).
    rule:
        ``"position"`` (nearest along the common normal) or ``"index"`` (the same place, scaled by the lengths).
    distance_mm:
        With ``"position"``: how far the matched slice lies from the left slice along the normal.
    """

    index: int
    rule: str
    distance_mm: float | None = None


def scaled_index(index: int, count: int, other_count: int) -> int:
    """The same place in a stack of ``other_count`` as ``index`` holds in a stack of ``count`` (first to first, last
    to last, halves rounded up)."""
    if other_count <= 0:
        raise ValueError("there is no slice to match in an empty stack")
    if count <= 1 or other_count == 1:
        return 0
    index = min(max(index, 0), count - 1)
    return min(other_count - 1, math.floor(index * (other_count - 1) / (count - 1) + 0.5))


def map_slice(index: int, left: StackGeometry, right: StackGeometry) -> SliceMatch:
    """The right slice that goes with slice ``index`` of the left stack.

    When both stacks have positions along normals that are parallel (within the series sorting's tolerance, either
    sense), the right slice whose origin lies nearest the left slice's along the left normal (ties within
    :data:`TIE_MM`: the lower index);
    otherwise the index scaled by the lengths (:func:`scaled_index`).
    """
    if right.count <= 0:
        raise ValueError("there is no slice to match in an empty stack")
    if left.count <= 0:
        return SliceMatch(0, "index")
    index = min(max(index, 0), left.count - 1)
    if left.has_positions and right.has_positions:
        normal = np.asarray(left.normal, dtype=np.float64)
        if 1.0 - abs(float(np.dot(normal, np.asarray(right.normal, dtype=np.float64)))) <= PARALLEL_TOLERANCE:
            here = float(np.dot(np.asarray(left.origins[index], dtype=np.float64), normal))  # type: ignore[index]
            along = np.asarray(right.origins, dtype=np.float64) @ normal
            distances = np.abs(along - here)
            # the first of equals (within a micrometre of rounding in the headers): the lower index
            best = int(np.flatnonzero(distances <= distances.min() + TIE_MM)[0])
            return SliceMatch(best, "position", float(distances[best]))
    return SliceMatch(scaled_index(index, left.count, right.count), "index")


def stack_geometry(refs: Sequence[FrameRef]) -> StackGeometry:
    """The geometry of a stack of frames from their DICOM headers (read without pixels); positions only when every
    frame is DICOM with a position and all share one normal."""
    count = len(refs)
    if count == 0 or any(ref.kind != "dicom" for ref in refs):
        return StackGeometry(count)
    from pydicom.errors import InvalidDicomError  # pydicom only where DICOM is met

    headers = []
    read: dict[str, list] = {}
    for ref in refs:
        key = str(ref.path)
        if key not in read:
            try:
                read[key] = headers_from_dataset(read_header(ref.path, force=True), ref.path)
            except (OSError, ValueError, TypeError, AttributeError, KeyError, InvalidDicomError):
                # an unreadable header: match by index (the frame itself shows its own error)
                return StackGeometry(count)
        frames = read[key]
        if not 0 <= ref.frame < len(frames):
            return StackGeometry(count)
        headers.append(frames[ref.frame])
    normal = common_normal(headers)
    if normal is None:
        return StackGeometry(count)
    origins = tuple(tuple(float(v) for v in h.position) for h in headers)  # type: ignore[union-attr]
    return StackGeometry(count, (float(normal[0]), float(normal[1]), float(normal[2])), origins)  # type: ignore[arg-type]


def match_text(match: SliceMatch, spacing_mm: float | None = None) -> str:
    """How a synchronised right slice was matched, for its corner ("" when nothing needs saying): the distance when
    the nearest slice lies further than half a slice spacing (``spacing_mm``; 1 mm when unknown)."""
    if match.rule != "position" or match.distance_mm is None:
        return ""
    limit = (spacing_mm if spacing_mm and spacing_mm > 0 else 1.0) / 2
    return f"nearest slice, {match.distance_mm:.1f} mm away" if match.distance_mm > limit else ""


def slice_spacing(geometry: StackGeometry) -> float | None:
    """The median distance between neighbouring slices along the normal (mm), or None."""
    if not geometry.has_positions or geometry.count < 2:
        return None
    along = np.sort(np.asarray(geometry.origins, dtype=np.float64) @ np.asarray(geometry.normal, dtype=np.float64))
    steps = np.diff(along)
    steps = steps[steps > 1e-6]
    return float(np.median(steps)) if steps.size else None


__all__ = [
    "LAYOUTS", "MODES", "TIE_MM", "SideBySide", "SideBySideModel", "SliceMatch", "StackGeometry",
    "follows_left_window", "map_slice", "match_text", "right_group", "right_shows_heat", "scaled_index",
    "slice_spacing", "stack_geometry",
]
