"""The MPR window's state, Qt-free: one crosshair voxel of a volume, the slice each plane shows, the window.

The three views (axial, coronal, sagittal) of a :class:`~brainscan.engine.input.volume.Volume` are linked
by one voxel: a click at (row, col) of one view moves the crosshair there
(:func:`~brainscan.engine.input.volume.voxel_at`), and every plane then shows the slice through that voxel
(:func:`~brainscan.engine.input.volume.plane_point`); the mouse wheel moves the crosshair along one view's
normal. :class:`MprModel` holds that state as an evented value (:class:`MprState`): the crosshair lines
follow ``events.voxel``, each view's picture its own plane's event (``events.axial`` ...), every view's
levels ``events.window``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from brainscan.engine.errors import InputError
from brainscan.engine.input.dicom_pixels import DISPLAY_PERCENTILES, percentile_window
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.input.planes import PLANE_KINDS, ref_plane
from brainscan.engine.input.volume import (
    PLANES,
    PlaneSlice,
    Volume,
    plane_length,
    plane_point,
    plane_shape,
    plane_slice,
    voxel_at,
)
from brainscan.engine.viewer.display import WindowLevel
from brainscan.engine.viewer.evented import EventedField, EventedModel
from brainscan.engine.viewer.orientation import EdgeLetters, direction_letters
from brainscan.engine.viewer.state import SeriesGroup

PLANE_TITLES = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}
MIN_SLICES = 3  # fewer parallel slices make no volume worth reformatting


@dataclass(frozen=True)
class MprState:
    """Where the crosshair is and what each view shows.

    Attributes
    ----------
    voxel:
        The crosshair's voxel, (slice, row, col) of the volume's array.
    axial, coronal, sagittal:
        The slice index each plane shows (the crosshair's, by :func:`plane_point`).
    window:
        The display window of all three views (modality values), or None for the volume's own.
    """

    voxel: tuple[int, int, int]
    axial: int
    coronal: int
    sagittal: int
    window: WindowLevel | None = None

    def __post_init__(self) -> None:
        if len(self.voxel) != 3 or min(self.voxel) < 0:
            raise ValueError(f"the crosshair voxel {self.voxel!r} is not three indices >= 0")
        if min(self.axial, self.coronal, self.sagittal) < 0:
            raise ValueError(f"slice indices {(self.axial, self.coronal, self.sagittal)!r} must be >= 0")

    def index(self, plane: str) -> int:
        """The slice index shown in ``plane``."""
        return int(getattr(self, _checked(plane)))


def _checked(plane: str) -> str:
    if plane not in PLANES:
        raise ValueError(f"plane {plane!r} is not one of {PLANES}")
    return plane


def state_at(volume: Volume, voxel: tuple[int, int, int], window: WindowLevel | None = None) -> MprState:
    """The state whose crosshair is at ``voxel`` (clamped into the volume): each plane through it."""
    shape = volume.voxels.shape
    voxel = tuple(int(min(max(v, 0), n - 1)) for v, n in zip(voxel, shape, strict=True))  # type: ignore[assignment]
    indices = {plane: plane_point(volume, plane, voxel)[0] for plane in PLANES}
    return MprState(voxel, window=window, **indices)  # type: ignore[arg-type]


def default_window(volume: Volume) -> WindowLevel:
    """The volume's suggested window, else its 0.5th to 99.5th percentile (as the slice view's "Auto")."""
    if volume.window is not None:
        return WindowLevel(float(volume.window[0]), float(volume.window[1]), "volume")
    auto = percentile_window(volume.voxels[:: max(1, volume.voxels.shape[0] // 32)], DISPLAY_PERCENTILES)
    return WindowLevel(auto.center, auto.width, "auto")


class MprModel(EventedModel[MprState]):
    """The one owner of the MPR state of one volume; the three views bind to it.

    It starts with the crosshair at the volume's centre voxel.
    """

    voxel = EventedField()
    axial = EventedField()
    coronal = EventedField()
    sagittal = EventedField()
    window = EventedField()

    def __init__(self, volume: Volume, window: WindowLevel | None = None) -> None:
        self.volume = volume
        centre = tuple(n // 2 for n in volume.voxels.shape)
        self.shapes = {plane: plane_shape(volume, plane) for plane in PLANES}
        super().__init__(state_at(volume, centre, window))  # type: ignore[arg-type]

    # -- reading -----------------------------------------------------------------------------------
    def length(self, plane: str) -> int:
        """How many slices ``plane`` has."""
        return plane_length(self.volume, _checked(plane))

    def slice_of(self, plane: str) -> PlaneSlice:
        """The slice ``plane`` shows now, in display orientation."""
        return plane_slice(self.volume, plane, self.value.index(plane))

    def crosshair(self, plane: str) -> tuple[int, int]:
        """The crosshair's (row, col) in ``plane``'s picture."""
        _, row, col = plane_point(self.volume, _checked(plane), self.value.voxel)
        return row, col

    def title(self, plane: str) -> str:
        """``"Axial 129/256"`` (1-based)."""
        return f"{PLANE_TITLES[_checked(plane)]} {self.value.index(plane) + 1}/{self.length(plane)}"

    # -- changing ------------------------------------------------------------------------------------
    def point(self, plane: str, row: int, col: int) -> bool:
        """Move the crosshair to (``row``, ``col``) of ``plane``'s current slice (clamped); whether it moved."""
        plane = _checked(plane)
        rows, cols = self.shapes[plane]
        row = min(max(int(row), 0), rows - 1)
        col = min(max(int(col), 0), cols - 1)
        voxel = voxel_at(self.volume, plane, self.value.index(plane), row, col)
        return self.set(state_at(self.volume, voxel, self.value.window))

    def step(self, plane: str, delta: int) -> bool:
        """Move ``plane``'s slice by ``delta`` (clamped), the crosshair with it; whether it moved."""
        plane = _checked(plane)
        index = min(max(self.value.index(plane) + int(delta), 0), self.length(plane) - 1)
        _, row, col = plane_point(self.volume, plane, self.value.voxel)
        return self.set(state_at(self.volume, voxel_at(self.volume, plane, index, row, col), self.value.window))


