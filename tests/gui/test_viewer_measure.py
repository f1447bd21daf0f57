"""Measurements, regions, key images and notes in the viewer, on the real shared sagittal series: drawn with the
mouse, kept on the anatomy through rotation and flips, kept in the sidecar across close and reopen, written
into the report (HTML) and the SR."""

from __future__ import annotations

import itertools
import math
from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("PySide6")

import pydicom
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QAction, QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from viewer_helpers import open_and_show

from brainscan.engine.results.annotations import SIDECAR_NAME
from brainscan.engine.viewer.orientation import pixel_spacing
from brainscan.gui.annotation_store import annotations_folder
from brainscan.gui.report_dialog import ReportRequest

pytestmark = pytest.mark.gui


@pytest.fixture
def study(sagittal_series_dir):
    before = sorted(p.name for p in sagittal_series_dir.iterdir())
    yield sagittal_series_dir
    assert sorted(p.name for p in sagittal_series_dir.iterdir()) == before, "the study's folder was written to"


@pytest.fixture
def shown(qtbot, window, study):
    open_and_show(qtbot, window, [study])
    qtbot.waitUntil(lambda: len(window.controller.session) == 16, timeout=10_000)
    return window


def _widget_point(window, x: float, y: float) -> QPoint:
    """Where the picture's pixel coordinate (x = column, y = row) is on the view's viewport."""
    view = window.view
    scene = view.slice_item.mapToScene(QPointF(x, y))
    return view.mapFromScene(scene)


def _drag(window, *waypoints: tuple[float, float], steps: int = 8) -> None:
    """A real left-button drag on the viewport through ``waypoints`` (picture pixels); the moves carry the held
    button, which QTest.mouseMove omits."""
    viewport = window.view.viewport()
    points = [_widget_point(window, *p) for p in waypoints]
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
    for a, b in itertools.pairwise(points):
        for t in np.linspace(0, 1, steps + 1)[1:]:
            pos = QPointF(a.x() + (b.x() - a.x()) * t, a.y() + (b.y() - a.y()) * t)
            event = QMouseEvent(QEvent.Type.MouseMove, pos, viewport.mapToGlobal(pos), Qt.MouseButton.NoButton,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
            QApplication.sendEvent(viewport, event)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1])


def test_every_measure_action_has_its_own_shortcut_and_a_tooltip(window):
    m = window.measurements
    toggle = m.dock.toggleViewAction()
    mine = [*m.actions.all, toggle]
    keys = [action.shortcut().toString() for action in mine]
    assert keys == ["D", "B", "E", "Shift+D", "K", "N", "Del", "Ctrl+Shift+M"]
    assert all(action.toolTip() and action.statusTip() for action in mine)
    others = {a.shortcut().toString() for a in window.findChildren(QAction) if a not in mine and not a.shortcut().isEmpty()}
    assert not set(keys) & others, set(keys) & others
    assert [a.text() for a in m.actions.menu.actions() if a.text()][:4] == ["&Distance", "&Rectangle", "&Ellipse",
                                                                           "&Freehand"]


def test_a_distance_drawn_with_the_mouse_shows_its_length_in_mm(qtbot, shown):
    w = shown
    m = w.measurements
    m.actions.tools["line"].trigger()
    assert m.overlay.tool == "line" and m.actions.tools["line"].toolTip().endswith("(D)")
    _drag(w, (40, 60), (180, 60))
    qtbot.waitUntil(lambda: len(m.model.annotations.measurements) == 1, timeout=5_000)
    line = m.model.annotations.measurements[0]
    assert line.kind == "line" and line.frame == w.controller.session.current_key
    (x0, y0), (x1, y1) = line.points
    assert abs(x0 - 40) < 1 and abs(y0 - 60) < 1 and abs(x1 - 180) < 1 and abs(y1 - 60) < 1
    spacing = pixel_spacing(w.controller.current_frame.tags)
    assert line.figures.unit == "mm"
    assert line.figures.length == pytest.approx(math.hypot((x1 - x0) * spacing[1], (y1 - y0) * spacing[0]))
    assert line.figures.length == pytest.approx(140 * spacing[1], abs=2 * spacing[1])
    _roi, label = m.overlay.shapes[line.ident]
    assert label.textItem.toPlainText() == f"{line.figures.length:.1f} mm"
    assert m.panel.table.item(0, 2).text() == f"{line.figures.length:.1f} mm"
    # Esc leaves the tool; a drag then pans instead of drawing
    w.view.setFocus()
    QTest.keyClick(w.view, Qt.Key.Key_Escape)
    assert m.overlay.tool is None and not m.actions.tools["line"].isChecked()
    _drag(w, (60, 100), (120, 100))
    assert len(m.model.annotations.measurements) == 1


