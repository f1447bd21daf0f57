"""The heat-map overlay: every control changes what is drawn, from stored features, without re-running the model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt
from viewer_helpers import classify_and_wait, open_and_show

from brainscan.engine.model.overlay import colormap_lut
from brainscan.engine.results.names import display_name
from brainscan.engine.viewer.overlay import PREDICTED
from brainscan.gui.settings import AppSettings

pytestmark = pytest.mark.gui


@pytest.fixture
def classified(qtbot, window, gui_data, monkeypatch):
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)
    calls = []
    original = window.models.classifier.predict
    monkeypatch.setattr(window.models.classifier, "predict", lambda pictures: calls.append(len(pictures)) or original(pictures))
    window.network_calls = calls
    return window


def _heat(window) -> np.ndarray:
    item = window.view.heat_item
    assert item.isVisible() and item.image is not None
    return np.array(item.image, copy=True)


def test_the_heat_map_is_drawn_with_fixed_levels_over_the_slice(classified):
    w = classified
    item = w.view.heat_item
    assert item.isVisible() and item.zValue() > w.view.slice_item.zValue()
    assert item.image.shape == w.view.slice_item.image.shape[:2]
    assert tuple(item.levels) == (0.0, 1.0)
    assert item.opacity() == pytest.approx(0.45)
    assert w.view.colorbar.opacity() == 1.0
    assert "map: Grad-CAM" in w.view.finding_label.text()


def test_every_control_changes_what_is_drawn_without_running_the_network(classified):
    w = classified
    panel = w.overlay_panel
    before = _heat(w)

    panel.method_combo.setCurrentIndex(panel.method_combo.findData("layercam"))
    layercam = _heat(w)
    assert not np.allclose(layercam, before)
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("gradcam"))
    assert np.allclose(_heat(w), before)

    other = (w.controller.current_prediction().label_index + 1) % 4
    panel.target_combo.setCurrentIndex(panel.target_combo.findData(other))
    assert w.controller.overlay.target == other
    assert not np.allclose(_heat(w), before)
    assert display_name(w.models.classifier.classes[other]) in w.view.finding_label.text()
    panel.target_combo.setCurrentIndex(panel.target_combo.findData(PREDICTED))

    panel.opacity_slider.setValue(80)
    assert w.view.heat_item.opacity() == pytest.approx(0.8)
    assert panel.opacity_value.text() == "80 %"

    panel.colormap_combo.setCurrentIndex(panel.colormap_combo.findData("inferno"))
    lut = np.asarray(w.view.heat_item.lut)
    assert np.array_equal(lut[:, :3], colormap_lut("inferno"))
    bar = w.view.colorbar.colorMap().getLookupTable(nPts=256, alpha=False)
    assert np.abs(bar.astype(int) - colormap_lut("inferno").astype(int)).max() <= 2

    panel.threshold_slider.setValue(60)
    alpha = np.asarray(w.view.heat_item.lut)[:, 3]
    assert (alpha[:150] == 0).all() and (alpha[160:] == 255).all()

    panel.visible_box.setChecked(False)
    assert not w.view.heat_item.isVisible() and not w.actions_.show_heat.isChecked()
    w.actions_.show_heat.trigger()
    assert w.view.heat_item.isVisible() and panel.visible_box.isChecked()

    assert w.network_calls == []  # all of it from the stored features
    assert w.controller.last_render_ms < 1000


def test_holding_space_hides_the_heat_map_to_compare(qtbot, classified):
    w = classified
    w.view.setFocus()
    qtbot.keyPress(w.view, Qt.Key.Key_Space)
    assert not w.view.heat_item.isVisible()
    qtbot.keyRelease(w.view, Qt.Key.Key_Space)
    assert w.view.heat_item.isVisible()


def test_scrolling_shows_each_slice_with_its_own_map(qtbot, classified):
    w = classified
    first = _heat(w)
    w.controller.step(3)
    qtbot.waitUntil(lambda: w.controller.shown_key == w.controller.session.current_key, timeout=10_000)
    assert not np.allclose(_heat(w), first)
    assert w.network_calls == []


def test_overlay_choices_are_remembered(classified, settings_file):
    w = classified
    panel = w.overlay_panel
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("gradcam++"))
    panel.colormap_combo.setCurrentIndex(panel.colormap_combo.findData("viridis"))
    panel.opacity_slider.setValue(30)
    w.settings.sync()
    remembered = AppSettings(settings_file).overlay()
    assert (remembered.method, remembered.colormap, remembered.opacity) == ("gradcam++", "viridis", 0.3)


def test_the_exported_png_carries_the_overlay_and_the_notice(classified, tmp_path):
    import cv2

    w = classified
    path = w.exports.export_image(tmp_path / "slice.png")
    picture = cv2.imread(str(path))
    assert picture is not None and picture.shape[1] >= 512
    height = w.view.slice_item.image.shape[0] * (picture.shape[1] // w.view.slice_item.image.shape[1])
    assert picture.shape[0] > height  # the caption strips with the notice
    w.overlay_panel.visible_box.setChecked(False)
    plain = cv2.imread(str(w.exports.export_image(tmp_path / "plain.png")))
    assert not np.array_equal(plain[:height], picture[:height])
