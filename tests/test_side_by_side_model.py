"""The side-by-side state (Qt-free) and the rule matching a slice of the left series in the right one."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainscan.engine.input.discovery import find_inputs
from brainscan.engine.viewer.side_by_side import (
    SideBySide,
    SideBySideModel,
    SliceMatch,
    StackGeometry,
    follows_left_window,
    map_slice,
    match_text,
    right_group,
    right_shows_heat,
    scaled_index,
    slice_spacing,
    stack_geometry,
)

DICOM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom"
SPACING_MM = 0.9  # the MPRAGE's slice spacing: instance n lies at n * 0.9 mm along the normal


def _refs(name: str):
    folder = DICOM / name
    if not folder.is_dir():
        pytest.skip(f"the shared series {folder} is not on this machine")
    return find_inputs([folder]).refs


@pytest.fixture(scope="module")
def brain():
    return _refs("sagittal-t1-brain")  # instances 89-104


@pytest.fixture(scope="module")
def lateral():
    return _refs("sagittal-t1-lateral")  # instances 1-8 of the same acquisition


# -- the state ----------------------------------------------------------------------------------------
def test_the_state_refuses_an_unknown_layout_or_mode():
    with pytest.raises(ValueError, match="layout 'triple'"):
        SideBySide(layout="triple")
    with pytest.raises(ValueError, match="mode 'overlay'"):
        SideBySide(mode="overlay")
    assert not SideBySide().two_views and SideBySide(layout="side_by_side").two_views


def test_the_model_announces_each_change_once_and_a_repeat_not_at_all():
    model = SideBySideModel()
    seen = []
    model.events.layout.connect(lambda value: seen.append(("layout", value)))
    model.events.sync.connect(lambda value: seen.append(("sync", value)))
    model.set_two_views(True)
    model.set_two_views(True)
    model.sync = False
    assert seen == [("layout", "side_by_side"), ("sync", False)]
    assert model.two_views and model.value == SideBySide(layout="side_by_side", sync=False)


def test_the_right_series_is_the_left_one_for_heat_vs_plain_and_another_for_two_series():
    keys = ["series:a", "series:b", "folder:/pictures"]
    plain = SideBySide(layout="side_by_side")
    assert right_group(plain, keys, "series:b") == "series:b"
    two = SideBySide(layout="side_by_side", mode="two_series")
    assert right_group(two, keys, "series:a") == "series:b"  # the first other open series
    assert right_group(two, keys, "series:b") == "series:a"
    assert right_group(SideBySide(mode="two_series", right_series="folder:/pictures"), keys, "series:a") == "folder:/pictures"
    assert right_group(SideBySide(mode="two_series", right_series="series:closed"), keys, "series:a") == "series:b"
    assert right_group(two, ["series:a"], "series:a") == "series:a"  # alone: the same series, stepped on its own
    assert right_group(two, [], None) is None


def test_the_heat_map_and_the_window_follow_the_mode():
    plain, two = SideBySide(), SideBySide(mode="two_series")
    assert not right_shows_heat(plain) and right_shows_heat(two)
    assert follows_left_window(plain, "MR", "CT")  # the same frame: always the left's window
    assert follows_left_window(two, "MR", "mr ")
    assert follows_left_window(two, "", "")  # pictures
    assert not follows_left_window(two, "MR", "CT")


# -- the slice rule ------------------------------------------------------------------------------------
def test_the_index_is_scaled_by_the_lengths_first_to_first_and_last_to_last():
    assert [scaled_index(i, 16, 8) for i in (0, 1, 2, 7, 8, 14, 15)] == [0, 0, 1, 3, 4, 7, 7]
    assert [scaled_index(i, 8, 16) for i in range(8)] == [0, 2, 4, 6, 9, 11, 13, 15]
    assert scaled_index(5, 16, 16) == 5
    assert scaled_index(0, 1, 9) == 0 and scaled_index(4, 9, 1) == 0
    assert scaled_index(99, 16, 8) == 7  # clamped
    with pytest.raises(ValueError, match="empty stack"):
        scaled_index(0, 4, 0)


def test_the_geometry_of_the_real_series_is_its_common_normal_and_positions(brain, lateral):
    left, right = stack_geometry(brain), stack_geometry(lateral)
    assert (left.count, right.count) == (16, 8)
    assert left.has_positions and right.has_positions
    assert left.normal == pytest.approx(right.normal)
    assert slice_spacing(left) == pytest.approx(SPACING_MM, abs=1e-4)
    assert slice_spacing(right) == pytest.approx(SPACING_MM, abs=1e-4)


def test_a_slice_of_the_midline_matches_the_nearest_lateral_slice_by_position(brain, lateral):
    left, right = stack_geometry(brain), stack_geometry(lateral)
    for index in (0, 7, 15):
        match = map_slice(index, left, right)
        # instance 89 + index against instance 8, the lateral slice nearest the midline
        assert match.rule == "position" and match.index == 7
        assert match.distance_mm == pytest.approx((89 + index - 8) * SPACING_MM, abs=0.01)
    back = map_slice(2, right, left)  # instance 3 -> instance 89, the midline slice nearest it
    assert back.index == 0 and back.distance_mm == pytest.approx((89 - 3) * SPACING_MM, abs=0.01)
    assert match_text(back, SPACING_MM) == "nearest slice, 77.4 mm away"


def test_an_interleaved_subset_matches_by_position_not_by_index(brain):
    left = stack_geometry(brain)
    every_fourth = stack_geometry(brain[::4])  # instances 89, 93, 97, 101
    matched = [map_slice(i, left, every_fourth) for i in range(16)]
    assert [m.index for m in matched] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3]
    # instance 91 lies 1.8 mm from both 89 and 93: the lower index wins
    assert matched[2].distance_mm == pytest.approx(2 * SPACING_MM, abs=0.01)
    assert matched[4] == SliceMatch(1, "position", pytest.approx(0.0, abs=1e-6))
    assert match_text(matched[4], SPACING_MM) == ""  # on the slice: nothing to say
    # the index rule would put instance 96 on 93 and instance 101 on 97; by position they lie on 97 and 101
    assert [scaled_index(i, 16, 4) for i in (7, 12)] == [1, 2]
    assert (matched[7].index, matched[12].index) == (2, 3)


def test_a_reversed_normal_matches_the_same_slices(brain):
    left, right = stack_geometry(brain), stack_geometry(brain[::4])
    flipped = StackGeometry(right.count, tuple(-v for v in right.normal), right.origins)
    assert [map_slice(i, left, flipped).index for i in range(16)] == [map_slice(i, left, right).index for i in range(16)]


def test_without_common_positions_the_index_is_scaled(brain, lateral):
    left = stack_geometry(brain)
    tilted = StackGeometry(8, (0.0, 0.0, 1.0), stack_geometry(lateral).origins)  # an axial stack: not parallel
    assert map_slice(15, left, tilted) == SliceMatch(7, "index")
    assert map_slice(7, left, tilted) == SliceMatch(3, "index")
    pictures = StackGeometry(8)
    assert map_slice(8, left, pictures) == SliceMatch(4, "index")
    assert map_slice(3, pictures, left) == SliceMatch(6, "index")
    assert match_text(map_slice(3, pictures, left)) == ""
    with pytest.raises(ValueError, match="empty stack"):
        map_slice(0, left, StackGeometry(0))


def test_pictures_and_broken_headers_have_no_positions(tmp_path, brain):
    from brainscan.engine.input.frames import FrameRef

    jpg = FrameRef(tmp_path / "a.jpg")
    assert stack_geometry([jpg, jpg]) == StackGeometry(2)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a DICOM file")
    refs = [*brain[:2], FrameRef(broken, kind="dicom", series_uid=brain[0].series_uid)]
    assert stack_geometry(refs) == StackGeometry(3)


def test_the_geometry_checks_its_parts():
    with pytest.raises(ValueError, match="together"):
        StackGeometry(2, normal=(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="1 slice origins for a stack of 2"):
        StackGeometry(2, (1.0, 0.0, 0.0), ((0.0, 0.0, 0.0),))
