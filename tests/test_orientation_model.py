"""The viewer's orientation letters, view transform, scale bar, pixel probe and corner text (Qt-free)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.input.loading import load_frame
from brainscan.engine.viewer.display import WindowLevel, display_image
from brainscan.engine.viewer.orientation import (
    EdgeLetters,
    ViewTransform,
    ViewTransformModel,
    corner_lines,
    direction_letters,
    edge_letters,
    picture_pixel,
    pixel_spacing,
    probe,
    round_length,
    scale_bar,
    slice_position,
    transform_array,
)

ALL_TRANSFORMS = [ViewTransform(r, h, v) for r, h, v in itertools.product((0, 90, 180, 270), (False, True), (False, True))]


@pytest.fixture(scope="module")
def sagittal_frame(sagittal_series_dir: Path) -> Frame:
    refs = [ref for ref in discover([sagittal_series_dir]) if ref.kind == "dicom"]
    return load_frame(refs[0])


def test_the_sagittal_series_reads_anterior_posterior_across_and_head_feet_down(sagittal_frame: Frame) -> None:
    letters = edge_letters(sagittal_frame.tags)
    assert letters is not None
    assert {letters.left, letters.right} == {"A", "P"}
    assert (letters.top, letters.bottom) == ("H", "F")


def test_the_real_sagittal_series_has_anterior_on_the_left(sagittal_series_dir: Path, sagittal_frame: Frame) -> None:
    if "sagittal-t1-brain" not in str(sagittal_series_dir):
        pytest.skip("the real series is not on this machine")
    # its row cosine is mostly +y (posterior): the picture's right edge is P
    assert edge_letters(sagittal_frame.tags) == EdgeLetters(left="A", right="P", top="H", bottom="F")


def test_letters_follow_the_dicom_patient_convention() -> None:
    axial = {"ImageOrientationPatient": "1\\0\\0\\0\\1\\0"}  # rows to the patient's left, columns posterior
    assert edge_letters(axial) == EdgeLetters(left="R", right="L", top="A", bottom="P")
    coronal = {"ImageOrientationPatient": "1\\0\\0\\0\\0\\-1"}
    assert edge_letters(coronal) == EdgeLetters(left="R", right="L", top="H", bottom="F")
    assert direction_letters(np.array([0.0, 0.8, 0.6])) == "PH"  # oblique: both axes named, main first


def test_rotation_and_flips_move_the_letters(sagittal_frame: Frame) -> None:
    plain = edge_letters(sagittal_frame.tags)
    turned = edge_letters(sagittal_frame.tags, ViewTransform(rotation=90))
    assert (turned.top, turned.right, turned.bottom, turned.left) == (plain.left, plain.top, plain.right, plain.bottom)
    mirrored = edge_letters(sagittal_frame.tags, ViewTransform(flip_h=True))
    assert (mirrored.left, mirrored.right, mirrored.top) == (plain.right, plain.left, plain.top)
    upside = edge_letters(sagittal_frame.tags, ViewTransform(flip_v=True))
    assert (upside.top, upside.bottom, upside.left) == (plain.bottom, plain.top, plain.left)


def test_a_raster_picture_has_no_letters_nor_scale() -> None:
    assert edge_letters({}) is None
    assert scale_bar(pixel_spacing({}), 2.0, 500.0) is None


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=str)
def test_the_drawn_array_the_matrix_and_the_pixel_lookup_agree(transform: ViewTransform) -> None:
    picture = np.arange(3 * 5).reshape(3, 5)
    shown = transform_array(picture, transform)
    for row, col in np.ndindex(shown.shape):
        assert picture[picture_pixel(transform, picture.shape, row, col)] == shown[row, col]
    # the picture's right-pointing step, drawn: the matrix says along which screen direction it goes
    (r0, c0), = np.argwhere(shown == picture[1, 1])
    (r1, c1), = np.argwhere(shown == picture[1, 2])
    assert tuple(transform.matrix() @ np.array([1, 0])) == (c1 - c0, r1 - r0)


def test_rotating_after_a_flip_turns_what_is_on_screen_clockwise() -> None:
    model = ViewTransformModel()
    seen = []
    model.events.changed.connect(seen.append)
    model.toggle("flip_h")
    before = transform_array(np.arange(6).reshape(2, 3), model.value)
    model.rotate()
    assert np.array_equal(transform_array(np.arange(6).reshape(2, 3), model.value), np.rot90(before, -1))
    model.reset()
    assert model.value.is_identity and len(seen) == 3
    with pytest.raises(ValueError, match="rotation 45"):
        ViewTransform(rotation=45)


def test_the_scale_bar_is_a_round_length_near_a_fifth_of_the_view() -> None:
    assert [round_length(v) for v in (0.7, 1.0, 3.3, 7.9, 25.0, 130.0)] == [0.5, 1.0, 2.0, 5.0, 20.0, 100.0]
    # 0.5 mm pixels drawn 2 screen pixels wide: 4 px per mm; a fifth of 500 px is 25 mm -> 20 mm, 80 px
    bar = scale_bar((0.5, 0.5), 2.0, 500.0)
    assert (bar.length_mm, bar.length_px, bar.label) == (20.0, 80.0, "2 cm")
    # rotated a quarter, the bar measures along the picture's rows
    bar = scale_bar((1.0, 0.25), 1.0, 500.0, ViewTransform(rotation=90))
    assert (bar.length_mm, bar.length_px) == (100.0, 100.0)


def test_the_probe_gives_the_stored_modality_value_and_the_drawn_grey(sagittal_frame: Frame) -> None:
    display = display_image(sagittal_frame)
    window = WindowLevel(500.0, 1000.0)
    row, col = 128, 100
    value = float(sagittal_frame.values[row, col])
    found = probe(sagittal_frame, display, window, row, col)
    assert found.stored == (value,)
    expected = int(np.clip(np.round((value - 0.0) / 1000.0 * 255), 0, 255))
    assert abs(found.displayed[0] - expected) <= 1
    assert probe(sagittal_frame, display, window, row, col, inverted_view=True).displayed == (255 - found.displayed[0],)
    assert probe(sagittal_frame, display, window, -1, 0) is None
    assert f"{value:.6g}" in found.text()


def test_the_probe_of_a_ct_frame_says_hounsfield() -> None:
    values = np.array([[-1000.0, 40.0]], dtype=np.float32)
    frame = Frame(FrameRef(Path("ct.dcm"), kind="dicom"), np.zeros((1, 2, 3), np.uint8), values, (40.0, 400.0),
                  "tags", {"Modality": "CT"})
    found = probe(frame, display_image(frame), WindowLevel(40.0, 400.0), 0, 1)
    assert found.unit == "HU" and found.text().endswith("40 HU · shown 128")


def test_the_corner_text_names_the_series_and_slice_but_no_patient_by_default(sagittal_frame: Frame) -> None:
    frame = Frame(sagittal_frame.ref, sagittal_frame.picture, sagittal_frame.values, sagittal_frame.window,
                  sagittal_frame.window_source, dict(sagittal_frame.tags),
                  {"PatientName": "Doe^Jane", "PatientID": "X123", "PatientBirthDate": "19700101"})
    text = "\n".join(corner_lines(frame, "slice 1/16"))
    assert "slice 1/16" in text and "mm" in text
    if "SeriesDescription" in frame.tags:
        assert frame.tags["SeriesDescription"] in text
    assert "Doe" not in text and "X123" not in text and "1970" not in text
    shown = "\n".join(corner_lines(frame, "slice 1/16", show_identifiers=True))
    assert "Doe^Jane" in shown and "X123" in shown


def test_the_slice_position_falls_back_to_the_position_along_the_normal() -> None:
    tags = {"ImageOrientationPatient": "1\\0\\0\\0\\1\\0", "ImagePositionPatient": "-100\\-120\\37.5"}
    assert slice_position(tags) == pytest.approx(37.5)
    assert slice_position({**tags, "SliceLocation": "12"}) == 12.0
    assert slice_position({}) is None
