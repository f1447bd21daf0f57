"""One owner of the overlay settings: the panel, the H action, Space and the remembered settings all follow the model."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt
from viewer_helpers import classify_and_wait, open_and_show

from brainscan.engine.viewer.overlay import OverlayModel, OverlaySettings
from brainscan.gui.settings import AppSettings

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot):
    from brainscan.gui.overlay_panel import OverlayPanel

    panel = OverlayPanel(OverlayModel(OverlaySettings(opacity=0.3, colormap="viridis")))
    qtbot.addWidget(panel)
    return panel


def _changes(model: OverlayModel) -> list[OverlaySettings]:
    seen: list[OverlaySettings] = []
    model.events.changed.connect(seen.append)
    return seen


def test_the_panel_shows_the_model_it_is_given(panel):
    assert panel.opacity_slider.value() == 30 and panel.opacity_value.text() == "30 %"
    assert panel.colormap_combo.currentData() == "viridis"
    assert panel.visible_box.isChecked() and panel.method_combo.currentData() == "gradcam"


def test_the_panel_follows_the_model(panel):
    panel.set_classes(("glioma", "meningioma", "notumor", "pituitary"))
    model = panel.model
    model.opacity = 0.7
    model.method = "layercam"
    model.threshold = 0.55
    model.visible = False
    assert panel.opacity_slider.value() == 70 and panel.opacity_value.text() == "70 %"
    assert panel.method_combo.currentData() == "layercam" and "LayerCAM" in panel.note.text()
    assert panel.threshold_slider.value() == 55 and panel.threshold_value.text() == "0.55"
    assert not panel.visible_box.isChecked()


def test_the_model_follows_the_panel_with_one_change_per_edit(panel):
    model = panel.model
    seen = _changes(model)
    panel.opacity_slider.setValue(80)
    panel.colormap_combo.setCurrentIndex(panel.colormap_combo.findData("inferno"))
    panel.visible_box.setChecked(False)
    assert (model.opacity, model.colormap, model.visible) == (0.8, "inferno", False)
    assert len(seen) == 3 and seen[-1] == model.value


def test_a_model_change_shown_by_the_panel_does_not_come_back_as_another_change(panel):
    model = panel.model
    seen = _changes(model)
    model.update(opacity=0.9, method="eigencam", visible=False)
    assert len(seen) == 1 and model.value == OverlaySettings(opacity=0.9, method="eigencam", visible=False,
                                                             colormap="viridis")
    assert not panel.target_combo.isEnabled()  # eigencam does not depend on the class


def test_a_target_the_new_model_lacks_falls_back_to_the_predicted_class(panel):
    panel.set_classes(("a", "b", "c", "d"))
    panel.target_combo.setCurrentIndex(panel.target_combo.findData(3))
    assert panel.model.target == 3
    panel.set_classes(("no", "tumour"))
    assert panel.model.target == -1 and panel.target_combo.currentData() == -1


@pytest.fixture
def classified(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)
    return window


def test_pressing_h_toggles_the_models_visibility_and_the_panel_follows(qtbot, classified):
    w = classified
    w.activateWindow()
    w.view.setFocus()
    qtbot.keyClick(w.view, Qt.Key.Key_H)
    assert not w.overlay.visible
    assert not w.overlay_panel.visible_box.isChecked() and not w.actions_.show_heat.isChecked()
    assert not w.view.heat_item.isVisible()
    qtbot.keyClick(w.view, Qt.Key.Key_H)
    assert w.overlay.visible and w.overlay_panel.visible_box.isChecked() and w.view.heat_item.isVisible()


def test_the_h_action_and_the_panel_set_one_model(classified):
    w = classified
    seen = _changes(w.overlay)
    w.actions_.show_heat.trigger()
    assert not w.overlay.visible and not w.overlay_panel.visible_box.isChecked()
    w.overlay_panel.visible_box.setChecked(True)
    assert w.overlay.visible and w.actions_.show_heat.isChecked()
    assert [s.visible for s in seen] == [False, True]


def test_holding_space_sets_the_model_and_leaves_the_settings_alone(qtbot, classified):
    w = classified
    w.view.setFocus()
    qtbot.keyPress(w.view, Qt.Key.Key_Space)
    assert w.overlay.compare_hidden and not w.view.heat_item.isVisible()
    assert w.overlay.visible and w.overlay_panel.visible_box.isChecked() and w.actions_.show_heat.isChecked()
    qtbot.keyRelease(w.view, Qt.Key.Key_Space)
    assert not w.overlay.compare_hidden and w.view.heat_item.isVisible()


def test_the_settings_remember_the_model_whoever_changed_it(classified, settings_file):
    w = classified
    w.overlay.update(method="layercam", opacity=0.65, visible=False)
    assert w.overlay_panel.method_combo.currentData() == "layercam" and w.view.heat_item.isVisible() is False
    w.settings.sync()
    remembered = AppSettings(settings_file).overlay()
    assert (remembered.method, remembered.opacity, remembered.visible) == ("layercam", 0.65, False)
