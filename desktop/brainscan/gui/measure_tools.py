"""Measurements, regions, key images and notes in the viewer (issue 15, features 1 and 6).

The Measure menu (and toolbar) holds four tools, each a checkable action: *Distance* (D), *Rectangle* (B),
*Ellipse* (E) and *Freehand* (Shift+D). With a tool on, a left-drag on the slice draws its shape (the
freehand outline follows the mouse); right-drag still sets the window; Esc leaves the tool. Each shape is a
pyqtgraph ROI whose handles move it and a label with its figures (mm, mm², mean, sd, min, max): they are
children of the slice layer, so they sit on the anatomy through rotation, flips and zoom. *Key image* (K)
marks the slice, *Note…* (N) gives it a note, *Delete measurement* (Del) removes the selected one.

The state has one owner, the evented :class:`~brainscan.engine.viewer.annotations.AnnotationsModel`; the
shapes on the slice, the *Measurements* dock and the sidecar file (:mod:`brainscan.gui.annotation_store`)
follow it. The figures are computed in the engine (:func:`~brainscan.engine.results.annotations.measure`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence, QPainterPath, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QGraphicsPathItem,
    QHeaderView,
    QInputDialog,
    QMenu,
    QTableWidget,
    QTableWidgetItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from brainscan.engine.results.annotations import (
    KIND_NAMES,
    Annotations,
    Figures,
    Measurement,
    frame_values,
    measure,
)
from brainscan.engine.results.record import FrameKey
from brainscan.engine.viewer.annotations import AnnotationsModel
from brainscan.engine.viewer.orientation import pixel_spacing
from brainscan.gui.annotation_store import AnnotationStore
from brainscan.gui.binding import follow
from brainscan.gui.slice_view import SliceView
from brainscan.gui.viewer_controller import ViewerController
from brainscan.gui.window_actions import window_action

if TYPE_CHECKING:
    from brainscan.gui.main_window import MainWindow

TOOLS = ("line", "rectangle", "ellipse", "freehand")
SHAPE_Z = 20  # above the heat map (10)
_COLOUR = QColor("#4fd1ff")
_SELECTED = QColor("#ffe27a")
_FREEHAND_STEP = 2.0  # picture pixels between the freehand outline's points
_FREEHAND_MAX_POINTS = 200


def shape_points(roi: pg.ROI, kind: str) -> tuple[tuple[float, float], ...]:
    """A shape's points in the picture's pixels (its parent, the slice layer's, coordinates)."""
    if kind in ("rectangle", "ellipse"):
        pos, size = roi.pos(), roi.size()
        x0, x1 = sorted((pos.x(), pos.x() + size.x()))
        y0, y1 = sorted((pos.y(), pos.y() + size.y()))
        return ((x0, y0), (x1, y1))
    if kind == "line":
        local = [h["item"].pos() for h in roi.handles[:2]]
    else:
        local = [QPointF(*p) if not isinstance(p, QPointF) else p for p in roi.getState()["points"]]
    return tuple((roi.mapToParent(p).x(), roi.mapToParent(p).y()) for p in local)


def outline(kind: str, points) -> QPainterPath:
    """The outline of a shape being drawn (picture pixels): a line, a box, an ellipse or the freehand path."""
    path = QPainterPath()
    if kind in ("rectangle", "ellipse"):
        (x0, y0), (x1, y1) = points[0], points[-1]
        box = QRectF(QPointF(min(x0, x1), min(y0, y1)), QPointF(max(x0, x1), max(y0, y1)))
        if kind == "rectangle":
            path.addRect(box)
        else:
            path.addEllipse(box)
        return path
    ends = points if kind == "freehand" else (points[0], points[-1])
    path.moveTo(QPointF(*ends[0]))
    for point in ends[1:]:
        path.lineTo(QPointF(*point))
    return path


class _AxisEllipseROI(pg.EllipseROI):
    """An ellipse with its axes along the picture's rows and columns: scale handles only (no rotation)."""

    def _addHandles(self) -> None:
        self.addScaleHandle([1, 1], [0, 0])
        self.addScaleHandle([0, 0], [1, 1])


def make_roi(kind: str, points, pen: QPen) -> pg.ROI:
    """The pyqtgraph ROI of a shape with ``points`` (picture pixels)."""
    if kind == "line":
        return pg.LineSegmentROI(positions=[list(points[0]), list(points[1])], pen=pen)
    if kind == "freehand":
        return pg.PolyLineROI([list(p) for p in points], closed=True, pen=pen)
    (x0, y0), (x1, y1) = points
    pos, size = (min(x0, x1), min(y0, y1)), (max(abs(x1 - x0), 0.5), max(abs(y1 - y0), 0.5))
    if kind == "ellipse":
        return _AxisEllipseROI(pos, size, pen=pen)
    roi = pg.RectROI(pos, size, pen=pen)
    roi.addScaleHandle([0, 0], [1, 1])
    return roi


class DrawCapture(pg.GraphicsObject):
    """An invisible item over the picture that turns left-drags into shapes while a tool is on.

    A child of the slice layer: the positions it reports are the picture's pixels whatever the view's
    rotation or flips. Other buttons are left to the view (right-drag sets the window).
    """

    def __init__(self, overlay: MeasureOverlay) -> None:
        super().__init__()
        self.overlay = overlay
        self._rect = QRectF()
        self.setZValue(SHAPE_Z - 1)  # under the shapes: their handles stay draggable with a tool on
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)

    def set_size(self, width: int, height: int) -> None:
        self.prepareGeometryChange()
        self._rect = QRectF(0, 0, width, height)

    def boundingRect(self) -> QRectF:
        return self._rect

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addRect(self._rect)
        return path

    def paint(self, painter, option, widget=None) -> None:
        return

    def mouseDragEvent(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or self.overlay.tool is None:
            ev.ignore()
            return
        ev.accept()
        start, now = ev.buttonDownPos(), ev.pos()
        if ev.isStart():
            self.overlay.begin((start.x(), start.y()))
        self.overlay.extend((now.x(), now.y()))
        if ev.isFinish():
            self.overlay.finish()

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton and self.overlay.tool is not None:
            ev.accept()  # a click is not a shape: nothing drawn, the view does not pan


class MeasureOverlay(QObject):
    """Draws the current slice's shapes and their labels, and the tools' drawing (see the module docstring).

    Attributes
    ----------
    shapes:
        ident -> (ROI, label) of the shapes on screen.
    tool:
        The tool on (one of :data:`TOOLS`) or None.
    """

    toolChanged = Signal(object)

    def __init__(self, view: SliceView, controller: ViewerController, model: AnnotationsModel,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.controller = controller
        self.model = model
        self.tool: str | None = None
        self.shapes: dict[str, tuple[pg.ROI, pg.TextItem]] = {}
        self._drawing: list[tuple[float, float]] = []
        self._preview: QGraphicsPathItem | None = None  # made once, reused by every drawing
        self._syncing = False
        self.capture = DrawCapture(self)
        self.capture.setParentItem(view.slice_item)
        self.capture.setVisible(False)
        follow(self, model.events.changed, lambda _value: self.sync())
        controller.frameShown.connect(lambda _key: self.sync())
        controller.currentChanged.connect(lambda _key: self.sync())
        view.installEventFilter(self)

    # -- the frame on screen ------------------------------------------------------------------------
    def frame_key(self) -> FrameKey | None:
        c = self.controller
        if c.shown_key is None or c.shown_key != c.session.current_key:
            return None
        return c.shown_key

    def figures(self, kind: str, points) -> Figures | None:
        frame = self.controller.current_frame
        if frame is None or self.frame_key() is None:
            return None
        return measure(kind, points, frame_values(frame.values, frame.picture), pixel_spacing(frame.tags))

    # -- tools -------------------------------------------------------------------------------------
    def set_tool(self, tool: str | None) -> None:
        if tool == self.tool:
            return
        self._cancel_drawing()
        self.tool = tool
        self.capture.setVisible(tool is not None)
        self._size_capture()
        self.view.setCursor(Qt.CursorShape.CrossCursor if tool else Qt.CursorShape.ArrowCursor)
        self.toolChanged.emit(tool)

    def _size_capture(self) -> None:
        image = self.view.slice_item.image
        if image is not None:
            self.capture.set_size(image.shape[1], image.shape[0])

    def begin(self, point: tuple[float, float]) -> None:
        self._cancel_drawing()
        if self.frame_key() is None:
            return
        self._drawing = [point]

    def extend(self, point: tuple[float, float]) -> None:
        if not self._drawing or self.tool is None:
            return
        if self.tool == "freehand":
            last = self._drawing[-1]
            if (point[0] - last[0]) ** 2 + (point[1] - last[1]) ** 2 >= _FREEHAND_STEP ** 2:
                self._drawing.append(point)
        else:
            self._drawing[1:] = [point]
        self._show_preview()

    def _show_preview(self) -> None:
        """The shape being drawn: one plain path item, redrawn at each move (no ROI made and dropped per move)."""
        points = self._drawing
        if len(points) < 2 or self.tool is None:
            return
        if self._preview is None:
            self._preview = QGraphicsPathItem(self.view.slice_item)
            pen = QPen(_SELECTED, 1.5, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            self._preview.setPen(pen)
            self._preview.setZValue(SHAPE_Z)
        self._preview.setPath(outline(self.tool, points))
        self._preview.setVisible(True)

    def finish(self) -> Measurement | None:
        """The shape drawn so far becomes a measurement of the frame on screen (None when too small)."""
        points, kind, key = self._drawing, self.tool, self.frame_key()
        self._cancel_drawing()
        if kind is None or key is None or len(points) < 2:
            return None
        if kind == "freehand":
            points = points[:: max(1, len(points) // _FREEHAND_MAX_POINTS + 1)] if len(points) > _FREEHAND_MAX_POINTS \
                else points
            if len(points) < 3:
                return None
        elif max(abs(points[1][0] - points[0][0]), abs(points[1][1] - points[0][1])) < 1.0:
            return None  # under a pixel: a slip, not a shape
        return self.add(kind, tuple(points[:2] if kind != "freehand" else points))

    def add(self, kind: str, points) -> Measurement | None:
        """A measurement of ``kind`` with ``points`` (picture pixels) on the frame on screen (the tools' API)."""
        key = self.frame_key()
        if key is None:
            return None
        points = tuple((float(x), float(y)) for x, y in points)
        return self.model.add(kind, key, points, self.figures(kind, points))

    def _cancel_drawing(self) -> None:
        self._drawing = []
        if self._preview is not None:
            self._preview.setPath(QPainterPath())
            self._preview.setVisible(False)

    # -- the shapes on screen ------------------------------------------------------------------------
    def sync(self) -> None:
        """Show the shapes of the frame on screen as the model has them; nothing of other frames."""
        if self._syncing:
            return
        self._syncing = True
        try:
            self._size_capture()
            key = self.frame_key()
            wanted = {m.ident: m for m in self.model.annotations.on_frame(key)} if key is not None else {}
            for ident in list(self.shapes):
                roi, _label = self.shapes[ident]
                kept = wanted.get(ident)
                if kept is None or shape_points(roi, kept.kind) != self._rounded(kept):
                    self._remove(ident)
            for ident, measurement in wanted.items():
                if ident not in self.shapes:
                    self._add_shape(measurement)
                self._style(ident, measurement)
        finally:
            self._syncing = False

    @staticmethod
    def _rounded(measurement: Measurement):
        return tuple((float(x), float(y)) for x, y in measurement.points)

    def _add_shape(self, measurement: Measurement) -> None:
        roi = make_roi(measurement.kind, measurement.points, pg.mkPen(_COLOUR, width=1.5))
        roi.setParentItem(self.view.slice_item)
        roi.setZValue(SHAPE_Z)
        roi.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
        label = pg.TextItem("", color=_COLOUR, fill=pg.mkBrush(0, 0, 0, 150), anchor=(0, 0))
        label.setParentItem(self.view.slice_item)
        label.setZValue(SHAPE_Z + 1)
        ident = measurement.ident
        roi.sigRegionChanged.connect(lambda _roi, i=ident: self._on_dragging(i))
        roi.sigRegionChangeFinished.connect(lambda _roi, i=ident: self._on_moved(i))
        roi.sigRegionChangeStarted.connect(lambda _roi, i=ident: self.model.select(i))
        roi.sigClicked.connect(lambda _roi, _ev, i=ident: self.model.select(i))
        self.shapes[ident] = (roi, label)

    def _style(self, ident: str, measurement: Measurement) -> None:
        roi, label = self.shapes[ident]
        colour = _SELECTED if ident == self.model.selected else _COLOUR
        roi.setPen(pg.mkPen(colour, width=2 if ident == self.model.selected else 1.5))
        self._label(label, measurement.kind, shape_points(roi, measurement.kind), measurement.figures,
                    measurement.label, colour)

    @staticmethod
    def _label(label: pg.TextItem, kind: str, points, figures: Figures | None, text: str, colour: QColor) -> None:
        figures_text = figures.text() if figures is not None else ""
        if kind != "line" and figures is not None and figures.pixels:
            figures_text = (f"{figures.area:.1f} {figures.unit}²\nmean {figures.mean:.1f} sd {figures.sd:.1f}\n"
                            f"min {figures.minimum:g} max {figures.maximum:g}")
        label.setText("\n".join(t for t in (text, figures_text) if t), color=colour)
        x = max(p[0] for p in points)
        y = max(p[1] for p in points)
        label.setPos(x + 1, y + 1)

    def _remove(self, ident: str) -> None:
        roi, label = self.shapes.pop(ident)
        for item in (roi, label):
            item.setParentItem(None)
            if item.scene() is not None:
                item.scene().removeItem(item)

    def _on_dragging(self, ident: str) -> None:
        """A handle or the shape is being dragged: its label follows with live figures."""
        if self._syncing or ident not in self.shapes:
            return
        measurement = self.model.measurement(ident)
        if measurement is None:
            return
        roi, label = self.shapes[ident]
        points = shape_points(roi, measurement.kind)
        self._label(label, measurement.kind, points, self.figures(measurement.kind, points), measurement.label,
                    _SELECTED)

    def _on_moved(self, ident: str) -> None:
        """A drag ended: the model gets the new points and figures (and the sidecar is written)."""
        if self._syncing or ident not in self.shapes:
            return
        measurement = self.model.measurement(ident)
        if measurement is None:
            return
        roi, _label = self.shapes[ident]
        points = shape_points(roi, measurement.kind)
        if points != self._rounded(measurement):
            self.model.move(ident, points, self.figures(measurement.kind, points))

    # -- Esc leaves the tool ------------------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        keys = (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress)
        if self.tool is not None and event.type() in keys and event.key() == Qt.Key.Key_Escape:
            event.accept()
            if event.type() == QEvent.Type.KeyPress:
                self.set_tool(None)
            return True
        return False


class MeasurementsPanel(QWidget):
    """The *Measurements* dock: the study's key images and measurements; a click goes to the slice, the last
    column (note of a key image, label of a measurement) is editable, Delete removes the row's record."""

    frameActivated = Signal(object)
    COLUMNS = ("Image", "What", "Figures", "Note / label")

    def __init__(self, model: AnnotationsModel, describe: Callable[[FrameKey], str] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.describe = describe or self.frame_text
        self.toolbar = QToolBar("Measure")
        self.toolbar.setObjectName("measureToolbar")
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setObjectName("measurementsTable")
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed
                                   | QAbstractItemView.EditTrigger.SelectedClicked)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setToolTip("Key images and measurements of what is open: click to go to the slice, double-click "
                              "the last column to edit the note or label, Delete removes the selected one")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.table)
        self.rows: list[tuple[str, object]] = []  # ("key", frame) or ("measurement", ident)
        self._filling = False
        self.table.cellClicked.connect(self._on_clicked)
        self.table.itemChanged.connect(self._on_edited)
        follow(self, model.events.changed, lambda _value: self.refresh())
        self.refresh()

    @staticmethod
    def frame_text(frame: FrameKey) -> str:
        path, number = frame
        return f"{Path(path).name} [frame {number}]" if number else Path(path).name

    def refresh(self) -> None:
        annotations: Annotations = self.model.annotations
        self._filling = True
        try:
            self.rows = [("key", k.frame) for k in annotations.key_images]
            self.rows += [("measurement", m.ident) for m in annotations.measurements]
            self.table.setRowCount(len(self.rows))
            for row, key_image in enumerate(annotations.key_images):
                self._set_row(row, self.describe(key_image.frame), "Key image", "", key_image.note,
                              key_image.frame[0])
            offset = len(annotations.key_images)
            selected_row = -1
            for row, m in enumerate(annotations.measurements, start=offset):
                self._set_row(row, self.describe(m.frame), KIND_NAMES[m.kind],
                              m.figures.text() if m.figures else "", m.label, m.frame[0])
                if m.ident == self.model.selected:
                    selected_row = row
            if selected_row >= 0:
                self.table.selectRow(selected_row)
        finally:
            self._filling = False

    def _set_row(self, row: int, image: str, what: str, figures: str, text: str, path: str) -> None:
        for column, value in enumerate((image, what, figures, text)):
            item = QTableWidgetItem(value)
            flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
            if column == 3:
                flags |= Qt.ItemFlag.ItemIsEditable
            item.setFlags(flags)
            item.setToolTip(path if column == 0 else value)
            self.table.setItem(row, column, item)

    def record_at(self, row: int) -> tuple[str, object] | None:
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def _on_clicked(self, row: int, _column: int) -> None:
        found = self.record_at(row)
        if found is None:
            return
        what, value = found
        if what == "key":
            self.frameActivated.emit(value)
            return
        measurement = self.model.measurement(str(value))
        if measurement is not None:
            self.frameActivated.emit(measurement.frame)
            self.model.select(measurement.ident)

    def _on_edited(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 3:
            return
        found = self.record_at(item.row())
        if found is None:
            return
        what, value = found
        if what == "key":
            self.model.set_note(value, item.text())  # type: ignore[arg-type]
        else:
            self.model.relabel(str(value), item.text())

    def delete_selected(self) -> bool:
        """Remove the selected row's record (a key image is unmarked, its note with it)."""
        rows = self.table.selectionModel().selectedRows()
        found = self.record_at(rows[0].row()) if rows else None
        if found is None:
            return False
        what, value = found
        if what == "key":
            self.model.toggle_key(value)  # type: ignore[arg-type]
            return True
        return self.model.delete(str(value))


class MeasureActions:
    """The Measure menu: the four tools (exclusive, optional), key image, note, delete (the Measurements
    dock's toolbar holds them too; the main toolbar is full at 1280 pixels)."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.tools: dict[str, QAction] = {}
        tips = {
            "line": ("&Distance", "D", "Measure a distance in mm: drag from one end to the other (Esc leaves the tool)"),
            "rectangle": ("&Rectangle", "B", "A rectangular region: its area in mm² and the mean, sd, min and max of "
                                             "its pixels (drag a corner to the other; Esc leaves the tool)"),
            "ellipse": ("&Ellipse", "E", "An elliptic region: area in mm² and intensity statistics (drag its "
                                         "bounding box; Esc leaves the tool)"),
            "freehand": ("&Freehand", "Shift+D", "A freehand region: drag around it; area in mm² and intensity "
                                                 "statistics (Esc leaves the tool)"),
        }
        self.group = QActionGroup(window)
        self.group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        for kind, (text, keys, tip) in tips.items():
            action = window_action(window, text, keys, tip)
            action.setCheckable(True)
            action.setData(kind)
            self.group.addAction(action)
            self.tools[kind] = action
        self.key_image = window_action(window, "&Key image", "K", "Mark this slice as a key image (or unmark it); "
                                       "key images and their notes go into the reports")
        self.key_image.setCheckable(True)
        self.note = window_action(window, "&Note…", "N", "Write a note on this slice (it becomes a key image)")
        self.delete = window_action(window, "De&lete measurement", "Del",
                                    "Delete the selected measurement, or the key image selected in the panel")
        menu = QMenu("&Measure", window)
        window.menuBar().insertMenu(window.actions_.panels_menu.menuAction(), menu)  # before Panels and Help
        menu.setToolTipsVisible(True)
        for action in self.tools.values():
            menu.addAction(action)
        menu.addSeparator()
        for action in (self.key_image, self.note, self.delete):
            menu.addAction(action)
        self.menu = menu

    @property
    def all(self) -> tuple[QAction, ...]:
        return (*self.tools.values(), self.key_image, self.note, self.delete)


class Measurements(QObject):
    """The feature put together: model, overlay, dock, actions and the sidecar store (see the module docstring).

    Attributes
    ----------
    model, overlay, panel, dock, actions, store:
        :class:`AnnotationsModel`, :class:`MeasureOverlay`, :class:`MeasurementsPanel`, its dock,
        :class:`MeasureActions`, :class:`~brainscan.gui.annotation_store.AnnotationStore`.
    """

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        c = window.controller
        self.model = AnnotationsModel()
        self.store = AnnotationStore(self.model, c, window.settings, self)
        self.overlay = MeasureOverlay(window.view, c, self.model, self)
        self.panel = MeasurementsPanel(self.model, self.describe)
        self.actions = MeasureActions(window)
        self.panel.toolbar.addActions(list(self.actions.all))
        self.dock = self._dock()
        a = self.actions
        for kind, action in a.tools.items():
            action.toggled.connect(lambda on, k=kind: self._on_tool_toggled(k, on))
        self.overlay.toolChanged.connect(self._on_tool_changed)
        a.key_image.triggered.connect(lambda _checked=False: self.toggle_key_image())
        a.note.triggered.connect(lambda _checked=False: self.edit_note())
        a.delete.triggered.connect(lambda _checked=False: self.delete_selected())
        self.panel.frameActivated.connect(c.go_to)
        self.store.failed.connect(lambda message: window.status.error(message))
        window.opening.finished.connect(self._on_opened)
        c.currentChanged.connect(self._on_current_changed)
        c.frameShown.connect(lambda _key: self._update_actions())
        follow(self, self.model.events.changed, lambda _value: self._update_actions())
        self._update_actions()

    def _dock(self) -> QDockWidget:
        w = self.window
        dock = QDockWidget("Measurements", w)
        dock.setObjectName("measurementsDock")
        dock.setWidget(self.panel)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        w.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        series = getattr(w, "series_dock", None)
        if series is not None:  # a tab beside the results and the series summary: the layout keeps its sizes
            w.tabifyDockWidget(series, dock)
            w.results_dock.raise_()
        toggle = dock.toggleViewAction()
        toggle.setShortcut(QKeySequence("Ctrl+Shift+M"))
        toggle.setToolTip("Show or hide the Measurements panel (Ctrl+Shift+M)")
        toggle.setStatusTip("Key images and measurements of what is open")
        w.actions_.panels_menu.addAction(toggle)
        w.addAction(toggle)
        return dock

    # -- actions -----------------------------------------------------------------------------------
    def _on_tool_toggled(self, kind: str, on: bool) -> None:
        if on:
            self.overlay.set_tool(kind)
        elif self.overlay.tool == kind:
            self.overlay.set_tool(None)

    def _on_tool_changed(self, tool: str | None) -> None:
        for kind, action in self.actions.tools.items():
            if action.isChecked() != (kind == tool):
                action.setChecked(kind == tool)

    def current_frame(self) -> FrameKey | None:
        return self.window.controller.session.current_key

    def describe(self, frame: FrameKey) -> str:
        """A frame as the dock names it: "5 · SAG MPRAGE · slice 7/16" (its file name when not open)."""
        session = self.window.controller.session
        where = session.locate(tuple(frame))  # type: ignore[arg-type]
        if where is None:
            return MeasurementsPanel.frame_text(frame)
        group = session.groups[where[0]]
        text = f"{group.name or group.title} · {group.unit} {where[1] + 1}/{len(group)}"
        return f"{text} [frame {frame[1]}]" if frame[1] and group.kind != "series" else text

    def toggle_key_image(self) -> bool:
        """Mark or unmark the current slice as a key image; returns whether it is key now."""
        key = self.current_frame()
        if key is None:
            return False
        return self.model.toggle_key(key)

    def edit_note(self, text: str | None = None) -> None:
        """The note of the current slice: ``text``, or asked for in a dialog."""
        key = self.current_frame()
        if key is None:
            return
        if text is None:
            found = self.model.annotations.key_image(key)
            text, ok = QInputDialog.getMultiLineText(self.window, "Note on this slice",
                                                     "Note (it goes into the reports):", found.note if found else "")
            if not ok:
                return
        self.model.set_note(key, text)

    def delete_selected(self) -> bool:
        """Delete the measurement selected on the slice, else the row selected in the dock."""
        if self.model.selected:
            return self.model.delete(self.model.selected)
        return self.panel.delete_selected()

    def _update_actions(self) -> None:
        key = self.current_frame()
        a = self.actions
        shown = self.window.controller.display is not None
        for action in a.tools.values():
            action.setEnabled(shown or action.isChecked())
        a.key_image.setEnabled(key is not None)
        a.note.setEnabled(key is not None)
        a.key_image.setChecked(key is not None and self.model.is_key(key))
        a.delete.setEnabled(bool(self.model.annotations))

    # -- opening and closing ------------------------------------------------------------------------
    def _on_opened(self) -> None:
        self.store.load_open()
        self.overlay.sync()

    def _on_current_changed(self, key: object) -> None:
        if key is None and len(self.window.controller.session) == 0:
            self.overlay.set_tool(None)
            self.store.forget()
        else:
            selected = self.model.measurement(self.model.selected)
            if selected is not None and selected.frame != key:
                self.model.select("")  # the selection stays on its slice
        self._update_actions()


def install_measurements(window: MainWindow) -> Measurements:
    """The measurement tools, the key images and notes, the Measurements dock and the sidecar, in ``window``."""
    return Measurements(window)
