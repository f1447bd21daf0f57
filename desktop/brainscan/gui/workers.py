"""Long work off the GUI thread: a generator run by a worker on a thread pool (napari-style).

A :class:`GeneratorWorker` iterates a generator on a :class:`QThreadPool` thread and emits each
item with ``yielded``; :meth:`GeneratorWorker.quit` asks it to stop, checked between items, and
``finished`` always comes last (with whether it was cancelled). :class:`WorkerPool` owns the
threads, keeps every running worker referenced, and can wait for all of them (tests and
shutdown leave no thread behind).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from brainscan.gui.gui_thread_gc import collect_in_gui_thread

log = logging.getLogger(__name__)

_RETIRED_KEPT = 32


class WorkerSignals(QObject):
    """Signals of a worker (a QRunnable is not a QObject). They live in the GUI thread."""

    yielded = Signal(object)
    errored = Signal(str)
    finished = Signal(bool)  # cancelled


class GeneratorWorker(QRunnable):
    """Run ``make()`` (a generator function of no arguments) and emit what it yields.

    An exception inside the generator is logged with its traceback and reported by ``errored``
    (the message only); ``finished`` follows in every case.
    """

    def __init__(
        self,
        make: Callable[[], Iterator[object]],
        name: str = "worker",
        on_quit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.name = name
        self.signals = WorkerSignals()
        self._make = make
        self._on_quit = on_quit
        self._abort = threading.Event()
        self._done = threading.Event()

    @property
    def abort_requested(self) -> bool:
        return self._abort.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def quit(self) -> None:
        """Ask the worker to stop after the item it is producing (``on_quit`` can wake it up)."""
        self._abort.set()
        if self._on_quit is not None:
            self._on_quit()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def run(self) -> None:
        cancelled = False
        generator = None
        try:
            if self._abort.is_set():
                cancelled = True
                return
            generator = self._make()
            for item in generator:
                if self._abort.is_set():
                    cancelled = True
                    break
                self.signals.yielded.emit(item)
            else:
                cancelled = self._abort.is_set()
        except Exception as exc:  # reported, never lost
            log.exception("%s failed", self.name)
            self.signals.errored.emit(f"{type(exc).__name__}: {exc}")
        finally:
            if generator is not None and hasattr(generator, "close"):
                try:
                    generator.close()
                except Exception:
                    log.exception("%s: closing its generator failed", self.name)
            self._done.set()
            self.signals.finished.emit(cancelled)


class WorkerPool(QObject):
    """A private thread pool that keeps its workers alive until they finish.

    Python code runs on its threads, so from the first pool on, cycles are collected in the GUI thread
    only (:mod:`brainscan.gui.gui_thread_gc`): a worker must never be the one to destroy Qt objects.
    """

    def __init__(self, max_threads: int = 2, parent: QObject | None = None) -> None:
        super().__init__(parent)
        collect_in_gui_thread()
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._running: set[GeneratorWorker] = set()
        self._retired: list[GeneratorWorker] = []

    def start(self, worker: GeneratorWorker, priority: int = 0) -> GeneratorWorker:
        self._running.add(worker)
        worker.signals.finished.connect(self._forget)
        self.pool.start(worker, priority)
        return worker

    def _forget(self, _cancelled: bool) -> None:
        done = {w for w in self._running if w.done}
        self._running -= done
        # A finished worker's thread can still be on its way out of run(): its C++ objects must not be
        # deleted under it. Finished workers are let go once no thread of the pool is busy (and only the
        # last few are kept while a long-lived worker, such as the frame loader, keeps one busy).
        self._retired.extend(done)
        if self.pool.activeThreadCount() == 0:
            self._retired.clear()
        else:
            del self._retired[:-_RETIRED_KEPT]

    @property
    def running(self) -> int:
        return sum(1 for w in self._running if not w.done)

    def quit_all(self) -> None:
        for worker in list(self._running):
            worker.quit()

    def wait_all(self, msecs: int = 30_000) -> bool:
        """Stop every worker and wait for the threads; True when all have ended."""
        self.quit_all()
        ended = self.pool.waitForDone(msecs)
        self._forget(False)
        return ended
