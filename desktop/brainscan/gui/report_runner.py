"""Writing a report folder on a worker thread (the engine's :class:`FolderRun`, as ``brainscan screen``).

The chosen frames are screened again into the report folder (about 10 ms a frame on a CPU), so
the folder holds exactly what ``brainscan screen --report`` would write for them: ``results.csv``,
``results.json``, ``series.csv`` and the reports, with the run's provenance. Cancelling stops
between frames; what was written is kept and no report is made. The thread, the chunked delivery
and the cancel are the :class:`~brainscan.gui.job_runner.JobRunner`'s, as for the batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from PySide6.QtCore import QObject, Signal

from brainscan.engine.errors import BrainscanError
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.model.inference import Classifier
from brainscan.engine.run.folder_run import FolderRun, RunOutcome, RunSettings
from brainscan.gui.job_runner import JobRunner
from brainscan.gui.workers import WorkerPool


def report_job(refs: list[FrameRef], classifier: Classifier, settings: RunSettings) -> Iterator[tuple[str, object]]:
    """Screen ``refs`` into ``settings.out`` and write the reports, yielding what happens.

    Yields ``("progress", (done, total))`` after every frame, then ``("done", outcome)``, or
    ``("failed", why)`` when the folder cannot be used or a write fails (the rows written are kept).
    """
    try:
        run = FolderRun(classifier, refs, settings)
    except (BrainscanError, OSError, ValueError) as exc:
        yield ("failed", str(exc))
        return
    with run:
        total = len(run.todo)
        try:
            for done, _result in enumerate(run.results(), start=1):
                yield ("progress", (done, total))  # the worker stops here when cancelled
            outcome = run.finish()
        except (BrainscanError, OSError) as exc:  # e.g. the disk filled: the rows written are kept
            yield ("failed", f"{exc}; what was written to {settings.out} is kept")
            return
        yield ("done", outcome)


class ReportRunner(QObject):
    """Writes one report folder at a time.

    Signals
    -------
    progress(done, total):
        Frames screened so far (the latest at each delivery of the runner, and the last).
    finished(outcome, message):
        The run ended: ``outcome`` is the :class:`RunOutcome` (None when nothing could run) and
        ``message`` why it could not run or failed, else "".
    """

    progress = Signal(int, int)
    finished = Signal(object, str)

    def __init__(self, pool: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job = JobRunner(pool, "report", self)
        self.job.itemsReady.connect(self._on_items)
        self.job.finished.connect(self._on_finished)
        self._outcome: RunOutcome | None = None
        self._message = ""

    @property
    def running(self) -> bool:
        return self.job.running

    def start(self, refs: Sequence[FrameRef], classifier: Classifier, settings: RunSettings) -> bool:
        if self.job.running or not refs:
            return False
        refs = list(refs)
        self._outcome, self._message = None, ""
        return self.job.start(lambda: report_job(refs, classifier, settings))

    def cancel(self) -> None:
        self.job.cancel()

    def _on_items(self, items: list[tuple[str, object]]) -> None:
        progress = None
        for kind, value in items:
            if kind == "progress":
                progress = value
            elif kind == "done":
                self._outcome = value  # type: ignore[assignment]
            else:
                self._message = str(value)
        if progress is not None:
            self.progress.emit(*progress)

    def _on_finished(self, cancelled: bool, failure: str) -> None:
        if failure:
            self._message = f"unexpected error: {failure}"
        outcome = self._outcome
        if cancelled and outcome is None and not self._message:
            self._message = "cancelled: the frames screened so far are kept in results.csv; no report was made"
        self.finished.emit(outcome, self._message)
