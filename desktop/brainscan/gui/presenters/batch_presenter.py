"""*Classify all*: every open image not yet classified, in the background, with progress and cancel;
the results fill the table, the browser's marks and the per-series summary as they come."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from brainscan.engine.results.record import FrameResult
from brainscan.engine.results.verdict import VerdictRule
from brainscan.engine.viewer.results import most_suspicious_keys, series_summary
from brainscan.engine.viewer.state import FrameKey, frame_key
from brainscan.gui.batch import BatchRunner
from brainscan.gui.browser import BrowserView
from brainscan.gui.frame_loader import FrameLoader
from brainscan.gui.presenters.model_presenter import ModelPresenter
from brainscan.gui.results_panel import ResultsPanel, SeriesSummaryPanel
from brainscan.gui.status_line import StatusLine
from brainscan.gui.viewer_controller import ViewerController
from brainscan.gui.workers import WorkerPool


class BatchPresenter(QObject):
    """Runs the batch and shows its results.

    Signals
    -------
    stateChanged():
        A batch started or ended (the window enables its actions again).
    finished(cancelled):
        A batch ended, every result shown.
    """

    stateChanged = Signal()
    finished = Signal(bool)

    def __init__(
        self, pool: WorkerPool, controller: ViewerController, models: ModelPresenter, loader: FrameLoader,
        results_panel: ResultsPanel, series_panel: SeriesSummaryPanel, browser: BrowserView, status: StatusLine,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.runner = BatchRunner(pool, self)
        self.controller = controller
        self.models = models
        self.loader = loader
        self.results_panel = results_panel
        self.series_panel = series_panel
        self.browser = browser
        self._status = status
        self.cam_method: str | None = None  # the CAM method of the last batch (the CSV export names it)
        self.runner.started.connect(self._on_started)
        self.runner.resultsReady.connect(self._on_results)
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)

    @property
    def running(self) -> bool:
        return self.runner.running

    def classify_all(self) -> bool:
        classifier = self.models.classifier
        if classifier is None:
            self._status.error("No model in use: choose one in Settings (Ctrl+,).")
            return False
        refs = self.controller.session.unclassified()
        if not refs:
            self._status.message("Everything open is classified.", 5000)
            return False
        self.cam_method = self.controller.overlay.method
        return self.runner.start(refs, classifier, self.cam_method)

    def cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self._status.message("Cancelling…")

    def _on_started(self, total: int) -> None:
        self.loader.set_paused(True)  # the batch decodes the same files; thumbnails come with its results
        self._status.start_progress(total)
        self.stateChanged.emit()

    def _on_progress(self, done: int, total: int) -> None:
        self._status.set_progress(done)
        self._status.message(f"Classifying: {done} of {total}…")

    def _on_results(self, results: list[FrameResult]) -> None:
        classifier = self.models.classifier
        if classifier is None:
            return
        session = self.controller.session
        results = [r for r in results if session.locate(frame_key(r.ref.path, r.ref.frame)) is not None]
        if not results:  # closed while the batch was stopping
            return
        keys = self.controller.add_results(results, self.cam_method)  # the session keeps their records
        self.show_records(keys)

    def show_records(self, keys: list[FrameKey]) -> None:
        """The session holds new or replaced records for ``keys``: the table, browser, summary and view show them."""
        session = self.controller.session
        self.results_panel.table_model.upsert(keys)
        for key in keys:
            self.browser.browser_model.set_result(key, session.results[key])
        self._update_summary()
        self.controller.results_changed(keys)
        current = session.current_key
        if current in keys:
            self.results_panel.select_key(current)

    def _update_summary(self) -> None:
        classifier = self.models.classifier
        if classifier is None:
            return
        summary = series_summary(self.results_panel.table_model.rows, classifier.classes,
                                 VerdictRule.from_contract(classifier.contract))
        self.series_panel.show_summary(summary, self.controller.session.series_names())
        self.results_panel.table_model.set_suspicious(most_suspicious_keys(summary))

    def _on_finished(self, cancelled: bool, failure: str) -> None:
        self.loader.set_paused(False)
        self._status.end_progress()
        rows = self.results_panel.table_model.rows
        errors = sum(1 for row in rows if not row.ok)
        if failure:
            self._status.error(f"Classification stopped by an unexpected error: {failure}")
        elif cancelled:
            self._status.message(f"Cancelled: {len(rows)} of {len(self.controller.session)} classified.", 10000)
        else:
            self._status.message(
                f"Classified {len(rows)} images in {self.runner.elapsed:.1f} s"
                + (f"; {errors} could not be read (see Results, 'Errors only')" if errors else ""), 15000
            )
        self.results_panel.select_key(self.controller.session.current_key)
        self.stateChanged.emit()
        self.finished.emit(cancelled)