def test_a_freehand_region_drawn_with_the_mouse_measures_its_area(qtbot, shown):
    w = shown
    m = w.measurements
    m.actions.tools["freehand"].trigger()
    _drag(w, (60, 60), (120, 60), (120, 100), (60, 100), (60, 61))
    qtbot.waitUntil(lambda: len(m.model.annotations.measurements) == 1, timeout=5_000)
    region = m.model.annotations.measurements[0]
    spacing = pixel_spacing(w.controller.current_frame.tags)
    assert region.kind == "freehand" and len(region.points) >= 8
    assert region.figures.area == pytest.approx(60 * 40 * spacing[0] * spacing[1], rel=0.05)
    assert region.figures.pixels == pytest.approx(2400, rel=0.05)
    values = w.controller.current_frame.values
    assert region.figures.mean == pytest.approx(values[61:100, 61:120].mean(), rel=0.05)


def test_regions_stay_on_the_same_pixels_through_rotation_and_flips(qtbot, shown):
    w = shown
    m = w.measurements
    ellipse = m.overlay.add("ellipse", ((100, 90), (140, 120)))
    rectangle = m.overlay.add("rectangle", ((30, 40), (60, 70)))
    assert ellipse.figures.pixels > 0 and rectangle.figures.pixels == 900
    slice_item = w.view.slice_item

    def covered(ident):  # the ROI's drawn outline, in the picture's pixels
        roi, _label = m.overlay.shapes[ident]
        rect = slice_item.mapFromScene(roi.mapToScene(roi.boundingRect())).boundingRect()
        return rect.left(), rect.top(), rect.right(), rect.bottom()

    before = {i: covered(i) for i in (ellipse.ident, rectangle.ident)}
    assert before[rectangle.ident] == pytest.approx((30, 40, 60, 70), abs=0.01)
    roi, _label = m.overlay.shapes[rectangle.ident]
    scene_before = roi.mapToScene(QPointF(0, 0))
    a = w.view_tools.actions
    for action in (a.rotate, a.flip_h, a.rotate):
        action.trigger()
        for ident, rect in before.items():
            assert covered(ident) == pytest.approx(rect, abs=0.01)
    assert roi.mapToScene(QPointF(0, 0)) != scene_before  # it moved on screen, with the picture
    assert m.model.measurement(ellipse.ident).figures == ellipse.figures
    # dragging a handle re-measures
    handle = roi.handles[0]["item"]
    roi.movePoint(handle, QPointF(70, 80), finish=True)
    moved = m.model.measurement(rectangle.ident)
    assert moved.points == ((30.0, 40.0), (70.0, 80.0)) and moved.figures.pixels == 1600
    # another slice shows none of them; coming back shows both
    w.controller.step(1)
    qtbot.waitUntil(lambda: w.controller.shown_key == w.controller.session.current_key, timeout=10_000)
    assert m.overlay.shapes == {}
    w.controller.step(-1)
    qtbot.waitUntil(lambda: len(m.overlay.shapes) == 2, timeout=10_000)


