"""Which plane a run screens (``brainscan screen --plane``), and the frames a volume gives along it.

``acquired`` (the default) screens DICOM frames as stored and a NIfTI file along its third voxel axis. Any
other plane (:data:`~brainscan.engine.input.volume.PLANES`) screens a 3-D DICOM series as reformats of its
volume ("classify the axial reformats") and a NIfTI file along that plane. Pictures, single slices and colour
series have no volume to cut: they are screened as acquired whatever the plane.

Keys and resume
---------------
A result is keyed by ``(resolved file, frame)`` (:func:`~brainscan.engine.results.record.frame_key`). The
frames of a volume are numbered so that every plane has its own keys: ``frame`` is the slice index for the
acquired plane, and ``(plane number) * REFORMAT_BASE + index`` for a chosen plane (axial 1 000 000 + i,
coronal 2 000 000 + i, sagittal 3 000 000 + i; :func:`plane_frame`, :func:`frame_plane`). A reformat thus never
collides with an acquired frame of the same file (DICOM reformats are recorded under the first file of their
series), CSV paths stay plain files, and :data:`REFORMAT_BASE` lies above the most frames one DICOM file may
hold (:data:`~brainscan.engine.input.dicom_header.MAX_TOTAL_PIXELS` over a 32 x 32 frame). An output folder
holds one plane per file: a resumed run with another ``--plane`` is refused rather than mixing two planes of
one series into its summary (:func:`planes_in_conflict`, checked when the folder is opened).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainscan.engine.errors import InputError
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.input.volume import PLANES, Volume, plane_axes, plane_length

if TYPE_CHECKING:
    from brainscan.engine.input.dicom_series import SliceHeader

ACQUIRED = "acquired"
PLANE_CHOICES = (ACQUIRED, *PLANES)
REFORMAT_BASE = 1_000_000
PLANE_KINDS = ("nifti", "reformat")  # FrameRef kinds cut from a volume


def check_plane(plane: str) -> str:
    """``plane`` when it is one of :data:`PLANE_CHOICES`, else ValueError."""
    if plane not in PLANE_CHOICES:
        raise ValueError(f"unknown plane {plane!r}: choose one of {', '.join(PLANE_CHOICES)}")
    return plane


def plane_frame(plane: str, index: int) -> int:
    """The frame number of slice ``index`` of ``plane`` (see the module notes)."""
    if check_plane(plane) == ACQUIRED:
        return index
    if not 0 <= index < REFORMAT_BASE:
        raise ValueError(f"slice index {index} is outside 0..{REFORMAT_BASE - 1}")
    return (PLANES.index(plane) + 1) * REFORMAT_BASE + index


def frame_plane(frame: int) -> tuple[str, int]:
    """``(plane, index)`` of a frame number: the inverse of :func:`plane_frame`."""
    number, index = divmod(int(frame), REFORMAT_BASE)
    if 1 <= number <= len(PLANES):
        return PLANES[number - 1], index
    return ACQUIRED, int(frame)


def ref_plane(ref: FrameRef) -> str:
    """The plane a frame was cut along: ``acquired`` for anything not cut from a volume."""
    return frame_plane(ref.frame)[0] if ref.kind in PLANE_KINDS else ACQUIRED


def acquired_plane(volume: Volume) -> str:
    """The plane whose slices are cut across the third voxel axis (how the volume was stored)."""
    return next(plane for plane in PLANES if plane_axes(volume, plane).cut == 2)


def nifti_series_uid(path: str | Path) -> str:
    """A stable DICOM-style UID (``2.25.<integer>``) for the series a NIfTI file's slices make."""
    digest = hashlib.sha256(os.path.realpath(path).encode("utf-8", "surrogateescape")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def geometry(shape: Sequence[int], affine: np.ndarray, source: Path) -> Volume:
    """A volume with geometry and no voxels (zeros that take no memory): enough for the plane functions."""
    return Volume(np.broadcast_to(np.float32(0), tuple(shape)), affine, source, "", source.name, None)


def volume_refs(template: FrameRef, volume: Volume, plane: str, *, sources: tuple[FrameRef, ...] = ()) -> list[FrameRef]:
    """One ref per slice of ``volume`` along ``plane`` (``acquired``: across its third voxel axis), as one series."""
    cut = acquired_plane(volume) if plane == ACQUIRED else plane
    count = plane_length(volume, cut)
    return [
        replace(template, frame=plane_frame(plane, index), series_index=index, series_length=count, sources=sources)
        for index in range(count)
    ]


def planes_in_conflict(done: Iterable[tuple[str, int]], refs: Iterable[FrameRef]) -> dict[str, tuple[str, str]]:
    """Files that already have rows of another plane than the one ``refs`` screen them along.

    Parameters
    ----------
    done:
        The keys ``(resolved file, frame)`` of the rows already in an output folder.
    refs:
        The frames of this run.

    Returns
    -------
    dict
        Resolved file -> (the plane of its earlier rows, the plane of this run); empty when none.
    """
    wanted: dict[str, str] = {}
    for ref in refs:
        wanted.setdefault(os.path.realpath(ref.path), frame_plane(ref.frame)[0])
    conflicts: dict[str, tuple[str, str]] = {}
    for path, frame in done:
        plane = wanted.get(path)
        if plane is not None and path not in conflicts and frame_plane(frame)[0] != plane:
            conflicts[path] = (frame_plane(frame)[0], plane)
    return conflicts


def conflict_message(out: str | Path, conflicts: Mapping[str, tuple[str, str]]) -> str:
    """What to tell a person whose resumed run would mix planes (names the folder, a file and the fix)."""
    path, (before, now) = next(iter(conflicts.items()))
    more = f" and {len(conflicts) - 1} more file(s)" if len(conflicts) > 1 else ""
    return (
        f"{out}: holds {before} results of {path}{more}, and this run screens it as {now}; "
        f"one output folder keeps one plane per file: resume with --plane {before}, or choose another --out folder"
    )


# -- the refs of a plane ----------------------------------------------------------------------------------
def nifti_refs(path: str | Path, plane: str = ACQUIRED) -> list[FrameRef]:
    """The slices of a NIfTI file along ``plane``, one series, from its header only (the voxels are read when a
    slice is loaded). A file whose header cannot be read, or whose data is shorter than its header says, gives
    one ref, so that loading it makes one error row naming the file."""
    from brainscan.engine.input.volume import MAX_VOXELS, RAS_TO_LPS, nifti_header

    path = Path(path)
    template = FrameRef(path, frame=plane_frame(plane, 0), kind="nifti", series_uid=nifti_series_uid(path))
    try:
        shape, affine, complete = nifti_header(path)
    except Exception:  # any header problem: loading the one ref says what it is
        return [template]
    if not complete or math.prod(shape) > MAX_VOXELS or min(shape) < 1:  # loading the one ref says why
        return [template]
    volume = geometry((shape[2], shape[1], shape[0]), RAS_TO_LPS @ affine, path)
    return volume_refs(template, volume, plane)


def reformat_refs(refs: list[FrameRef], plane: str, headers: Sequence[SliceHeader]) -> list[FrameRef]:
    """A sorted DICOM series (``refs``, as discovery gives it) as the slices of its volume along ``plane``.

    ``acquired``, a single slice, and a series without the geometry of a volume (positions, orientation, one
    size, no colour: read from ``headers`` and the first file) stay as they are, frame by frame. A series with
    the geometry but not a regular grid (a slice missing, mixed spacing) gives one ref per file, so that loading
    them makes an error row for each file saying why (:func:`~brainscan.engine.input.volume.volume_of_series`). Reformats are recorded
    under the series' first file (``kind="reformat"``, ``sources`` the series as acquired).
    """
    from brainscan.engine.input.volume import check_grid

    if check_plane(plane) == ACQUIRED or len(refs) < 2 or any(ref.kind != "dicom" for ref in refs):
        return refs
    by_frame = {(Path(h.path), h.frame): h for h in headers}
    ordered = [by_frame.get((Path(ref.path), ref.frame)) for ref in refs]
    if any(h is None or h.position is None or h.orientation is None for h in ordered):
        return refs
    size = _grey_size(refs[0].path)
    if size is None:
        return refs
    sources = tuple(refs)
    template = FrameRef(refs[0].path, frame=plane_frame(plane, 0), kind="reformat", series_uid=refs[0].series_uid,
                        sources=sources)
    orientation = np.asarray(ordered[0].orientation, dtype=np.float64)  # type: ignore[union-attr]
    positions = [np.asarray(h.position, dtype=np.float64) for h in ordered]  # type: ignore[union-attr]
    try:
        step = check_grid(refs, positions, orientation)
    except InputError:  # not a regular grid: loading says why, in one error row per file of the series
        return [FrameRef(ref.path, frame=template.frame, kind="reformat", series_uid=ref.series_uid, sources=sources)
                for ref in refs]
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = orientation[:3], orientation[3:], step, positions[0]
    return volume_refs(template, geometry((len(refs), *size), affine, Path(refs[0].path)), plane, sources=sources)


def _grey_size(path: str | Path) -> tuple[int, int] | None:
    """``(rows, columns)`` of a grey DICOM file from its header, None for colour or when unreadable."""
    from brainscan.engine.input.dicom_header import import_pydicom

    try:
        ds = import_pydicom().dcmread(path, stop_before_pixels=True, force=True,
                                      specific_tags=["Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation"])
        rows, cols = int(ds.Rows), int(ds.Columns)
        colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1 or "PALETTE" in str(ds.get("PhotometricInterpretation", ""))
    except Exception:  # a damaged header: the series stays as acquired, and its rows say why
        return None
    return None if colour or rows < 1 or cols < 1 else (rows, cols)


def frame_label(frame: int) -> str:
    """How reports name a frame: ``"frame 3"``, or for a reformat ``"axial slice 43"`` (counted from 1)."""
    plane, index = frame_plane(frame)
    return f"frame {frame}" if plane == ACQUIRED else f"{plane} slice {index + 1}"
