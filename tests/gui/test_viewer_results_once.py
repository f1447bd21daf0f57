"""The viewer keeps each result once: the session's record, which the table, the summary and the export read."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from viewer_helpers import classify_and_wait, open_and_show

from brainscan.engine.results.record import FrameRecord, frame_key
from brainscan.engine.results.rows import read_records

pytestmark = pytest.mark.gui


def test_the_table_shows_the_sessions_own_records(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder, gui_data.broken])
    qtbot.waitUntil(lambda: len(window.controller.session) == 18, timeout=10_000)
    classify_and_wait(qtbot, window)
    session = window.controller.session
    model = window.results_panel.table_model
    assert model.rowCount() == len(session.results) == 18
    assert all(isinstance(record, FrameRecord) for record in session.results.values())
    for row, key in enumerate(model.keys):
        assert model.record(row) is session.results[key]  # the same object, not a copy
        assert key == frame_key(session.results[key].path, session.results[key].frame)
    assert [id(r) for r in model.rows] == [id(r) for r in session.results.values()]
    assert session.predictions.keys() == {k for k, r in session.results.items() if r.ok}


def test_a_record_replaced_in_the_session_is_what_the_table_shows(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)
    session = window.controller.session
    model = window.results_panel.table_model
    key = model.keys[0]
    relabelled = FrameRecord(**{**vars(session.results[key]), "label": "relabelled"})
    session.add_result(relabelled)
    model.upsert([key])
    assert model.index(0, 3).data() == "Relabelled" and model.rowCount() == 16


def test_the_export_writes_the_records_the_table_shows(qtbot, window, gui_data, tmp_path):
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)
    path, _series = window.exports.export_results_csv(tmp_path / "results.csv")
    body = tmp_path / "body.csv"
    body.write_bytes(path.read_bytes().split(b"\n", 1)[1])  # the line after the notice
    classes = window.models.classifier.classes
    exported = list(read_records(body, classes))
    shown = window.results_panel.table_model.rows
    assert [(r.path, r.frame, r.label, r.cam_method) for r in exported] == \
        [(r.path, r.frame, r.label, r.cam_method) for r in shown]
    assert all(r.cam_method == "gradcam" for r in exported)
