"""*Write report*: the dialog's scopes (selection, series, shown, all) and the report folder written in the
background with the heat-map panel's method, colour map and opacity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from brainscan.engine.input.frames import FrameRef
from brainscan.engine.run.folder_run import RunOutcome, RunSettings
from brainscan.gui.annotation_store import annotations_folder
from brainscan.gui.presenters.model_presenter import ModelPresenter
from brainscan.gui.report_dialog import ReportDialog, ReportRequest, default_report_folder
from brainscan.gui.report_runner import ReportRunner
from brainscan.gui.results_panel import ResultsPanel
from brainscan.gui.settings import AppSettings
from brainscan.gui.status_line import StatusLine
from brainscan.gui.viewer_controller import ViewerController
from brainscan.gui.workers import WorkerPool


class ReportPresenter(QObject):
    """Writes one report folder at a time.

    Signals
    -------
    stateChanged():
        A report started or ended.
    finished(outcome, message):
        The :class:`RunOutcome` (None when nothing could run) and why it failed ("" when it did not).
    """

    stateChanged = Signal()
    finished = Signal(object, str)

    def __init__(
        self, pool: WorkerPool, controller: ViewerController, models: ModelPresenter, results_panel: ResultsPanel,
        settings: AppSettings, status: StatusLine, parent: QWidget, busy: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(parent)
        self.runner = ReportRunner(pool, self)
        self.controller = controller
        self.models = models
        self.results_panel = results_panel
        self.settings = settings
        self._status = status
        self._parent = parent
        self._busy = busy
        self._folder: Path | None = None
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)

    @property
    def running(self) -> bool:
        return self.runner.running

    def scopes(self) -> dict[str, list[FrameRef]]:
        """The frames of each scope of the *Write report* dialog, in the order they are shown."""
        session = self.controller.session
        selected = [ref for key in self.results_panel.selected_keys() if (ref := session.ref_of(key)) is not None]
        if not selected and session.current is not None:
            selected = [session.current]
        group = session.current_group
        shown = [ref for key in self.results_panel.visible_keys() if (ref := session.ref_of(key)) is not None]
        return {"selection": selected, "series": list(group.refs) if group is not None else [],
                "shown": shown, "all": list(session.refs())}

    def dialog(self) -> ReportDialog:
        return ReportDialog(self.scopes(), default_report_folder(self.settings.last_folder()), self._parent)

    def choose_and_write(self) -> None:
        if self.models.classifier is None:
            self._status.error("No model in use: choose one in Settings (Ctrl+,).")
            return
        dialog = self.dialog()
        if dialog.exec():
            request = dialog.request()
            if request is not None:
                self.write(request)

    def write(self, request: ReportRequest) -> bool:
        """Screen the request's frames into its folder and write the reports there (in the background).

        The heat maps use the method, colour map and opacity of the heat-map panel.
        """
        classifier = self.models.classifier
        if classifier is None or self.runner.running or self._busy():
            self._status.error("Wait for the running classification or report to end (or cancel it with Esc).")
            return False
        overlay = self.controller.overlay.value
        settings = RunSettings(
            out=request.folder, cam_method=overlay.method, colormap=overlay.colormap, opacity=overlay.opacity,
            threshold=overlay.threshold,
            report_formats=request.formats, keep_identifiers=request.keep_identifiers,
            deidentify=request.deidentify, inputs=tuple(sorted({str(ref.path) for ref in request.refs})),
            device_requested=self.settings.device, annotations_fallback=annotations_folder(self.settings),
        )
        if not self.runner.start(request.refs, classifier, settings):
            return False
        self._folder = request.folder
        self._status.start_progress(len(request.refs))
        self._status.message(f"Writing the report to {request.folder}…")
        self.stateChanged.emit()
        return True

    def cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self._status.message("Cancelling the report…")

    def _on_progress(self, done: int, total: int) -> None:
        self._status.set_progress(done, total)
        self._status.message(f"Report: {done} of {total} images…")

    def _on_finished(self, outcome: RunOutcome | None, message: str) -> None:
        self._status.end_progress()
        folder = self._folder
        if message or outcome is None or outcome.report_error:
            self._status.error(f"Report not written: {message or (outcome.report_error if outcome else '')}")
        elif outcome.interrupted:
            self._status.error(f"Report cancelled: results so far are in {folder}; no report was made")
        else:
            written = [path.name for path in (outcome.reports.written if outcome.reports else [])
                       if path.suffix != ".dcm"]
            parts = [f"Report written to {folder}: {', '.join(written) if written else 'DICOM objects'}"]
            if outcome.failed:
                parts.append(f"{outcome.failed} images could not be read (listed in the report)")
            parts += outcome.messages
            self._status.message("; ".join(parts), 20000)
        self.stateChanged.emit()
        self.finished.emit(outcome, message)
