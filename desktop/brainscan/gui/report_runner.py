"""Writing a report folder on a worker thread (the engine's :class:`FolderRun`, as ``brainscan screen``).

The chosen frames are screened again into the report folder (about 10 ms a frame on a CPU), so
the folder holds exactly what ``brainscan screen --report`` would write for them: ``results.csv``,
``results.json``, ``series.csv`` and the reports, with the run's provenance. Cancelling stops
between frames; what was written is kept and no report is made.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from PySide6.QtCore import QObject, Signal

from brainscan.engine.errors import BrainscanError
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.model.inference import Classifier
from brainscan.engine.run.folder_run import FolderRun, RunOutcome, RunSettings
from brainscan.gui.workers import GeneratorWorker, WorkerPool

PROGRESS_EVERY_S = 0.1


class ReportRunner(QObject):
    """Writes one report folder at a time.

    Signals
    -------
    progress(done, total):
        Frames screened so far (at most every :data:`PROGRESS_EVERY_S` seconds, and the last).
    finished(outcome, message):
        The run ended: ``outcome`` is the :class:`RunOutcome` (None when nothing could run) and
        ``message`` why it could not run or failed, else "".
    """

    progress = Signal(int, int)
    finished = Signal(object, str)

    def __init__(self, pool: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = pool
        self._worker: GeneratorWorker | None = None
        self._outcome: RunOutcome | None = None
        self._message = ""

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self, refs: Sequence[FrameRef], classifier: Classifier, settings: RunSettings) -> bool:
        if self._worker is not None or not refs:
            return False
        refs = list(refs)
        self._outcome, self._message = None, ""

        def job() -> Iterator[object]:
            try:
                run = FolderRun(classifier, refs, settings)
            except (BrainscanError, OSError, ValueError) as exc:
                yield ("failed", str(exc))
                return
            with run:
                total, done, last = len(run.todo), 0, 0.0
                try:
                    for _ in run.results():
                        if worker.abort_requested:  # checked every frame: progress is only sent now and then
                            return
                        done += 1
                        now = time.perf_counter()
                        if now - last >= PROGRESS_EVERY_S or done == total:
                            last = now
                            yield ("progress", (done, total))
                    outcome = run.finish()
                except (BrainscanError, OSError) as exc:  # e.g. the disk filled: the rows written are kept
                    yield ("failed", f"{exc}; what was written to {settings.out} is kept")
                    return
                yield ("done", outcome)

        worker = GeneratorWorker(job, name="report")
        worker.signals.yielded.connect(self._on_item)
        worker.signals.errored.connect(self._on_error)
        worker.signals.finished.connect(self._on_finished)
        self._worker = worker
        self._pool.start(worker)
        return True

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.quit()

    def _on_item(self, item: object) -> None:
        kind, value = item  # type: ignore[misc]
        if kind == "progress":
            self.progress.emit(*value)
        elif kind == "done":
            self._outcome = value
        else:
            self._message = str(value)

    def _on_error(self, message: str) -> None:
        self._message = f"unexpected error: {message}"

    def _on_finished(self, cancelled: bool) -> None:
        self._worker = None
        outcome = self._outcome
        if cancelled and outcome is None and not self._message:
            self._message = "cancelled: the frames screened so far are kept in results.csv; no report was made"
        self.finished.emit(outcome, self._message)
