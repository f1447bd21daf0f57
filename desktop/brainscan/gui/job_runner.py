"""One background job at a time, its items handed to the GUI thread in small chunks.

The plumbing the batch classification (:mod:`brainscan.gui.batch`) and the report
(:mod:`brainscan.gui.report_runner`) share: a generator run by a
:class:`~brainscan.gui.workers.GeneratorWorker` on the window's pool, what it yields collected on
the GUI thread and delivered every :data:`FLUSH_MS` milliseconds (so a fast job never floods the
event loop with updates), cancel between items, and one ``finished`` after the last delivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from PySide6.QtCore import QObject, QTimer, Signal

from brainscan.gui.workers import GeneratorWorker, WorkerPool

FLUSH_MS = 60


class JobRunner(QObject):
    """Runs one generator job at a time on ``pool``.

    Signals
    -------
    started():
        A job was accepted (``running`` is already True); it starts on the pool right after.
    itemsReady(items):
        A list of what the job yielded since the last delivery, in order (never empty).
    finished(cancelled, failure):
        The job ended, after its last items were delivered; ``failure`` is an unexpected error, or "".
    """

    started = Signal()
    itemsReady = Signal(object)
    finished = Signal(bool, str)

    def __init__(self, pool: WorkerPool, name: str, parent: QObject | None = None, flush_ms: int = FLUSH_MS) -> None:
        super().__init__(parent)
        self.name = name
        self._pool = pool
        self._worker: GeneratorWorker | None = None
        self._buffer: list[object] = []
        self._failure = ""
        self._t0 = 0.0
        self.elapsed = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(flush_ms)
        self._timer.timeout.connect(self._flush)

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self, job: Callable[[], Iterator[object]]) -> bool:
        """Run ``job()`` (a generator function) in the background; False while another job runs."""
        if self._worker is not None:
            return False
        self._buffer.clear()
        self._failure = ""
        worker = GeneratorWorker(job, name=self.name)
        worker.signals.yielded.connect(self._collect)
        worker.signals.errored.connect(self._on_error)
        worker.signals.finished.connect(self._on_finished)
        self._worker = worker
        self._t0 = time.perf_counter()
        self._timer.start()
        self.started.emit()
        self._pool.start(worker)
        return True

    def cancel(self) -> None:
        """Ask the job to stop after the item it is producing (``finished`` says ``cancelled``)."""
        if self._worker is not None:
            self._worker.quit()

    def _collect(self, item: object) -> None:
        self._buffer.append(item)

    def _on_error(self, message: str) -> None:
        self._failure = message

    def _flush(self) -> None:
        if not self._buffer:
            return
        chunk, self._buffer = self._buffer, []
        self.itemsReady.emit(chunk)

    def _on_finished(self, cancelled: bool) -> None:
        self._timer.stop()
        self._flush()
        self._worker = None
        self.elapsed = time.perf_counter() - self._t0
        self.finished.emit(cancelled, self._failure)
