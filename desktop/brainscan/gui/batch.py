"""Batch classification on a worker thread, delivered to the GUI in small chunks.

The job iterates :func:`brainscan.engine.run.screening.screen` (one result per frame, a failed
file being an ``error`` result); the :class:`~brainscan.gui.job_runner.JobRunner` hands the results
to the GUI thread every few tens of milliseconds, so a fast model never floods the event loop with
table updates. Cancelling stops consuming the generator between results.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal

from brainscan.engine.input.frames import FrameRef
from brainscan.engine.model.inference import Classifier
from brainscan.engine.results.record import FrameResult
from brainscan.engine.run.screening import DEFAULT_BATCH_SIZE, screen
from brainscan.gui.job_runner import JobRunner
from brainscan.gui.workers import WorkerPool

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
        A list of :class:`~brainscan.engine.results.record.FrameResult`, in input order.
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
        self.job = JobRunner(pool, "batch", self)
        self.job.started.connect(lambda: self.started.emit(self._total))
        self.job.itemsReady.connect(self._on_results)
        self.job.finished.connect(self.finished)
        self._done = 0
        self._total = 0

    @property
    def running(self) -> bool:
        return self.job.running

    @property
    def elapsed(self) -> float:
        """Seconds the last batch took."""
        return self.job.elapsed

    def start(self, refs: Sequence[FrameRef], classifier: Classifier, cam_method: str | None = "gradcam") -> bool:
        if self.job.running or not refs:
            return False
        refs = list(refs)

        def job():
            # the features stay with each result (keep_frames), so the viewer redraws any CAM
            return screen(refs, classifier, cam_method=cam_method, keep_frames=True, batch_size=DEFAULT_BATCH_SIZE,
                          decode_workers=DECODE_WORKERS)

        self._done, self._total = 0, len(refs)
        return self.job.start(job)

    def cancel(self) -> None:
        self.job.cancel()

    def _on_results(self, results: list[FrameResult]) -> None:
        for result in results:
            result.heat = None  # the viewer recomputes maps from the features on demand
        self._done += len(results)
        self.resultsReady.emit(results)
        self.progress.emit(self._done, self._total)
