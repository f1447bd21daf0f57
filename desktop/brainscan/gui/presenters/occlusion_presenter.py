"""*Occlusion check*: the occlusion map of the slice on screen for the class shown, computed in the background
with progress and cancel, then drawn as the heat layer of that slice (the overlay model's ``on_demand``).

Slow by design (one network run per occluded square: seconds per slice on a CPU), model-agnostic and a
check of the fast maps (:mod:`brainscan.engine.model.occlusion`). The job is the engine's generator run by
a :class:`~brainscan.gui.job_runner.JobRunner`; showing another slice, method or class cancels it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from brainscan.engine.model.cam import CLASS_INDEPENDENT
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.occlusion import OCCLUSION, occlusion_on_picture, occlusion_steps
from brainscan.engine.viewer.overlay import PREDICTED, OnDemandMap
from brainscan.engine.viewer.state import FrameKey
from brainscan.gui.binding import follow
from brainscan.gui.job_runner import JobRunner
from brainscan.gui.presenters.model_presenter import ModelPresenter
from brainscan.gui.status_line import StatusLine
from brainscan.gui.viewer_controller import ViewerController
from brainscan.gui.workers import WorkerPool


def occlusion_job(classifier: Classifier, picture: np.ndarray, target: int) -> Iterator[tuple[str, object]]:
    """Yield ``("progress", (done, total))`` after each batch, then ``("done", (heat over the picture, seconds))``."""
    started = time.perf_counter()
    for step in occlusion_steps(classifier, picture, target):  # the worker may stop between any two steps
        if step.drops is None:
            yield ("progress", (step.done, step.total))
        else:
            heat = occlusion_on_picture(step.drops, picture.shape[:2], classifier.contract)
            yield ("done", (heat, time.perf_counter() - started))


@dataclass(frozen=True)
class _Request:
    key: FrameKey
    target: int
    classifier: Classifier


class OcclusionPresenter(QObject):
    """Runs one occlusion check at a time and shows its map.

    Signals
    -------
    stateChanged():
        A check started or ended (the window enables its actions again).
    finished(shown):
        A check ended: True when its map is drawn, False when it was cancelled, failed or no longer applies.
    """

    stateChanged = Signal()
    finished = Signal(bool)

    def __init__(
        self, pool: WorkerPool, controller: ViewerController, models: ModelPresenter, status: StatusLine,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.runner = JobRunner(pool, "occlusion", self)
        self.controller = controller
        self.models = models
        self._status = status
        self._request: _Request | None = None
        self._result: tuple[np.ndarray, float] | None = None
        self._said = ""  # the status message of the map on screen, cleared when the map is dropped
        self.runner.itemsReady.connect(self._on_items)
        self.runner.finished.connect(self._on_finished)
        overlay = controller.overlay
        follow(self, overlay.events.on_demand, self._on_demand_changed)
        for name in ("method", "target"):  # another map was asked for: this one would no longer apply
            follow(self, overlay.events[name], lambda _value: self.cancel())
        controller.currentChanged.connect(self._on_current_changed)

    @property
    def running(self) -> bool:
        return self.runner.running

    def target_for(self, prediction_index: int) -> int:
        """The class the check explains: the panel's class, or the predicted one (also for a class-free method)."""
        overlay = self.controller.overlay
        if overlay.target == PREDICTED or overlay.method in CLASS_INDEPENDENT:
            return prediction_index
        return overlay.target

    def check(self) -> bool:
        """Start the occlusion map of the slice on screen for the class shown; False (and why, in the status bar)
        when it cannot start."""
        c = self.controller
        classifier, prediction, frame = self.models.classifier, c.current_prediction(), c.current_frame
        key = c.session.current_key
        if self.runner.running:
            self._status.error("An occlusion check is running: wait for it or cancel it (Esc).")
            return False
        if classifier is None or prediction is None or frame is None or key is None:
            self._status.error("Classify the slice on screen first (F5): the occlusion check explains its class.")
            return False
        target = self.target_for(prediction.label_index)
        picture = frame.picture
        self._request, self._result = _Request(key, target, classifier), None
        if not self.runner.start(lambda: occlusion_job(classifier, picture, target)):
            return False
        self._status.start_progress(0)
        self._status.message(f"Occlusion check of {classifier.classes[target]}: one network run per square…")
        self.stateChanged.emit()
        return True

    def cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self._status.message("Cancelling the occlusion check…")

    def _on_current_changed(self, key: object) -> None:
        if self._request is not None and key != self._request.key:
            self.cancel()

    def _on_items(self, items: list[tuple[str, object]]) -> None:
        for kind, value in items:
            if kind == "progress" and self._request is not None:
                done, total = value  # type: ignore[misc]
                self._status.set_progress(done, total)
                name = self._request.classifier.classes[self._request.target]
                self._status.message(f"Occlusion check of {name}: {done} of {total} squares…")
            else:
                self._result = value  # type: ignore[assignment]

    def _on_finished(self, cancelled: bool, failure: str) -> None:
        self._status.end_progress()
        request, result = self._request, self._result
        self._request = self._result = None
        shown = False
        if failure:
            self._status.error(f"The occlusion check stopped by an unexpected error: {failure}")
        elif cancelled or result is None or request is None:
            self._status.message("Occlusion check cancelled; the heat map is the method's.", 5000)
        elif request.key != self.controller.session.current_key or request.classifier is not self.models.classifier:
            self._status.message("The occlusion map is of a slice no longer shown: not drawn.", 5000)
        else:
            heat, seconds = result
            overlay = self.controller.overlay
            overlay.visible = True
            overlay.on_demand = OnDemandMap(request.key, OCCLUSION, request.target, heat, seconds)
            self._said = f"Occlusion map of {request.classifier.classes[request.target]}: {seconds:.1f} s"
            self._status.message(self._said)
            shown = True
        self.stateChanged.emit()
        self.finished.emit(shown)

    def _on_demand_changed(self, shown: OnDemandMap | None) -> None:
        """The occlusion map was dropped (another slice, method or class): its status message goes too."""
        if shown is None and self._said:
            if self._status.current_message() == self._said:
                self._status.clear_message()
            self._said = ""
