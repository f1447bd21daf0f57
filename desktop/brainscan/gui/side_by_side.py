"""Two viewports side by side with synchronised slice, zoom and pan (issue 15, feature 4).

The central area's image view (``window.view``, the left and primary view: every other tool keeps working
on it) gets a :class:`QSplitter` with a second :class:`~brainscan.gui.slice_view.SliceView` beside it. The
state has one owner, the evented :class:`~brainscan.engine.viewer.side_by_side.SideBySideModel`; the
View-menu actions, the *Sync* toggle in the toolbar and the chooser bind to it, and the remembered settings
follow it:

- *Side by side* (Ctrl+2): one view or two;
- *Right view…* (Ctrl+Shift+R): "heat map vs plain" (the left's frame again, without the heat map) or
  another open series (with its own heat map);
- *Synchronise views* (Ctrl+Shift+Y): slice, zoom and pan move together.

The right view loads its frames through the window's :class:`~brainscan.gui.frame_loader.FrameLoader`
(urgent requests, never on the GUI thread) and shares the controller's frame and heat-map caches. Which
right slice goes with the left one is the engine's rule (:func:`~brainscan.engine.viewer.side_by_side.map_slice`);
the slice positions it needs are read from the DICOM headers once per series, on the window's thread pool.
Zoom and pan are linked through the views' range-changed signals: the other view gets the same centre and
scale (not the same rectangle, so two views of different sizes agree), with a guard against feedback, and a
resize never passes the resized right view's range back to the left. The view transform (rotate, flip,
invert) of :class:`~brainscan.gui.view_tools.ViewTools` is drawn on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QEvent, QObject, QRectF, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from brainscan.engine.input.frames import Frame
from brainscan.engine.results.names import display_name
from brainscan.engine.viewer.display import DisplayImage, WindowLevel, display_image, drag_window
from brainscan.engine.viewer.domain import slice_warnings
from brainscan.engine.viewer.overlay import overlay_lut
from brainscan.engine.viewer.side_by_side import (
    SideBySide,
    SideBySideModel,
    SliceMatch,
    StackGeometry,
    follows_left_window,
    map_slice,
    match_text,
    right_group,
    right_shows_heat,
    slice_spacing,
    stack_geometry,
)
from brainscan.engine.viewer.state import FrameKey, SeriesGroup
from brainscan.gui.binding import bind_check, bind_field, follow
from brainscan.gui.slice_view import SliceView
from brainscan.gui.view_tools import qtransform
from brainscan.gui.window_actions import window_action
from brainscan.gui.workers import GeneratorWorker

if TYPE_CHECKING:
    from brainscan.gui.main_window import MainWindow

_SYNC_STYLE = (
    "QToolButton { color: #f0f0f0; background-color: rgba(0, 0, 0, 150); border: 1px solid #5a6270;"
    " padding: 2px 8px; border-radius: 3px; }"
    " QToolButton:checked { background-color: rgba(42, 110, 187, 200); border-color: #6fa8dc; }"
)
_INVERTED_LUT = np.repeat(np.arange(255, -1, -1, dtype=np.uint8)[:, None], 3, axis=1)
HEAT_VS_PLAIN_TEXT = "Heat map vs plain (this slice again, the heat map on the left only)"


class SideBySideActions:
    """*Side by side*, *Right view…* and *Synchronise views* in the View menu (*Sync* is also a button on the right
    view, shown with it)."""

    def __init__(self, window: MainWindow) -> None:
        self.toggle = window_action(window, "&Side by side", "Ctrl+2",
                                    "Two views side by side: the heat map against the plain slice, or two series")
        self.toggle.setCheckable(True)
        self.choose = window_action(window, "Right &view…", "Ctrl+Shift+R",
                                    "What the right view shows: this slice without the heat map, or another open "
                                    "series (slices matched by position when both are DICOM of one orientation)")
        self.sync = window_action(window, "S&ynchronise views", "Ctrl+Shift+Y",
                                  "Move slice, zoom and pan of the two views together (off: each on its own)")
        self.sync.setCheckable(True)
        self.sync.setIconText("Sync")
        menu = window.actions_.view_menu
        menu.addSeparator()
        for action in (self.toggle, self.choose, self.sync):
            menu.addAction(action)

    @property
    def all(self) -> tuple[QAction, ...]:
        return (self.toggle, self.choose, self.sync)


class RightViewChooser(QDialog):
    """A small dialog: heat map vs plain, or one of the open series, and whether the views move together.

    Parameters
    ----------
    series:
        The open series as (key, name) pairs.
    state:
        The current choice, shown selected.
    """

    def __init__(self, parent: QWidget | None, series: list[tuple[str, str]], state: SideBySide) -> None:
        super().__init__(parent)
        self.setObjectName("rightViewChooser")
        self.setWindowTitle("Right view")
        column = QVBoxLayout(self)
        column.addWidget(QLabel("The right view shows:"))
        self.combo = QComboBox()
        self.combo.setObjectName("rightViewCombo")
        self.combo.setToolTip("The same slice without the heat map, or another open series beside the left one")
        self.combo.addItem(HEAT_VS_PLAIN_TEXT, ("heat_vs_plain", ""))
        for key, name in series:
            self.combo.addItem(f"Series {name}", ("two_series", key))
        selected = 0
        if state.mode == "two_series":
            keys = [key for key, _ in series]
            selected = keys.index(state.right_series) + 1 if state.right_series in keys else min(1, len(series))
        self.combo.setCurrentIndex(selected)
        column.addWidget(self.combo)
        self.sync = QCheckBox("Synchronise slice, zoom and pan")
        self.sync.setToolTip("Stepping, zooming or panning either view moves the other (Ctrl+Shift+Y)")
        self.sync.setChecked(state.sync)
        column.addWidget(self.sync)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        column.addWidget(buttons)

    def choice(self) -> dict[str, object]:
        """The fields of the model chosen (``mode``, ``right_series``, ``sync``); the layout is two views."""
        mode, key = self.combo.currentData()
        return {"layout": "side_by_side", "mode": mode, "right_series": key, "sync": self.sync.isChecked()}


class SideBySideView(QObject):
    """The right view: what it shows, its loading, and its links to the left view.

    Attributes
    ----------
    model:
        The one :class:`SideBySideModel`.
    right:
        The second :class:`SliceView` (hidden with one view).
    splitter:
        The central splitter holding ``window.view`` and :attr:`right`.
    shown_key, wanted_key:
        The frame on the right view, and the one it waits for.
    group_key, index:
        The series the right view steps through and its position there.
    match:
        How the right slice was matched to the left one (None when not synchronised by the rule).
    """

    def __init__(self, window: MainWindow, model: SideBySideModel) -> None:
        super().__init__(window)
        self.window = window
        self.model = model
        self.controller = window.controller
        self.left = window.view
        self.right = SliceView()
        self.right.setObjectName("rightView")
        self.right.ci.removeItem(self.right.colorbar)  # the left's colour bar says what the colours mean
        self.right.colorbar.hide()
        self.splitter = self._splitter()
        self.actions = SideBySideActions(window)
        self.sync_button = QToolButton(self.right)  # over the right view's bottom-right corner
        self.sync_button.setObjectName("syncButton")
        self.sync_button.setDefaultAction(self.actions.sync)
        self.sync_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.sync_button.setStyleSheet(_SYNC_STYLE)
        self.right.installEventFilter(self)
        self.chooser: RightViewChooser | None = None
        self.shown_key: FrameKey | None = None
        self.wanted_key: FrameKey | None = None
        self.display: DisplayImage | None = None
        self.own_window: WindowLevel | None = None
        self.group_key: str | None = None
        self.index = 0
        self.match: SliceMatch | None = None
        self.heat_shown = False
        self._geometry: dict[tuple[str, int], StackGeometry] = {}
        self._measuring: set[tuple[str, int]] = set()
        self._linking = False
        self._driving = False
        self._right_size = (0.0, 0.0)
        self._drag_start: WindowLevel | None = None
        self._wire()
        self._on_model(model.value)

    # -- building ----------------------------------------------------------------------------------
    def _splitter(self) -> QSplitter:
        """Put a splitter where the left view sits in the central column and both views in it."""
        column = self.window.centralWidget().layout()
        where = column.indexOf(self.left)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("viewSplitter")
        splitter.setChildrenCollapsible(False)
        column.insertWidget(where if where >= 0 else column.count(), splitter, 1)
        splitter.addWidget(self.left)  # taken out of the column by the splitter
        splitter.addWidget(self.right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        for view in (self.left, self.right):
            view.setMinimumWidth(200)
        self.right.hide()
        return splitter

    def _wire(self) -> None:
        c, a, right = self.controller, self.actions, self.right
        bind_field(a.toggle, self.model, "layout", a.toggle.toggled, a.toggle.isChecked, a.toggle.setChecked,
                   to_widget=lambda layout: layout == "side_by_side",
                   to_model=lambda on: "side_by_side" if on else "single")
        bind_check(a.sync, self.model, "sync")
        a.choose.triggered.connect(lambda _checked=False: self.choose())
        follow(self, self.model.events.changed, self._on_model)
        c.currentChanged.connect(self._on_left_current)
        c.infoChanged.connect(self._render)
        c.overlayDrawn.connect(self._render)
        follow(self, c.overlay.events.compare_hidden, lambda _hidden: self._render())
        self.window.batch.finished.connect(lambda _cancelled: self._render())
        self.window.opening.finished.connect(self._on_opened)
        self.window.loader.frameLoaded.connect(self._on_frame_loaded)
        self.window.loader.frameFailed.connect(self._on_frame_failed)
        follow(self, self.window.view_tools.transform.events.changed, lambda _value: self._on_transform())
        right.sliceStep.connect(self.step_right)
        right.sliceJump.connect(lambda last: self.step_right(self._group_length() if last else -self._group_length()))
        right.windowDrag.connect(self._on_window_drag)
        right.compareHeld.connect(self.left.compareHeld)  # holding Space in either view hides the heat map
        right.fitRequested.connect(self._fit)
        self.left.viewbox.sigRangeChanged.connect(lambda *_: self._link(self.left, self.right))
        right.viewbox.sigRangeChanged.connect(lambda *_: self._on_right_range())
        right.viewbox.sigResized.connect(lambda *_: self._on_right_resized())

    # -- the model ------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.model.two_views

    def choose(self) -> RightViewChooser:
        """Open the chooser (window-modal, without blocking: :meth:`QDialog.open`); accepting it sets the model."""
        series = [(g.key, g.name) for g in self.controller.session.groups]
        chooser = RightViewChooser(self.window, series, self.model.value)
        chooser.accepted.connect(lambda: self.model.update(**chooser.choice()))
        chooser.finished.connect(chooser.deleteLater)
        self.chooser = chooser
        chooser.open()
        return chooser

    def _on_model(self, state: SideBySide) -> None:
        on = state.two_views
        if on and self.right.isHidden():
            self.right.show()
            half = max(self.splitter.width(), 2) // 2
            self.splitter.setSizes([half, half])  # equal halves each time the right view appears
        self.right.setVisible(on)
        self.actions.sync.setEnabled(on)
        if not on:
            self._release()
            self.left.setFocus()
            return
        self.place_from_left(force=True)
        self._link(self.left, self.right)

    def _release(self) -> None:
        """One view again: forget the right frame (its pixels are let go)."""
        self.shown_key = self.wanted_key = None
        self.display = self.own_window = self.match = None
        self.group_key = None
        self.heat_shown = False
        self.right.clear_image("")
        self.right.set_corner_text("", "", "")

    # -- what the right view shows --------------------------------------------------------------------
    def _group(self, key: str | None) -> SeriesGroup | None:
        return next((g for g in self.controller.session.groups if g.key == key), None)

    def _group_length(self) -> int:
        group = self._group(self.group_key)
        return len(group) if group is not None else 0

    @property
    def measuring(self) -> bool:
        """Whether slice headers are being read to match slices by position."""
        return bool(self._measuring)

    def geometry(self, group: SeriesGroup) -> StackGeometry | None:
        """The group's slice geometry, or None while its DICOM headers are read on the thread pool (once per group
        and length; :meth:`place_from_left` runs again when they arrive)."""
        cache_key = (group.key, len(group))
        found = self._geometry.get(cache_key)
        if found is not None:
            return found
        refs = list(group.refs)
        if all(ref.kind != "dicom" for ref in refs):  # pictures: nothing to read
            found = self._geometry[cache_key] = stack_geometry(refs)
            return found
        if cache_key not in self._measuring:
            self._measuring.add(cache_key)
            worker = GeneratorWorker(lambda: _geometry_job(cache_key, refs), name="slice-geometry")
            worker.signals.yielded.connect(self._on_geometry)
            # a failure is logged by the worker; the stack is then matched by index, not asked for again
            worker.signals.errored.connect(lambda _message: self._on_geometry((cache_key, StackGeometry(len(refs)))))
            worker.signals.finished.connect(lambda _cancelled: self._measuring.discard(cache_key))
            self.window.pool.start(worker, priority=1)
        return None

    def _on_geometry(self, item: object) -> None:
        cache_key, geometry = item  # type: ignore[misc]
        self._geometry[cache_key] = geometry
        self._measuring.discard(cache_key)
        state = self.model.value
        if self.active and state.sync and state.mode == "two_series":
            self.place_from_left()

    def place_from_left(self, force: bool = False) -> None:
        """Choose the right frame from the left's: the same frame, or the matched slice of the right series."""
        if not self.active:
            return
        session, state = self.controller.session, self.model.value
        left = session.current_group
        key = right_group(state, [g.key for g in session.groups], left.key if left is not None else None)
        group = self._group(key)
        if group is None or left is None or not len(group):
            self._release()
            self.right.show_message("The right view shows a slice once images are open.")
            return
        same_group = key == self.group_key
        self.match = None
        if state.mode == "heat_vs_plain":
            index = session.position if (state.sync or not same_group) else self.index
        elif state.sync:
            left_geometry, right_geometry = self.geometry(left), self.geometry(group)
            if left_geometry is None or right_geometry is None:  # headers still being read: matched on arrival
                if self.shown_key is None:
                    self.right.show_message("Matching the slices by position…")
                return
            self.match = map_slice(session.position, left_geometry, right_geometry)
            index = self.match.index
        else:
            index = self.index if same_group else 0
        if not same_group:
            self.own_window = None
        self.group_key, self.index = key, min(max(index, 0), len(group) - 1)
        self._show(force=force)

    def step_right(self, delta: int) -> bool:
        """Step the right view (its wheel, arrows, Home/End); with sync the left moves to the matching slice."""
        if not self.active or self.group_key is None:
            return False
        state, c = self.model.value, self.controller
        if state.sync and state.mode == "heat_vs_plain":
            return c.step(delta)  # the same frame twice: the left moves and the right follows
        group = self._group(self.group_key)
        if group is None:
            return False
        target = min(max(self.index + delta, 0), len(group) - 1)
        if target == self.index:
            return False
        self.index = target
        self.match = None
        left = c.session.current_group
        left_geometry = self.geometry(left) if left is not None and len(left) else None
        right_geometry = self.geometry(group)
        if state.sync and left is not None and left_geometry is not None and right_geometry is not None:
            back = map_slice(target, right_geometry, left_geometry)
            self.match = SliceMatch(target, back.rule, back.distance_mm)
            self._driving = True  # the left follows without matching the right again
            try:
                c.go_to(c.session.key_of(left.refs[back.index]))
            finally:
                self._driving = False
        self._show()
        return True

    def _on_opened(self) -> None:
        """More series open: "two series" takes another one when it showed the left's for want of one."""
        state = self.model.value
        if self.active and state.mode == "two_series" and self.group_key is not None:
            left = self.controller.session.current_group
            if left is not None and self.group_key == left.key and not state.right_series:
                self.place_from_left()

    def _on_left_current(self, key: object) -> None:
        if not self.active or self._driving:
            return
        if key is None:  # everything closed
            self._geometry.clear()
            self.place_from_left()
            return
        state = self.model.value
        left = self.controller.session.current_group
        left_moved_away = state.mode == "heat_vs_plain" and (left is None or left.key != self.group_key)
        if state.sync or left_moved_away or self._group(self.group_key) is None:
            self.place_from_left()

    def _show(self, force: bool = False) -> None:
        group = self._group(self.group_key)
        if group is None:
            return
        c = self.controller
        ref = group.refs[self.index]
        key = c.session.key_of(ref)
        self.wanted_key = key
        if key == self.shown_key and not force:
            self._render()
            return
        frame = c.frame_of(key)
        if frame is not None:
            self._display(key, frame)
        elif key in c.failures:
            self._show_failure(c.failures[key])
        else:
            self.shown_key = None
            self.right.show_message(f"Loading {ref.path.name}…")
            self._corners()
            self.window.loader.request(ref, urgent=True)

    def _on_frame_loaded(self, key: object, frame: Frame, _picture: object) -> None:
        key = tuple(key)  # type: ignore[arg-type]
        if self.active and key == self.wanted_key and self.shown_key != key:
            self._display(key, frame)

    def _on_frame_failed(self, key: object, message: str) -> None:
        if self.active and tuple(key) == self.wanted_key:  # type: ignore[arg-type]
            self._show_failure(message)

    def _show_failure(self, message: str) -> None:
        self.shown_key = self.display = None
        self.right.clear_image(f"This file cannot be shown:\n{message}", error=True)
        self._corners()

    def _display(self, key: FrameKey, frame: Frame) -> None:
        display = display_image(frame)
        self.display, self.shown_key = display, key
        self._linking = True  # a first picture fits this view: the left keeps its zoom
        try:
            self.right.set_image(display.array, display.levels(self.window_level()))
            self._apply_transform()
        finally:
            self._linking = False
        self._right_size = self._size(self.right)
        if self.model.sync:
            self._link(self.left, self.right)
        self._render()

    # -- window/level, heat map, corner text ----------------------------------------------------------
    def _right_frame(self) -> Frame | None:
        return None if self.shown_key is None else self.controller.frame_of(self.shown_key)

    def follows_left(self) -> bool:
        """Whether the right view takes the left's window (the same frame, or a series of the same modality)."""
        left, right = self.controller.current_frame, self._right_frame()
        return follows_left_window(self.model.value, left.tags.get("Modality", "") if left else "",
                                   right.tags.get("Modality", "") if right else "")

    def window_level(self) -> WindowLevel | None:
        """The right view's window: the left's while it follows it, else its own (its frame's default at first)."""
        c = self.controller
        if self.follows_left() and c.window is not None and c.display is not None:
            return c.window
        if self.own_window is None and self.display is not None:
            self.own_window = self.display.default
        return self.own_window

    def _render(self) -> None:
        """Draw what changed on the left onto the right: window, heat map (per the mode), corner text."""
        if not self.active or self.display is None or self.shown_key is None:
            return
        window = self.window_level()
        if window is not None:
            self.right.set_levels(self.display.levels(window))
        heat = self.heat() if right_shows_heat(self.model.value) else None
        if heat is None:
            self.right.hide_heat()
            self.heat_shown = False
        else:
            overlay = self.controller.overlay
            self.right.set_heat(heat, overlay_lut(overlay.colormap, overlay.threshold), overlay.opacity)
            self._apply_transform()
            self.heat_shown = True
        self._corners()

    def heat(self) -> np.ndarray | None:
        """The right frame's own heat map with the overlay's settings, or None (not drawn, not classified)."""
        c, key = self.controller, self.shown_key
        frame = self._right_frame()
        if key is None or frame is None or c.classifier is None or not c.overlay.drawn:
            return None
        result, prediction = c.session.results.get(key), c.session.predictions.get(key)
        if result is None or not result.ok or prediction is None:
            return None
        target = c.overlay.value.resolve_target(prediction)
        return c.heat_cache.heat(key, prediction, c.classifier.cam_weight, c.classifier.contract, c.overlay.method,
                                 target, frame.picture.shape[:2])

    def _corners(self) -> None:
        group = self._group(self.group_key)
        if group is None:
            self.right.set_corner_text("", "", "")
            self.right.set_warnings("", "")
            return
        where = f"{group.unit} {self.index + 1}/{len(group)}"
        geometry = self._geometry.get((group.key, len(group)))
        if self.match is not None and geometry is not None:
            note = match_text(self.match, slice_spacing(geometry))
            where += f" · {note}" if note else ""
        position = f"{group.name}\n{where}"
        finding = ""
        result = None if self.shown_key is None else self.controller.session.results.get(self.shown_key)
        badge, heat_warning = slice_warnings(result)
        if self.model.mode == "heat_vs_plain":
            finding, heat_warning = "plain (no heat map)", ""  # no heat map here to warn about
        elif result is not None:
            finding = f"{display_name(result.label)} {result.confidence:.0%}" if result.ok else "classification failed"
        window = self.window_level() if self.display is not None else None
        self.right.set_corner_text(position, finding, window.describe() if window is not None else "")
        self.right.set_warnings(badge, heat_warning)

    def _on_window_drag(self, dx: float, dy: float, phase: int) -> None:
        """Right- or middle-drag on the right view: the left's window while it follows it, else its own."""
        if self.display is None:
            return
        if self.follows_left():
            self.left.windowDrag.emit(dx, dy, phase)  # the left's window, as if dragged there
            return
        if phase == 0 or self._drag_start is None:
            self._drag_start = self.window_level()
        if self._drag_start is not None:
            self.own_window = drag_window(self._drag_start, dx, dy, self.display.robust_range)
            self._render()
        if phase == 2:
            self._drag_start = None

    # -- the view transform, zoom and pan ---------------------------------------------------------------
    def _apply_transform(self) -> None:
        image = self.right.slice_item.image
        if image is None:
            return
        value = self.window.view_tools.transform.value
        height, width = image.shape[:2]
        matrix = qtransform(value, width, height)
        for item in (self.right.slice_item, self.right.heat_item):
            item.setTransform(matrix)
        self.right.slice_item.setLookupTable(_INVERTED_LUT if value.invert and image.ndim == 2 else None)

    def _on_transform(self) -> None:
        if not self.active:
            return
        self._linking = True
        try:
            self._apply_transform()
            self.right.fit()
        finally:
            self._linking = False
        if self.model.sync:
            self._link(self.left, self.right)

    def _fit(self) -> None:
        """Double-click on the right view: fit it (and, synchronised, the left with it)."""
        if self.model.sync:
            self.left.fit()
        else:
            self.right.fit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.right and event.type() == QEvent.Type.Resize:
            self._place_sync_button()
        return False

    def _place_sync_button(self) -> None:
        button, margin = self.sync_button, 8
        button.adjustSize()
        button.move(self.right.width() - button.width() - margin, self.right.height() - button.height() - margin)
        button.raise_()

    @staticmethod
    def _size(view: SliceView) -> tuple[float, float]:
        return (float(view.viewbox.width()), float(view.viewbox.height()))

    def _on_right_range(self) -> None:
        size = self._size(self.right)
        if size != self._right_size:  # the right view was resized: the left stays the reference
            self._right_size = size
            self._link(self.left, self.right)
        else:
            self._link(self.right, self.left)

    def _on_right_resized(self) -> None:
        self._right_size = self._size(self.right)
        self._link(self.left, self.right)

    def _link(self, source: SliceView, target: SliceView) -> None:
        """Give ``target`` the centre and scale (view units per screen pixel) of ``source``."""
        if self._linking or not self.active or not self.model.sync or self.shown_key is None:
            return
        if source.slice_item.image is None or target.slice_item.image is None:
            return
        width, height = self._size(target)
        pixel = source.viewbox.viewPixelSize()
        if width < 2 or height < 2 or pixel[0] <= 0 or pixel[1] <= 0:
            return
        centre = source.viewbox.viewRect().center()
        rect = QRectF(centre.x() - width * pixel[0] / 2, centre.y() - height * pixel[1] / 2,
                      width * pixel[0], height * pixel[1])
        self._linking = True
        try:
            target.viewbox.setRange(rect=rect, padding=0)
        finally:
            self._linking = False


def _geometry_job(cache_key: tuple[str, int], refs: list) -> Iterator[object]:
    yield (cache_key, stack_geometry(refs))


def install_side_by_side(window: MainWindow) -> SideBySideView:
    """The window's second view beside ``window.view`` (which stays the primary one), its actions in the View menu
    and the toolbar, and the remembered layout (:meth:`AppSettings.side_by_side`) restored and followed."""
    model = SideBySideModel(window.settings.side_by_side())
    model.events.changed.connect(window.settings.set_side_by_side)
    return SideBySideView(window, model)
