"""Frames the model should not be trusted on: unmistakable in the table, on the slice and in the summary."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt
from viewer_helpers import classify_and_wait, open_and_show

from brainscan.engine.results.names import display_name

pytestmark = pytest.mark.gui


def _classified(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder])
    classify_and_wait(qtbot, window)
    return window.controller.session, window.results_panel


def _replace(window, key, **changes):
    """Replace the session's record of ``key`` and refresh as the viewer does after a classification."""
    session = window.controller.session
    session.add_result(dataclasses.replace(session.results[key], **changes))
    window.batch.show_records([key])


def _column(model, name):
    return model.columns.index(name)


def test_a_frame_out_of_domain_is_greyed_in_the_table_with_its_reason(qtbot, window, gui_data):
    session, panel = _classified(qtbot, window, gui_data)
    model = panel.table_model
    key = model.keys[2]
    label = session.results[key].label
    _replace(window, key, in_domain=False, domain_reason="almost no foreground")
    row = model.row_of(key)
    cell = model.index(row, 3)
    assert cell.data() == display_name(label)  # the class is kept for research (by its display name)
    assert cell.data(Qt.ItemDataRole.FontRole).italic()
    assert cell.data(Qt.ItemDataRole.ForegroundRole).name() == "#8a8f96"
    assert "almost no foreground" in cell.data(Qt.ItemDataRole.ToolTipRole)
    assert model.index(row, _column(model, "Domain")).data() == "OUT: almost no foreground"
    other = model.row_of(model.keys[3])
    assert model.index(other, 3).data(Qt.ItemDataRole.FontRole) is None
    assert "1 out of domain" in panel.count_label.text()


def test_the_slice_carries_a_badge_while_its_frame_is_out_of_domain(qtbot, window, gui_data):
    session, _panel = _classified(qtbot, window, gui_data)
    view = window.controller.view
    key = session.current_key
    assert view.domain_badge.isHidden()
    _replace(window, key, in_domain=False, domain_reason="a DICOM mosaic")
    assert view.domain_badge.isVisible()
    assert view.domain_badge.text() == "OUT OF DOMAIN — a DICOM mosaic"
    badge, finding = view.domain_badge.geometry(), view.finding_label.geometry()
    assert not badge.intersects(finding) and view.rect().contains(badge)
    window.controller.step(1)  # the next slice is in domain: no badge
    qtbot.waitUntil(lambda: window.controller.shown_key == session.current_key, timeout=10_000)
    assert view.domain_badge.isHidden()


def test_the_domain_filter_keeps_only_rows_in_or_out_of_domain(qtbot, window, gui_data):
    _session, panel = _classified(qtbot, window, gui_data)
    keys = list(panel.table_model.keys)
    for key in keys:
        _replace(window, key, in_domain=True)
    outside = {keys[1], keys[5]}
    for key in outside:
        _replace(window, key, in_domain=False, domain_reason="blank picture")
    _replace(window, keys[7], in_domain=None)  # not judged: neither in nor out
    panel.domain_combo.setCurrentIndex(panel.domain_combo.findData("out"))
    assert set(panel.visible_keys()) == outside
    panel.domain_combo.setCurrentIndex(panel.domain_combo.findData("in"))
    assert set(panel.visible_keys()) == set(keys) - outside - {keys[7]}
    panel.domain_combo.setCurrentIndex(panel.domain_combo.findData(""))
    assert len(panel.visible_keys()) == 16


def test_a_heat_map_mostly_outside_the_head_is_flagged_in_the_table_and_on_the_slice(qtbot, window, gui_data):
    session, panel = _classified(qtbot, window, gui_data)
    model = panel.table_model
    view = window.controller.view
    current = session.current_key
    calm = next(key for key in model.keys if key != current)
    _replace(window, current, heat_outside=0.78)
    _replace(window, calm, heat_outside=0.2)
    column = _column(model, "Heat outside")
    hot = model.index(model.row_of(current), column)
    cool = model.index(model.row_of(calm), column)
    assert (hot.data(), cool.data()) == ("78%", "20%")
    assert hot.data(Qt.ItemDataRole.ForegroundRole).name() == "#e8870e"
    assert cool.data(Qt.ItemDataRole.ForegroundRole) is None
    assert view.heat_warning.isVisible() and view.heat_warning.text() == "heat mostly outside the head: 78%"
    assert view.domain_badge.isHidden()
    _replace(window, current, heat_outside=0.4)
    assert view.heat_warning.isHidden()


def test_the_series_summary_counts_its_slices_out_of_domain(qtbot, window, gui_data):
    _session, panel = _classified(qtbot, window, gui_data)
    summary = window.series_panel
    column = list(summary.HEADERS).index("Out of domain")
    assert summary.item(0, column).text() == "0"
    for key in panel.table_model.keys[:3]:
        _replace(window, key, in_domain=False, domain_reason="blank picture")
    assert summary.item(0, column).text() == "3"


def test_the_series_summary_shows_the_series_verdict(qtbot, window, gui_data):
    _session, panel = _classified(qtbot, window, gui_data)
    summary = window.series_panel
    column = list(summary.HEADERS).index("Verdict")
    keys = panel.table_model.keys
    for key in keys:
        _replace(window, key, label="notumor", in_domain=True)
    assert summary.item(0, column).text() == "No tumour"
    for key in keys[:3]:
        _replace(window, key, label="pituitary", probabilities={"glioma": 0.01, "meningioma": 0.01, "notumor": 0.01,
                                                                "pituitary": 0.97})
    assert summary.item(0, column).text() == "Pituitary"
    assert summary.item(0, column).toolTip() == f"Pituitary: 3 of {len(keys)} in-domain slices at p >= 0.90"
    for key in keys[:-3]:  # 3 of 16 in domain, 4 needed
        _replace(window, key, in_domain=False, domain_reason="blank picture")
    assert summary.item(0, column).text() == "Out of domain"
    assert summary.item(0, column).foreground().color().name() == "#e8870e"
