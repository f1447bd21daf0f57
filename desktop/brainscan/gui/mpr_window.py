"""The MPR window: a 3-D series in axial, coronal and sagittal views with linked crosshairs, and
*Classify axial reformats*.

*MPR* (View menu, Ctrl+M) opens a separate, non-modal window over the current series' volume
(:func:`~brainscan.engine.input.volume.volume_of_series`, built on the window's worker pool, so a 192-slice
series never blocks the viewer). Each view draws its plane's slice with square pixels (its rectangle scaled
by the pixel spacing), the orientation letters at its edges and a title with the slice number. A click or a
left drag in one view moves the crosshair there and the other two views to the slices through it; the wheel
steps the slice of the view under the cursor; a right or middle drag sets the window, which is shared with
the main view's. The state is the Qt-free :class:`~brainscan.engine.viewer.mpr.MprModel`; this module only
draws it and turns mouse events into calls on it. A series that is not a regular volume gets a message.

*Classify axial reformats* (Analysis menu and the MPR window, Shift+F5) opens the axial reformats of the
current series as a new series of the session ("<series> · axial reformats") and runs the batch
classification (:class:`~brainscan.gui.presenters.batch_presenter.BatchPresenter`) on them, so the results
table, the series verdict and the heat maps work on them as on any series.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QResizeEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.input.volume import PLANES, Volume, is_nifti_name, load_nifti, volume_of_series
from brainscan.engine.viewer.display import WindowLevel, drag_window
from brainscan.engine.viewer.mpr import (
    PLANE_TITLES,
    MprModel,
    default_window,
    plane_letters,
    reformat_problem,
    reformat_series,
    series_sources,
    source_files,
)
from brainscan.engine.viewer.state import SeriesGroup
from brainscan.gui.binding import follow
from brainscan.gui.window_actions import window_action
from brainscan.gui.workers import GeneratorWorker

if TYPE_CHECKING:
    from brainscan.gui.main_window import MainWindow

_LABEL_STYLE = "QLabel { color: #f0f0f0; background-color: rgba(0, 0, 0, 150); padding: 2px 5px; border-radius: 3px; }"
_LETTER_STYLE = "QLabel { color: #ffd24d; background: transparent; font-weight: bold; }"
_CROSSHAIR_PEN = pg.mkPen("#38d9ff", width=1)
# keys that step the slice of the view with the focus (as in the main view)
_STEP_KEYS = {int(Qt.Key.Key_Up.value): -1, int(Qt.Key.Key_PageUp.value): -1, int(Qt.Key.Key_Down.value): 1,
              int(Qt.Key.Key_PageDown.value): 1}


class PlaneViewBox(pg.ViewBox):
    """A ViewBox whose left click or drag points, wheel steps slices and right/middle drag sets the window."""

    sigPoint = Signal(float, float)  # view coordinates (mm)
    sigStep = Signal(int)
    sigWindowDrag = Signal(float, float, int)  # dx, dy (screen pixels from the press), phase 0/1/2

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.02)
        self._wheel_rest = 0.0

    def wheelEvent(self, ev, axis=None) -> None:
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        self._wheel_rest += -ev.delta() / 120.0  # towards the user: forwards, as in the main view
        steps = int(self._wheel_rest)
        if steps:
            self._wheel_rest -= steps
            self.sigStep.emit(steps)
        ev.accept()

    def _point(self, scene_pos) -> None:
        point = self.mapSceneToView(scene_pos)
        self.sigPoint.emit(float(point.x()), float(point.y()))

    def mouseClickEvent(self, ev) -> None:
        ev.accept()
        if ev.button() == Qt.MouseButton.LeftButton:
            self._point(ev.scenePos())

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._point(ev.scenePos())
            return
        if ev.button() in (Qt.MouseButton.RightButton, Qt.MouseButton.MiddleButton):
            ev.accept()
            delta = ev.screenPos() - ev.buttonDownScreenPos()
            phase = 0 if ev.isStart() else 2 if ev.isFinish() else 1
            self.sigWindowDrag.emit(float(delta.x()), float(delta.y()), phase)
            return
        super().mouseDragEvent(ev, axis)


class PlaneView(pg.GraphicsLayoutWidget):
    """One plane: the slice (its rectangle in millimetres, so pixels are square on screen), the crosshair lines,
    the title and the four edge letters."""

    pointed = Signal(str, int, int)  # plane, row, col
    stepped = Signal(str, int)
    windowDrag = Signal(float, float, int)

    def __init__(self, plane: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plane = plane
        self.setBackground("#101214")
        self.setMinimumSize(160, 160)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.viewbox = PlaneViewBox()
        self.addItem(self.viewbox, row=0, col=0)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.viewbox.addItem(self.image_item)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=_CROSSHAIR_PEN)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=_CROSSHAIR_PEN)
        for line in (self.vline, self.hline):
            line.setZValue(10)
            self.viewbox.addItem(line, ignoreBounds=True)
        self.spacing = (1.0, 1.0)  # mm between rows, between columns
        self._shape: tuple[int, int] | None = None
        self.title_label = QLabel(PLANE_TITLES[plane], self)
        self.title_label.setStyleSheet(_LABEL_STYLE)
        self.letters = {edge: QLabel("", self) for edge in ("left", "right", "top", "bottom")}
        for label in self.letters.values():
            label.setStyleSheet(_LETTER_STYLE)
        self.viewbox.sigPoint.connect(self._on_point)
        self.viewbox.sigStep.connect(lambda steps: self.stepped.emit(self.plane, steps))
        self.viewbox.sigWindowDrag.connect(self.windowDrag)

    # -- drawing --------------------------------------------------------------------------------------
    def show_slice(self, values, spacing: tuple[float, float], levels: tuple[float, float], title: str) -> None:
        """Draw a slice (rows x cols of modality values) with ``spacing`` (mm) and ``levels``."""
        rows, cols = values.shape[:2]
        self.image_item.setImage(values, levels=levels, autoLevels=False)
        self.image_item.setRect(QRectF(0.0, 0.0, cols * spacing[1], rows * spacing[0]))
        if (rows, cols) != self._shape or spacing != self.spacing:
            self._shape, self.spacing = (rows, cols), spacing
            self.viewbox.autoRange(padding=0.02)
        self.title_label.setText(title)
        self.title_label.adjustSize()

    def set_levels(self, levels: tuple[float, float]) -> None:
        self.image_item.setLevels(levels)

    def set_crosshair(self, row: int, col: int) -> None:
        self.vline.setPos((col + 0.5) * self.spacing[1])
        self.hline.setPos((row + 0.5) * self.spacing[0])

    def set_letters(self, left: str, right: str, top: str, bottom: str) -> None:
        for edge, text in zip(("left", "right", "top", "bottom"), (left, right, top, bottom), strict=True):
            self.letters[edge].setText(text)
            self.letters[edge].adjustSize()
        self._place_labels()

    def pixel_at(self, x: float, y: float) -> tuple[int, int]:
        """The (row, col) of the picture under view coordinates (x, y) in mm."""
        return math.floor(y / self.spacing[0]), math.floor(x / self.spacing[1])

    def view_point(self, row: int, col: int):
        """The viewport position (QPoint) of the centre of picture pixel (row, col): for clicks in tests and tools."""
        scene = self.viewbox.mapViewToScene(pg.Point((col + 0.5) * self.spacing[1], (row + 0.5) * self.spacing[0]))
        return self.mapFromScene(scene)

    def _on_point(self, x: float, y: float) -> None:
        if self._shape is None:
            return
        row, col = self.pixel_at(x, y)
        self.pointed.emit(self.plane, row, col)

    # -- labels ---------------------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_labels()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        step = _STEP_KEYS.get(event.key())
        if step is None:
            super().keyPressEvent(event)
            return
        self.stepped.emit(self.plane, step)
        event.accept()

    def _place_labels(self) -> None:
        if not hasattr(self, "letters"):  # pyqtgraph resizes the view while it is being built
            return
        w, h, m = self.width(), self.height(), 4
        self.title_label.move(m, m)
        left, right, top, bottom = (self.letters[e] for e in ("left", "right", "top", "bottom"))
        left.move(m, (h - left.height()) // 2)
        right.move(w - right.width() - m, (h - right.height()) // 2)
        top.move((w - top.width()) // 2, m)
        bottom.move((w - bottom.width()) // 2, h - bottom.height() - m)


class MprWindow(QWidget):
    """The three linked views of one series' volume, in a window of its own.

    Signals
    -------
    volumeReady():
        A volume is shown (``model`` is set).
    failed(message):
        The series cannot be shown as a volume (the message is on screen).
    """

    volumeReady = Signal()
    failed = Signal(str)

    def __init__(self, main: MainWindow, classify_action: QAction) -> None:
        super().__init__(main, Qt.WindowType.Window)
        self.main = main
        self.setWindowTitle("MPR — research use only, not for diagnosis")
        self.setObjectName("mprWindow")
        self.model: MprModel | None = None
        self.group_key: str | None = None
        self._worker: GeneratorWorker | None = None
        self._drag_start: WindowLevel | None = None
        self._name = ""
        self._robust_range = 1.0
        self.heading = QLabel("")
        self.heading.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        classify = QToolButton()
        classify.setDefaultAction(classify_action)
        self.addAction(classify_action)  # its shortcut works in this window too
        classify.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.classify_button = classify
        top = QHBoxLayout()
        top.addWidget(self.heading, 1)
        top.addWidget(classify)
        self.views = {plane: PlaneView(plane) for plane in PLANES}
        grid = QWidget()
        row = QHBoxLayout(grid)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        for plane in PLANES:
            row.addWidget(self.views[plane], 1)
            self.views[plane].pointed.connect(self._on_pointed)
            self.views[plane].stepped.connect(self._on_stepped)
            self.views[plane].windowDrag.connect(self._on_window_drag)
        self.message = QLabel("")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.message)
        self.stack.addWidget(grid)
        column = QVBoxLayout(self)
        column.setContentsMargins(6, 6, 6, 6)
        column.addLayout(top)
        column.addWidget(self.stack, 1)
        self.resize(1100, 460)
        main.controller.infoChanged.connect(self._follow_main_window)

    # -- loading ------------------------------------------------------------------------------------------
    @property
    def loading(self) -> bool:
        return self._worker is not None

    def show_group(self, group: SeriesGroup | None, *, retry: bool = False) -> None:
        """Show ``group``'s volume (built in the background), or say why it cannot be shown; the series shown, or
        one that failed, is not built again unless ``retry``."""
        same = group is not None and group.key == self.group_key
        if same and (self.model is not None or self.loading or not retry):
            return
        self.cancel()
        self.model = None
        self.group_key = group.key if group is not None else None
        problem = reformat_problem(group)
        if problem:
            self._show_message(problem)
            self.failed.emit(problem)
            return
        assert group is not None
        refs = series_sources(group)
        self._name = group.name
        self.heading.setText(f"{group.name} · {len(refs)} slices")
        self._show_message(f"Building the volume of {group.name} ({len(refs)} slices)…")
        worker = GeneratorWorker(lambda: _volume_job(refs), name="mpr-volume")
        worker.signals.yielded.connect(lambda item, key=group.key: self._on_volume(key, item))
        worker.signals.errored.connect(lambda message, key=group.key: self._on_error(key, message))
        worker.signals.finished.connect(lambda _cancelled, w=worker: self._on_finished(w))
        self._worker = worker
        self.main.pool.start(worker)

    def cancel(self) -> None:
        """Drop the volume being built (its worker stops before handing it over)."""
        if self._worker is not None:
            self._worker.quit()

    def _on_finished(self, worker: GeneratorWorker) -> None:
        if self._worker is worker:
            self._worker = None

    def _on_error(self, key: str, message: str) -> None:
        if key != self.group_key:
            return
        text = f"This series cannot be shown in MPR: {message}"
        self._show_message(text)
        self.failed.emit(text)

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentIndex(0)

    def _on_volume(self, key: str, volume: object) -> None:
        if key != self.group_key or not isinstance(volume, Volume):
            return
        controller = self.main.controller
        shown = controller.session.current_group
        same = shown is not None and shown.key == key and controller.window is not None
        model = MprModel(volume, controller.window if same else default_window(volume))
        self.model = model
        sample = volume.voxels[:: max(1, volume.voxels.shape[0] // 16)]
        low, high = (float(v) for v in np.percentile(sample, (1.0, 99.0)))
        self._robust_range = max(high - low, 1e-6)  # as the main view's drag sensitivity
        follow(self, model.events.voxel, lambda _voxel: self._draw_crosshairs())
        for plane in PLANES:
            follow(self, model.events[plane], lambda _index, p=plane: self._draw_plane(p))
        follow(self, model.events.window, self._on_window)
        for plane in PLANES:
            self._draw_plane(plane)
            letters = plane_letters(model.slice_of(plane))
            self.views[plane].set_letters(letters.left, letters.right, letters.top, letters.bottom)
        self._draw_crosshairs()
        shape = " x ".join(str(n) for n in volume.voxels.shape)
        self.heading.setText(f"{self._name} · volume {shape} (slices x rows x columns)")
        self.stack.setCurrentIndex(1)
        self.volumeReady.emit()

    # -- drawing --------------------------------------------------------------------------------------------
    def _levels(self) -> tuple[float, float]:
        """The views' levels: a MONOCHROME1 volume is drawn negated with its window mirrored, as the main view does."""
        assert self.model is not None
        window = self.model.window or default_window(self.model.volume)
        if self.model.volume.inverted:
            return -window.upper, -window.lower
        return window.lower, window.upper

    def _draw_plane(self, plane: str) -> None:
        model = self.model
        if model is None:
            return
        picture = model.slice_of(plane)
        values = -picture.values if model.volume.inverted else picture.values
        self.views[plane].show_slice(values, picture.pixel_spacing, self._levels(), model.title(plane))

    def _draw_crosshairs(self) -> None:
        if self.model is None:
            return
        for plane, view in self.views.items():
            view.set_crosshair(*self.model.crosshair(plane))

    def _on_window(self, window: WindowLevel | None) -> None:
        if self.model is None:
            return
        for view in self.views.values():
            view.set_levels(self._levels())
        controller = self.main.controller
        shown = controller.session.current_group
        if window is not None and shown is not None and shown.key == self.group_key and controller.window != window:
            controller.set_window(window)

    # -- the mouse -------------------------------------------------------------------------------------------
    def _on_pointed(self, plane: str, row: int, col: int) -> None:
        if self.model is not None:
            self.model.point(plane, row, col)

    def _on_stepped(self, plane: str, steps: int) -> None:
        if self.model is not None:
            self.model.step(plane, steps)

    def _on_window_drag(self, dx: float, dy: float, phase: int) -> None:
        if self.model is None:
            return
        if phase == 0 or self._drag_start is None:
            self._drag_start = self.model.window or default_window(self.model.volume)
        self.model.window = drag_window(self._drag_start, dx, dy, self._robust_range)
        if phase == 2:
            self._drag_start = None

    def _follow_main_window(self) -> None:
        """The main view's window, when it shows this series, is the MPR's too."""
        controller = self.main.controller
        shown = controller.session.current_group
        if self.model is not None and shown is not None and shown.key == self.group_key and controller.window is not None:
            self.model.window = controller.window

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing drops the volume (the next *MPR* builds it again)."""
        self.cancel()
        self.model = None
        self.group_key = None
        super().closeEvent(event)


def _volume_job(refs: list[FrameRef]):
    """The worker's generator: the series' volume (a DICOM series, or the NIfTI file its frames come from), one item."""
    if refs[0].kind == "nifti" or is_nifti_name(refs[0].path):
        yield load_nifti(refs[0].path)
    else:
        yield volume_of_series(refs)


class MprActions(QObject):
    """*MPR* (View menu) and *Classify axial reformats* (Analysis menu and the MPR window) of a main window.

    Signals
    -------
    reformatsDone():
        Finding the reformats ended (they are open and their batch has started, or the status bar says why not).
    """

    reformatsDone = Signal()

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.open_mpr = window_action(
            window, "&MPR (axial, coronal, sagittal)…", "Ctrl+M",
            "Show the current 3-D series in axial, coronal and sagittal views with linked crosshairs "
            "(click or drag to move them; wheel: slices of the view under the cursor; right-drag: window)")
        self.classify_reformats = window_action(
            window, "Classify a&xial reformats", "Shift+F5",
            "Open the axial reformats of the current 3-D series as a new series and classify them "
            "(the model was trained on slices in all three planes)", "classify")
        self.mpr: MprWindow | None = None
        self._reformatting: GeneratorWorker | None = None
        window.actions_.view_menu.addSeparator()
        window.actions_.view_menu.addAction(self.open_mpr)
        menus = [action.menu() for action in window.menuBar().actions() if action.menu() is not None]
        analysis = next((menu for menu in menus if window.actions_.classify in menu.actions()), None)
        if analysis is not None:  # after Classify all
            analysis.insertAction(window.actions_.cancel, self.classify_reformats)
        self.open_mpr.triggered.connect(lambda _checked=False: self.show_mpr())
        self.classify_reformats.triggered.connect(lambda _checked=False: self.classify_axial_reformats())
        window.batch.stateChanged.connect(self.update)
        window.models.changed.connect(lambda _classifier: self.update())
        window.controller.currentChanged.connect(lambda _key: self._on_current_changed())
        window.installEventFilter(self)  # the MPR window closes with the main window
        self.update()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Close and self.mpr is not None:
            self.mpr.close()
        return False

    def _on_current_changed(self) -> None:
        """An open MPR window follows the series on screen."""
        self.update()
        if self.mpr is not None and self.mpr.isVisible():
            self.mpr.show_group(self.window.controller.session.current_group)

    def update(self) -> None:
        """Enable *Classify axial reformats* when a model is in use, nothing runs and the series is a volume."""
        w = self.window
        group = w.controller.session.current_group
        self.classify_reformats.setEnabled(w.models.classifier is not None and not w.batch.running
                                           and self._reformatting is None and not reformat_problem(group))

    def show_mpr(self) -> MprWindow:
        """Open (or raise) the MPR window on the current series."""
        if self.mpr is None:
            self.mpr = MprWindow(self.window, self.classify_reformats)
        self.mpr.show()
        self.mpr.raise_()
        self.mpr.activateWindow()
        self.mpr.show_group(self.window.controller.session.current_group, retry=True)
        return self.mpr

    def classify_axial_reformats(self) -> bool:
        """Find the current series' axial reformats in the background, open them as a series of the session and
        classify them (:meth:`_on_reformats`); False when that cannot start (the status bar says why)."""
        w = self.window
        if w.models.classifier is None:
            w.status.error("No model in use: choose one in Settings (Ctrl+,).")
            return False
        if w.batch.running or self._reformatting is not None:
            w.status.message("A classification is running; try again when it ends.", 5000)
            return False
        group = w.controller.session.current_group
        problem = reformat_problem(group)
        if problem:
            w.status.error(problem)
            return False
        assert group is not None
        files, name = source_files(group), group.name.split(" · axial reformats")[0]
        worker = GeneratorWorker(lambda: _reformats_job(files, "axial"), name="axial-reformats")
        worker.signals.yielded.connect(lambda refs: self._on_reformats(refs, name))
        worker.signals.errored.connect(lambda message: w.status.error(f"No axial reformats of {name}: {message}"))
        worker.signals.finished.connect(lambda _cancelled: self._reformats_done())
        self._reformatting = worker
        self.update()
        w.status.message(f"Cutting the axial reformats of {name}…")
        w.pool.start(worker)
        return True

    def _reformats_done(self) -> None:
        self._reformatting = None
        self.update()
        self.reformatsDone.emit()

    def _on_reformats(self, refs: object, name: str) -> None:
        """Open the reformats as the series "<name> · axial reformats" and classify them with the batch."""
        w = self.window
        classifier = w.models.classifier
        if not isinstance(refs, list) or not refs or classifier is None or w.batch.running:
            return
        title = f"{name} · axial reformats"
        for changed in w.controller.open_refs(refs):
            changed.name, changed.title = title, f"{title} ({len(changed)})"
            w.browser.browser_model.sync_group(changed)
        fresh = [ref for ref in refs if w.controller.session.key_of(ref) not in w.controller.session.results]
        if not fresh:
            w.status.message(f"The {len(refs)} axial reformats of {name} are classified already.", 8000)
            return
        w.batch.cam_method = w.controller.overlay.method
        w.batch.runner.start(fresh, classifier, w.batch.cam_method)


def _reformats_job(files: list[Path], plane: str):
    """The worker's generator: the frames of the volume of ``files`` along ``plane``, as a series of their own."""
    yield reformat_series(discover(files, plane=plane), plane, files[0])


def install_mpr(window: MainWindow) -> MprActions:
    """The window's *MPR* and *Classify axial reformats* actions, in its View and Analysis menus."""
    return MprActions(window)
