"""NIfTI input and plane reformats (`brainscan screen --plane`): sniffing, discovery, loading, and whole runs with the
shipped model over a NIfTI volume written from the 16 shared sagittal slices and over the DICOM series itself."""

from __future__ import annotations

import csv
import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from nifti_volumes import SHARED_SAGITTAL, sagittal_volume, write_nifti

from brainscan.cli import main
from brainscan.engine.errors import CorruptImageError, ImageTooSmallError, InputError
from brainscan.engine.input import dicom_pixels, planes, raster_headers
from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame
from brainscan.engine.input.volume_frames import VolumeCache, load_volume_frame
from brainscan.engine.resources import default_model_path
from brainscan.engine.viewer.orientation import edge_letters, pixel_spacing, slice_position

pytest.importorskip("nibabel")
pytestmark = pytest.mark.skipif(not SHARED_SAGITTAL.is_dir(), reason="../shared/data/dicom/sagittal-t1-brain is absent")


@pytest.fixture(scope="module")
def volume():
    return sagittal_volume()


@pytest.fixture(scope="module")
def niftis(tmp_path_factory, volume) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("nifti")
    return {
        "nii": write_nifti(folder / "sag.nii", volume),
        "gz": write_nifti(folder / "sag.nii.gz", volume),
        "4d": write_nifti(folder / "four.nii", volume, volumes=3),
    }


