"""The main window: the research-use banner, the image view, the panels, and their wiring.

Layout at 1280 x 800: the browser on the left, the heat-map controls and the tags on the right,
the results and the series summary below, the image in the middle. Everything that is not drawing
or Qt plumbing is in the engine; this class connects signals and turns menu choices into calls.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from brainscan import RESEARCH_USE_NOTICE, __version__
from brainscan.engine.errors import BrainscanError
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.integrity import ALLOW_UNVERIFIED_FLAG, UNVERIFIED_WARNING, is_verified
from brainscan.engine.model.overlay import write_png
from brainscan.engine.results.record import FrameResult
from brainscan.engine.run.folder_run import RunOutcome, RunSettings
from brainscan.engine.viewer.display import windowed_picture
from brainscan.engine.viewer.overlay import OverlaySettings, compose_export, export_caption
from brainscan.engine.viewer.results import (
    export_results,
    most_suspicious_keys,
    row_from_result,
    series_summary,
)
from brainscan.engine.viewer.state import FrameKey
from brainscan.gui.batch import BatchRunner
from brainscan.gui.browser import BrowserView
from brainscan.gui.frame_loader import FrameLoader
from brainscan.gui.icons import icon
from brainscan.gui.overlay_panel import OverlayPanel
from brainscan.gui.report_dialog import ReportDialog, ReportRequest, default_report_folder
from brainscan.gui.report_runner import ReportRunner
from brainscan.gui.results_panel import ResultsPanel, SeriesSummaryPanel
from brainscan.gui.settings import AppSettings
from brainscan.gui.settings_dialog import SettingsDialog
from brainscan.gui.slice_view import SliceView
from brainscan.gui.tags_panel import TagsPanel
from brainscan.gui.viewer_controller import ViewerController
from brainscan.gui.window_actions import WindowActions
from brainscan.gui.workers import GeneratorWorker, WorkerPool

log = logging.getLogger(__name__)

BANNER_TEXT = (
    "RESEARCH USE ONLY — NOT FOR DIAGNOSIS. Classifications and heat maps are research outputs, "
    "not medical findings, and must not guide any clinical decision."
)
SHORTCUTS_HTML = """
<table cellspacing='6'>
<tr><td><b>Wheel</b>, Up/Down, Left/Right, PgUp/PgDn</td><td>previous / next slice</td></tr>
<tr><td>Home / End</td><td>first / last slice</td></tr>
<tr><td>Ctrl+PgUp / Ctrl+PgDn</td><td>previous / next series</td></tr>
<tr><td><b>Right- or middle-drag</b></td><td>window/level (horizontal: width, vertical: level)</td></tr>
<tr><td>R</td><td>reset the window; presets in the Window/level menu</td></tr>
<tr><td><b>Left-drag</b></td><td>pan</td></tr>
<tr><td>Ctrl+wheel, Ctrl++ / Ctrl+-</td><td>zoom</td></tr>
<tr><td>F, double-click</td><td>fit the image to the window</td></tr>
<tr><td>H</td><td>heat map on/off</td></tr>
<tr><td>hold <b>Space</b> (in the image)</td><td>hide the heat map while held, to compare</td></tr>
<tr><td>F5 / Esc</td><td>classify all open images / cancel</td></tr>
<tr><td>Ctrl+O, Ctrl+Shift+O, Ctrl+D</td><td>open images, a folder, a DICOM folder (or drop them on the window)</td></tr>
<tr><td>Ctrl+E / Ctrl+Shift+E</td><td>export the image with its overlay (PNG) / the results (CSV)</td></tr>
<tr><td>Ctrl+R</td><td>write a report (PDF, HTML, DICOM) of the selection, a series or everything</td></tr>
</table>
"""


def inference_threads() -> int | None:
    """onnxruntime threads for the viewer: one core is left to the window (None: one per core).

    ``$BRAINSCAN_VIEWER_THREADS`` overrides it.
    """
    override = os.environ.get("BRAINSCAN_VIEWER_THREADS", "")
    if override.isdigit() and int(override) > 0:
        return int(override)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def open_classifier(path: Path, device: str, *, allow_unverified: bool = False) -> Classifier:
    """The viewer's classifier: the engine's, with a core left free so the window stays responsive.

    A model whose contract records no weights checksum is refused unless ``allow_unverified``
    (the viewer's ``--allow-unverified-model``).
    """
    return Classifier(path, device, threads=inference_threads(), allow_unverified=allow_unverified)


def research_banner() -> QLabel:
    """The permanent notice at the top of the window (it cannot be closed or hidden)."""
    banner = QLabel(f"⚠  {BANNER_TEXT}")
    banner.setObjectName("researchBanner")
    banner.setWordWrap(True)
    banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
    banner.setStyleSheet(
        "QLabel#researchBanner { background-color: #ffc107; color: #1a1a1a; font-weight: bold; "
        "padding: 5px 10px; border-bottom: 2px solid #b38600; }"
    )
    banner.setToolTip(RESEARCH_USE_NOTICE)
    return banner


class MainWindow(QMainWindow):
    """The viewer window.

    Parameters
    ----------
    settings:
        Where choices are remembered (tests pass a temporary INI file).
    model_in_background:
        Open the model on a worker thread (the window shows at once); tests open it in place.
    allow_unverified:
        Accept a model whose contract records no weights checksum (``--allow-unverified-model``);
        the status bar then shows a permanent warning. Without it such a model is refused.
    """

    modelChanged = Signal()
    batchFinished = Signal(bool)
    reportFinished = Signal(object, str)  # RunOutcome or None, and why it failed ("" when it did not)
    openFinished = Signal()

    def __init__(
        self, settings: AppSettings | None = None, *, model_in_background: bool = True, allow_unverified: bool = False
    ) -> None:
        super().__init__()
        self.settings = settings or AppSettings()
        self.allow_unverified = allow_unverified
        self.open_classifier = functools.partial(open_classifier, allow_unverified=allow_unverified)
        self.setWindowTitle(f"brainscan viewer {__version__} — research use only, not for diagnosis")
        self.setWindowIcon(icon("brainscan"))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.pool = WorkerPool(max_threads=3, parent=self)
        self.loader = FrameLoader(self.pool, self)
        self.batch = BatchRunner(self.pool, self)
        self.reporter = ReportRunner(self.pool, self)
        self.classifier: Classifier | None = None
        self._model_worker: GeneratorWorker | None = None
        self._batch_cam_method: str | None = None
        self._shut_down = False
        self.last_error = ""
        self._report_folder: Path | None = None

        self.view = SliceView()
        self.controller = ViewerController(self.view, self.loader, self.settings.overlay(), self)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        self.banner = research_banner()
        column.addWidget(self.banner)
        column.addWidget(self.view, 1)
        self.setCentralWidget(central)

        self.browser = BrowserView()
        self.overlay_panel = OverlayPanel(self.controller.overlay)
        self.tags_panel = TagsPanel()
        self.results_panel = ResultsPanel()
        self.series_panel = SeriesSummaryPanel()
        self.actions_ = WindowActions(self)
        self._docks()
        self._status_bar()
        self.actions_.show_heat.setChecked(self.controller.overlay.visible)
        self._wire()
        self.resize(1280, 800)
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self.load_model(self.settings.model_path, self.settings.device, background=model_in_background)

    # -- layout ----------------------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        self.actions_.panels_menu.addAction(dock.toggleViewAction())
        return dock

    def _docks(self) -> None:
        left, right, bottom = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                               Qt.DockWidgetArea.BottomDockWidgetArea)
        self.browser_dock = self._dock("Images", "browserDock", self.browser, left)
        self.overlay_dock = self._dock("Heat map", "overlayDock", self.overlay_panel, right)
        self.tags_dock = self._dock("Tags", "tagsDock", self.tags_panel, right)
        self.results_dock = self._dock("Results", "resultsDock", self.results_panel, bottom)
        self.series_dock = self._dock("Series summary", "seriesDock", self.series_panel, bottom)
        self.splitDockWidget(self.overlay_dock, self.tags_dock, Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.results_dock, self.series_dock)
        self.results_dock.raise_()
        self.resizeDocks([self.browser_dock], [240], Qt.Orientation.Horizontal)
        self.resizeDocks([self.overlay_dock], [290], Qt.Orientation.Horizontal)
        self.resizeDocks([self.results_dock], [210], Qt.Orientation.Vertical)
        self.resizeDocks([self.overlay_dock, self.tags_dock], [250, 300], Qt.Orientation.Vertical)

    def _status_bar(self) -> None:
        bar = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m")
        self.progress.hide()
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.setToolTip("Stop the running classification (Esc)")
        self.cancel_button.clicked.connect(self.cancel_batch)
        self.cancel_button.hide()
        self.device_label = QLabel("No model")
        self.device_label.setObjectName("deviceLabel")
        self.integrity_label = QLabel("UNVERIFIED MODEL")
        self.integrity_label.setObjectName("integrityLabel")
        self.integrity_label.setStyleSheet(
            "QLabel { color: white; background: #b00020; padding: 1px 6px; font-weight: bold; }"
        )
        self.integrity_label.hide()
        notice = QLabel("Research use only")
        notice.setStyleSheet("QLabel { color: #1a1a1a; background: #ffc107; padding: 1px 6px; font-weight: bold; }")
        notice.setToolTip(RESEARCH_USE_NOTICE)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.integrity_label)
        bar.addPermanentWidget(notice)

    def sizeHint(self) -> QSize:
        return QSize(1280, 800)

    # -- wiring ------------------------------------------------------------------------------------
    def _wire(self) -> None:
        c = self.controller
        self.loader.discovered.connect(self._on_discovered)
        c.currentChanged.connect(self._on_current_changed)
        c.thumbnailReady.connect(self.browser.browser_model.set_thumbnail)
        c.frameFailed.connect(lambda key, message: self.browser.browser_model.set_failed(key, message, self.style()))
        c.frameFailed.connect(self._on_frame_failed)
        c.infoChanged.connect(self._on_info_changed)
        self.browser.frameActivated.connect(c.go_to)
        self.results_panel.frameActivated.connect(c.go_to)
        self.series_panel.frameActivated.connect(c.go_to)
        self.overlay_panel.settingsChanged.connect(self._on_overlay_changed)
        self.batch.started.connect(self._on_batch_started)
        self.batch.resultsReady.connect(self._on_results)
        self.batch.progress.connect(self._on_progress)
        self.batch.finished.connect(self._on_batch_finished)
        self.reporter.progress.connect(self._on_report_progress)
        self.reporter.finished.connect(self._on_report_finished)
        self.view.setFocus()

    # -- opening -----------------------------------------------------------------------------------
    def open_paths(self, paths: Sequence[str | os.PathLike]) -> None:
        """Open files and folders (discovery runs in the background); remembers them as recent."""
        paths = [os.fspath(p) for p in paths if os.fspath(p)]
        if not paths:
            return
        self.settings.add_recent(paths)
        self.statusBar().showMessage(f"Opening {', '.join(Path(p).name or p for p in paths[:3])}…")
        self.loader.discover(paths)

    def _on_discovered(self, refs: list[FrameRef], errors: list[str]) -> None:
        for message in errors:
            self.show_error(message)
        if refs:
            for group in self.controller.open_refs(refs):
                self.browser.browser_model.sync_group(group)
            self.browser.select_key(self.controller.session.current_key)
            skipped = "; ".join(self.loader.skipped_notes)
            self.statusBar().showMessage(
                f"{len(self.controller.session)} images open" + (f"; {skipped}" if skipped else ""), 8000)
        elif not errors:
            skipped = "; ".join(self.loader.skipped_notes)
            self.show_error("No images found there (JPEG, PNG, BMP, TIFF or DICOM)." + (f" {skipped}." if skipped else ""))
        self._update_actions()
        self.openFinished.emit()

    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Open images", self.settings.last_folder(),
            "Images and DICOM (*.dcm *.dicom *.ima *.jpg *.jpeg *.png *.bmp *.tif *.tiff);;All files (*)",
        )
        if paths:
            self.settings.set_last_folder(Path(paths[0]).parent)
            self.open_paths(paths)

    def choose_folder(self, title: str = "Open a folder of images") -> None:
        folder = QFileDialog.getExistingDirectory(self, title, self.settings.last_folder())
        if folder:
            self.settings.set_last_folder(folder)
            self.open_paths([folder])

    def choose_dicom_folder(self) -> None:
        self.choose_folder("Open a DICOM folder (series are sorted along the slice normal)")

    def fill_recent_menu(self) -> None:
        menu = self.actions_.recent_menu
        menu.clear()
        recent = self.settings.recent()
        for path in recent:
            action = menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open_paths([p]))
        if recent:
            menu.addSeparator()
            menu.addAction("Clear the list", self.settings.clear_recent)
        else:
            menu.addAction("(nothing yet)").setEnabled(False)

    def close_all(self) -> None:
        self.cancel_batch()
        self.controller.close_all()
        self.browser.browser_model.clear_all()
        self.results_panel.table_model.clear()
        self.series_panel.show_summary([])
        self.tags_panel.show_frame(None)
        self._update_actions()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # -- the current image -------------------------------------------------------------------------
    def _on_current_changed(self, key: FrameKey | None) -> None:
        self.browser.select_key(key)
        self.results_panel.select_key(key)

    def _on_info_changed(self) -> None:
        c = self.controller
        frame = c.current_frame
        ref = c.session.current
        extra = {}
        if ref is not None:
            extra = {"File": str(ref.path), "Position": c.session.position_text()}
            if c.window is not None and c.display is not None:
                extra["Window"] = c.window.describe()
            result = c.current_result()
            if result is not None:
                extra["Result"] = f"{result.label} {result.confidence:.1%}" if result.ok else f"error: {result.error}"
        self.tags_panel.show_frame(frame if ref is not None and frame is not None and frame.ref == ref else None, extra)
        self._update_actions()

    def _on_frame_failed(self, key: FrameKey, message: str) -> None:
        if key == self.controller.session.current_key:
            self.statusBar().showMessage(message, 15000)

    def _on_overlay_changed(self, settings: OverlaySettings) -> None:
        self.controller.set_overlay(settings)
        self.settings.set_overlay(settings)
        checked = self.actions_.show_heat
        if checked.isChecked() != settings.visible:
            checked.blockSignals(True)
            checked.setChecked(settings.visible)
            checked.blockSignals(False)

    def set_heat_visible(self, visible: bool) -> None:
        self.overlay_panel.set_settings(self.overlay_panel.settings.updated(visible=visible))

    def fill_presets_menu(self) -> None:
        menu = self.actions_.presets_menu
        menu.clear()
        presets = self.controller.presets()
        for preset in presets:
            action = menu.addAction(f"{preset.name}   ({preset.window.describe().split(' (')[0]})")
            action.setToolTip(preset.tip)
            action.triggered.connect(lambda _checked=False, w=preset.window: self.controller.set_window(w))
        if not presets:
            menu.addAction("(no image)").setEnabled(False)

    # -- model ---------------------------------------------------------------------------------------
    def load_model(self, path: Path, device: str, background: bool = True) -> None:
        """Open the model of the settings; a failure leaves no model and says why in the status bar."""
        if not background:
            try:
                self.set_classifier(self.open_classifier(path, device))
            except BrainscanError as exc:
                self._model_failed(str(exc))
            return

        def job():
            yield self.open_classifier(path, device)

        worker = GeneratorWorker(job, name="model")
        worker.signals.yielded.connect(self.set_classifier)
        worker.signals.errored.connect(self._model_failed)
        self._model_worker = worker
        self.device_label.setText("Opening the model…")
        self.pool.start(worker)

    def _model_failed(self, message: str) -> None:
        self.device_label.setText("No model")
        self.integrity_label.hide()
        self.device_label.setToolTip(message)
        self.show_error(f"No model in use: {message}. Choose one in Settings (Ctrl+,).")
        self._update_actions()

    def set_classifier(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self.controller.set_classifier(classifier)
        self.overlay_panel.set_classes(classifier.classes)
        self.results_panel.set_classes(classifier.classes)
        self.series_panel.show_summary([])
        self.browser.browser_model.clear_results()
        report = classifier.device
        contract = classifier.contract
        text = f"{contract.name} {contract.version} · {report.used.upper()} ({report.providers[0] if report.providers else '?'})"
        if report.note:
            text += " ⚠ fallback"
            self.statusBar().showMessage(report.note, 20000)
        self.device_label.setText(text)
        self.device_label.setToolTip(report.describe())
        self._show_integrity(classifier)
        self._update_actions()
        self.modelChanged.emit()

    def _show_integrity(self, classifier: Classifier) -> None:
        """The permanent red warning in the status bar while an unverified model is in use."""
        verified = is_verified(classifier.integrity)
        self.integrity_label.setVisible(not verified)
        self.integrity_label.setToolTip("" if verified else (
            f"{UNVERIFIED_WARNING} ({classifier.model_path}: {classifier.integrity}). Its results may come "
            f"from altered weights; allowed by {ALLOW_UNVERIFIED_FLAG}. Every report says so on every page."
        ))

    def settings_dialog(self) -> SettingsDialog:
        return SettingsDialog(
            self.open_classifier, self.settings.model_path, self.settings.device,
            self.classifier, self,
        )

    def apply_settings_dialog(self, dialog: SettingsDialog) -> None:
        """Use the model the dialog opened (it refuses wrong ones itself) and remember the choice."""
        if dialog.classifier is None:
            return
        self.settings.model_path = dialog.model_path
        self.settings.device = dialog.device
        self.set_classifier(dialog.classifier)

    def open_settings(self) -> None:
        if self.batch.running:
            self.show_error("Cancel or wait for the classification before changing the model.")
            return
        dialog = self.settings_dialog()
        if dialog.exec():
            self.apply_settings_dialog(dialog)

    # -- batch ---------------------------------------------------------------------------------------
    def classify_all(self) -> bool:
        if self.classifier is None:
            self.show_error("No model in use: choose one in Settings (Ctrl+,).")
            return False
        refs = self.controller.session.unclassified()
        if not refs:
            self.statusBar().showMessage("Everything open is classified.", 5000)
            return False
        self._batch_cam_method = self.controller.overlay.method
        return self.batch.start(refs, self.classifier, self._batch_cam_method)

    def cancel_batch(self) -> None:
        """Stop the running classification or report (Esc)."""
        if self.batch.running:
            self.batch.cancel()
            self.statusBar().showMessage("Cancelling…")
        if self.reporter.running:
            self.reporter.cancel()
            self.statusBar().showMessage("Cancelling the report…")

    def _on_batch_started(self, total: int) -> None:
        self.loader.set_paused(True)  # the batch decodes the same files; thumbnails come with its results
        self.progress.setRange(0, total)
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()
        self._update_actions()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setValue(done)
        self.statusBar().showMessage(f"Classifying: {done} of {total}…")

    def _on_results(self, results: list[FrameResult]) -> None:
        if self.classifier is None:
            return
        classes = self.classifier.classes
        session = self.controller.session
        results = [r for r in results if session.locate((str(r.ref.path), int(r.ref.frame))) is not None]
        if not results:  # closed while the batch was stopping
            return
        keys = self.controller.add_results(results)
        rows = [row_from_result(result, classes) for result in results]
        self.results_panel.table_model.upsert(rows)
        for key, result in zip(keys, results, strict=True):
            self.browser.browser_model.set_result(key, result)
        self._update_summary()
        current = self.controller.session.current_key
        if current in keys:
            self.results_panel.select_key(current)

    def _update_summary(self) -> None:
        if self.classifier is None:
            return
        summary = series_summary(self.results_panel.table_model.rows, self.classifier.classes)
        self.series_panel.show_summary(summary)
        self.results_panel.table_model.set_suspicious(most_suspicious_keys(summary))

    def _on_batch_finished(self, cancelled: bool, failure: str) -> None:
        self.loader.set_paused(False)
        self.progress.hide()
        self.cancel_button.hide()
        rows = self.results_panel.table_model.rows
        errors = sum(1 for row in rows if not row.ok)
        if failure:
            self.show_error(f"Classification stopped by an unexpected error: {failure}")
        elif cancelled:
            self.statusBar().showMessage(f"Cancelled: {len(rows)} of {len(self.controller.session)} classified.", 10000)
        else:
            self.statusBar().showMessage(
                f"Classified {len(rows)} images in {self.batch.elapsed:.1f} s"
                + (f"; {errors} could not be read (see Results, 'Errors only')" if errors else ""), 15000
            )
        self.results_panel.select_key(self.controller.session.current_key)
        self._update_actions()
        self.batchFinished.emit(cancelled)

    # -- export ------------------------------------------------------------------------------------
    def export_image(self, path: str | Path) -> Path:
        """Write the image on screen, as windowed, with its overlay and the notice, as PNG."""
        c = self.controller
        if c.display is None or c.window is None:
            raise BrainscanError("there is no image on screen to export")
        picture = windowed_picture(c.display, c.window)
        result = c.current_result()
        heat = c.current_heat() if c.overlay.visible else None
        if result is not None and result.ok and result.prediction is not None and self.classifier is not None:
            target = c.overlay.resolve_target(result.prediction)
            text = export_caption(result.label, result.confidence, c.overlay, self.classifier.classes, target)
        else:
            text = export_caption("", 0.0, c.overlay.updated(visible=False), (), 0)
        path = Path(path)
        write_png(path, compose_export(picture, heat, c.overlay, text))
        return path

    def export_results_csv(self, path: str | Path) -> tuple[Path, Path]:
        if self.classifier is None or not self.controller.session.results:
            raise BrainscanError("there are no results to export yet: classify first (F5)")
        results = [self.controller.session.results[k] for k in self._result_order()]
        info = {"model": self.classifier.model_card()["name"], "device": self.classifier.device.describe(),
                "notice": RESEARCH_USE_NOTICE}
        return export_results(path, results, self.classifier.classes, self._batch_cam_method, info)

    def _result_order(self) -> list[FrameKey]:
        return [row.key for row in self.results_panel.table_model.rows if row.key in self.controller.session.results]

    def choose_export_image(self) -> None:
        ref = self.controller.session.current
        if ref is None:
            self.show_error("Open an image first.")
            return
        suggestion = str(Path(self.settings.last_folder() or ".") / f"{ref.path.stem}-f{ref.frame}-overlay.png")
        path, _ = QFileDialog.getSaveFileName(self, "Export image with overlay", suggestion, "PNG (*.png)")
        if path:
            self._report(lambda: self.export_image(path), f"Saved {path}")

    def choose_export_results(self) -> None:
        suggestion = str(Path(self.settings.last_folder() or ".") / "brainscan-results.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export results", suggestion, "CSV (*.csv)")
        if path:
            self._report(lambda: self.export_results_csv(path), f"Saved {path} and its series summary")

    def _report(self, job, success: str) -> None:
        try:
            job()
        except (BrainscanError, OSError) as exc:
            self.show_error(f"Export failed: {exc}")
            return
        self.statusBar().showMessage(success, 10000)

    # -- reports -------------------------------------------------------------------------------------
    def report_scopes(self) -> dict[str, list[FrameRef]]:
        """The frames of each scope of the *Write report* dialog, in the order they are shown."""
        session = self.controller.session
        selected = [ref for key in self.results_panel.selected_keys() if (ref := session.ref_of(key)) is not None]
        if not selected and session.current is not None:
            selected = [session.current]
        group = session.current_group
        shown = [ref for key in self.results_panel.visible_keys() if (ref := session.ref_of(key)) is not None]
        return {"selection": selected, "series": list(group.refs) if group is not None else [],
                "shown": shown, "all": list(session.refs())}

    def report_dialog(self) -> ReportDialog:
        return ReportDialog(self.report_scopes(), default_report_folder(self.settings.last_folder()), self)

    def choose_write_report(self) -> None:
        if self.classifier is None:
            self.show_error("No model in use: choose one in Settings (Ctrl+,).")
            return
        dialog = self.report_dialog()
        if dialog.exec():
            request = dialog.request()
            if request is not None:
                self.write_report(request)

    def write_report(self, request: ReportRequest) -> bool:
        """Screen the request's frames into its folder and write the reports there (in the background).

        The heat maps use the method, colour map and opacity of the heat-map panel.
        """
        if self.classifier is None or self.reporter.running or self.batch.running:
            self.show_error("Wait for the running classification or report to end (or cancel it with Esc).")
            return False
        overlay = self.controller.overlay
        settings = RunSettings(
            out=request.folder, cam_method=overlay.method, colormap=overlay.colormap, opacity=overlay.opacity,
            report_formats=request.formats, keep_identifiers=request.keep_identifiers,
            deidentify=request.deidentify, inputs=tuple(sorted({str(ref.path) for ref in request.refs})),
            device_requested=self.settings.device,
        )
        if not self.reporter.start(request.refs, self.classifier, settings):
            return False
        self._report_folder = request.folder
        self.progress.setRange(0, len(request.refs))
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()
        self.statusBar().showMessage(f"Writing the report to {request.folder}…")
        self._update_actions()
        return True

    def _on_report_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.statusBar().showMessage(f"Report: {done} of {total} images…")

    def _on_report_finished(self, outcome: RunOutcome | None, message: str) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        folder = self._report_folder
        if message or outcome is None or outcome.report_error:
            self.show_error(f"Report not written: {message or (outcome.report_error if outcome else '')}")
        elif outcome.interrupted:
            self.show_error(f"Report cancelled: results so far are in {folder}; no report was made")
        else:
            written = [path.name for path in (outcome.reports.written if outcome.reports else [])
                       if path.suffix != ".dcm"]
            parts = [f"Report written to {folder}: {', '.join(written) if written else 'DICOM objects'}"]
            if outcome.failed:
                parts.append(f"{outcome.failed} images could not be read (listed in the report)")
            parts += outcome.messages
            self.statusBar().showMessage("; ".join(parts), 20000)
        self._update_actions()
        self.reportFinished.emit(outcome, message)

    # -- messages and state ----------------------------------------------------------------------------
    def show_error(self, message: str) -> None:
        log.warning("%s", message)
        self.statusBar().showMessage(message, 20000)
        self.last_error = message

    def _update_actions(self) -> None:
        a = self.actions_
        running = self.batch.running or self.reporter.running
        has_images = len(self.controller.session) > 0
        a.classify.setEnabled(self.classifier is not None and has_images and not running)
        a.cancel.setEnabled(running)
        a.settings.setEnabled(not running)
        a.export_image.setEnabled(self.controller.display is not None)
        a.export_results.setEnabled(bool(self.controller.session.results) and not running)
        a.write_report.setEnabled(self.classifier is not None and has_images and not running)
        a.close_all.setEnabled(has_images)

    def show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard and mouse", SHORTCUTS_HTML)

    def show_about(self) -> None:
        QMessageBox.about(
            self, "About brainscan",
            f"<b>brainscan viewer {__version__}</b><p>{RESEARCH_USE_NOTICE}</p>"
            f"<p>Settings: {self.settings.location}</p>",
        )

    # -- shutdown ---------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop the batch and the loader and wait for every thread (idempotent)."""
        if self._shut_down:
            return
        self._shut_down = True
        self.batch.cancel()
        self.reporter.cancel()
        self.loader.shutdown()
        if not self.pool.wait_all(60_000):
            log.error("worker threads did not stop within 60 s")
        self.settings.set_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

