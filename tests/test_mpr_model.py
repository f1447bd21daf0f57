"""The MPR window's Qt-free state on the real shared sagittal series: one crosshair voxel links the three planes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from brainscan.engine.errors import InputError
from brainscan.engine.input.discovery import discover
from brainscan.engine.input.volume import PLANES, plane_point, volume_of_series, voxel_at
from brainscan.engine.viewer.display import WindowLevel
from brainscan.engine.viewer.mpr import (
    MprModel,
    MprState,
    default_window,
    plane_letters,
    reformat_problem,
    state_at,
)
from brainscan.engine.viewer.state import group_refs

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom"
SAGITTAL = SHARED / "sagittal-t1-brain"


@pytest.fixture(scope="module")
def volume():
    if not SAGITTAL.is_dir():
        pytest.skip(f"the shared sagittal series is not at {SAGITTAL}")
    return volume_of_series(discover([SAGITTAL]))


def test_it_starts_at_the_centre_voxel_and_every_plane_shows_the_slice_through_it(volume):
    model = MprModel(volume)
    assert model.value.voxel == (8, 128, 128)
    for plane in PLANES:
        assert model.value.index(plane) == plane_point(volume, plane, (8, 128, 128))[0]
    assert (model.length("axial"), model.length("coronal"), model.length("sagittal")) == (256, 256, 16)
    assert model.shapes == {"axial": (256, 16), "coronal": (256, 16), "sagittal": (256, 256)}


def test_pointing_in_the_sagittal_view_moves_the_axial_and_coronal_slices(volume):
    model = MprModel(volume)
    seen: dict[str, list[int]] = {plane: [] for plane in PLANES}
    for plane in PLANES:
        model.events[plane].connect(seen[plane].append)
    sagittal = model.value.sagittal
    assert model.point("sagittal", 60, 200)
    voxel = voxel_at(volume, "sagittal", sagittal, 60, 200)
    assert model.value.voxel == voxel
    # the sagittal picture's rows run head to foot along the voxel rows, its columns front to back along the voxel
    # columns (the series is stored that way): row 60 is an axial slice, column 200 a coronal one
    assert voxel[1:] == (60, 200)
    assert model.value.axial == plane_point(volume, "axial", voxel)[0] == 255 - 60
    assert model.value.coronal == plane_point(volume, "coronal", voxel)[0] == 200
    assert model.value.sagittal == sagittal and seen["sagittal"] == []
    assert seen["axial"] == [195] and seen["coronal"] == [200]
    assert model.crosshair("sagittal") == (60, 200)
    assert model.crosshair("axial") == plane_point(volume, "axial", voxel)[1:]
    assert model.title("axial") == "Axial 196/256" and model.title("sagittal").startswith("Sagittal ")


def test_pointing_in_the_axial_view_moves_the_sagittal_slice_and_keeps_the_axial_one(volume):
    model = MprModel(volume)
    axial = model.value.axial
    rows, cols = model.shapes["axial"]
    assert (rows, cols) == (256, 16)
    model.point("axial", 40, 3)
    assert model.value.axial == axial
    assert model.crosshair("axial") == (40, 3)
    assert model.value.sagittal == plane_point(volume, "sagittal", model.value.voxel)[0]
    assert model.value.sagittal != MprModel(volume).value.sagittal
    model.point("axial", 999, -5)  # clamped into the picture
    assert model.crosshair("axial") == (255, 0)


def test_stepping_a_plane_moves_the_crosshair_along_its_normal_and_clamps(volume):
    model = MprModel(volume)
    before = model.value
    assert model.step("sagittal", 3)
    assert model.value.sagittal == before.sagittal + 3
    assert (model.value.axial, model.value.coronal) == (before.axial, before.coronal)
    assert model.crosshair("sagittal") == model.crosshair("sagittal")
    assert model.step("sagittal", 100) and model.value.sagittal == 15
    assert not model.step("sagittal", 1)
    assert model.step("axial", -2) and model.value.axial == before.axial - 2


def test_the_window_is_part_of_the_state_and_announced(volume):
    model = MprModel(volume)
    windows = []
    model.events.window.connect(windows.append)
    model.window = WindowLevel(300.0, 600.0, "manual")
    assert windows == [WindowLevel(300.0, 600.0, "manual")]
    model.point("sagittal", 10, 10)
    assert model.window == WindowLevel(300.0, 600.0, "manual")  # moving the crosshair keeps it
    assert default_window(volume) == WindowLevel(274.0, 612.0, "volume")  # the series' sane window tags
    auto = default_window(dataclasses.replace(volume, window=None))
    assert auto.source == "auto" and volume.voxels.min() <= auto.lower < auto.upper <= volume.voxels.max()


def test_a_state_is_checked_and_clamped():
    with pytest.raises(ValueError, match="three indices"):
        MprState((0, -1, 0), 0, 0, 0)


def test_state_at_clamps_into_the_volume(volume):
    state = state_at(volume, (40, -3, 300))
    assert state.voxel == (15, 0, 255)


def test_the_edge_letters_of_each_plane(volume):
    letters = {plane: plane_letters(MprModel(volume).slice_of(plane)) for plane in PLANES}
    assert (letters["axial"].top[0], letters["axial"].bottom[0]) == ("A", "P")
    assert (letters["axial"].left[0], letters["axial"].right[0]) == ("R", "L")
    assert (letters["coronal"].top[0], letters["coronal"].right[0]) == ("H", "L")
    assert (letters["sagittal"].left[0], letters["sagittal"].top[0]) == ("A", "H")


def test_only_a_series_of_three_slices_or_more_may_be_reformatted(volume):
    series = group_refs(discover([SAGITTAL]))[0]
    assert reformat_problem(series) == ""
    two = group_refs(discover(sorted(SAGITTAL.iterdir())[:2]))[0]
    assert "has 2 slices" in reformat_problem(two)
    assert "Nothing is open" in reformat_problem(None)
    kaggle = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain-tumor-mri" / "Training" / "glioma"
    if kaggle.is_dir():
        pictures = group_refs(discover(sorted(kaggle.iterdir())[:2]))[0]
        assert "single pictures" in reformat_problem(pictures)
    assert np.isfinite(volume.voxels).all()


def test_the_axial_reformats_of_a_series_make_a_series_of_their_own(tmp_path):
    from brainscan.engine.input.planes import REFORMAT_BASE, frame_plane
    from brainscan.engine.viewer.mpr import reformat_series, reformat_series_uid, series_sources, source_files

    acquired = group_refs(discover([SAGITTAL]))[0]
    files = source_files(acquired)
    assert len(files) == 16 and files == [ref.path for ref in acquired.refs]
    refs = reformat_series(discover(files, plane="axial"), "axial", files[0])
    assert len(refs) == 256 and [frame_plane(ref.frame) for ref in refs[:2]] == [("axial", 0), ("axial", 1)]
    assert refs[0].frame == REFORMAT_BASE and refs[0].kind == "reformat"
    uid = reformat_series_uid(acquired.refs[0].series_uid, "axial")
    assert {ref.series_uid for ref in refs} == {uid} and uid.startswith("2.25.") and uid != acquired.refs[0].series_uid
    assert reformat_series_uid(acquired.refs[0].series_uid, "coronal") != uid
    reformats = group_refs(refs)[0]
    assert series_sources(reformats) == acquired.refs and source_files(reformats) == files  # MPR of the reformats
    import shutil

    for file in files[:6] + files[7:10]:  # the 7th slice missing: no regular grid, no reformats
        shutil.copy(file, tmp_path / file.name)
    gappy = sorted(tmp_path.iterdir())
    with pytest.raises(InputError, match="missing"):
        reformat_series(discover(gappy, plane="axial"), "axial", gappy[0])
    with pytest.raises(InputError, match="not a 3-D volume"):  # pictures stay as they are: no reformats
        reformat_series(discover(gappy, plane="acquired"), "axial", gappy[0])
