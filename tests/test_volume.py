"""Volumes and plane reformats (engine/input/volume.py) on the real shared sagittal series and NIfTI written from it."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from nifti_volumes import SHARED_SAGITTAL, write_nifti

from brainscan.engine.errors import CorruptImageError, InputError
from brainscan.engine.input import volume as V
from brainscan.engine.input.discovery import discover
from brainscan.engine.viewer.orientation import direction_letters, edge_letters

pydicom = pytest.importorskip("pydicom")
pytestmark = pytest.mark.skipif(not SHARED_SAGITTAL.is_dir(), reason="../shared/data/dicom/sagittal-t1-brain is absent")


@pytest.fixture(scope="module")
def refs():
    return discover([SHARED_SAGITTAL])


@pytest.fixture(scope="module")
def sagittal(refs) -> V.Volume:
    return V.volume_of_series(refs)


def _header(path: Path):
    return pydicom.dcmread(path, stop_before_pixels=True)


def _letters(plane_slice: V.PlaneSlice) -> tuple[str, str, str, str]:
    tags = {"ImageOrientationPatient": "\\".join(str(v) for v in (*plane_slice.row_cosines, *plane_slice.column_cosines))}
    edges = edge_letters(tags)
    return edges.left[0], edges.right[0], edges.top[0], edges.bottom[0]


# -- a DICOM series as a volume ------------------------------------------------------------------------
def test_the_sixteen_sagittal_slices_make_one_volume_whose_affine_starts_at_the_first_slice(refs, sagittal):
    assert sagittal.voxels.shape == (16, 256, 256) and sagittal.voxels.dtype == np.float32
    first, last = _header(refs[0].path), _header(refs[-1].path)
    np.testing.assert_allclose(sagittal.affine @ [0, 0, 0, 1], [*map(float, first.ImagePositionPatient), 1], atol=1e-6)
    np.testing.assert_allclose(sagittal.affine @ [0, 0, 15, 1], [*map(float, last.ImagePositionPatient), 1], atol=1e-3)
    # one column step is the row cosine times the column spacing
    row_cosine = np.asarray(first.ImageOrientationPatient[:3], dtype=float)
    np.testing.assert_allclose(sagittal.affine[:3, 0], row_cosine * float(first.PixelSpacing[1]), atol=1e-9)
    # voxels are each slice's stored values, in the sorted order
    for k in (0, 7, 15):
        np.testing.assert_array_equal(sagittal.voxels[k], pydicom.dcmread(refs[k].path).pixel_array.astype(np.float32))
    assert sagittal.series_uid == refs[0].series_uid and sagittal.description == "SAG MPRAGE 220 FOV"
    assert sagittal.window is not None and sagittal.window[1] > 100  # the series' sane window tags
    assert V.orientation_codes(sagittal.affine) == "PIR"  # columns to posterior, rows down, slices to the right


def test_the_sagittal_plane_of_a_sagittal_series_is_the_series_itself(refs, sagittal):
    assert V.plane_length(sagittal, "sagittal") == 16
    for k in (0, 9):
        cut = V.plane_slice(sagittal, "sagittal", k)
        np.testing.assert_array_equal(cut.values, sagittal.voxels[k])
        header = _header(refs[k].path)
        np.testing.assert_allclose(cut.origin, [float(v) for v in header.ImagePositionPatient], atol=1e-3)
        np.testing.assert_allclose(
            (*cut.row_cosines, *cut.column_cosines), [float(v) for v in header.ImageOrientationPatient], atol=1e-6
        )
    assert _letters(V.plane_slice(sagittal, "sagittal", 0)) == ("A", "P", "H", "F")


def test_axial_and_coronal_reformats_have_the_right_shape_spacing_and_letters(sagittal):
    step = float(np.linalg.norm(sagittal.affine[:3, 2]))
    assert step == pytest.approx(0.9, abs=1e-3)  # from the positions: the sagittal slices are 0.9 mm apart along x
    for plane, top, bottom in (("axial", "A", "P"), ("coronal", "H", "F")):
        assert V.plane_length(sagittal, plane) == 256
        cut = V.plane_slice(sagittal, plane, 128)
        assert cut.values.shape == (256, 16) and V.plane_shape(sagittal, plane) == (256, 16)
        assert cut.pixel_spacing == pytest.approx((0.859375, step), abs=1e-6)
        assert _letters(cut) == ("R", "L", top, bottom)
        assert direction_letters(np.asarray(cut.row_cosines))[0] == "L"
    # radiological: the patient's right on the screen's left, anterior (axial) and superior (coronal) at the top
    axial = V.plane_slice(sagittal, "axial", 100)
    assert V.voxel_to_patient(sagittal, V.voxel_at(sagittal, "axial", 100, 0, 0))[0] < V.voxel_to_patient(
        sagittal, V.voxel_at(sagittal, "axial", 100, 0, 15))[0]
    assert axial.origin[1] < V.voxel_to_patient(sagittal, V.voxel_at(sagittal, "axial", 100, 255, 0))[1]
    # index 0 of the axial plane is the most inferior one; positions rise by the voxel rows' spacing
    positions = [V.plane_slice(sagittal, "axial", i).position for i in (0, 1, 255)]
    assert positions[0] < positions[1] < positions[2]
    assert V.plane_slice(sagittal, "axial", 0).origin[2] < V.plane_slice(sagittal, "axial", 255).origin[2]
    assert positions[1] - positions[0] == pytest.approx(0.859375, abs=1e-6)


def test_plane_values_are_the_voxels_that_voxel_at_names_and_plane_point_inverts_it(sagittal):
    rng = np.random.default_rng(7)
    for plane in V.PLANES:
        rows, cols = V.plane_shape(sagittal, plane)
        for _ in range(40):
            index = int(rng.integers(V.plane_length(sagittal, plane)))
            row, col = int(rng.integers(rows)), int(rng.integers(cols))
            voxel = V.voxel_at(sagittal, plane, index, row, col)
            assert V.plane_point(sagittal, plane, voxel) == (index, row, col)
            assert V.plane_slice(sagittal, plane, index).values[row, col] == sagittal.voxels[voxel]
        for voxel in ((0, 0, 0), (15, 255, 255), (3, 17, 200)):
            assert V.voxel_at(sagittal, plane, *V.plane_point(sagittal, plane, voxel)) == voxel
    # the three views of one voxel cross there: linked crosshairs
    voxel = (5, 100, 60)
    points = {plane: V.plane_point(sagittal, plane, voxel) for plane in V.PLANES}
    assert points["sagittal"] == (5, 100, 60)
    assert {V.voxel_at(sagittal, plane, *point) for plane, point in points.items()} == {voxel}
    with pytest.raises(IndexError):
        V.voxel_at(sagittal, "axial", 256, 0, 0)


def test_an_axial_nifti_is_shown_radiologically():
    # a RAS affine with spacings 1, 2, 3 mm: i runs to the right (-x in LPS), j to anterior, k to superior
    voxels = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # (k, j, i)
    volume = V.Volume(voxels, V.RAS_TO_LPS @ np.diag([1.0, 2.0, 3.0, 1.0]), Path("x.nii"), "", "x.nii", None)
    axial = V.plane_slice(volume, "axial", 0)
    # columns run to the patient's left (-i), rows to posterior (-j): both flipped
    np.testing.assert_array_equal(axial.values, voxels[0][::-1, ::-1])
    assert axial.pixel_spacing == (2.0, 1.0) and _letters(axial) == ("R", "L", "A", "P")
    assert [V.plane_slice(volume, "axial", i).position for i in range(4)] == [0.0, 3.0, 6.0, 9.0]
    coronal = V.plane_slice(volume, "coronal", 0)  # the most anterior j (j = 4), superior up
    np.testing.assert_array_equal(coronal.values, voxels[::-1, 4, ::-1])
    sagittal = V.plane_slice(volume, "sagittal", 0)  # the most left i (i = 0, RAS x smallest), anterior on the left
    np.testing.assert_array_equal(sagittal.values, voxels[::-1, ::-1, 0])
    assert _letters(sagittal) == ("A", "P", "H", "F")


# -- what is not a regular volume ----------------------------------------------------------------------
def test_a_series_with_a_slice_missing_from_the_middle_is_refused_naming_the_file(tmp_path, refs):
    folder = tmp_path / "gap"
    folder.mkdir()
    for number, ref in enumerate(refs):
        if number != 8:
            shutil.copy(ref.path, folder / Path(ref.path).name)
    with pytest.raises(InputError) as caught:
        V.volume_of_series(discover([folder]))
    assert caught.value.path == str(folder / Path(refs[9].path).name)
    assert "missing" in caught.value.problem and "--plane acquired" in caught.value.fix


def test_a_series_of_mixed_sizes_is_refused_naming_the_odd_slice(tmp_path, refs):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for ref in refs[:6]:
        shutil.copy(ref.path, folder / Path(ref.path).name)
    odd = folder / Path(refs[3].path).name
    ds = pydicom.dcmread(odd)
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[::2, ::2]).tobytes()
    ds.Rows, ds.Columns = 128, 128
    ds.save_as(odd)
    with pytest.raises(InputError) as caught:
        V.volume_of_series(discover([folder]))
    assert caught.value.path == str(odd) and "mixed sizes" in caught.value.problem


# -- NIfTI ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sagittal.nii", "sagittal.nii.gz"])
def test_a_nifti_written_from_the_series_reads_back_as_the_same_volume(tmp_path, sagittal, name):
    path = write_nifti(tmp_path / name, sagittal)
    volume = V.load_nifti(path)
    np.testing.assert_array_equal(volume.voxels, sagittal.voxels)
    np.testing.assert_allclose(volume.affine, sagittal.affine, atol=1e-4)  # the sform is float32
    assert volume.series_uid == "" and volume.description == name and volume.volumes == 1
    for plane in V.PLANES:
        assert V.plane_axes(volume, plane) == V.plane_axes(sagittal, plane)
        np.testing.assert_array_equal(V.plane_slice(volume, plane, 3).values, V.plane_slice(sagittal, plane, 3).values)


def test_a_4d_nifti_gives_the_volume_asked_for(tmp_path, sagittal):
    path = write_nifti(tmp_path / "four.nii", sagittal, volumes=3)
    assert V.nifti_volumes(path) == 3
    first, third = V.load_nifti(path), V.load_nifti(path, volume_index=2)
    assert first.volumes == 3 and third.volume_index == 2
    np.testing.assert_array_equal(third.voxels - first.voxels, np.full_like(first.voxels, 2))
    with pytest.raises(InputError, match="has no volume 3"):
        V.load_nifti(path, volume_index=3)


def test_a_truncated_nifti_is_an_input_error_naming_it(tmp_path, sagittal):
    whole = write_nifti(tmp_path / "whole.nii", sagittal)
    cut = tmp_path / "cut.nii"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CorruptImageError) as caught:
        V.load_nifti(cut)
    assert caught.value.path == str(cut) and "truncated" in caught.value.problem
    cut_gz = tmp_path / "cut.nii.gz"
    cut_gz.write_bytes(gzip.compress(whole.read_bytes())[:50_000])
    with pytest.raises(CorruptImageError):
        V.load_nifti(cut_gz)


def test_a_multiframe_file_with_per_frame_geometry_makes_the_same_volume(tmp_path, refs, sagittal):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    first = pydicom.dcmread(refs[0].path)
    slices = [pydicom.dcmread(ref.path) for ref in refs]
    ds = first.copy()
    ds.NumberOfFrames = len(slices)
    frames = []
    for s in reversed(slices):  # stored in reverse: discovery sorts the frames along the normal
        item = Dataset()
        item.PlanePositionSequence = Sequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = s.ImagePositionPatient
        frames.append(item)
    ds.PixelData = b"".join(s.PixelData for s in reversed(slices))
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = first.ImageOrientationPatient
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = first.PixelSpacing
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        del ds[keyword]
    path = tmp_path / "multiframe.dcm"
    ds.save_as(path)
    frame_refs = discover([path])
    assert [r.frame for r in frame_refs] == list(range(15, -1, -1))
    volume = V.volume_of_series(frame_refs)
    np.testing.assert_array_equal(volume.voxels, sagittal.voxels)
    np.testing.assert_allclose(volume.affine, sagittal.affine, atol=1e-6)
    axial = discover([path], plane="axial")
    assert len(axial) == 256 and {r.kind for r in axial} == {"reformat"}
