"""The main window: the research-use banner, the image view, the panels, and their wiring.

Layout at 1280 x 800: the browser on the left, the heat-map controls and the tags on the right,
the results and the series summary below, the image in the middle. The window builds the widgets
and the presenters (:mod:`brainscan.gui.presenters`: opening, model, batch, report, export) and
connects them; the overlay settings have one owner, the evented
:class:`~brainscan.engine.viewer.overlay.OverlayModel`, which the heat-map panel, the H action, the
remembered settings and the drawing bind to. Everything that is not drawing or Qt plumbing is in
the engine.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QShowEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QVBoxLayout, QWidget

from brainscan import __version__
from brainscan.engine.model.inference import Classifier
from brainscan.engine.results.names import display_name
from brainscan.engine.viewer.state import FrameKey
from brainscan.gui.archive_actions import install_archive
from brainscan.gui.binding import bind_check
from brainscan.gui.browser import BrowserView
from brainscan.gui.frame_loader import FrameLoader
from brainscan.gui.icons import icon
from brainscan.gui.measure_tools import install_measurements
from brainscan.gui.mpr_window import install_mpr
from brainscan.gui.notices import research_banner, show_about, show_shortcuts
from brainscan.gui.overlay_panel import OverlayPanel
from brainscan.gui.presenters.batch_presenter import BatchPresenter
from brainscan.gui.presenters.export_presenter import ExportPresenter
from brainscan.gui.presenters.model_presenter import ModelPresenter
from brainscan.gui.presenters.occlusion_presenter import OcclusionPresenter
from brainscan.gui.presenters.open_presenter import OpenPresenter
from brainscan.gui.presenters.report_presenter import ReportPresenter
from brainscan.gui.results_panel import ResultsPanel, SeriesSummaryPanel
from brainscan.gui.settings import AppSettings
from brainscan.gui.side_by_side import install_side_by_side
from brainscan.gui.slice_view import SliceView
from brainscan.gui.status_line import StatusLine
from brainscan.gui.tags_panel import TagsPanel
from brainscan.gui.view_tools import SHOW_IDENTIFIERS_KEY, ViewTools
from brainscan.gui.viewer_controller import ViewerController
from brainscan.gui.window_actions import WindowActions
from brainscan.gui.workers import WorkerPool

log = logging.getLogger(__name__)


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

    Attributes
    ----------
    overlay:
        The one :class:`~brainscan.engine.viewer.overlay.OverlayModel` of the heat-map settings.
    controller:
        The frame on screen (:class:`~brainscan.gui.viewer_controller.ViewerController`).
    status:
        The status bar (:class:`~brainscan.gui.status_line.StatusLine`).
    view_tools:
        Orientation letters, scale bar, probe, corner text, rotate/flip/invert and cine
        (:class:`~brainscan.gui.view_tools.ViewTools`).
    opening, models, batch, reports, exports, occlusion:
        The presenters of opening images, the model in use, *Classify all*, *Write report*, export and the
        *Occlusion check*.
    """

    def __init__(
        self, settings: AppSettings | None = None, *, model_in_background: bool = True, allow_unverified: bool = False
    ) -> None:
        super().__init__()
        self.settings = settings or AppSettings()
        self.allow_unverified = allow_unverified
        self.setWindowTitle(f"brainscan viewer {__version__} — research use only, not for diagnosis")
        self.setWindowIcon(icon("brainscan"))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._shut_down = False
        self.pool = WorkerPool(max_threads=3, parent=self)
        self.loader = FrameLoader(self.pool, self)
        self.overlay = self.settings.overlay_model()
        self.view = SliceView()
        self.controller = ViewerController(self.view, self.loader, self.overlay, self)
        self.banner = research_banner()
        self._central()
        self.browser = BrowserView()
        self.overlay_panel = OverlayPanel(self.overlay)
        self.tags_panel = TagsPanel()
        self.results_panel = ResultsPanel(self.controller.session.results)  # shows the session's records
        self.series_panel = SeriesSummaryPanel()
        self.actions_ = WindowActions(self)
        self._docks()
        self.status = StatusLine(self.statusBar())
        self._presenters()
        self._wire()
        self.archive = install_archive(self)  # Open from archive, Send report to archive
        self.mpr = install_mpr(self)  # MPR (Ctrl+M), Classify axial reformats (Shift+F5)
        self.view_tools = ViewTools(self.view, self.controller, self, self.actions_, show_identifiers=bool(
            self.settings.qsettings.value(SHOW_IDENTIFIERS_KEY, False, type=bool)))
        self.exports.view_transform = self.view_tools.transform  # the PNG export draws what the view shows
        self.side_by_side = install_side_by_side(self)  # a second view beside the first (Ctrl+2)
        self.measurements = install_measurements(self)  # Measure menu, key images, notes, Measurements dock
        self.resize(1280, 800)
        geometry, state = self.settings.window_state()
        self._docks_sized = state is not None  # a remembered layout keeps its sizes
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self.models.load(self.settings.model_path, self.settings.device, background=model_in_background)

    # -- layout ----------------------------------------------------------------------------------
    def _central(self) -> None:
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.banner)
        column.addWidget(self.view, 1)
        self.setCentralWidget(central)

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
        # the heat-map and tags column runs the full height, so its panels never cap the results' height
        self.setCorner(Qt.Corner.BottomRightCorner, right)
        self.tabifyDockWidget(self.results_dock, self.series_dock)
        self.results_dock.raise_()

    def _default_dock_sizes(self) -> None:
        """The docks' first sizes, once the window has its size (a remembered layout replaces them): the
        results table shows about nine rows at 1280 x 800 and the image keeps the rest of the height."""
        self.resizeDocks([self.browser_dock], [240], Qt.Orientation.Horizontal)
        self.resizeDocks([self.overlay_dock], [290], Qt.Orientation.Horizontal)
        self.resizeDocks([self.results_dock], [max(330, self.height() * 2 // 5)], Qt.Orientation.Vertical)
        self.resizeDocks([self.overlay_dock, self.tags_dock], [250, 300], Qt.Orientation.Vertical)

    def sizeHint(self) -> QSize:
        return QSize(1280, 800)

    # -- presenters and wiring -----------------------------------------------------------------------
    def _presenters(self) -> None:
        settings, status, c = self.settings, self.status, self.controller
        batch_running = lambda: self.batch.running  # noqa: E731
        self.models = ModelPresenter(settings, self.pool, status, self, allow_unverified=self.allow_unverified,
                                     busy=batch_running)
        self.opening = OpenPresenter(self.loader, c, self.browser, settings, status, self)
        self.batch = BatchPresenter(self.pool, c, self.models, self.loader, self.results_panel, self.series_panel,
                                    self.browser, status, self)
        self.reports = ReportPresenter(self.pool, c, self.models, self.results_panel, settings, status, self,
                                       busy=batch_running)
        self.exports = ExportPresenter(c, self.models, self.results_panel, settings, status, self)
        self.occlusion = OcclusionPresenter(self.pool, c, self.models, status, self)

    def _wire(self) -> None:
        c = self.controller
        c.currentChanged.connect(self._on_current_changed)
        c.thumbnailReady.connect(self.browser.browser_model.set_thumbnail)
        c.frameFailed.connect(lambda key, message: self.browser.browser_model.set_failed(key, message, self.style()))
        c.frameFailed.connect(self._on_frame_failed)
        c.infoChanged.connect(self._on_info_changed)
        for panel in (self.browser, self.results_panel, self.series_panel):
            panel.frameActivated.connect(c.go_to)
        self.models.changed.connect(self._on_model_changed)
        self.models.failed.connect(lambda _message: self._update_actions())
        for presenter in (self.batch, self.reports, self.occlusion):
            presenter.stateChanged.connect(self._update_actions)
        self.opening.finished.connect(self._update_actions)
        self.status.cancel_button.clicked.connect(self.cancel_running)
        bind_check(self.actions_.show_heat, self.overlay, "visible")
        self._wire_actions()
        self.view.setFocus()

    def _wire_actions(self) -> None:
        a, v, c = self.actions_, self.view, self.controller
        a.connect({
            "open_files": self.opening.choose_files, "open_folder": self.opening.choose_folder,
            "open_dicom": self.opening.choose_dicom_folder, "close_all": self.close_all,
            "export_image": self.exports.choose_export_image, "export_results": self.exports.choose_export_results,
            "write_report": self.reports.choose_and_write, "settings": self.models.open_settings,
            "classify": self.batch.classify_all, "cancel": self.cancel_running, "occlusion": self.occlusion.check,
            "fit": v.fit, "zoom_in": lambda: v.zoom(1.25), "zoom_out": lambda: v.zoom(0.8),
            "previous_slice": lambda: c.step(-1), "next_slice": lambda: c.step(1),
            "first_slice": lambda: c.jump_to_end(False), "last_slice": lambda: c.jump_to_end(True),
            "previous_series": lambda: c.step_group(-1), "next_series": lambda: c.step_group(1),
            "reset_window": c.reset_window, "shortcuts": lambda: show_shortcuts(self),
            "about": lambda: show_about(self, self.settings.location),
        })
        a.recent_menu.aboutToShow.connect(lambda: self.opening.fill_recent_menu(a.recent_menu))
        a.presets_menu.aboutToShow.connect(self.fill_presets_menu)

    # -- opening and closing ---------------------------------------------------------------------------
    def close_all(self) -> None:
        self.cancel_running()
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
            self.opening.open_paths(paths)

    # -- the current image and the model -------------------------------------------------------------
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
                extra["Result"] = f"{display_name(result.label)} {result.confidence:.1%}" if result.ok else f"error: {result.error}"
        self.tags_panel.show_frame(frame if ref is not None and frame is not None and frame.ref == ref else None, extra)
        self._update_actions()

    def _on_frame_failed(self, key: FrameKey, message: str) -> None:
        if key == self.controller.session.current_key:
            self.status.message(message, 15000)

    def _on_model_changed(self, classifier: Classifier) -> None:
        """A new model: the results of the previous one no longer apply; its classes become the targets."""
        self.controller.set_classifier(classifier)
        self.overlay_panel.set_classes(classifier.classes)
        self.overlay_panel.set_model(classifier.contract)
        self.results_panel.set_classes(classifier.classes)
        self.series_panel.show_summary([])
        self.browser.browser_model.clear_results()
        self._update_actions()

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

    # -- running work and the actions' state --------------------------------------------------------------
    def cancel_running(self) -> None:
        """Stop the running classification, report or occlusion check (Esc)."""
        self.batch.cancel()
        self.reports.cancel()
        self.occlusion.cancel()
        self.archive.cancel()

    def _update_actions(self) -> None:
        a = self.actions_
        running = self.batch.running or self.reports.running or self.occlusion.running
        has_images = len(self.controller.session) > 0
        has_model = self.models.classifier is not None
        classified = self.controller.current_prediction() is not None and self.controller.current_frame is not None
        a.occlusion.setEnabled(has_model and classified and not running)
        a.classify.setEnabled(has_model and has_images and not running)
        a.cancel.setEnabled(running)
        a.settings.setEnabled(not running)
        a.export_image.setEnabled(self.controller.display is not None)
        a.export_results.setEnabled(bool(self.controller.session.results) and not running)
        a.write_report.setEnabled(has_model and has_images and not running)
        a.close_all.setEnabled(has_images)

    # -- shutdown ---------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop the batch, the report, the occlusion check and the loader and wait for every thread (idempotent)."""
        if self._shut_down:
            return
        self._shut_down = True
        self.batch.runner.cancel()
        self.reports.runner.cancel()
        self.occlusion.runner.cancel()
        self.loader.shutdown()
        if not self.pool.wait_all(60_000):
            log.error("worker threads did not stop within 60 s")
        self.settings.set_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._docks_sized:  # sized once the layout knows the window's size, so the shares hold
            self._docks_sized = True
            self._default_dock_sizes()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
