"""Python's cycle collector, run in the GUI thread only while the viewer has worker threads.

CPython's cyclic garbage collector runs in whichever thread happens to allocate when a generation's
threshold is passed. In the viewer that is often a worker (decoding a DICOM file, writing an SR), and a
cycle it collects may hold Qt objects of the GUI thread: a closed MPR window, a menu, a lambda connected
to a signal. Destroying those off the GUI thread is undefined behaviour in Qt; seen here as a deadlock
(the worker in ``QObject::~QObject`` waiting for the GIL, the GUI thread holding it and waiting for
Qt's connection lock) and as aborts inside ``Garbage-collecting``.

:func:`collect_in_gui_thread` turns the automatic collector off and collects, generation by generation
with the interpreter's own thresholds, from a timer in the GUI thread instead (pyqtgraph's
``GarbageCollector`` does the same for the same reason). :func:`restore_automatic_gc` undoes it. What lives
when it starts is frozen (:func:`gc.freeze`): it is not walked by every later full collection.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

INTERVAL_MS = 500

_collector: GuiThreadCollector | None = None


class GuiThreadCollector(QObject):
    """Collects garbage from a GUI-thread timer, with the thresholds the interpreter had."""

    def __init__(self, parent: QObject, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.collections = 0
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)

    def start(self) -> None:
        """Freeze what is there now (the modules, the application: later full collections need not walk it
        again, they cost milliseconds instead of a tenth of a second here) and take over."""
        gc.disable()
        gc.freeze()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        gc.enable()

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds (as the automatic collector would)."""
        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= self.thresholds[generation]:
                break
            gc.collect(generation)
            self.collections += 1


def collect_in_gui_thread() -> GuiThreadCollector:
    """Collect cycles in the GUI thread from now on (idempotent; call it from the GUI thread)."""
    global _collector
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() != app.thread():
        raise RuntimeError("collect_in_gui_thread() must be called from the GUI thread of a running QApplication")
    if _collector is None:
        _collector = GuiThreadCollector(app)
    _collector.start()
    return _collector


def restore_automatic_gc() -> None:
    """Collect now (in this thread) and give the collection back to the interpreter."""
    global _collector
    if _collector is not None:
        _collector.stop()
        _collector.deleteLater()
        _collector = None
    gc.enable()
    gc.collect()
