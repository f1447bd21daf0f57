"""Orientation, scale, probe, corner text and cine over the slice view (issue 15, features 3 and 5).

The view transform has one owner, the evented
:class:`~brainscan.engine.viewer.orientation.ViewTransformModel`; its actions (rotate, flips, invert,
reset) edit it and :class:`ViewTools` draws it: the same ``QTransform`` on the slice layer and the heat
layer (the heat map follows the picture), an inverted lookup table, the four edge letters, the scale bar
bottom-right, the pixel probe under the cursor and the series/slice corner text. What each shows is
computed in the engine (:mod:`~brainscan.engine.viewer.orientation`); this module only places it.

Cine playback steps the current series with a ``QTimer`` at the rate of the toolbar's spin box (frames per
second), looping, and waits for a slice still being decoded.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QAction, QColor, QPainter, QPen, QTransform
from PySide6.QtWidgets import QLabel, QMainWindow, QSpinBox, QWidget

from brainscan.engine.viewer.orientation import (
    ScaleBar,
    ViewTransform,
    ViewTransformModel,
    corner_lines,
    edge_letters,
    pixel_spacing,
    probe,
    scale_bar,
)
from brainscan.gui.binding import bind_check, follow
from brainscan.gui.slice_view import SliceView
from brainscan.gui.viewer_controller import ViewerController
from brainscan.gui.window_actions import WindowActions, window_action

CINE_RATES = (1, 60)  # frames per second, the spin box's range
DEFAULT_FPS = 10
SHOW_IDENTIFIERS_KEY = "view/show_identifiers"  # a setting: patient name, ID and birth date in the corner
_LETTER_STYLE = "QLabel { color: #ffe27a; background: transparent; font-weight: bold; font-size: 15px; }"
_TEXT_STYLE = (
    "QLabel { color: #f0f0f0; background-color: rgba(0, 0, 0, 150); padding: 3px 6px; border-radius: 3px; }"
)
_INVERTED_LUT = np.repeat(np.arange(255, -1, -1, dtype=np.uint8)[:, None], 3, axis=1)


class ViewToolActions:
    """The actions of the view transform and cine, in the View menu and the toolbar (shortcuts, tooltips)."""

    def __init__(self, window: QMainWindow, actions: WindowActions) -> None:
        self.window = window
        self.rotate = self._action("&Rotate 90°", "T", "Turn the image a quarter clockwise")
        self.flip_h = self._action("Flip &horizontal", "Shift+H", "Mirror the image left to right", checkable=True)
        self.flip_v = self._action("Flip &vertical", "Shift+V", "Mirror the image top to bottom", checkable=True)
        self.invert = self._action("&Invert", "I", "Show the image in negative (the heat map is not inverted)",
                                   checkable=True)
        self.reset_view = self._action("Reset &view", "Ctrl+0", "No rotation, flip nor inversion; fit the image")
        self.cine = self._action("&Cine play/pause", "P",
                                 "Play the series' slices in a loop at the rate beside it (frames per second)",
                                 checkable=True)
        self.rate = QSpinBox()
        self.rate.setObjectName("cineRate")
        self.rate.setRange(*CINE_RATES)
        self.rate.setValue(DEFAULT_FPS)
        self.rate.setSuffix(" fps")
        self.rate.setToolTip("Cine rate: frames (slices) per second")
        menu = actions.view_menu
        menu.addSeparator()
        for action in (self.rotate, self.flip_h, self.flip_v, self.invert, self.reset_view, self.cine):
            menu.addAction(action)
        bar = actions.toolbar
        bar.addSeparator()
        bar.addAction(self.cine)
        bar.addWidget(self.rate)

    def _action(self, text: str, shortcut: str, tip: str, *, checkable: bool = False) -> QAction:
        action = window_action(self.window, text, shortcut, tip)
        action.setCheckable(checkable)
        action.setEnabled(False)
        return action

    @property
    def all(self) -> tuple[QAction, ...]:
        return (self.rotate, self.flip_h, self.flip_v, self.invert, self.reset_view, self.cine)


class ScaleBarWidget(QWidget):
    """A horizontal bar with its length above it (``bar`` None hides it)."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("scaleBar")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.bar: ScaleBar | None = None
        self.hide()

    def set_bar(self, bar: ScaleBar | None) -> None:
        self.bar = bar
        if bar is None:
            self.hide()
            return
        self.resize(max(math.ceil(bar.length_px) + 8, 48), 30)
        self.setVisible(True)
        self.update()

    def paintEvent(self, _event) -> None:
        if self.bar is None:
            return
        painter = QPainter(self)
        pen = QPen(QColor("#f0f0f0"), 2)
        painter.setPen(pen)
        right = self.width() - 4.0
        left = right - self.bar.length_px
        y = self.height() - 5.0
        painter.drawLine(QPointF(left, y), QPointF(right, y))
        painter.drawLine(QPointF(left, y - 5), QPointF(left, y))
        painter.drawLine(QPointF(right, y - 5), QPointF(right, y))
        painter.drawText(QRectF(0, 0, self.width() - 4, self.height() - 9),
                         Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom, self.bar.label)
        painter.end()


