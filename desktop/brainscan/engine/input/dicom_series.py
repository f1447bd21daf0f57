"""Grouping DICOM slices into series and putting each series in anatomical order.

Pure functions over light header records (:class:`SliceHeader`), read once per file with
``pydicom.dcmread(path, stop_before_pixels=True)``. A series is sorted by each slice's position
along the slice normal (the cross product of the two Image Orientation (Patient) direction
cosines, dotted with Image Position (Patient)); when that is not available for every slice, by
Instance Number; and failing that by file name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainscan.engine.input.dicom_decode import PixelCapacity, pixel_capacity_at
from brainscan.engine.input.dicom_header import frame_attribute, import_pydicom

if TYPE_CHECKING:  # pydicom is imported where a DICOM file is met, never for a run over pictures
    from pydicom.dataset import Dataset

# What discovery reads from each header (specific_tags keeps it quick over thousands of files).
HEADER_KEYWORDS = (
    "SeriesInstanceUID",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "NumberOfFrames",
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
    "Rows",
    "SOPClassUID",
    "Modality",
    # what one frame takes, to check the declared frames against the pixel data (dicom_pixels.pixel_capacity_at)
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "PhotometricInterpretation",
)
PARALLEL_TOLERANCE = 1e-3  # 1 - |cos| between slice normals still called parallel


@dataclass(frozen=True)
class SliceHeader:
    """Where one 2-D frame of a DICOM file sits in its series."""

    path: Path
    frame: int = 0
    frames: int = 1
    series_uid: str = ""
    instance_number: int | None = None
    position: tuple[float, float, float] | None = None  # Image Position (Patient), mm
    orientation: tuple[float, float, float, float, float, float] | None = None  # row and column cosines
    is_image: bool = True  # False for objects without an image (no Rows): reports, plans, waveforms


# -- reading headers ----------------------------------------------------------------------------
def read_header(path: str | Path, *, force: bool = False) -> Dataset:
    """The header of a DICOM file, without pixel data and with only :data:`HEADER_KEYWORDS`."""
    return import_pydicom().dcmread(path, stop_before_pixels=True, force=force, specific_tags=list(HEADER_KEYWORDS))


def read_header_and_capacity(path: str | Path, *, force: bool = False) -> tuple[Dataset, PixelCapacity | None]:
    """:func:`read_header`, and how many frames the file's pixel data holds (None when it cannot tell).

    Only the pixel data element's header is read (and for compressed data its item headers), so a
    file declaring a million frames is measured in a millisecond, not enumerated.
    """
    dcmread = import_pydicom().dcmread
    with open(path, "rb") as fp:
        ds = dcmread(fp, stop_before_pixels=True, force=force, specific_tags=list(HEADER_KEYWORDS))
        return ds, pixel_capacity_at(fp, ds)


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(np.isfinite(numbers)):
        return None
    return numbers


def _int(value: object) -> int | None:
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def headers_from_dataset(ds: Dataset, path: str | Path) -> list[SliceHeader]:
    """One :class:`SliceHeader` per frame of a dataset (header only; no pixel data needed)."""
    frames = max(1, _int(ds.get("NumberOfFrames", 1)) or 1)
    series_uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    instance = _int(ds.get("InstanceNumber"))
    headers = []
    for frame in range(frames):
        position = _floats(frame_attribute(ds, frame, "PlanePositionSequence", "ImagePositionPatient"), 3)
        orientation = _floats(
            frame_attribute(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
        )
        headers.append(
            SliceHeader(
                path=Path(path),
                frame=frame,
                frames=frames,
                series_uid=series_uid,
                instance_number=instance,
                position=position,  # type: ignore[arg-type]
                orientation=orientation,  # type: ignore[arg-type]
                is_image="Rows" in ds,
            )
        )
    return headers


# -- geometry -----------------------------------------------------------------------------------
def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """The unit normal of a slice: row cosine x column cosine."""
    row, column = (
        np.asarray(orientation[:3], dtype=np.float64),
        np.asarray(orientation[3:6], dtype=np.float64),
    )
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    return normal / length if length > 0 else normal


def slice_position(header: SliceHeader, normal: np.ndarray) -> float:
    """Distance of a slice along ``normal`` (mm)."""
    return float(np.dot(np.asarray(header.position, dtype=np.float64), normal))


def common_normal(headers: Sequence[SliceHeader]) -> np.ndarray | None:
    """The slice normal shared by every header, or None when one lacks geometry or they disagree."""
    if not headers or any(h.position is None or h.orientation is None for h in headers):
        return None
    normal = slice_normal(headers[0].orientation)  # type: ignore[arg-type]
    if not np.any(normal):
        return None
    for header in headers[1:]:
        other = slice_normal(header.orientation)  # type: ignore[arg-type]
        if 1.0 - abs(float(np.dot(normal, other))) > PARALLEL_TOLERANCE:
            return None
    return normal


# -- grouping and sorting ---------------------------------------------------------------------
def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts ``IM2`` before ``IM10``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part)


def series_key(header: SliceHeader) -> str:
    """The grouping key: the Series Instance UID, or the file itself when it has none."""
    return header.series_uid or f"\0{header.path}"


def group_by_series(headers: Iterable[SliceHeader]) -> dict[str, list[SliceHeader]]:
    """Headers grouped by Series Instance UID, groups in the order first seen.

    A file without a Series Instance UID is a series of its own.
    """
    groups: dict[str, list[SliceHeader]] = {}
    for header in headers:
        groups.setdefault(series_key(header), []).append(header)
    return groups


def sort_series(headers: Sequence[SliceHeader]) -> tuple[list[SliceHeader], str]:
    """One series in anatomical order, and how it was ordered.

    Returns
    -------
    sorted_headers, method:
        ``method`` is ``"position"`` (along the common slice normal; ties by Instance Number,
        then name and frame), ``"instance"`` (Instance Number, then name and frame) or
        ``"name"`` (natural order of the path, then frame).
    """

    def by_name(h: SliceHeader) -> tuple:
        return (natural_key(str(h.path)), h.frame)

    normal = common_normal(headers)
    if normal is not None:
        ordered = sorted(
            headers, key=lambda h: (slice_position(h, normal), h.instance_number or 0, *by_name(h))
        )
        return ordered, "position"
    if headers and all(h.instance_number is not None for h in headers):
        return sorted(headers, key=lambda h: (h.instance_number, *by_name(h))), "instance"
    return sorted(headers, key=by_name), "name"


def arrange_series(headers: Iterable[SliceHeader]) -> list[list[SliceHeader]]:
    """All headers as sorted series, the series in the order first seen."""
    return [sort_series(group)[0] for group in group_by_series(headers).values()]
