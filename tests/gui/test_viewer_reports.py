"""Reports from the viewer: the dialog's scopes and formats, a written folder, errors and cancel."""

from __future__ import annotations

import csv
import threading

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pypdf")

import pydicom
import pypdf
from PySide6.QtCore import QItemSelectionModel
from viewer_helpers import classify_and_wait, open_and_show

from brainscan import RESEARCH_USE_NOTICE
from brainscan.gui.report_dialog import ReportDialog, ReportRequest

pytestmark = pytest.mark.gui

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _open_series_and_jpgs(qtbot, window, gui_data) -> None:
    open_and_show(qtbot, window, [gui_data.series.folder, gui_data.jpgs])
    qtbot.waitUntil(lambda: len(window.controller.session) == 24, timeout=10_000)


def _select_rows(window, rows: list[int]) -> None:
    table = window.results_panel.table
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    table.selectionModel().clearSelection()
    for row in rows:
        table.selectionModel().select(window.results_panel.proxy.index(row, 0), flags)


def _write(qtbot, window, request: ReportRequest, timeout: int = 60_000):
    with qtbot.waitSignal(window.reports.finished, timeout=timeout) as blocker:
        assert window.reports.write(request)
    return blocker.args


def _rows(folder):
    with open(folder / "results.csv", encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def test_the_dialog_offers_each_scope_with_its_size_and_dicom_only_for_dicom(qtbot, window, gui_data, tmp_path):
    _open_series_and_jpgs(qtbot, window, gui_data)
    classify_and_wait(qtbot, window)
    jpg_rows = [r for r in range(window.results_panel.proxy.rowCount())
                if window.results_panel.visible_keys()[r][0].endswith(".jpg")][:2]
    _select_rows(window, jpg_rows)

    dialog = ReportDialog(window.reports.scopes(), tmp_path / "report", window)
    qtbot.addWidget(dialog)
    assert "(2 images)" in dialog.scope_buttons["selection"].text()
    assert "(16 images, 16 DICOM)" in dialog.scope_buttons["series"].text()
    assert "(24 images, 16 DICOM)" in dialog.scope_buttons["all"].text()
    assert dialog.scope() == "selection"
    assert not dialog.dicom.isEnabled()  # two JPGs: no DICOM objects to make
    dialog.select_scope("series")
    assert dialog.dicom.isEnabled() and not dialog.deidentify.isEnabled()
    dialog.dicom.setChecked(True)
    assert dialog.deidentify.isEnabled()

    dialog.pdf.setChecked(False)
    dialog.html.setChecked(False)
    dialog.dicom.setChecked(False)
    assert dialog.request() is None and "at least one format" in dialog.problem.text()
    dialog.html.setChecked(True)
    request = dialog.request()
    assert request is not None and request.formats == ("html",) and len(request.refs) == 16
    assert request.folder == tmp_path / "report"


def test_a_series_report_holds_pdf_html_and_dicom_that_reference_their_sources(qtbot, window, gui_data, tmp_path):
    _open_series_and_jpgs(qtbot, window, gui_data)
    series = window.reports.scopes()["series"]
    assert len(series) == 16
    folder = tmp_path / "series-report"
    outcome, message = _write(qtbot, window, ReportRequest("series", tuple(series), ("pdf", "html", "dicom"), folder))

    assert message == "" and not outcome.interrupted and outcome.ok == 16 and outcome.failed == 0
    assert len(_rows(folder)) == 16
    text = "\n".join(page.extract_text() or "" for page in pypdf.PdfReader(str(folder / "report.pdf")).pages)
    assert "research use only" in text.lower()
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert RESEARCH_USE_NOTICE.split(".")[0] in html and "<img" in html and 'src="http' not in html
    captures = sorted((folder / "dicom").glob("SC-*.dcm"))
    assert len(captures) == 16
    sources = {pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID for path in series_paths(series)}
    capture = pydicom.dcmread(captures[0])
    assert capture.SOPClassUID == SECONDARY_CAPTURE
    assert capture.StudyInstanceUID == pydicom.dcmread(series[0].path, stop_before_pixels=True).StudyInstanceUID
    reports = [pydicom.dcmread(p) for p in (folder / "dicom").glob("*.dcm") if p not in captures]
    assert reports and all(r.SOPClassUID == COMPREHENSIVE_3D_SR for r in reports)
    referenced = {item.ReferencedSOPInstanceUID for r in reports for item in r.CurrentRequestedProcedureEvidenceSequence[0]
                  .ReferencedSeriesSequence[0].ReferencedSOPSequence}
    assert referenced == sources
    assert "report.pdf" in window.status.current_message()
    assert window.actions_.write_report.isEnabled() and window.status.progress.isHidden()


def series_paths(refs):
    return sorted({ref.path for ref in refs})


def test_a_report_of_two_selected_rows_screens_only_those(qtbot, window, gui_data, tmp_path):
    _open_series_and_jpgs(qtbot, window, gui_data)
    classify_and_wait(qtbot, window)
    _select_rows(window, [0, 3])
    chosen = window.reports.scopes()["selection"]
    assert len(chosen) == 2
    outcome, message = _write(qtbot, window, ReportRequest("selection", tuple(chosen), ("pdf",), tmp_path / "two"))
    assert message == "" and outcome.ok == 2
    assert sorted(row["path"] for row in _rows(tmp_path / "two")) == sorted(str(ref.path) for ref in chosen)
    assert (tmp_path / "two" / "report.pdf").stat().st_size > 1000


def test_an_unusable_folder_is_reported_and_the_viewer_goes_on(qtbot, window, gui_data, tmp_path):
    _open_series_and_jpgs(qtbot, window, gui_data)
    blocker_file = tmp_path / "a-file"
    blocker_file.write_text("not a folder")
    outcome, message = _write(qtbot, window, ReportRequest("all", tuple(window.reports.scopes()["all"]), ("pdf",),
                                                          blocker_file / "report"))
    assert outcome is None
    assert "a-file" in message and "Traceback" not in message
    assert "Report not written" in window.status.last_error
    assert window.actions_.write_report.isEnabled() and window.actions_.classify.isEnabled()


def test_cancelling_a_report_keeps_the_rows_written_and_makes_no_report(qtbot, window, gui_data, tmp_path, monkeypatch):
    import brainscan.gui.report_runner as runner_module

    go_on = threading.Event()

    class SlowRun(runner_module.FolderRun):
        def results(self):
            for index, result in enumerate(super().results()):
                yield result
                if index == 0:
                    go_on.wait(10)  # hold the second frame until the test has cancelled

    monkeypatch.setattr(runner_module, "FolderRun", SlowRun)
    _open_series_and_jpgs(qtbot, window, gui_data)

    def cancel_then_release(done, total):
        window.cancel_running()
        go_on.set()

    window.reports.runner.progress.connect(cancel_then_release)
    folder = tmp_path / "cancelled"
    outcome, message = _write(qtbot, window, ReportRequest("all", tuple(window.reports.scopes()["all"]), ("pdf",), folder))
    assert outcome is None or outcome.interrupted
    assert 1 <= len(_rows(folder)) < 24
    assert not (folder / "report.pdf").exists()
    assert (folder / "results.json").exists()
    assert "cancelled" in (message or window.status.last_error).lower()