def qtransform(transform: ViewTransform, width: int, height: int) -> QTransform:
    """The item transform drawing a ``width`` x ``height`` picture under ``transform``, kept at the origin."""
    m = transform.matrix()
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]]) @ m.T
    dx, dy = -corners.min(axis=0)
    return QTransform(float(m[0, 0]), float(m[1, 0]), float(m[0, 1]), float(m[1, 1]), float(dx), float(dy))


class ViewTools(QObject):
    """Draws the view transform, the letters, the scale bar, the probe and the corner text; runs the cine.

    Attributes
    ----------
    transform:
        The one :class:`ViewTransformModel`.
    actions:
        :class:`ViewToolActions`.
    letters:
        The edge labels by name (``left``, ``right``, ``top``, ``bottom``).
    scale, probe_label, info_label:
        The scale bar, the probe's text (bottom-right, over the bar) and the series/slice text (bottom-left).
    timer:
        The cine's ``QTimer``.
    """

    def __init__(self, view: SliceView, controller: ViewerController, window: QMainWindow,
                 window_actions: WindowActions, *, show_identifiers: bool = False) -> None:
        super().__init__(window)
        self.view = view
        self.controller = controller
        self.show_identifiers = show_identifiers
        self.transform = ViewTransformModel()
        self.actions = ViewToolActions(window, window_actions)
        self.letters = {name: self._label(f"letter_{name}", _LETTER_STYLE) for name in ("left", "right", "top", "bottom")}
        self.info_label = self._label("slice_info", _TEXT_STYLE)
        self.probe_label = self._label("probe", _TEXT_STYLE)
        self.scale = ScaleBarWidget(view)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._cine_tick)
        a = self.actions
        bind_check(a.flip_h, self.transform, "flip_h")
        bind_check(a.flip_v, self.transform, "flip_v")
        bind_check(a.invert, self.transform, "invert")
        a.rotate.triggered.connect(lambda _checked=False: self.transform.rotate())
        a.reset_view.triggered.connect(lambda _checked=False: self.reset())
        a.cine.toggled.connect(self.play)
        a.rate.valueChanged.connect(self._set_rate)
        self._set_rate(a.rate.value())
        follow(self, self.transform.events.changed, self._on_transform)
        controller.frameShown.connect(self._on_frame_shown)
        controller.infoChanged.connect(self._on_info)
        view.viewbox.sigRangeChanged.connect(lambda *_: self._update_scale())
        view.viewbox.sigResized.connect(lambda *_: self._place())
        view.scene().sigMouseMoved.connect(self.probe_at_scene)
        view.installEventFilter(self)

    def _label(self, name: str, style: str) -> QLabel:
        label = QLabel(self.view)
        label.setObjectName(name)
        label.setStyleSheet(style)
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        label.hide()
        return label

    # -- the transform ------------------------------------------------------------------------------
    def reset(self) -> None:
        self.transform.reset()
        self.view.fit()

    def _on_transform(self, value: ViewTransform) -> None:
        self._apply(value, refit=True)
        self._update_letters()
        self._update_scale()

    def _apply(self, value: ViewTransform, *, refit: bool) -> None:
        """Put ``value`` on both layers (the heat map follows the picture) and the slice's lookup table."""
        image = self.view.slice_item.image
        if image is None:
            return
        height, width = image.shape[:2]
        matrix = qtransform(value, width, height)
        changed = self.view.slice_item.transform() != matrix
        for item in (self.view.slice_item, self.view.heat_item):
            item.setTransform(matrix)
        self.view.slice_item.setLookupTable(_INVERTED_LUT if value.invert and image.ndim == 2 else None)
        if changed and refit:
            self.view.fit()

    def _on_frame_shown(self, _key: object) -> None:
        self._apply(self.transform.value, refit=True)
        self._update_letters()
        self._update_scale()
        self._on_info()

    # -- letters, scale, corner text ------------------------------------------------------------------
    def _shown_frame(self):
        c = self.controller
        if c.shown_key is None or c.shown_key != c.session.current_key:
            return None
        return c.current_frame

    def _update_letters(self) -> None:
        frame = self._shown_frame()
        letters = None if frame is None else edge_letters(frame.tags, self.transform.value)
        for name, label in self.letters.items():
            text = getattr(letters, name) if letters is not None else ""
            label.setText(text)
            label.setVisible(bool(text))
            label.adjustSize()
        self._place()

    def _update_scale(self) -> None:
        frame = self._shown_frame()
        bar = None
        if frame is not None:
            vb = self.view.viewbox
            pixel = vb.viewPixelSize()[0]
            bar = scale_bar(pixel_spacing(frame.tags), 1.0 / pixel if pixel > 0 else 0.0, vb.width(),
                            self.transform.value)
        self.scale.set_bar(bar)
        self._place()

    def _on_info(self) -> None:
        c = self.controller
        frame = self._shown_frame()
        lines = [] if frame is None else corner_lines(frame, c.session.position_text(),
                                                      show_identifiers=self.show_identifiers)
        self.info_label.setText("\n".join(lines))
        self.info_label.setVisible(bool(lines))
        self.info_label.adjustSize()
        if frame is None:
            self._update_letters()
            self.scale.set_bar(None)
            self.probe_label.hide()
        for action in self.actions.all:
            action.setEnabled(c.display is not None or (action is self.actions.cine and action.isChecked()))
        self._place()

    def _place(self) -> None:
        view, margin = self.view, 8
        area = view.mapFromScene(view.viewbox.sceneBoundingRect()).boundingRect()
        left, top, right, bottom = area.left(), area.top(), area.right(), area.bottom()
        mid_x, mid_y = (left + right) // 2, (top + bottom) // 2
        letters = self.letters
        letters["left"].move(left + margin, mid_y - letters["left"].height() // 2)
        letters["right"].move(right - margin - letters["right"].width(), mid_y - letters["right"].height() // 2)
        letters["top"].move(mid_x - letters["top"].width() // 2, top + margin)
        letters["bottom"].move(mid_x - letters["bottom"].width() // 2, bottom - margin - letters["bottom"].height())
        window_label = view.window_label
        above = window_label.y() if window_label.isVisible() else view.height() - margin
        self.info_label.move(margin, above - self.info_label.height() - margin // 2)
        self.scale.move(right - self.scale.width() - margin, bottom - self.scale.height() - margin - 16)
        scale_top = self.scale.y() if self.scale.isVisible() else bottom - margin
        self.probe_label.move(right - self.probe_label.width() - margin, scale_top - self.probe_label.height() - 4)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.view and event.type() == QEvent.Type.Resize:
            QTimer.singleShot(0, self._place)
        return False

    # -- the probe ---------------------------------------------------------------------------------------
    def probe_at_scene(self, pos: QPointF) -> None:
        """Show what the picture holds under the scene position ``pos`` (the mouse), or hide the probe."""
        c = self.controller
        frame = self._shown_frame()
        if frame is None or c.display is None or c.window is None:
            self.probe_label.hide()
            return
        point = self.view.slice_item.mapFromScene(pos)
        row, col = math.floor(point.y()), math.floor(point.x())
        found = probe(frame, c.display, c.window, row, col, inverted_view=self.transform.invert)
        if found is None:
            self.probe_label.hide()
            return
        self.probe_label.setText(found.text())
        self.probe_label.adjustSize()
        self.probe_label.show()
        self._place()

    # -- cine -------------------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def play(self, on: bool) -> None:
        """Start or stop the cine (the action's check mark follows)."""
        group = self.controller.session.current_group
        if on and (group is None or len(group) < 2):
            on = False
        if on:
            self.timer.start()
        else:
            self.timer.stop()
        if self.actions.cine.isChecked() != on:
            self.actions.cine.setChecked(on)

    def _set_rate(self, fps: int) -> None:
        self.timer.setInterval(max(1, round(1000 / fps)))

    def _cine_tick(self) -> None:
        c = self.controller
        session = c.session
        group = session.current_group
        if group is None or len(group) < 2:
            self.play(False)
            return
        if c.shown_key != session.current_key:
            return  # the slice is still being decoded: wait for it
        if session.position >= len(group) - 1:
            c.jump_to_end(False)
        else:
            c.step(1)
