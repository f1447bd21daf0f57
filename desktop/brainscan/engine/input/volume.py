"""3-D volumes and their plane reformats: a sorted DICOM series or a NIfTI file as one :class:`Volume`, cut
along the axial, coronal or sagittal plane into :class:`PlaneSlice` pictures (multiplanar reformatting, MPR).

Conventions
-----------
- ``Volume.voxels`` is float32 ``(n_slices, rows, cols)`` of modality values; ``Volume.affine`` maps the voxel
  index ``(col, row, slice, 1)`` to patient millimetres in DICOM's LPS frame (x to the patient's left, y to
  posterior, z to superior). A NIfTI affine is RAS: its first two rows are negated.
- Nothing is resampled. Each patient axis (x, y, z) is given the voxel axis nearest to it (one permutation of
  the three voxel axes, chosen to fit best), and a plane is cut across the voxel axis given to its normal
  (axial: z, coronal: y, sagittal: x). Oblique data within 45 degrees of the patient axes is shown as stored,
  and its :class:`PlaneSlice` carries the true direction cosines, so orientation letters and distances stay
  exact.
- A plane slice is in radiological display orientation: axial anterior up and the patient's left on the right
  of the screen; coronal superior up and the patient's left on the right; sagittal superior up and anterior on
  the left. Plane indices run so that ``PlaneSlice.position`` (mm along the slice normal, the cross product of
  its row and column cosines, as DICOM series are sorted) increases with the index.
- :func:`voxel_at` and :func:`plane_point` convert between a plane's ``(index, row, col)`` and the voxel
  ``(slice, row, col)``; they are inverses, and link the crosshairs of three views.

Everything here is Qt-free and torch-free; pydicom and nibabel are imported when a file of theirs is read.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainscan.engine.errors import CorruptImageError, DicomError, ImageTooLargeError, InputError
from brainscan.engine.input.dicom_header import frame_attribute
from brainscan.engine.input.dicom_series import PARALLEL_TOLERANCE, headers_from_dataset, slice_normal

if TYPE_CHECKING:
    from brainscan.engine.input.frames import FrameRef

PLANES = ("axial", "coronal", "sagittal")
# The largest volume held in memory (float32 voxels: 1 GiB), e.g. 512 x 512 x 1024.
MAX_VOXELS = 1 << 28
# Slice steps may differ from their mean by this fraction of it (rounding in the positions) and no more.
STEP_TOLERANCE = 0.02
SPACING_TOLERANCE = 1e-3  # relative difference between the pixel spacings of two slices still called equal
NIFTI_SUFFIXES = (".nii", ".nii.gz")
NIBABEL_FIX = "install nibabel (pip install nibabel), which the desktop extra brings"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
GRID_FIX = "screen it as acquired (--plane acquired), or give the complete series as exported by the scanner"

# Per plane: (patient axis of the normal, patient axis and sign of increasing display column, of increasing row).
# LPS axes: 0 = x (to the patient's left), 1 = y (to posterior), 2 = z (to superior).
_PLANE_AXES: dict[str, tuple[int, tuple[int, float], tuple[int, float]]] = {
    "axial": (2, (0, 1.0), (1, 1.0)),  # columns to the patient's left, rows to posterior: anterior up
    "coronal": (1, (0, 1.0), (2, -1.0)),  # columns to the patient's left, rows to inferior: superior up
    "sagittal": (0, (1, 1.0), (2, -1.0)),  # columns to posterior (anterior on the left), rows to inferior
}


@dataclass(frozen=True)
class Volume:
    """One 3-D image in patient space.

    ``voxels`` float32 ``(n_slices, rows, cols)`` modality values, slices in sorted order; ``affine`` 4 x 4 float64
    mapping ``(col, row, slice, 1)`` to LPS millimetres; ``source`` the NIfTI file or the first file of the DICOM
    series; ``series_uid`` the Series Instance UID ("" for NIfTI); ``description`` for titles; ``window`` a
    suggested display ``(center, width)`` (sane DICOM window tags, NIfTI cal_min/cal_max) or None.
    """

    voxels: np.ndarray
    affine: np.ndarray
    source: Path
    series_uid: str
    description: str
    window: tuple[float, float] | None
    volumes: int = 1  # volumes in the file (a 4-D NIfTI holds several; one is read)
    volume_index: int = 0  # which of them this is
    inverted: bool = False  # MONOCHROME1 DICOM: low values are shown bright


@dataclass(frozen=True)
class PlaneSlice:
    """One plane's slice of a volume in display orientation (see the module notes)."""

    values: np.ndarray  # float32 (H, W)
    pixel_spacing: tuple[float, float]  # (mm between rows, mm between columns)
    row_cosines: tuple[float, float, float]  # LPS direction of increasing column index
    column_cosines: tuple[float, float, float]  # LPS direction of increasing row index
    position: float  # mm along the slice normal (row cosines x column cosines)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # LPS mm of values[0, 0] (Image Position (Patient))


