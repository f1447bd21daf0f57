"""Loading one slice of a volume: a NIfTI file's (``kind="nifti"``) or a DICOM series' reformat
(``kind="reformat"``) as a :class:`~brainscan.engine.input.frames.Frame`.

The slice's ``values`` are the float modality values (window/level works as for DICOM) and its ``picture`` the
8-bit picture the model sees, made by :mod:`~brainscan.engine.input.dicom_pixels`'s chain: the volume's window when
it is sane for this slice (DICOM window tags, NIfTI cal_min/cal_max), else the slice's full range
(:data:`~brainscan.engine.input.dicom_pixels.PERCENTILES`), as for DICOM without window tags. The tags give a viewer
the plane's geometry (PixelSpacing, ImageOrientationPatient, ImagePositionPatient), so the orientation letters,
scale bar and slice position work unchanged.

Nothing is resampled (:mod:`~brainscan.engine.input.volume`). Volumes are read once and kept in a small cache
(:data:`CACHE_VOLUMES` volumes, :data:`CACHE_BYTES` of voxels at most), so the slices of one file do not read it again;
a volume that cannot be read is remembered too, so each of its slices is an error row at no cost.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainscan.engine.errors import ImageTooSmallError, InputError
from brainscan.engine.input import dicom_pixels
from brainscan.engine.input.dicom_header import MIN_SIDE
from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.input.planes import ACQUIRED, acquired_plane, frame_plane
from brainscan.engine.input.volume import (
    Volume,
    load_nifti,
    orientation_codes,
    plane_length,
    plane_slice,
    volume_of_series,
)

CACHE_VOLUMES = 2  # the volume being screened, and one more (the viewer going back and forth)
CACHE_BYTES = 1 << 30  # the volumes kept hold at most this; a larger one is not kept after its slice is made
# Display tags of a DICOM series that describe the whole series, not one acquired slice.
SERIES_KEYWORDS = (
    "Modality",
    "SOPClassUID",
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "BodyPartExamined",
    "ProtocolName",
    "SeriesDescription",
    "SeriesNumber",
    "SliceThickness",
    "RescaleType",
)


@dataclass(frozen=True)
class _Entry:
    volume: Volume | None
    error: InputError | None
    tags: dict[str, str]
    identifiers: dict[str, str]


class VolumeCache:
    """The last few volumes read, by file (and series), with the errors of those that could not be read."""

    def __init__(self, volumes: int = CACHE_VOLUMES, max_bytes: int = CACHE_BYTES) -> None:
        self.volumes = volumes
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()  # one reader at a time: two threads never read one volume twice
        self.reads = 0  # volumes read (for tests and measurements)

    def get(self, ref: FrameRef) -> _Entry:
        key = _key(ref)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            self.reads += 1
            entry = _read(ref)
            if entry.volume is None or entry.volume.voxels.nbytes <= self.max_bytes:
                self._entries[key] = entry
                while len(self._entries) > self.volumes or self._bytes() > self.max_bytes:
                    self._entries.popitem(last=False)  # the oldest; the newest fits (checked above)
            return entry

    def _bytes(self) -> int:
        return sum(e.volume.voxels.nbytes for e in self._entries.values() if e.volume is not None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = VolumeCache()


def _key(ref: FrameRef) -> tuple[object, ...]:
    """A volume's identity: its kind, file (resolved), series, and the file's size and time (a rewritten file is
    read again)."""
    try:
        stat = os.stat(ref.path)
        version: tuple[int, int] = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        version = (-1, -1)
    return (ref.kind, os.path.realpath(ref.path), ref.series_uid, *version)


def _read(ref: FrameRef) -> _Entry:
    try:
        if ref.kind == "nifti":
            volume = load_nifti(ref.path)
            return _Entry(volume, None, _nifti_tags(volume), {})
        volume = volume_of_series(ref.sources or (ref,))
        tags, identifiers = _series_tags(volume.source)
        return _Entry(volume, None, tags, identifiers)
    except InputError as exc:
        return _Entry(None, exc, {}, {})


def _nifti_tags(volume: Volume) -> dict[str, str]:
    i, j, k = volume.voxels.shape[2], volume.voxels.shape[1], volume.voxels.shape[0]
    spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
    name = volume.source.name.lower()
    tags = {
        "Format": "NIfTI (.nii.gz)" if name.endswith(".gz") else "NIfTI (.nii)",
        "Dimensions": f"{i} x {j} x {k}",
        "VoxelSize": " x ".join(f"{s:.4g}" for s in spacing) + " mm",
        "VoxelOrientation": orientation_codes(volume.affine),
        "SeriesDescription": volume.description,
    }
    if volume.volumes > 1:
        tags["Volume"] = f"{volume.volume_index + 1} of {volume.volumes} (a 4-D file: only this volume is screened)"
    return tags


def _series_tags(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The series-wide display tags and the patient identifiers of a DICOM series' first file."""
    from brainscan.engine.input.loading import IDENTIFIER_KEYWORDS, dataset_strings, read_dicom

    try:
        ds = read_dicom(path)
        tags = dataset_strings(ds, SERIES_KEYWORDS)
        if "SOPClassUID" in tags:
            tags["SOPClassUID"] = getattr(ds.SOPClassUID, "name", tags["SOPClassUID"])
        return tags, dataset_strings(ds, IDENTIFIER_KEYWORDS)
    except (InputError, ValueError, TypeError, AttributeError, KeyError):
        return {}, {}


