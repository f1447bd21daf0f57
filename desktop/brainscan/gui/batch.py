"""Batch classification on a worker thread, delivered to the GUI in small chunks.

The worker iterates :func:`brainscan.engine.screening.screen` (one result per frame, a failed file
being an ``error`` result); the GUI thread collects results as they come and hands them on every
:data:`FLUSH_MS` milliseconds, so a fast model never floods the event loop with table updates.
Cancelling stops consuming the generator between results.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from PySide6.QtCore import QObject, QTimer, Signal

from brainscan.engine.input.frames import FrameRef
from brainscan.engine.model.inference import Classifier
from brainscan.engine.results.record import FrameResult
from brainscan.engine.run.screening import screen
from brainscan.gui.workers import GeneratorWorker, WorkerPool

FLUSH_MS = 60
# One decoding thread: decoding DICOM is mostly Python (it holds the GIL), and every extra
# Python thread lengthens the waits of the GUI thread; inference (onnxruntime) runs beside it.
DECODE_WORKERS = 1


class BatchRunner(QObject):
    """Classifies frames in the background.

    Signals
    -------
    started(total):
        A batch began.
    resultsReady(results):
        A list of :class:`~brainscan.engine.screening.FrameResult`, in input order.
    progress(done, total):
        Frames finished so far.
    finished(cancelled, message):
        The batch ended (all results delivered before); ``message`` is an unexpected failure, or "".
    """

    started = Signal(int)
    resultsReady = Signal(object)
    progress = Signal(int, int)
    finished = Signal(bool, str)

    def __init__(self, pool: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = pool
        self._worker: GeneratorWorker | None = None
        self._buffer: list[FrameResult] = []
        self._done = 0
        self._total = 0
        self._failure = ""
        self.elapsed = 0.0
        self._t0 = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self._flush)

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self, refs: Sequence[FrameRef], classifier: Classifier, cam_method: str | None = "gradcam") -> bool:
        if self._worker is not None or not refs:
            return False
        refs = list(refs)
        self._done, self._total, self._failure = 0, len(refs), ""
        self._buffer.clear()

        def job():
            # the features stay with each result (keep_frames), so the viewer redraws any CAM
            return screen(refs, classifier, cam_method=cam_method, keep_frames=True, batch_size=8,
                          decode_workers=DECODE_WORKERS)

        worker = GeneratorWorker(job, name="batch")
        worker.signals.yielded.connect(self._on_result)
        worker.signals.errored.connect(self._on_error)
        worker.signals.finished.connect(self._on_finished)
        self._worker = worker
        self._t0 = time.perf_counter()
        self._timer.start()
        self.started.emit(self._total)
        self._pool.start(worker)
        return True

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.quit()

    def _on_result(self, result: object) -> None:
        assert isinstance(result, FrameResult)
        result.heat = None  # the viewer recomputes maps from the features on demand
        self._buffer.append(result)

    def _on_error(self, message: str) -> None:
        self._failure = message

    def _flush(self) -> None:
        if not self._buffer:
            return
        chunk, self._buffer = self._buffer, []
        self._done += len(chunk)
        self.resultsReady.emit(chunk)
        self.progress.emit(self._done, self._total)

    def _on_finished(self, cancelled: bool) -> None:
        self._timer.stop()
        self._flush()
        self._worker = None
        self.elapsed = time.perf_counter() - self._t0
        self.finished.emit(cancelled, self._failure)
