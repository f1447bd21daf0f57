"""The image view: a slice layer, a heat-map layer above it, and a colour bar (pyqtgraph).

Mouse: left-drag pans, right- or middle-drag sets window/level, the wheel scrolls slices and
Ctrl+wheel zooms; double-click fits. Keys (when the view has focus): arrows and Page Up/Down step
slices, Home/End jump to the ends, holding Space hides the heat map to compare. The view only
draws and reports; :class:`~brainscan.gui.viewer_controller.ViewerController` decides what.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)

_LABEL_STYLE = (
    "QLabel { color: #f0f0f0; background-color: rgba(0, 0, 0, 150); padding: 3px 6px; border-radius: 3px; }"
)
_BADGE_STYLE = (
    "QLabel { color: #ffb347; background-color: rgba(20, 12, 0, 220); border: 2px solid #ff9900;"
    " padding: 4px 8px; border-radius: 4px; font-weight: bold; }"
)
_WARNING_STYLE = (
    "QLabel { color: #ffcc66; background-color: rgba(20, 12, 0, 190); border: 1px solid #e8870e;"
    " padding: 3px 6px; border-radius: 3px; }"
)
# the centre message: neutral for information (the welcome text, loading), red only for an error
_MESSAGE_STYLES = {
    "info": "QLabel { color: #f0f0f0; background-color: rgba(40, 44, 52, 210); border: 1px solid #5a6270;"
            " padding: 12px; border-radius: 6px; }",
    "error": "QLabel { color: #ffe0e0; background-color: rgba(60, 0, 0, 200); padding: 12px; border-radius: 6px; }",
}
_STEP_KEYS = {
    int(Qt.Key.Key_Up.value): -1,
    int(Qt.Key.Key_Left.value): -1,
    int(Qt.Key.Key_PageUp.value): -1,
    int(Qt.Key.Key_Down.value): 1,
    int(Qt.Key.Key_Right.value): 1,
    int(Qt.Key.Key_PageDown.value): 1,
}
_HOME, _END, _SPACE = (int(k.value) for k in (Qt.Key.Key_Home, Qt.Key.Key_End, Qt.Key.Key_Space))


class SliceViewBox(pg.ViewBox):
    """A ViewBox whose wheel steps slices and whose right/middle drag sets window/level."""

    sigSliceStep = Signal(int)
    sigWindowDrag = Signal(float, float, int)  # dx, dy (screen pixels from the press), phase 0/1/2

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.01)
        self._wheel_rest = 0.0

    def wheelEvent(self, ev, axis=None) -> None:
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        self._wheel_rest += -ev.delta() / 120.0
        steps = int(self._wheel_rest)
        if steps:
            self._wheel_rest -= steps
            self.sigSliceStep.emit(steps)
        ev.accept()

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() in (Qt.MouseButton.RightButton, Qt.MouseButton.MiddleButton):
            ev.accept()
            delta = ev.screenPos() - ev.buttonDownScreenPos()
            phase = 0 if ev.isStart() else 2 if ev.isFinish() else 1
            self.sigWindowDrag.emit(float(delta.x()), float(delta.y()), phase)
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev) -> None:
        ev.accept()


class SliceView(pg.GraphicsLayoutWidget):
    """The drawing surface.

    Attributes
    ----------
    slice_item, heat_item:
        The two :class:`pyqtgraph.ImageItem` layers (row-major); the heat layer has fixed levels
        (0, 1), a lookup table with alpha and its own opacity.
    colorbar:
        The heat map's colour bar (0 to 1).
    """

    sliceStep = Signal(int)
    sliceJump = Signal(bool)  # to the last (True) or first (False)
    windowDrag = Signal(float, float, int)
    compareHeld = Signal(bool)
    fitRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("#101214")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.viewbox = SliceViewBox()
        self.addItem(self.viewbox, row=0, col=0)
        self.slice_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item.setZValue(10)
        self.heat_item.setVisible(False)
        self.viewbox.addItem(self.slice_item)
        self.viewbox.addItem(self.heat_item)
        self.colorbar = pg.ColorBarItem(
            values=(0.0, 1.0), width=14, interactive=False, colorMapMenu=False, label="heat (0–1)",
            colorMap=pg.colormap.get("viridis"),
        )
        self.addItem(self.colorbar, row=0, col=1)
        self.viewbox.sigSliceStep.connect(self.sliceStep)
        self.viewbox.sigWindowDrag.connect(self.windowDrag)
        self._shape: tuple[int, ...] | None = None
        self._space_down = False
        # corner labels and the centre message, drawn as widgets over the scene
        self.position_label = self._corner_label("position")
        self.finding_label = self._corner_label("finding")
        self.window_label = self._corner_label("window")
        # warnings about the current frame's result, under the finding
        self.domain_badge = self._corner_label("domain_badge", _BADGE_STYLE)
        self.heat_warning = self._corner_label("heat_warning", _WARNING_STYLE)
        self.message = QLabel(self)
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._set_message_kind("info")
        self.message.hide()

    def _corner_label(self, name: str, style: str = _LABEL_STYLE) -> QLabel:
        label = QLabel(self)
        label.setObjectName(name)
        label.setStyleSheet(style)
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        label.hide()
        return label

    # -- drawing -------------------------------------------------------------------------------
    def set_image(self, array: np.ndarray, levels: tuple[float, float]) -> None:
        """Show ``array`` (H x W float, or H x W x 3) with ``levels``; fits the view when the size changes."""
        self.message.hide()
        self.slice_item.setVisible(True)
        self.slice_item.setImage(array, levels=levels, autoLevels=False)
        if array.shape[:2] != self._shape:
            self._shape = array.shape[:2]
            self.heat_item.setVisible(False)
            self.fit()

    def set_levels(self, levels: tuple[float, float]) -> None:
        self.slice_item.setLevels(levels)

    def set_heat(self, heat: np.ndarray, lut: np.ndarray, opacity: float) -> None:
        self.heat_item.setImage(heat, levels=(0.0, 1.0), autoLevels=False, lut=lut)
        self.heat_item.setOpacity(opacity)
        self.heat_item.setVisible(True)

    def set_heat_lut(self, lut: np.ndarray) -> None:
        self.heat_item.setLookupTable(lut)

    def set_heat_opacity(self, opacity: float) -> None:
        self.heat_item.setOpacity(opacity)

    def hide_heat(self) -> None:
        self.heat_item.setVisible(False)

    def set_colorbar(self, lut: np.ndarray) -> None:
        positions = np.linspace(0.0, 1.0, len(lut))
        self.colorbar.setColorMap(pg.ColorMap(positions, np.asarray(lut)))

    def show_colorbar(self, shown: bool) -> None:
        """Dim the colour bar when no heat map applies (hiding it would reflow the layout)."""
        self.colorbar.setOpacity(1.0 if shown else 0.25)

    def clear_image(self, message: str = "", *, error: bool = False) -> None:
        self.slice_item.clear()
        self.heat_item.setVisible(False)
        self._shape = None
        self.show_message(message, error=error)

    def _set_message_kind(self, kind: str) -> None:
        self.message.setProperty("kind", kind)
        self.message.setStyleSheet(_MESSAGE_STYLES[kind])

    def show_message(self, message: str, *, error: bool = False) -> None:
        """Show ``message`` over the view: neutral information, or red when ``error``."""
        if message:
            self._set_message_kind("error" if error else "info")
            self.message.setText(message)
            self.message.show()
            self.message.raise_()
            self._place_labels()
        else:
            self.message.hide()

    def set_corner_text(self, position: str, finding: str, window: str) -> None:
        for label, text in ((self.position_label, position), (self.finding_label, finding), (self.window_label, window)):
            label.setText(text)
            label.setVisible(bool(text))
            label.adjustSize()
        self._place_labels()

    def set_warnings(self, badge: str, heat: str) -> None:
        """The out-of-domain badge and the heat-map warning over the slice ("" hides each)."""
        for label, text in ((self.domain_badge, badge), (self.heat_warning, heat)):
            label.setText(text)
            label.setVisible(bool(text))
            label.adjustSize()
        self._place_labels()

    # -- view range ------------------------------------------------------------------------------
    def fit(self) -> None:
        self.viewbox.autoRange(items=[self.slice_item], padding=0.01)

    def zoom(self, factor: float) -> None:
        """Zoom by ``factor`` (> 1 magnifies) about the centre of the view."""
        center = self.viewbox.viewRect().center()
        self.viewbox.scaleBy((1.0 / factor, 1.0 / factor), center=QPointF(center))

    # -- events ------------------------------------------------------------------------------------
    def keyPressEvent(self, ev: QKeyEvent) -> None:
        key = int(ev.key())
        if key in _STEP_KEYS and not ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.sliceStep.emit(_STEP_KEYS[key])
        elif key in (_HOME, _END):
            self.sliceJump.emit(key == _END)
        elif key == _SPACE:
            if not ev.isAutoRepeat() and not self._space_down:
                self._space_down = True
                self.compareHeld.emit(True)
        else:
            super().keyPressEvent(ev)
            return
        ev.accept()

    def keyReleaseEvent(self, ev: QKeyEvent) -> None:
        if int(ev.key()) == _SPACE and not ev.isAutoRepeat():
            if self._space_down:
                self._space_down = False
                self.compareHeld.emit(False)
            ev.accept()
            return
        super().keyReleaseEvent(ev)

    def focusOutEvent(self, ev) -> None:
        if self._space_down:
            self._space_down = False
            self.compareHeld.emit(False)
        super().focusOutEvent(ev)

    def mouseDoubleClickEvent(self, ev) -> None:
        self.fitRequested.emit()
        ev.accept()

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._place_labels()

    def _place_labels(self) -> None:
        if not hasattr(self, "message"):  # pyqtgraph resizes during construction
            return
        margin = 8
        bar = int(self.colorbar.boundingRect().width()) + 12
        self.position_label.move(margin, margin)
        right = self.width() - bar - self.finding_label.width() - margin
        if self.position_label.isVisible() and right < self.position_label.width() + 2 * margin:
            self.finding_label.move(margin, margin * 2 + self.position_label.height())
        else:
            self.finding_label.move(max(margin, right), margin)
        self.window_label.move(margin, max(margin, self.height() - self.window_label.height() - margin))
        below = [label for label in (self.position_label, self.finding_label) if label.isVisible()]
        top = max((label.y() + label.height() for label in below), default=0) + margin
        for label in (self.domain_badge, self.heat_warning):  # stacked under the corner text, right-aligned
            if label.isVisible():
                label.move(max(margin, self.width() - bar - label.width() - margin), top)
                top += label.height() + margin // 2
        if self.message.isVisible():
            width = min(self.width() - 40, 560)
            self.message.setFixedWidth(max(200, width))
            self.message.adjustSize()
            self.message.move((self.width() - self.message.width()) // 2, (self.height() - self.message.height()) // 2)
