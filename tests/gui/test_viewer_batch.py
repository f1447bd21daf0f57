"""Batch classification in the viewer: progress, results table, filters, sync, cancel, broken files, export."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt
from viewer_helpers import classify_and_wait, open_and_show

from brainscan import RESEARCH_USE_NOTICE
from brainscan.engine.results.record import frame_key

pytestmark = pytest.mark.gui


def test_a_batch_fills_the_table_and_a_broken_file_does_not_stop_it(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder, gui_data.jpgs])
    window.opening.open_paths([gui_data.broken])
    qtbot.waitUntil(lambda: len(window.controller.session) == 26, timeout=10_000)
    progress = []
    window.batch.runner.progress.connect(lambda done, total: progress.append((done, total)))
    classify_and_wait(qtbot, window)
    model = window.results_panel.table_model
    assert model.rowCount() == 26
    assert progress[-1] == (26, 26)
    errors = [row for row in model.rows if not row.ok]
    assert [row.name for row in errors] == ["cut-short.jpg"]
    assert "copy it again" in errors[0].error
    assert "1 could not be read" in window.status.current_message()
    assert window.status.progress.isHidden()
    assert window.actions_.classify.isEnabled() and not window.actions_.cancel.isEnabled()


def test_results_are_filterable_and_sortable(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.jpgs, gui_data.broken])
    qtbot.waitUntil(lambda: len(window.controller.session) == 10, timeout=10_000)
    classify_and_wait(qtbot, window)
    panel = window.results_panel
    proxy = panel.proxy
    assert proxy.rowCount() == 10
    panel.errors_only.setChecked(True)
    assert proxy.rowCount() == 1 and panel.visible_keys()[0][0].endswith("cut-short.jpg")
    panel.errors_only.setChecked(False)
    label = panel.table_model.rows[0].label
    panel.class_combo.setCurrentIndex(panel.class_combo.findData(label))
    shown = [panel.table_model.rows[panel.table_model.row_of(k)] for k in panel.visible_keys()]
    assert shown and all(row.label == label for row in shown)
    panel.class_combo.setCurrentIndex(0)
    panel.min_confidence.setValue(0.6)
    shown = [panel.table_model.rows[panel.table_model.row_of(k)] for k in panel.visible_keys()]
    assert all(row.ok and row.confidence >= 0.6 for row in shown)
    panel.min_confidence.setValue(0.0)
    panel.table.sortByColumn(4, Qt.SortOrder.DescendingOrder)
    confidences = [panel.table_model.rows[panel.table_model.row_of(k)].confidence for k in panel.visible_keys()]
    ok = [c for c in confidences if c == c]
    assert ok == sorted(ok, reverse=True)
    assert "10 of 10 shown" in panel.count_label.text() and "1 error" in panel.count_label.text()


def test_the_table_and_the_viewer_select_each_other(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)
    panel = window.results_panel
    c = window.controller
    # a row selects the image
    index = panel.proxy.index(7, 0)
    panel.table.setCurrentIndex(index)
    assert c.session.position_text() == "slice 8/16"
    qtbot.waitUntil(lambda: c.shown_key == c.session.current_key, timeout=10_000)
    # changing the image selects its row
    c.step(2)
    assert panel.selected_key() == c.session.current_key


def test_the_series_summary_points_at_the_most_suspicious_slice(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)
    rows = window.results_panel.table_model.rows
    best = max(rows, key=lambda r: r.tumour_probability)
    best_key = frame_key(best.path, best.frame)
    summary = window.series_panel
    assert summary.rowCount() == 1
    column = list(summary.HEADERS).index("Most suspicious")
    assert summary.item(0, column).text() == f"slice {best.series_index + 1}/16"
    assert window.results_panel.table_model.suspicious == {best_key}
    summary.cellClicked.emit(0, column)
    assert window.controller.session.current_key == best_key


def test_cancel_stops_the_batch_and_a_second_run_finishes_the_rest(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder, gui_data.jpgs])
    total = len(window.controller.session)
    with qtbot.waitSignal(window.batch.finished, timeout=30_000) as blocker:
        assert window.batch.classify_all()
        assert window.actions_.cancel.isEnabled() and window.status.cancel_button.isVisible()
        window.actions_.cancel.trigger()
    assert blocker.args == [True]
    done = window.results_panel.table_model.rowCount()
    assert done < total
    assert "Cancelled" in window.status.current_message()
    assert window.pool.running <= 1  # only the idle frame loader may remain
    classify_and_wait(qtbot, window)
    assert window.results_panel.table_model.rowCount() == total


def test_results_export_as_csv_with_the_notice(qtbot, window, gui_data, tmp_path):
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)
    path, series_path = window.exports.export_results_csv(tmp_path / "results.csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#") and RESEARCH_USE_NOTICE in lines[0]
    rows = list(csv.DictReader(lines[1:]))
    assert len(rows) == 16 and rows[0]["series_index"] == "0" and rows[0]["cam_method"] == "gradcam"
    series_lines = series_path.read_text(encoding="utf-8").splitlines()
    assert "most_suspicious_index" in series_lines[1]


def test_a_batch_started_at_once_still_gives_every_thumbnail(qtbot, window, gui_data):
    loaded = set()
    window.controller.thumbnailReady.connect(lambda key, _picture: loaded.add(key))
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)  # the background prefetch pauses; the batch's frames fill in
    qtbot.waitUntil(lambda: len(loaded) == 16, timeout=10_000)
    assert all(window.browser.browser_model.item(0).child(i).text().count("\n") == 1 for i in range(16))


def test_closing_everything_during_a_batch_stops_it_and_leaves_no_rows(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder, gui_data.jpgs])
    with qtbot.waitSignal(window.batch.finished, timeout=30_000) as blocker:
        assert window.batch.classify_all()
        window.actions_.close_all.trigger()
    assert blocker.args == [True]
    assert window.results_panel.table_model.rowCount() == 0
    assert not window.controller.session.results