def plane_letters(picture: PlaneSlice) -> EdgeLetters:
    """The patient directions towards the left, right, top and bottom edges of a plane's picture."""
    row = np.asarray(picture.row_cosines, dtype=float)  # the way the column index grows: screen right
    column = np.asarray(picture.column_cosines, dtype=float)  # the way the row index grows: screen down
    return EdgeLetters(left=direction_letters(-row), right=direction_letters(row), top=direction_letters(-column),
                       bottom=direction_letters(column))


# -- which series make a volume ---------------------------------------------------------------------------
def reformat_problem(group: SeriesGroup | None) -> str:
    """Why ``group`` cannot be shown in MPR or reformatted ("" when it may be: the volume itself then checks that
    the slices are a regular grid)."""
    if group is None or not group.refs:
        return "Nothing is open: open a 3-D DICOM series first (File > Open DICOM folder, Ctrl+D)."
    if group.kind != "series":
        return (f"{group.name} holds single pictures, not a 3-D series: MPR and reformats need a DICOM series "
                f"of at least {MIN_SLICES} parallel, evenly spaced slices.")
    if len(group.refs) < MIN_SLICES:
        return (f"{group.name} has {len(group.refs)} slice{'s' if len(group.refs) != 1 else ''}: MPR and reformats "
                f"need at least {MIN_SLICES} parallel, evenly spaced slices (a 3-D series).")
    return ""



def series_sources(group: SeriesGroup) -> list[FrameRef]:
    """The frames a group's volume is made of: a reformat series' acquired series, else its own frames."""
    first = group.refs[0]
    return list(first.sources) if first.kind == "reformat" and first.sources else list(group.refs)


def source_files(group: SeriesGroup) -> list[Path]:
    """The files that hold ``group``'s volume, in series order, each once (to discover them along a plane)."""
    seen: dict[str, Path] = {}
    for ref in series_sources(group):
        seen.setdefault(os.fspath(ref.path), Path(ref.path))
    return list(seen.values())


def reformat_series_uid(series_uid: str, plane: str) -> str:
    """The UID (``2.25.<integer>``) the viewer gives the ``plane`` reformats of a series, so that they make a
    series of their own beside the series as acquired (the browser, the summary and the verdict keep them
    apart); the same for the same series and plane."""
    digest = hashlib.sha256(f"{series_uid}/{plane}".encode("utf-8", "surrogateescape")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def reformat_series(found: Sequence[FrameRef], plane: str, source: str | Path) -> list[FrameRef]:
    """The frames :func:`~brainscan.engine.input.discovery.discover` gave for a series' files along ``plane``, as a
    series of their own (:func:`reformat_series_uid`); their keys differ from the frames as acquired
    (:mod:`brainscan.engine.input.planes`).

    Raises
    ------
    InputError
        The files made no volume along ``plane`` (no geometry, or not a regular grid: the volume says why).
    """
    refs = [ref for ref in found if ref.kind in PLANE_KINDS and ref_plane(ref) == plane]
    if len(refs) != len(found) or not refs:
        raise InputError(source, f"is not a 3-D volume, so it has no {plane} reformats",
                         "open a series of parallel, evenly spaced slices with their positions")
    if refs[0].kind == "reformat" and len({ref.frame for ref in refs}) == 1:  # one ref a file: not a regular grid
        from brainscan.engine.input.volume import volume_of_series

        volume_of_series(refs[0].sources or refs)  # raises the InputError that says why
    uid = reformat_series_uid(refs[0].series_uid, plane)
    return [replace(ref, series_uid=uid) for ref in refs]