def load_volume_frame(ref: FrameRef, cache: VolumeCache = CACHE) -> Frame:
    """One slice of a volume as a :class:`Frame` (see the module notes).

    Raises
    ------
    InputError
        The volume cannot be read (a truncated NIfTI, a DICOM series that is not a regular grid), or the
        slice is not in it; the message names the file.
    """
    entry = cache.get(ref)
    if entry.volume is None:
        error = entry.error
        assert error is not None
        raise type(error)(error.path, error.problem, error.fix)  # a fresh one per slice: no shared traceback
    volume = entry.volume
    plane, index = frame_plane(ref.frame)
    cut = acquired_plane(volume) if plane == ACQUIRED else plane
    count = plane_length(volume, cut)
    if not 0 <= index < count:
        raise InputError(ref.path, f"has no {cut} slice {index} (it has {count})", "discover the file again")
    cut_slice = plane_slice(volume, cut, index)
    values = cut_slice.values
    if max(values.shape) < MIN_SIDE:  # a thin reformat of a short stack is screened; a tiny slice is not
        raise ImageTooSmallError(
            ref.path,
            f"its {cut} slices are {values.shape[1]} x {values.shape[0]} voxels, too small to hold a brain slice "
            f"(the minimum is {MIN_SIDE} voxels along one side at least)",
            "give the full-size volume",
        )
    window = _window(values, volume.window)
    shown, shown_window = values, window
    if volume.inverted:
        shown, shown_window = -values, dicom_pixels.Window(-window.center, window.width, window.source)
    picture = dicom_pixels.grey_to_rgb(dicom_pixels.apply_window(shown, shown_window.center, shown_window.width))
    rows, cols = values.shape
    tags = dict(entry.tags)
    tags.update({
        "Plane": f"{cut}{' (acquired)' if plane == ACQUIRED else ' reformat'}, slice {index + 1} of {count}",
        "Rows": str(rows),
        "Columns": str(cols),
        "PixelSpacing": "\\".join(f"{s:.6g}" for s in cut_slice.pixel_spacing),
        "ImageOrientationPatient": "\\".join(f"{c:.6f}" for c in (*cut_slice.row_cosines, *cut_slice.column_cosines)),
        "ImagePositionPatient": "\\".join(f"{c:.4f}" for c in cut_slice.origin),
    })
    return Frame(
        ref=ref,
        picture=picture,
        values=values,
        window=(window.center, window.width),
        window_source=window.source,
        tags=tags,
        identifiers=dict(entry.identifiers),
        inverted=volume.inverted,
    )


def _window(values: np.ndarray, suggested: tuple[float, float] | None) -> dicom_pixels.Window:
    """The volume's window when it shows this slice, else the slice's full range (as for DICOM)."""
    if suggested is not None and dicom_pixels.is_sane_window(values, *suggested):
        return dicom_pixels.Window(suggested[0], suggested[1], "tags")
    return dicom_pixels.percentile_window(values)
