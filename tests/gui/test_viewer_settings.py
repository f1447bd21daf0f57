"""The settings dialog: model card, refusing a wrong model with its reason, device choice, remembering."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from viewer_helpers import classify_and_wait, open_and_show

from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.integrity import UNVERIFIED, UNVERIFIED_WARNING
from brainscan.gui.settings import AppSettings

pytestmark = pytest.mark.gui


def test_the_dialog_shows_the_model_card_of_the_model_in_use(window, tiny_model):
    dialog = window.models.settings_dialog()
    text = dialog.card_view.toPlainText()
    assert "tiny-test-model" in text and "glioma" in text and "Research use only" in text
    assert dialog.model_path == tiny_model and dialog.device == "cpu"


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("no_contract", "no brainscan contract"),
        ("mismatch", "does not match its contract"),
        ("not_onnx", "not a usable ONNX model"),
        ("unverified", "records no weights checksum"),
    ],
)
def test_a_wrong_model_is_refused_with_its_reason_and_the_previous_one_kept(window, other_models, tiny_model, which, reason):
    previous = window.models.classifier
    dialog = window.models.settings_dialog()
    dialog.path_edit.setText(str(getattr(other_models, which)))
    assert not dialog.try_accept()
    assert dialog.error_label.isVisibleTo(dialog) and reason in dialog.error_label.text()
    assert dialog.classifier is None
    window.models.apply_settings_dialog(dialog)
    assert window.models.classifier is previous
    assert window.settings.model_path == tiny_model


def test_switching_to_another_model_clears_results_and_offers_its_classes(qtbot, window, gui_data, other_models,
                                                                        settings_file):
    open_and_show(qtbot, window, [gui_data.jpgs])
    classify_and_wait(qtbot, window)
    dialog = window.models.settings_dialog()
    dialog.path_edit.setText(str(other_models.binary))
    with qtbot.waitSignal(window.models.changed):
        assert dialog.try_accept()
        window.models.apply_settings_dialog(dialog)
    assert window.models.classifier.classes == ("no", "tumour")
    assert window.results_panel.table_model.rowCount() == 0
    combo = window.overlay_panel.target_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["predicted class", "No", "Tumour"]  # display names
    assert "tiny-binary" in window.status.device_label.text()
    window.settings.sync()
    assert AppSettings(settings_file).model_path == other_models.binary
    classify_and_wait(qtbot, window)
    assert {row.label for row in window.results_panel.table_model.rows} <= {"no", "tumour"}


def test_the_device_in_use_is_shown_with_the_fallback_note(qtbot, window, tiny_model, settings_file):
    assert "CPU (CPUExecutionProvider)" in window.status.device_label.text()
    dialog = window.models.settings_dialog()
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cuda"))
    assert dialog.try_accept()
    window.models.apply_settings_dialog(dialog)
    expected = Classifier(tiny_model, "cuda").device
    label = window.status.device_label
    assert expected.used.upper() in label.text()
    assert label.toolTip() == expected.describe()
    if expected.note:  # no usable CUDA here: the fallback says why
        assert "fallback" in label.text() and "CUDA" in label.toolTip()
        assert window.status.current_message() == expected.note
    window.settings.sync()
    assert AppSettings(settings_file).device == "cuda"


def test_without_a_usable_model_the_viewer_opens_and_says_why(qtbot, make_window, other_models, gui_data):
    window = make_window(model=other_models.no_contract)
    assert window.models.classifier is None
    assert "no brainscan contract" in window.status.device_label.toolTip()
    assert "Settings" in window.status.last_error
    open_and_show(qtbot, window, [gui_data.jpgs])
    assert not window.actions_.classify.isEnabled()
    assert not window.batch.classify_all()


def test_the_model_opens_in_the_background_at_start(qtbot, settings_file, tiny_model):
    from brainscan.gui.main_window import MainWindow

    settings = AppSettings(settings_file)
    settings.model_path = tiny_model
    settings.device = "cpu"
    window = MainWindow(settings)  # model_in_background=True, as the application does
    qtbot.addWidget(window)
    try:
        if window.models.classifier is None:
            with qtbot.waitSignal(window.models.changed, timeout=10_000):
                pass
        assert window.models.classifier is not None and "tiny-test-model" in window.status.device_label.text()
    finally:
        window.close()
    assert window.pool.pool.activeThreadCount() == 0


def test_an_unverified_model_is_refused_at_start_unless_the_viewer_was_started_with_the_allowance(
        make_window, other_models):
    window = make_window(model=other_models.unverified)
    assert window.models.classifier is None
    assert "records no weights checksum" in window.status.device_label.toolTip()
    assert "--allow-unverified-model" in window.status.device_label.toolTip()
    assert window.status.integrity_label.isHidden()


def test_started_with_the_allowance_an_unverified_model_shows_a_red_status_bar_warning_until_replaced(
        qtbot, settings_file, other_models, tiny_model):
    from brainscan.gui.app import build_parser, open_window

    settings = AppSettings(settings_file)
    settings.model_path, settings.device = other_models.unverified, "cpu"
    settings.sync()
    window = open_window(build_parser().parse_args(["--settings", str(settings_file), "--allow-unverified-model"]))
    qtbot.addWidget(window)
    window.show()
    try:
        if window.models.classifier is None:
            with qtbot.waitSignal(window.models.changed, timeout=10_000):
                pass
        assert window.models.classifier.integrity == UNVERIFIED
        label = window.status.integrity_label
        assert label.isVisible() and label.text() == "UNVERIFIED MODEL"
        assert UNVERIFIED_WARNING in label.toolTip() and "#b00020" in label.styleSheet()
        dialog = window.models.settings_dialog()  # the allowance reaches the settings dialog too
        assert dialog.check() and "unverified" in dialog.card_view.toPlainText()
        dialog.path_edit.setText(str(tiny_model))
        with qtbot.waitSignal(window.models.changed):
            assert dialog.try_accept()
            window.models.apply_settings_dialog(dialog)
        assert not label.isVisible()
    finally:
        window.close()
    assert window.pool.pool.activeThreadCount() == 0


def test_a_report_written_from_the_viewer_with_an_unverified_model_warns_on_every_page(
        qtbot, make_window, other_models, gui_data, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    from brainscan.gui.report_dialog import ReportRequest

    window = make_window(model=other_models.unverified, allow_unverified=True)
    assert window.status.integrity_label.isVisible()
    open_and_show(qtbot, window, [gui_data.jpgs])
    refs = tuple(window.reports.scopes()["all"])
    with qtbot.waitSignal(window.reports.finished, timeout=60_000) as blocker:
        assert window.reports.write(ReportRequest("all", refs, ("pdf", "html"), tmp_path / "report"))
    assert blocker.args[1] == ""
    pages = [page.extract_text() for page in pypdf.PdfReader(tmp_path / "report" / "report.pdf").pages]
    assert pages and all(UNVERIFIED_WARNING in text for text in pages)
    assert UNVERIFIED_WARNING in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
