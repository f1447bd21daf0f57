"""Orientation letters, scale bar, probe, corner text, rotate/flip/invert and cine in the viewer window."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage
from viewer_helpers import classify_and_wait, open_and_show

from brainscan.engine.viewer.orientation import pixel_spacing
from brainscan.gui.view_tools import SHOW_IDENTIFIERS_KEY

pytestmark = pytest.mark.gui


@pytest.fixture
def sagittal_window(qtbot, window, sagittal_series_dir):
    open_and_show(qtbot, window, [sagittal_series_dir])
    return window


def _letters(window) -> dict[str, str]:
    return {name: label.text() for name, label in window.view_tools.letters.items() if label.isVisible()}


def _drawn(item) -> np.ndarray:
    """The slice layer's pixels as drawn (grey, H x W), through its lookup table."""
    item.render()
    qimage = item.qimage.convertToFormat(QImage.Format.Format_RGB32)
    rows = np.frombuffer(qimage.constBits(), np.uint8).reshape(qimage.height(), qimage.bytesPerLine())
    return rows[:, : qimage.width() * 4].reshape(qimage.height(), qimage.width(), 4)[..., 0].copy()


def _settle(qtbot, window) -> None:
    c = window.controller
    qtbot.waitUntil(lambda: c.shown_key == c.session.current_key, timeout=10_000)


def test_the_sagittal_series_shows_anterior_posterior_across_and_head_feet_down(sagittal_window):
    letters = _letters(sagittal_window)
    assert {letters["left"], letters["right"]} == {"A", "P"}
    assert (letters["top"], letters["bottom"]) == ("H", "F")
    area = sagittal_window.view.rect()
    labels = sagittal_window.view_tools.letters
    assert labels["left"].x() < labels["top"].x() < labels["right"].x() <= area.right()
    assert labels["top"].y() < labels["left"].y() < labels["bottom"].y() <= area.bottom()


def test_rotate_and_flip_move_the_letters_and_reset_restores(qtbot, sagittal_window):
    w = sagittal_window
    tools, a = w.view_tools, w.view_tools.actions
    plain = _letters(w)
    a.rotate.trigger()
    turned = _letters(w)
    assert (turned["top"], turned["right"], turned["bottom"], turned["left"]) == (
        plain["left"], plain["top"], plain["right"], plain["bottom"])
    assert tools.transform.rotation == 90
    a.rotate.trigger()
    a.rotate.trigger()
    a.rotate.trigger()
    assert _letters(w) == plain
    a.flip_h.trigger()
    assert a.flip_h.isChecked() and (_letters(w)["left"], _letters(w)["right"]) == (plain["right"], plain["left"])
    a.flip_v.trigger()
    assert (_letters(w)["top"], _letters(w)["bottom"]) == (plain["bottom"], plain["top"])
    a.reset_view.trigger()
    assert _letters(w) == plain and not a.flip_h.isChecked() and tools.transform.value.is_identity
    assert "(T)" in a.rotate.toolTip() and "(I)" in a.invert.toolTip()


def test_a_raster_picture_has_no_letters_nor_scale_bar(qtbot, window, gui_data):
    open_and_show(qtbot, window, [sorted(gui_data.jpgs.glob("*.jpg"))[0]])
    assert _letters(window) == {}
    assert window.view_tools.scale.bar is None and not window.view_tools.scale.isVisible()


def test_the_scale_bar_follows_the_spacing_and_the_zoom(qtbot, sagittal_window):
    w = sagittal_window
    spacing = pixel_spacing(w.controller.current_frame.tags)
    bar = w.view_tools.scale.bar
    assert bar is not None and w.view_tools.scale.isVisible()
    screen_per_pixel = 1.0 / w.view.viewbox.viewPixelSize()[0]
    assert bar.length_px == pytest.approx(bar.length_mm / spacing[1] * screen_per_pixel, rel=1e-3)
    assert 0.08 * w.view.viewbox.width() <= bar.length_px <= 0.2 * w.view.viewbox.width() + 1
    before = bar.length_px / bar.length_mm
    w.view.zoom(2.0)
    after = w.view_tools.scale.bar
    zoomed = 1.0 / w.view.viewbox.viewPixelSize()[0]
    assert after.length_px / after.length_mm == pytest.approx(zoomed / spacing[1], rel=1e-3)
    assert after.length_px / after.length_mm > 1.8 * before


def _move_to_pixel(window, row: int, col: int) -> None:
    item = window.view.slice_item
    window.view.scene().sigMouseMoved.emit(item.mapToScene(QPointF(col + 0.5, row + 0.5)))


def test_the_probe_shows_the_stored_and_drawn_values_under_the_cursor(qtbot, sagittal_window):
    w = sagittal_window
    frame = w.controller.current_frame
    row, col = 120, 90
    value = float(frame.values[row, col])
    _move_to_pixel(w, row, col)
    label = w.view_tools.probe_label
    assert label.isVisible() and f"({col}, {row}): {value:.6g}" in label.text() and "shown" in label.text()
    w.view_tools.actions.rotate.trigger()  # the same picture pixel, wherever it is drawn
    _move_to_pixel(w, row, col)
    assert f"({col}, {row}): {value:.6g}" in label.text()
    w.view.scene().sigMouseMoved.emit(QPointF(-5000.0, -5000.0))
    assert not label.isVisible()


