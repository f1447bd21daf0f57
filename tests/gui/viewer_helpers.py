"""Helpers shared by the viewer tests (waiting on signals, never sleeping)."""

from __future__ import annotations


def open_and_show(qtbot, window, paths, timeout: int = 10_000) -> None:
    """Open ``paths`` and wait until the first frame is on screen."""
    with qtbot.waitSignal(window.controller.frameShown, timeout=timeout):
        window.opening.open_paths([str(p) for p in paths])


def classify_and_wait(qtbot, window, timeout: int = 30_000) -> None:
    with qtbot.waitSignal(window.batch.finished, timeout=timeout) as blocker:
        assert window.batch.classify_all()
    assert blocker.args == [False]
