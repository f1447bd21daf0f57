"""The settings dialog: model card, refusing a wrong model with its reason, device choice, remembering."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from viewer_helpers import classify_and_wait, open_and_show

from brainscan.engine.inference import Classifier
from brainscan.gui.settings import AppSettings

pytestmark = pytest.mark.gui


def test_the_dialog_shows_the_model_card_of_the_model_in_use(window, tiny_model):
    dialog = window.settings_dialog()
    text = dialog.card_view.toPlainText()
    assert "tiny-test-model" in text and "glioma" in text and "Research use only" in text
    assert dialog.model_path == tiny_model and dialog.device == "cpu"


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("no_contract", "no brainscan contract"),
        ("mismatch", "does not match its contract"),
        ("not_onnx", "not a usable ONNX model"),
    ],
)
def test_a_wrong_model_is_refused_with_its_reason_and_the_previous_one_kept(window, other_models, tiny_model, which, reason):
    previous = window.classifier
    dialog = window.settings_dialog()
    dialog.path_edit.setText(str(getattr(other_models, which)))
    assert not dialog.try_accept()
    assert dialog.error_label.isVisibleTo(dialog) and reason in dialog.error_label.text()
    assert dialog.classifier is None
    window.apply_settings_dialog(dialog)
    assert window.classifier is previous
    assert window.settings.model_path == tiny_model


def test_switching_to_another_model_clears_results_and_offers_its_classes(qtbot, window, gui_data, other_models,
                                                                        settings_file):
    open_and_show(qtbot, window, [gui_data.jpgs])
    classify_and_wait(qtbot, window)
    dialog = window.settings_dialog()
    dialog.path_edit.setText(str(other_models.binary))
    with qtbot.waitSignal(window.modelChanged):
        assert dialog.try_accept()
        window.apply_settings_dialog(dialog)
    assert window.classifier.classes == ("no", "tumour")
    assert window.results_panel.table_model.rowCount() == 0
    combo = window.overlay_panel.target_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["predicted class", "no", "tumour"]
    assert "tiny-binary" in window.device_label.text()
    window.settings.sync()
    assert AppSettings(settings_file).model_path == other_models.binary
    classify_and_wait(qtbot, window)
    assert {row.label for row in window.results_panel.table_model.rows} <= {"no", "tumour"}


def test_the_device_in_use_is_shown_with_the_fallback_note(qtbot, window, tiny_model, settings_file):
    assert "CPU (CPUExecutionProvider)" in window.device_label.text()
    dialog = window.settings_dialog()
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cuda"))
    assert dialog.try_accept()
    window.apply_settings_dialog(dialog)
    expected = Classifier(tiny_model, "cuda").device
    label = window.device_label
    assert expected.used.upper() in label.text()
    assert label.toolTip() == expected.describe()
    if expected.note:  # no usable CUDA here: the fallback says why
        assert "fallback" in label.text() and "CUDA" in label.toolTip()
        assert window.statusBar().currentMessage() == expected.note
    window.settings.sync()
    assert AppSettings(settings_file).device == "cuda"


def test_without_a_usable_model_the_viewer_opens_and_says_why(qtbot, make_window, other_models, gui_data):
    window = make_window(model=other_models.no_contract)
    assert window.classifier is None
    assert "no brainscan contract" in window.device_label.toolTip()
    assert "Settings" in window.last_error
    open_and_show(qtbot, window, [gui_data.jpgs])
    assert not window.actions_.classify.isEnabled()
    assert not window.classify_all()


def test_the_model_opens_in_the_background_at_start(qtbot, settings_file, tiny_model):
    from brainscan.gui.main_window import MainWindow

    settings = AppSettings(settings_file)
    settings.model_path = tiny_model
    settings.device = "cpu"
    window = MainWindow(settings)  # model_in_background=True, as the application does
    qtbot.addWidget(window)
    try:
        if window.classifier is None:
            with qtbot.waitSignal(window.modelChanged, timeout=10_000):
                pass
        assert window.classifier is not None and "tiny-test-model" in window.device_label.text()
    finally:
        window.close()
    assert window.pool.pool.activeThreadCount() == 0
