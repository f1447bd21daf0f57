"""Export: the image on screen with its heat map and the notice (PNG), and the results with the series summary (CSV)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog, QWidget

from brainscan import RESEARCH_USE_NOTICE
from brainscan.engine.errors import BrainscanError
from brainscan.engine.model.overlay import write_png
from brainscan.engine.results.verdict import VerdictRule
from brainscan.engine.viewer.display import windowed_picture
from brainscan.engine.viewer.orientation import ViewTransform, ViewTransformModel, transform_array
from brainscan.engine.viewer.overlay import compose_export, export_caption
from brainscan.engine.viewer.results import export_results
from brainscan.gui.presenters.model_presenter import ModelPresenter
from brainscan.gui.results_panel import ResultsPanel
from brainscan.gui.settings import AppSettings
from brainscan.gui.status_line import StatusLine
from brainscan.gui.viewer_controller import ViewerController


class ExportPresenter:
    """Writes what the viewer shows to files the user picks."""

    def __init__(
        self, controller: ViewerController, models: ModelPresenter, results_panel: ResultsPanel,
        settings: AppSettings, status: StatusLine, parent: QWidget,
    ) -> None:
        self.controller = controller
        self.models = models
        self.results_panel = results_panel
        self.settings = settings
        self._status = status
        self._parent = parent
        self.view_transform: ViewTransformModel | None = None  # rotate/flip/invert of the view (set by the window)

    def export_image(self, path: str | Path) -> Path:
        """Write the image on screen, as windowed, rotated, flipped and inverted, with its overlay and the notice,
        as PNG."""
        c = self.controller
        if c.display is None or c.window is None:
            raise BrainscanError("there is no image on screen to export")
        picture = windowed_picture(c.display, c.window)
        result = c.current_result()
        prediction = c.current_prediction()
        overlay = c.overlay.value
        heat = c.current_heat() if overlay.visible else None
        classifier = self.models.classifier
        if result is not None and result.ok and prediction is not None and classifier is not None:
            on_demand = c.overlay.on_demand_for(c.session.current_key)  # the occlusion map, when it is drawn
            target = overlay.resolve_target(prediction) if on_demand is None else on_demand.target
            text = export_caption(result.label, result.confidence, overlay, classifier.classes, target,
                                  on_demand.method if on_demand is not None else None)
        else:
            text = export_caption("", 0.0, overlay.updated(visible=False), (), 0)
        transform = self.view_transform.value if self.view_transform is not None else ViewTransform()
        if transform.invert and c.display.array.ndim == 2:  # as on screen: the picture in negative, not the heat
            picture = 255 - picture
        picture = np.ascontiguousarray(transform_array(picture, transform))
        heat = np.ascontiguousarray(transform_array(heat, transform)) if heat is not None else None
        path = Path(path)
        write_png(path, compose_export(picture, heat, overlay, text))
        return path

    def export_results_csv(self, path: str | Path) -> tuple[Path, Path]:
        classifier = self.models.classifier
        session = self.controller.session
        if classifier is None or not session.results:
            raise BrainscanError("there are no results to export yet: classify first (F5)")
        records = self.results_panel.table_model.rows  # the session's records, in the table's order
        info = {"model": classifier.model_card()["name"], "device": classifier.device.describe(),
                "notice": RESEARCH_USE_NOTICE}
        return export_results(path, records, classifier.classes, info, VerdictRule.from_contract(classifier.contract))

    def choose_export_image(self) -> None:
        ref = self.controller.session.current
        if ref is None:
            self._status.error("Open an image first.")
            return
        suggestion = str(Path(self.settings.last_folder() or ".") / f"{ref.path.stem}-f{ref.frame}-overlay.png")
        path, _ = QFileDialog.getSaveFileName(self._parent, "Export image with overlay", suggestion, "PNG (*.png)")
        if path:
            self._save(lambda: self.export_image(path), f"Saved {path}")

    def choose_export_results(self) -> None:
        suggestion = str(Path(self.settings.last_folder() or ".") / "brainscan-results.csv")
        path, _ = QFileDialog.getSaveFileName(self._parent, "Export results", suggestion, "CSV (*.csv)")
        if path:
            self._save(lambda: self.export_results_csv(path), f"Saved {path} and its series summary")

    def _save(self, job: Callable[[], object], success: str) -> None:
        try:
            job()
        except (BrainscanError, OSError) as exc:
            self._status.error(f"Export failed: {exc}")
            return
        self._status.message(success, 10000)
