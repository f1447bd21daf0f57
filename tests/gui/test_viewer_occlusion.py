"""The *Occlusion check*: the slice's occlusion map computed in the background, drawn as its heat layer, dropped
for another slice or method, and cancelled."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")

from viewer_helpers import classify_and_wait, open_and_show

from brainscan.engine.model.occlusion import occlusion_map, occlusion_on_picture
from brainscan.engine.results.names import display_name

pytestmark = pytest.mark.gui


@pytest.fixture
def classified(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)
    return window


def _heat(window) -> np.ndarray:
    item = window.view.heat_item
    assert item.isVisible() and item.image is not None
    return np.array(item.image, copy=True)


def _run_check(qtbot, window) -> list:
    with qtbot.waitSignal(window.occlusion.finished, timeout=30_000) as blocker:
        assert window.actions_.occlusion.isEnabled()
        window.actions_.occlusion.trigger()
    return blocker.args


def test_the_check_draws_the_occlusion_map_of_the_slice_for_the_class_shown(qtbot, classified, tmp_path, monkeypatch):
    w = classified
    method_map = _heat(w)
    assert _run_check(qtbot, w) == [True]
    c = w.controller
    prediction, frame = c.current_prediction(), c.current_frame
    expected = occlusion_on_picture(occlusion_map(w.models.classifier, frame.picture, prediction.label_index),
                                    frame.picture.shape[:2], w.models.classifier.contract)
    drawn = _heat(w)
    np.testing.assert_allclose(drawn, expected, atol=1e-5)
    assert not np.allclose(drawn, method_map)
    name = w.models.classifier.classes[prediction.label_index]
    assert w.status.current_message().startswith(f"Occlusion map of {name}: ")
    assert f"map: Occlusion · {display_name(name)}" in w.view.finding_label.text()
    assert w.overlay.method == "gradcam"  # the settings (panel, remembered choices, reports) never hold it
    assert w.actions_.occlusion.isEnabled() and w.actions_.classify.isEnabled()

    import brainscan.gui.presenters.export_presenter as export_module

    captions = []
    caption_of = export_module.export_caption
    monkeypatch.setattr(export_module, "export_caption", lambda *a: captions.append(caption_of(*a)) or captions[-1])
    w.exports.export_image(tmp_path / "occlusion.png")
    assert f"Occlusion for {display_name(name)}" in captions[0]  # the export says which map it carries


def test_another_slice_or_method_returns_to_the_methods_map(qtbot, classified):
    w = classified
    method_map = _heat(w)
    _run_check(qtbot, w)
    w.controller.step(1)
    qtbot.waitUntil(lambda: w.controller.shown_key == w.controller.session.current_key, timeout=10_000)
    assert w.overlay.on_demand is None and "Occlusion" not in w.view.finding_label.text()
    assert not w.status.current_message().startswith("Occlusion map")
    w.controller.step(-1)
    qtbot.waitUntil(lambda: w.controller.shown_key == w.controller.session.current_key, timeout=10_000)
    np.testing.assert_allclose(_heat(w), method_map)

    _run_check(qtbot, w)
    w.overlay_panel.method_combo.setCurrentIndex(w.overlay_panel.method_combo.findData("layercam"))
    assert w.overlay.on_demand is None and "map: LayerCAM" in w.view.finding_label.text()


def test_cancelling_the_check_leaves_the_methods_map(qtbot, classified, monkeypatch):
    import brainscan.gui.presenters.occlusion_presenter as presenter_module

    go_on = threading.Event()
    original_steps = presenter_module.occlusion_steps

    def held_steps(*args, **kwargs):
        for index, step in enumerate(original_steps(*args, **kwargs)):
            yield step
            if index == 0:
                go_on.wait(10)  # hold the first batch until the test has cancelled

    monkeypatch.setattr(presenter_module, "occlusion_steps", held_steps)
    w = classified
    method_map = _heat(w)
    with qtbot.waitSignal(w.occlusion.runner.itemsReady, timeout=10_000):
        w.actions_.occlusion.trigger()
    assert w.actions_.cancel.isEnabled() and w.status.cancel_button.isVisible()
    assert not w.actions_.occlusion.isEnabled()
    with qtbot.waitSignal(w.occlusion.finished, timeout=10_000) as blocker:
        w.actions_.cancel.trigger()
        go_on.set()
    assert blocker.args == [False]
    assert w.overlay.on_demand is None and "cancelled" in w.status.current_message()
    np.testing.assert_allclose(_heat(w), method_map)
    assert not w.status.progress.isVisible() and w.actions_.occlusion.isEnabled()


def test_closing_the_window_during_a_check_leaves_no_thread(qtbot, classified, monkeypatch):
    import brainscan.gui.presenters.occlusion_presenter as presenter_module

    go_on = threading.Event()
    original_steps = presenter_module.occlusion_steps

    def held_steps(*args, **kwargs):
        for step in original_steps(*args, **kwargs):
            yield step
            go_on.wait(10)  # each batch waits until the window, closing, cancels the check

    monkeypatch.setattr(presenter_module, "occlusion_steps", held_steps)
    w = classified
    runner = w.occlusion.runner
    cancel = runner.cancel
    monkeypatch.setattr(runner, "cancel", lambda: (cancel(), go_on.set()))
    with qtbot.waitSignal(runner.itemsReady, timeout=10_000):
        w.actions_.occlusion.trigger()
    w.close()
    assert w.pool.pool.activeThreadCount() == 0 and w.pool.running == 0