@dataclass(frozen=True)
class PlaneAxes:
    """How a plane is cut from a volume: the voxel axes (0 col, 1 row, 2 slice, as the affine's columns) of
    the cut, the display rows and the display columns, and whether each runs against its voxel index."""

    cut: int
    rows: int
    cols: int
    flip_cut: bool
    flip_rows: bool
    flip_cols: bool


# -- geometry ----------------------------------------------------------------------------------------
def _directions(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions (3 x 3, one column per voxel axis) and spacings (3) of an affine."""
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    return axes / np.where(spacing > 0, spacing, 1.0), spacing


def patient_axes(affine: np.ndarray) -> tuple[int, int, int]:
    """The voxel axis given to each patient axis (x, y, z): the permutation whose directions lie closest."""
    directions, _spacing = _directions(affine)
    best = max(
        itertools.permutations(range(3)),
        key=lambda perm: sum(abs(directions[lps, axis]) for lps, axis in enumerate(perm)),
    )
    return best  # type: ignore[return-value]


def _check_plane(plane: str) -> None:
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}: choose one of {', '.join(PLANES)}")


def plane_axes(volume: Volume, plane: str) -> PlaneAxes:
    """How ``plane`` is cut from ``volume`` (see the module notes)."""
    _check_plane(plane)
    directions, _spacing = _directions(volume.affine)
    by_patient = patient_axes(volume.affine)
    normal_axis, (col_lps, col_sign), (row_lps, row_sign) = _PLANE_AXES[plane]
    cut, cols, rows = by_patient[normal_axis], by_patient[col_lps], by_patient[row_lps]
    flip_cols = directions[col_lps, cols] * col_sign < 0
    flip_rows = directions[row_lps, rows] * row_sign < 0
    row_cos = directions[:, cols] * (-1.0 if flip_cols else 1.0)
    col_cos = directions[:, rows] * (-1.0 if flip_rows else 1.0)
    flip_cut = float(np.dot(directions[:, cut], np.cross(row_cos, col_cos))) < 0
    return PlaneAxes(cut, rows, cols, bool(flip_cut), bool(flip_rows), bool(flip_cols))


def _extent(volume: Volume, axis: int) -> int:
    """The number of voxels along an affine axis (0 col, 1 row, 2 slice)."""
    return int(volume.voxels.shape[2 - axis])


def plane_length(volume: Volume, plane: str) -> int:
    """How many slices ``plane`` has."""
    return _extent(volume, plane_axes(volume, plane).cut)


def plane_shape(volume: Volume, plane: str) -> tuple[int, int]:
    """``(rows, cols)`` of every slice of ``plane``."""
    axes = plane_axes(volume, plane)
    return _extent(volume, axes.rows), _extent(volume, axes.cols)


def _index(value: int, length: int, flip: bool, what: str) -> int:
    if not 0 <= value < length:
        raise IndexError(f"{what} {value} is outside 0..{length - 1}")
    return length - 1 - value if flip else value


def voxel_at(volume: Volume, plane: str, index: int, row: int, col: int) -> tuple[int, int, int]:
    """The voxel ``(slice, row, col)`` shown at ``(row, col)`` of slice ``index`` of ``plane``."""
    axes = plane_axes(volume, plane)
    ijk = [0, 0, 0]
    ijk[axes.cut] = _index(index, _extent(volume, axes.cut), axes.flip_cut, "slice")
    ijk[axes.rows] = _index(row, _extent(volume, axes.rows), axes.flip_rows, "row")
    ijk[axes.cols] = _index(col, _extent(volume, axes.cols), axes.flip_cols, "column")
    return ijk[2], ijk[1], ijk[0]


def plane_point(volume: Volume, plane: str, voxel: tuple[int, int, int]) -> tuple[int, int, int]:
    """Where voxel ``(slice, row, col)`` is shown on ``plane``: ``(index, row, col)``; inverse of :func:`voxel_at`."""
    axes = plane_axes(volume, plane)
    ijk = (voxel[2], voxel[1], voxel[0])
    return (
        _index(ijk[axes.cut], _extent(volume, axes.cut), axes.flip_cut, "voxel"),
        _index(ijk[axes.rows], _extent(volume, axes.rows), axes.flip_rows, "voxel"),
        _index(ijk[axes.cols], _extent(volume, axes.cols), axes.flip_cols, "voxel"),
    )


def voxel_to_patient(volume: Volume, voxel: tuple[float, float, float]) -> tuple[float, float, float]:
    """LPS millimetres of voxel ``(slice, row, col)`` (fractions allowed)."""
    point = np.asarray(volume.affine, dtype=np.float64) @ np.array([voxel[2], voxel[1], voxel[0], 1.0])
    return float(point[0]), float(point[1]), float(point[2])


def plane_slice(volume: Volume, plane: str, index: int) -> PlaneSlice:
    """Slice ``index`` of ``plane``, cut across the voxel axis nearest the plane's normal (no resampling)."""
    axes = plane_axes(volume, plane)
    cut = _index(index, _extent(volume, axes.cut), axes.flip_cut, "slice")
    # array axes are (slice, row, col) = affine axes (2, 1, 0)
    sheet = np.take(volume.voxels, cut, axis=2 - axes.cut)
    remaining = [a for a in (2, 1, 0) if a != axes.cut]  # affine axes of `sheet`'s two array axes
    if remaining.index(axes.rows) != 0:
        sheet = sheet.T
    if axes.flip_rows:
        sheet = sheet[::-1, :]
    if axes.flip_cols:
        sheet = sheet[:, ::-1]
    directions, spacing = _directions(volume.affine)
    row_cos = directions[:, axes.cols] * (-1.0 if axes.flip_cols else 1.0)
    col_cos = directions[:, axes.rows] * (-1.0 if axes.flip_rows else 1.0)
    origin = voxel_to_patient(volume, voxel_at(volume, plane, index, 0, 0))
    normal = slice_normal((*row_cos, *col_cos))
    return PlaneSlice(
        values=np.ascontiguousarray(sheet, dtype=np.float32),
        pixel_spacing=(float(spacing[axes.rows]), float(spacing[axes.cols])),
        row_cosines=tuple(float(v) for v in row_cos),  # type: ignore[arg-type]
        column_cosines=tuple(float(v) for v in col_cos),  # type: ignore[arg-type]
        position=float(np.dot(np.asarray(origin), normal)),
        origin=origin,
    )


def orientation_codes(affine: np.ndarray) -> str:
    """The patient directions the voxel axes (col, row, slice) point to, e.g. ``"PIR"`` (LPS letters)."""
    directions, _spacing = _directions(affine)
    letters = (("R", "L"), ("A", "P"), ("I", "S"))
    codes = []
    for axis in range(3):
        lps = int(np.argmax(np.abs(directions[:, axis])))
        codes.append(letters[lps][1 if directions[lps, axis] > 0 else 0])
    return "".join(codes)


def _check_voxels(path: Path, shape: Sequence[int]) -> None:
    count = math.prod(int(s) for s in shape)
    if count > MAX_VOXELS:
        raise ImageTooLargeError(
            path,
            f"holds {' x '.join(str(s) for s in shape)} voxels, above the limit of {MAX_VOXELS / 1e6:.0f} million",
            "crop or downsample the volume before screening it",
        )


# -- DICOM series --------------------------------------------------------------------------------------
def volume_of_series(refs: Sequence[FrameRef]) -> Volume:
    """The volume of one sorted DICOM series (as discovery gives it: single-frame slices, or the frames of
    multi-frame files).

    Raises
    ------
    InputError
        The slices are not a regular grid: mixed sizes, orientations or pixel spacings, a missing slice (a gap),
        repeated positions, slices stepping at a tilt to their normal, no geometry; or a colour series. The
        message names the file and says what to do.
    """
    from brainscan.engine.input import dicom_decode, dicom_header, dicom_pixels
    from brainscan.engine.input.loading import read_dicom

    if refs and refs[0].kind == "reformat" and refs[0].sources:  # a reformat's frames: their series as acquired
        refs = refs[0].sources
    if not refs:
        raise ValueError("volume_of_series needs at least one slice")
    first_path = Path(refs[0].path)
    fix = GRID_FIX
    datasets: dict[Path, object] = {}
    slices: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    orientation: np.ndarray | None = None
    spacing: tuple[float, float] | None = None
    middle_ds, middle_frame = None, 0
    for number, ref in enumerate(refs):
        path = Path(ref.path)
        if path not in datasets:
            datasets[path] = read_dicom(path)
        ds = datasets[path]
        if dicom_header.is_colour(ds):  # type: ignore[arg-type]
            raise DicomError(path, "is a colour image, not a grey volume", "screen it as acquired (--plane acquired)")
        header = headers_from_dataset(ds, path)[ref.frame]  # type: ignore[arg-type]
        if header.position is None or header.orientation is None:
            raise DicomError(path, "has no usable Image Position/Orientation (Patient), so its place in 3-D is unknown", fix)
        this_spacing = _pixel_spacing(ds, ref.frame, path)
        this_orientation = np.asarray(header.orientation, dtype=np.float64)
        if orientation is None:
            orientation, spacing = this_orientation, this_spacing
            _check_voxels(first_path, (len(refs), int(ds.Rows), int(ds.Columns)))  # type: ignore[attr-defined]
        else:
            if np.max(np.abs(this_orientation - orientation)) > PARALLEL_TOLERANCE:
                raise InputError(path, "is oriented differently from the first slice of its series (not one volume)", fix)
            if not np.allclose(this_spacing, spacing, rtol=SPACING_TOLERANCE, atol=0):  # type: ignore[arg-type]
                raise InputError(
                    path, f"has pixel spacing {this_spacing} mm where the first slice has {spacing} (not one volume)", fix
                )
        values = dicom_pixels.modality_values(dicom_decode.decode_frame(ds, ref.frame), ds, ref.frame)  # type: ignore[arg-type]
        if values.ndim != 2:
            raise DicomError(path, f"decoded to shape {values.shape}, not one grey slice", fix)
        if slices and values.shape != slices[0].shape:
            raise InputError(
                path,
                f"is {values.shape[1]} x {values.shape[0]} pixels where the first slice is "
                f"{slices[0].shape[1]} x {slices[0].shape[0]} (mixed sizes are not one volume)",
                fix,
            )
        finite = dicom_pixels.replace_non_finite(values)
        if finite is None:
            raise DicomError(path, "holds no finite pixel value (all NaN or infinite)", "check how it was exported")
        slices.append(finite)
        positions.append(np.asarray(header.position, dtype=np.float64))
        if number == len(refs) // 2:
            middle_ds, middle_frame = ds, ref.frame
    assert orientation is not None and spacing is not None
    step = _regular_step(refs, positions, orientation, fix)
    affine = np.eye(4)
    affine[:3, 0] = orientation[:3] * spacing[1]  # along a row: increasing column index
    affine[:3, 1] = orientation[3:] * spacing[0]  # down a column: increasing row index
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    voxels = np.stack(slices).astype(np.float32, copy=False)
    middle = voxels[len(refs) // 2]
    window = dicom_pixels.voi_window(middle, middle_ds, middle_frame)  # type: ignore[arg-type]
    first = datasets[first_path]
    description = str(first.get("SeriesDescription", "") or "").strip() or first_path.name  # type: ignore[attr-defined]
    return Volume(
        voxels=voxels,
        affine=affine,
        source=first_path,
        series_uid=refs[0].series_uid or str(first.get("SeriesInstanceUID", "") or ""),  # type: ignore[attr-defined]
        description=description,
        window=(window.center, window.width) if window.source == "tags" else None,
        inverted=dicom_header.photometric(first) == "MONOCHROME1",  # type: ignore[arg-type]
    )


def _pixel_spacing(ds: object, frame: int, path: Path) -> tuple[float, float]:
    value = frame_attribute(ds, frame, "PixelMeasuresSequence", "PixelSpacing")  # type: ignore[arg-type]
    try:
        rows, cols = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise DicomError(path, "has no usable Pixel Spacing, so its size in millimetres is unknown",
                         "screen it as acquired (--plane acquired)") from None
    if not (rows > 0 and cols > 0 and math.isfinite(rows) and math.isfinite(cols)):
        raise DicomError(path, f"has Pixel Spacing {rows}\\{cols}, not two positive sizes",
                         "screen it as acquired (--plane acquired)")
    return rows, cols


def check_grid(refs: Sequence[FrameRef], positions: Sequence[np.ndarray], orientation: np.ndarray) -> np.ndarray:
    """The one step (LPS mm) between neighbouring slices at ``positions`` (sorted, one per ref), or an
    :class:`InputError` naming the slice where the grid breaks (a gap, a repeated position, a tilt)."""
    return _regular_step(refs, list(positions), np.asarray(orientation, dtype=np.float64), GRID_FIX)


def _regular_step(refs: Sequence[FrameRef], positions: list[np.ndarray], orientation: np.ndarray, fix: str) -> np.ndarray:
    """The one step between neighbouring slices, or an InputError naming where the grid breaks."""
    normal = slice_normal(orientation)
    if len(positions) == 1:
        return normal * 1.0  # one slice: a nominal millimetre (reformats are one voxel thick)
    steps = np.diff(np.stack(positions), axis=0)
    typical = np.median(steps, axis=0)  # a missing slice or two do not move the median step
    size = float(np.linalg.norm(typical))
    for number, step in enumerate(steps):
        length = float(np.linalg.norm(step))
        if length < 1e-6:
            raise InputError(refs[number + 1].path, "has the same Image Position (Patient) as the slice before it", fix)
        if np.linalg.norm(step - typical) > STEP_TOLERANCE * size:
            raise InputError(
                refs[number + 1].path,
                f"lies {length:.2f} mm from the slice before it ({Path(refs[number].path).name}) where the series "
                f"steps {size:.2f} mm: a slice is missing or the spacing varies (not a regular volume)",
                fix,
            )
    mean = (positions[-1] - positions[0]) / (len(positions) - 1)
    if 1.0 - abs(float(np.dot(mean / np.linalg.norm(mean), normal))) > PARALLEL_TOLERANCE:
        raise InputError(
            refs[0].path,
            "its slices step at a tilt to their normal (gantry tilt): the volume is not a regular grid",
            "screen it as acquired (--plane acquired), or correct the tilt first (e.g. dcm2niix)",
        )
    return mean


# -- NIfTI ------------------------------------------------------------------------------------------------
def is_nifti_name(path: str | Path) -> bool:
    """Whether a file is named like NIfTI (``.nii`` or ``.nii.gz``)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_volumes(path: str | Path) -> int:
    """How many volumes a NIfTI file holds (1 for 3-D), from its header only."""
    image = _nifti_image(Path(path))
    shape = image.shape
    return int(math.prod(shape[3:])) if len(shape) > 3 else 1


def nifti_header(path: str | Path) -> tuple[tuple[int, int, int], np.ndarray, bool]:
    """From a NIfTI header only: the spatial shape ``(i, j, k)``, the RAS affine, and whether the file is long enough
    for its data (always True for ``.nii.gz``, whose length is known only once decompressed).

    Raises
    ------
    InputError
        nibabel missing, or a header that cannot be read.
    """
    path = Path(path)
    image = _nifti_image(path)
    shape = tuple(int(s) for s in image.shape)  # type: ignore[attr-defined]
    spatial = (*shape[:3], *(1,) * (3 - len(shape[:3])))
    complete = True
    if not str(path).lower().endswith(".gz"):
        header = image.header  # type: ignore[attr-defined]
        needed = int(header.get_data_offset()) + math.prod(shape) * np.dtype(header.get_data_dtype()).itemsize
        complete = path.stat().st_size >= needed
    return spatial, np.asarray(image.affine, dtype=np.float64), complete  # type: ignore[attr-defined, return-value]


def _nifti_image(path: Path) -> object:
    try:
        import nibabel
    except ImportError as exc:
        raise InputError(path, "is NIfTI, and nibabel is not installed", NIBABEL_FIX) from exc
    try:
        return nibabel.load(path)
    except Exception as exc:
        raise CorruptImageError(
            path, f"its NIfTI header cannot be read ({type(exc).__name__}: {exc})", "copy the file again from its source"
        ) from exc


def load_nifti(path: str | Path, *, volume_index: int = 0) -> Volume:
    """A ``.nii`` or ``.nii.gz`` file as a :class:`Volume` (a 4-D file: volume ``volume_index``, the first by default).

    The voxels are the stored values scaled by the header's slope and intercept; the affine is nibabel's
    (sform, else qform) turned from RAS to LPS. Voxel axes i, j, k of the file become columns, rows and slices.

    Raises
    ------
    InputError
        nibabel missing, a header or data that cannot be read (truncated), more than four dimensions, a
        ``volume_index`` the file does not hold, a volume too large, or no finite value.
    """
    path = Path(path)
    image = _nifti_image(path)
    shape = tuple(int(s) for s in image.shape)  # type: ignore[attr-defined]
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 4 or len(shape) < 2:
        raise InputError(path, f"is a {len(shape)}-D image ({' x '.join(map(str, shape))}); brainscan reads 2-D to 4-D NIfTI",
                         "split it into 3-D volumes first (e.g. fslsplit)")
    volumes = shape[3] if len(shape) == 4 else 1
    if not 0 <= volume_index < volumes:
        raise InputError(path, f"has no volume {volume_index} (it holds {volumes})", f"choose a volume from 0 to {volumes - 1}")
    _check_voxels(path, shape[:3])
    try:
        proxy = image.dataobj  # type: ignore[attr-defined]
        if len(image.shape) > 3:  # type: ignore[attr-defined]
            index = (slice(None),) * 3 + (volume_index,) + (0,) * (len(image.shape) - 4)  # type: ignore[attr-defined]
            data = np.asarray(proxy[index])
        else:
            data = np.asarray(proxy[...] if len(shape) == 3 else proxy[...].reshape(*shape, 1))
        if np.iscomplexobj(data) or data.dtype.fields is not None:
            raise InputError(path, f"holds {data.dtype} voxels, not grey values", "convert it to a scalar (grey) image")
        data = data.reshape(shape[0], shape[1], shape[2] if len(shape) > 2 else 1).astype(np.float32, copy=False)
        affine = RAS_TO_LPS @ np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
        header = image.header  # type: ignore[attr-defined]
        cal = (float(header.get("cal_min", 0) or 0), float(header.get("cal_max", 0) or 0))
    except InputError:
        raise
    except Exception as exc:  # truncated data, a damaged gzip stream, an unknown data type
        raise CorruptImageError(
            path,
            f"its voxel data cannot be read ({type(exc).__name__}: {exc}); the file may be truncated",
            "copy the file again from its source",
        ) from exc
    data = _finite(path, data)
    voxels = np.ascontiguousarray(data.transpose(2, 1, 0))  # (i, j, k) -> (slice k, row j, col i)
    window = ((cal[0] + cal[1]) / 2, cal[1] - cal[0]) if math.isfinite(cal[1] - cal[0]) and cal[1] > cal[0] else None
    return Volume(
        voxels=voxels,
        affine=affine,
        source=path,
        series_uid="",
        description=path.name,
        window=window,
        volumes=volumes,
        volume_index=volume_index,
    )


def _finite(path: Path, data: np.ndarray) -> np.ndarray:
    from brainscan.engine.input.dicom_pixels import replace_non_finite

    finite = replace_non_finite(data)
    if finite is None:
        raise InputError(path, "holds no finite voxel value (all NaN or infinite)", "check how it was exported")
    return finite