def test_key_images_notes_and_measurements_come_back_when_the_study_is_reopened(qtbot, shown, study):
    w = shown
    m = w.measurements
    first = w.controller.session.current_key
    m.overlay.add("line", ((50, 50), (150, 150)))
    m.actions.key_image.trigger()
    assert m.model.is_key(first) and m.actions.key_image.isChecked()
    table = m.panel.table
    table.item(0, 3).setText("corpus callosum intact")  # the note, edited in the dock
    assert m.model.annotations.key_image(first).note == "corpus callosum intact"
    # the shared folder is read-only: the sidecar is beside the settings, named by the study
    stored = sorted(annotations_folder(w.settings).glob("annotations-*.json"))
    assert len(stored) == 1 and "corpus callosum intact" in stored[0].read_text(encoding="utf-8")
    assert not (study / SIDECAR_NAME).exists()
    kept = m.model.annotations
    w.close_all()
    assert not m.model.annotations and table.rowCount() == 0
    open_and_show(qtbot, w, [study])
    qtbot.waitUntil(lambda: bool(m.model.annotations), timeout=10_000)
    assert m.model.annotations == kept
    # the dock goes to the slice, Delete removes the selected measurement
    w.controller.step(3)
    table.cellClicked.emit(1, 0)
    assert w.controller.session.current_key == first and m.model.selected == kept.measurements[0].ident
    m.actions.delete.trigger()
    assert not m.model.annotations.measurements and m.model.annotations.key_images


class _Cells(HTMLParser):
    """The cells of the HTML table of class ``measurements``, and the notes of the key images."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.notes: list[str] = []
        self._in_table = self._in_cell = self._in_note = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("class") == "measurements":
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._in_cell = True
            self.rows[-1].append("")
        elif tag == "div" and attrs.get("class") == "note":
            self._in_note = True
            self.notes.append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif tag in ("td", "th"):
            self._in_cell = False
        elif tag == "div":
            self._in_note = False

    def handle_data(self, data):
        if self._in_cell:
            self.rows[-1][-1] += data
        elif self._in_note:
            self.notes[-1] += data


def test_write_report_carries_the_measurements_and_key_images(qtbot, shown, tmp_path):
    w = shown
    m = w.measurements
    line = m.overlay.add("line", ((40, 60), (180, 60)))
    region = m.overlay.add("ellipse", ((100, 90), (140, 120)))
    m.model.relabel(region.ident, "ventricle")
    m.edit_note("midline slice")
    series = w.reports.scopes()["series"]
    folder = tmp_path / "report"
    with qtbot.waitSignal(w.reports.finished, timeout=60_000) as blocker:
        assert w.reports.write(ReportRequest("series", tuple(series), ("html", "dicom"), folder))
    _outcome, message = blocker.args
    assert message == ""
    cells = _Cells()
    cells.feed((folder / "report.html").read_text(encoding="utf-8"))
    header, *rows = cells.rows
    assert header[:5] == ["image", "kind", "label", "length", "area"]
    assert [row[1] for row in rows] == ["Distance", "Ellipse"]
    assert rows[0][3] == f"{line.figures.length:.1f} mm"
    assert rows[1][2] == "ventricle" and rows[1][4] == f"{region.figures.area:.1f} mm²"
    assert rows[1][5] == f"{region.figures.mean:.1f}"
    assert cells.notes == ["midline slice"]
    assert "<div class='thumb keyimage'><img alt='key image' src='data:image/png;base64," in (
        folder / "report.html").read_text(encoding="utf-8")
    (report,) = (folder / "dicom").glob("SR-*.dcm")
    found = []

    def walk(items):
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
            if item.ValueType == "NUM":
                value = item.MeasuredValueSequence[0]
                found.append((name, float(value.NumericValue), value.MeasurementUnitsCodeSequence[0].CodeValue))
            elif item.ValueType == "TEXT":
                found.append((name, str(item.TextValue), "text"))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(pydicom.dcmread(report).ContentSequence)
    assert ("Length", pytest.approx(line.figures.length, abs=1e-3), "mm") in found
    assert ("Area", pytest.approx(region.figures.area, abs=1e-3), "mm2") in found
    assert ("Key Object Description", "midline slice", "text") in found