def _rows(out: Path, name: str = "results.csv") -> list[dict[str, str]]:
    with open(out / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _screen(paths, out: Path, *extra: str) -> int:
    if not default_model_path().is_file():
        pytest.skip("the shipped model is not in this checkout")
    return main(["screen", *map(str, paths), "--out", str(out), "--progress", "never", *extra])


# -- frame numbers and keys ----------------------------------------------------------------------------
def test_each_plane_numbers_its_frames_apart_and_back():
    assert planes.plane_frame("acquired", 7) == 7 and planes.frame_plane(7) == ("acquired", 7)
    for plane in ("axial", "coronal", "sagittal"):
        frame = planes.plane_frame(plane, 255)
        assert frame >= planes.REFORMAT_BASE and planes.frame_plane(frame) == (plane, 255)
    assert len({planes.plane_frame(p, 0) for p in planes.PLANE_CHOICES}) == 4
    assert planes.frame_label(planes.plane_frame("axial", 42)) == "axial slice 43"
    with pytest.raises(ValueError):
        planes.plane_frame("oblique", 0)


# -- sniffing and discovery ----------------------------------------------------------------------------
def test_nifti_is_sniffed_by_its_magic_and_gzipped_nifti_by_name(niftis, tmp_path):
    assert raster_headers.sniff_file(niftis["nii"]) == "nifti"
    assert raster_headers.sniff_file(niftis["gz"]) == "nifti"
    other = tmp_path / "notes.txt.gz"
    other.write_bytes(gzip.compress(b"not a volume"))
    assert raster_headers.sniff_file(other) == "unknown"


@pytest.mark.parametrize("key", ["nii", "gz"])
def test_a_nifti_is_one_series_of_its_slices_along_the_plane_asked(niftis, key):
    acquired = discover([niftis[key]])
    assert [r.frame for r in acquired] == list(range(16)) and {r.kind for r in acquired} == {"nifti"}
    assert len({r.series_uid for r in acquired}) == 1 and acquired[0].series_uid.startswith("2.25.")
    assert [r.series_index for r in acquired] == list(range(16)) and {r.series_length for r in acquired} == {16}
    axial = discover([niftis[key]], plane="axial")
    assert len(axial) == 256 and axial[0].frame == planes.REFORMAT_BASE and axial[-1].series_index == 255
    assert axial[0].series_uid == acquired[0].series_uid


def test_a_dicom_series_cut_along_a_plane_becomes_reformats_and_single_slices_stay(tmp_path):
    axial = discover([SHARED_SAGITTAL], plane="axial")
    assert len(axial) == 256 and {r.kind for r in axial} == {"reformat"}
    assert {r.path for r in axial} == {axial[0].sources[0].path} and len(axial[0].sources) == 16
    assert len(discover([SHARED_SAGITTAL], plane="sagittal")) == 16
    single = tmp_path / "one"
    single.mkdir()
    shutil.copy(next(SHARED_SAGITTAL.iterdir()), single / "slice.dcm")
    (ref,) = discover([single], plane="axial")
    assert ref.kind == "dicom" and ref.frame == 0


def test_a_series_with_a_gap_gives_each_file_an_error_row_that_says_why(tmp_path):
    folder = tmp_path / "gap"
    folder.mkdir()
    for number, path in enumerate(sorted(SHARED_SAGITTAL.iterdir())):
        if number != 8:
            shutil.copy(path, folder / path.name)
    refs = discover([folder], plane="coronal")
    assert sorted(ref.path.name for ref in refs) == sorted(path.name for path in folder.iterdir())  # 15 files, 15 rows
    for ref in refs:
        with pytest.raises(InputError, match="a slice is missing"):
            load_frame(ref)


# -- loading ---------------------------------------------------------------------------------------------
def test_a_nifti_slice_holds_the_dicom_values_geometry_and_a_full_range_picture(niftis):
    refs = discover([niftis["nii"]])
    dicom = discover([SHARED_SAGITTAL])
    frame, twin = load_frame(refs[4]), load_frame(dicom[4])
    np.testing.assert_array_equal(frame.values, twin.values)
    assert frame.window_source == "percentile"  # no window tags in NIfTI: the full range, as for such DICOM
    window = dicom_pixels.percentile_window(frame.values)
    np.testing.assert_array_equal(frame.picture[..., 0], dicom_pixels.apply_window(frame.values, window.center, window.width))
    assert pixel_spacing(frame.tags) == pytest.approx(pixel_spacing(twin.tags))
    assert edge_letters(frame.tags) == edge_letters(twin.tags)
    assert slice_position(frame.tags) == pytest.approx(slice_position({k: v for k, v in twin.tags.items()
                                                                       if k != "SliceLocation"}), abs=1e-3)
    assert frame.tags["Dimensions"] == "256 x 256 x 16" and frame.tags["VoxelOrientation"] == "PIR"
    assert frame.tags["Plane"] == "sagittal (acquired), slice 5 of 16"


def test_the_slices_of_one_volume_read_the_file_once(niftis):
    cache = VolumeCache()
    refs = discover([niftis["gz"]], plane="coronal")
    for ref in refs[::16]:
        load_volume_frame(ref, cache)
    assert cache.reads == 1


def test_a_4d_nifti_screens_its_first_volume_and_says_so(niftis, volume):
    refs = discover([niftis["4d"]])
    assert len(refs) == 16
    frame = load_frame(refs[2])
    np.testing.assert_array_equal(frame.values, volume.voxels[2])
    assert frame.tags["Volume"].startswith("1 of 3")


def test_a_tiny_volume_is_refused_as_too_small(tmp_path):
    import nibabel

    path = tmp_path / "tiny.nii"
    nibabel.save(nibabel.Nifti1Image(np.ones((8, 8, 8), np.int16), np.eye(4)), path)
    refs = discover([path], plane="coronal")
    assert len(refs) == 8
    with pytest.raises(ImageTooSmallError, match="8 x 8 voxels"):
        load_frame(refs[0])


def test_a_truncated_gzip_nifti_fails_each_slice_naming_it(tmp_path, niftis):
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(niftis["gz"].read_bytes()[:20_000])
    refs = discover([cut])
    assert refs and {r.kind for r in refs} == {"nifti"}
    with pytest.raises(CorruptImageError) as caught:
        load_frame(refs[-1])
    assert caught.value.path == str(cut)


def test_dicom_axial_reformats_carry_the_orientation_of_an_axial_slice():
    refs = discover([SHARED_SAGITTAL], plane="axial")
    frame = load_frame(refs[200])
    assert frame.values.shape == (256, 16) and frame.tags["Plane"] == "axial reformat, slice 201 of 256"
    assert pixel_spacing(frame.tags) == pytest.approx((0.859375, 0.9), abs=1e-4)
    letters = edge_letters(frame.tags)
    assert (letters.left[0], letters.right[0], letters.top[0], letters.bottom[0]) == ("R", "L", "A", "P")
    assert frame.tags["Modality"] == "MR" and frame.window_source in ("tags", "percentile")
    higher = load_frame(refs[201])
    assert slice_position(higher.tags) - slice_position(frame.tags) == pytest.approx(0.859375, abs=1e-3)


# -- brainscan screen --plane ------------------------------------------------------------------------------
def test_screening_a_nifti_as_acquired_then_resuming_redoes_nothing(niftis, tmp_path, capsys):
    out = tmp_path / "out"
    assert _screen([niftis["nii"]], out, "--cam", "none") == 0
    rows = _rows(out)
    assert [int(r["frame"]) for r in rows] == list(range(16)) and {r["status"] for r in rows} == {"ok"}
    assert {r["path"] for r in rows} == {str(niftis["nii"])} and {r["series_length"] for r in rows} == {"16"}
    (series,) = _rows(out, "series.csv")
    assert series["slices"] == "16" and series["series_uid"] == rows[0]["series_uid"]
    capsys.readouterr()
    assert _screen([niftis["nii"]], out, "--cam", "none") == 0
    assert "16 of 16 frames already done" in capsys.readouterr().err
    assert len(_rows(out)) == 16


def test_screening_a_gzipped_nifti_along_axial_gives_a_series_of_reformats_with_overlays(niftis, tmp_path, capsys):
    out = tmp_path / "out"
    assert _screen([niftis["gz"]], out, "--plane", "axial", "--save-overlays") == 0
    rows = _rows(out)
    assert [int(r["frame"]) for r in rows] == [planes.REFORMAT_BASE + i for i in range(256)]
    assert {(r["width"], r["height"]) for r in rows if r["status"] == "ok"} == {("16", "256")}
    (series,) = _rows(out, "series.csv")
    assert series["slices"] == "256" and series["verdict"]
    assert len(list((out / "overlays").glob("*.png"))) == sum(r["status"] == "ok" for r in rows)
    capsys.readouterr()
    # the same folder along another plane is refused, naming the file and the fix
    assert _screen([niftis["gz"]], out, "--plane", "acquired") == 2
    message = capsys.readouterr().err
    assert "holds axial results" in message and str(niftis["gz"]) in message and "--plane axial" in message
    assert len(_rows(out)) == 256
    assert _screen([niftis["gz"]], out, "--plane", "axial") == 0
    assert "256 of 256 frames already done" in capsys.readouterr().err


def test_a_truncated_nifti_is_an_error_row_and_the_batch_goes_on(niftis, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    whole = niftis["nii"].read_bytes()
    (folder / "cut.nii").write_bytes(whole[: len(whole) // 3])
    shutil.copy(niftis["nii"], folder / "whole.nii")
    out = tmp_path / "out"
    _screen([folder], out, "--cam", "none")
    rows = _rows(out)
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 1 and errors[0]["path"].endswith("cut.nii") and "truncated" in errors[0]["error"]
    assert sum(r["status"] == "ok" for r in rows) == 16


def test_the_dicom_series_screened_along_axial_gives_its_reformats_as_one_series(tmp_path, capsys):
    out = tmp_path / "out"
    assert _screen([SHARED_SAGITTAL], out, "--plane", "axial", "--cam", "none", "--report", "html") == 0
    rows = _rows(out)
    assert len(rows) == 256 and {r["status"] for r in rows} == {"ok"}
    first = sorted(SHARED_SAGITTAL.iterdir())[0]
    assert {os.path.realpath(r["path"]) for r in rows} == {os.path.realpath(first)}
    (series,) = _rows(out, "series.csv")
    assert series["slices"] == "256" and series["series_uid"] == rows[0]["series_uid"]
    assert "axial slice" in (out / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()
    assert _screen([SHARED_SAGITTAL], out, "--cam", "none") == 2  # acquired rows would mix with the axial ones
    assert "holds axial results" in capsys.readouterr().err


def test_help_describes_the_plane_option(capsys):
    with pytest.raises(SystemExit):
        main(["screen", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--plane {acquired,axial,coronal,sagittal}" in text and "without resampling" in text
