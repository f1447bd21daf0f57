"""Scrolling slices with keys and the wheel; window/level by dragging and by presets; zoom and fit."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication
from viewer_helpers import open_and_show

pytestmark = pytest.mark.gui


def _position(window) -> str:
    return window.controller.session.position_text()


def _settle(qtbot, window) -> None:
    """Wait until the frame on screen is the current one (it may still be decoding)."""
    c = window.controller
    qtbot.waitUntil(lambda: c.shown_key == c.session.current_key, timeout=10_000)


@pytest.fixture
def series_window(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.series.folder])
    window.view.setFocus()
    return window


def test_keys_scroll_slices_and_the_position_is_shown(qtbot, series_window):
    w = series_window
    qtbot.keyClick(w.view, Qt.Key.Key_Down)
    assert _position(w) == "slice 2/16"
    qtbot.keyClick(w.view, Qt.Key.Key_Right)
    assert _position(w) == "slice 3/16"
    qtbot.keyClick(w.view, Qt.Key.Key_Up)
    assert _position(w) == "slice 2/16"
    qtbot.keyClick(w.view, Qt.Key.Key_PageDown)
    assert _position(w) == "slice 3/16"
    qtbot.keyClick(w.view, Qt.Key.Key_PageUp)
    assert _position(w) == "slice 2/16"
    qtbot.keyClick(w.view, Qt.Key.Key_End)
    assert _position(w) == "slice 16/16"
    _settle(qtbot, w)
    assert w.view.position_label.text() == "slice 16/16"
    assert w.controller.shown_key == (str(w.controller.session.current.path), 0)
    qtbot.keyClick(w.view, Qt.Key.Key_Home)
    assert _position(w) == "slice 1/16"


def test_the_next_slice_action_works_from_anywhere_in_the_window(qtbot, series_window):
    series_window.actions_.next_slice.trigger()
    series_window.actions_.next_slice.trigger()
    assert _position(series_window) == "slice 3/16"
    series_window.actions_.previous_slice.trigger()
    assert _position(series_window) == "slice 2/16"


def _wheel(view, notches: int) -> None:
    viewport = view.viewport()
    center = QPointF(viewport.width() / 2, viewport.height() / 2)
    event = QWheelEvent(center, QPointF(viewport.mapToGlobal(center.toPoint())), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, event)


def test_the_wheel_scrolls_slices(qtbot, series_window):
    _wheel(series_window.view, -3)  # towards the user: forwards
    assert _position(series_window) == "slice 4/16"
    _wheel(series_window.view, 1)
    assert _position(series_window) == "slice 3/16"


def test_the_browser_and_the_view_stay_in_step(qtbot, series_window):
    w = series_window
    qtbot.keyClick(w.view, Qt.Key.Key_Down)
    current = w.browser.selectionModel().currentIndex()
    assert current.data().startswith("slice 2 ")
    child = w.browser.browser_model.item(0).child(9)
    w.browser.setCurrentIndex(child.index())
    assert _position(w) == "slice 10/16"


def _drag(view, button: Qt.MouseButton, start: QPoint, end: QPoint) -> None:
    viewport = view.viewport()
    for kind, point, buttons in (
        (QEvent.Type.MouseButtonPress, start, button),
        (QEvent.Type.MouseMove, (start + end) / 2, button),
        (QEvent.Type.MouseMove, end, button),
        (QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton),
    ):
        event = QMouseEvent(kind, QPointF(point), QPointF(viewport.mapToGlobal(point)), button, buttons,
                            Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)


def test_right_drag_changes_window_and_level(qtbot, series_window):
    w = series_window
    before = tuple(w.view.slice_item.levels)
    start_window = w.controller.window
    center = QPoint(w.view.viewport().width() // 2, w.view.viewport().height() // 2)
    _drag(w.view, Qt.MouseButton.RightButton, center, center + QPoint(80, 0))
    after = w.controller.window
    assert after.width > start_window.width and after.source == "manual"
    assert tuple(w.view.slice_item.levels) != before
    low, high = w.view.slice_item.levels
    assert high - low == pytest.approx(after.width)
    assert "manual" in w.view.window_label.text()
    _drag(w.view, Qt.MouseButton.MiddleButton, center, center + QPoint(0, 60))
    assert w.controller.window.center < after.center


def test_a_manual_window_is_kept_while_scrolling_the_series_and_reset_restores(qtbot, series_window):
    w = series_window
    c = w.controller
    presets = c.presets()
    contrast = next(p for p in presets if p.name == "MR grey/white contrast")
    c.set_window(contrast.window)
    assert tuple(w.view.slice_item.levels) == pytest.approx((contrast.window.lower, contrast.window.upper))
    qtbot.keyClick(w.view, Qt.Key.Key_Down)
    _settle(qtbot, w)
    assert c.window == contrast.window
    w.actions_.reset_window.trigger()
    assert c.window == c.display.default


def test_presets_menu_lists_tag_auto_and_mr_windows(qtbot, series_window):
    w = series_window
    w.controller.step(5)  # slice 6 carries sane tags (the edges carry the degenerate 11/22)
    _settle(qtbot, w)
    w.fill_presets_menu()
    texts = [a.text() for a in w.actions_.presets_menu.actions()]
    assert texts[0].startswith("From the DICOM tags") and any(t.startswith("Auto") for t in texts)
    full = next(a for a in w.actions_.presets_menu.actions() if a.text().startswith("Full range"))
    full.trigger()
    assert w.controller.window.source == "full range"


def test_zoom_and_fit(qtbot, series_window):
    w = series_window
    (x0, x1), _ = w.view.viewbox.viewRange()
    w.actions_.zoom_in.trigger()
    (z0, z1), _ = w.view.viewbox.viewRange()
    assert (z1 - z0) < (x1 - x0)
    w.actions_.fit.trigger()
    (f0, f1), (g0, g1) = w.view.viewbox.viewRange()
    assert (f0 <= 0 and f1 >= 223) or (g0 <= 0 and g1 >= 223)