def test_the_corner_text_has_series_and_slice_but_no_patient_by_default(qtbot, make_window, settings_file,
                                                                       sagittal_series_dir):
    window = make_window()
    open_and_show(qtbot, window, [sagittal_series_dir])
    frame = window.controller.current_frame
    text = window.view_tools.info_label.text()
    assert window.view_tools.info_label.isVisible() and "slice 1/" in text and "mm" in text
    if "SeriesDescription" in frame.tags:
        assert frame.tags["SeriesDescription"] in text
    name = frame.identifiers.get("PatientName")
    if name:
        assert name not in text
        shown = [label.text() for label in window.view.findChildren(type(window.view_tools.info_label))]
        assert not any(name in t for t in shown)
        from brainscan.gui.settings import AppSettings

        settings = AppSettings(settings_file)
        settings.qsettings.setValue(SHOW_IDENTIFIERS_KEY, True)
        settings.sync()
        other = make_window()
        open_and_show(qtbot, other, [sagittal_series_dir])
        assert name in other.view_tools.info_label.text()


def test_cine_steps_the_slices_at_its_rate_and_stops(qtbot, sagittal_window):
    w = sagittal_window
    tools, session = w.view_tools, w.controller.session
    tools.actions.rate.setValue(25)
    assert tools.timer.interval() == 40
    start = session.position
    tools.actions.cine.trigger()
    assert tools.playing
    qtbot.waitUntil(lambda: session.position >= start + 3, timeout=10_000)
    tools.actions.cine.trigger()
    assert not tools.playing and not tools.actions.cine.isChecked()
    _settle(qtbot, w)
    stopped = session.position
    qtbot.wait(200)
    assert session.position == stopped


def test_cine_loops_back_to_the_first_slice(qtbot, sagittal_window):
    w = sagittal_window
    session = w.controller.session
    w.controller.jump_to_end(True)
    _settle(qtbot, w)
    w.view_tools.actions.rate.setValue(60)
    w.view_tools.play(True)
    qtbot.waitUntil(lambda: session.position == 0, timeout=10_000)
    w.view_tools.play(False)


def test_invert_changes_the_drawn_image(qtbot, sagittal_window):
    w = sagittal_window
    before = _drawn(w.view.slice_item)
    w.view_tools.actions.invert.trigger()
    inverted = _drawn(w.view.slice_item)
    assert not np.array_equal(before, inverted)
    assert np.abs(before.astype(int) + inverted.astype(int) - 255).max() <= 1  # each grey drawn as its negative
    w.view_tools.actions.invert.trigger()
    assert np.array_equal(_drawn(w.view.slice_item), before)


def test_the_heat_map_follows_the_picture_through_rotation_and_flips(qtbot, sagittal_window):
    w = sagittal_window
    classify_and_wait(qtbot, w)
    qtbot.waitUntil(lambda: w.view.heat_item.isVisible(), timeout=10_000)
    slice_item, heat_item = w.view.slice_item, w.view.heat_item
    assert heat_item.image.shape[:2] == slice_item.image.shape[:2]
    a = w.view_tools.actions
    for action in (a.rotate, a.flip_h, a.rotate, a.flip_v):
        action.trigger()
        assert heat_item.transform() == slice_item.transform()
        for row, col in ((0, 0), (10, 200), (255, 17)):
            point = QPointF(col + 0.5, row + 0.5)
            assert heat_item.mapToScene(point) == slice_item.mapToScene(point)
    assert not w.view_tools.transform.value.is_identity and heat_item.isVisible()
    # the picture's top-left pixel is no longer drawn top-left once turned
    corner = slice_item.mapToView(QPointF(0.5, 0.5))
    assert (corner.x(), corner.y()) != (0.5, 0.5)


def test_the_exported_png_is_turned_flipped_and_inverted_as_the_view_is(qtbot, sagittal_window, tmp_path):
    import cv2

    w = sagittal_window
    w.overlay_panel.visible_box.setChecked(False)  # the picture alone, so pixels can be compared
    plain = cv2.imread(str(w.exports.export_image(tmp_path / "plain.png")), cv2.IMREAD_GRAYSCALE)
    side = w.controller.display.array.shape[0]  # 256: enlarged x2 to 512 in the export
    factor = plain.shape[1] // side
    plain = plain[: side * factor : factor, ::factor]
    a = w.view_tools.actions
    a.rotate.trigger()  # a quarter clockwise
    turned = cv2.imread(str(w.exports.export_image(tmp_path / "turned.png")), cv2.IMREAD_GRAYSCALE)
    turned = turned[: side * factor : factor, ::factor]
    np.testing.assert_array_equal(turned, np.rot90(plain, -1))
    a.flip_h.trigger()
    a.invert.trigger()
    flipped = cv2.imread(str(w.exports.export_image(tmp_path / "flipped.png")), cv2.IMREAD_GRAYSCALE)
    flipped = flipped[: side * factor : factor, ::factor]
    np.testing.assert_array_equal(flipped, 255 - np.rot90(plain, -1)[:, ::-1])
