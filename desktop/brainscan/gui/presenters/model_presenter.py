"""The model in use: opening the model file on its device, saying which and whether it is verified, Settings."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from brainscan.engine.errors import BrainscanError
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.integrity import ALLOW_UNVERIFIED_FLAG, UNVERIFIED_WARNING, is_verified
from brainscan.gui.settings import AppSettings
from brainscan.gui.settings_dialog import SettingsDialog
from brainscan.gui.status_line import StatusLine
from brainscan.gui.workers import GeneratorWorker, WorkerPool


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


class ModelPresenter(QObject):
    """Owns the classifier in use.

    Signals
    -------
    changed(classifier):
        Another model is in use (its results replace nothing: the window clears the old ones).
    failed(message):
        The model could not be opened; none is in use.
    """

    changed = Signal(object)
    failed = Signal(str)

    def __init__(
        self, settings: AppSettings, pool: WorkerPool, status: StatusLine, parent: QWidget, *,
        allow_unverified: bool = False, busy: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.classifier: Classifier | None = None
        self.open_classifier = functools.partial(open_classifier, allow_unverified=allow_unverified)
        self._pool = pool
        self._status = status
        self._parent = parent
        self._busy = busy
        self._worker: GeneratorWorker | None = None

    def load(self, path: Path, device: str, background: bool = True) -> None:
        """Open the model of the settings; a failure leaves no model and says why in the status bar."""
        if not background:
            try:
                self.set_classifier(self.open_classifier(path, device))
            except BrainscanError as exc:
                self._on_failed(str(exc))
            return

        def job():
            yield self.open_classifier(path, device)

        worker = GeneratorWorker(job, name="model")
        worker.signals.yielded.connect(self.set_classifier)
        worker.signals.errored.connect(self._on_failed)
        self._worker = worker
        self._status.device_label.setText("Opening the model…")
        self._pool.start(worker)

    def _on_failed(self, message: str) -> None:
        self._status.device_label.setText("No model")
        self._status.integrity_label.hide()
        self._status.device_label.setToolTip(message)
        self._status.error(f"No model in use: {message}. Choose one in Settings (Ctrl+,).")
        self.failed.emit(message)

    def set_classifier(self, classifier: Classifier) -> None:
        self.classifier = classifier
        report = classifier.device
        contract = classifier.contract
        text = f"{contract.name} {contract.version} · {report.used.upper()} ({report.providers[0] if report.providers else '?'})"
        if report.note:
            text += " ⚠ fallback"
            self._status.message(report.note, 20000)
        self._status.device_label.setText(text)
        self._status.device_label.setToolTip(report.describe())
        self._show_integrity(classifier)
        self.changed.emit(classifier)

    def _show_integrity(self, classifier: Classifier) -> None:
        """The permanent red warning in the status bar while an unverified model is in use."""
        verified = is_verified(classifier.integrity)
        label = self._status.integrity_label
        label.setVisible(not verified)
        label.setToolTip("" if verified else (
            f"{UNVERIFIED_WARNING} ({classifier.model_path}: {classifier.integrity}). Its results may come "
            f"from altered weights; allowed by {ALLOW_UNVERIFIED_FLAG}. Every report says so on every page."
        ))

    def settings_dialog(self) -> SettingsDialog:
        return SettingsDialog(
            self.open_classifier, self.settings.model_path, self.settings.device, self.classifier, self._parent,
        )

    def apply_settings_dialog(self, dialog: SettingsDialog) -> None:
        """Use the model the dialog opened (it refuses wrong ones itself) and remember the choice."""
        if dialog.classifier is None:
            return
        self.settings.model_path = dialog.model_path
        self.settings.device = dialog.device
        self.set_classifier(dialog.classifier)

    def open_settings(self) -> None:
        if self._busy():
            self._status.error("Cancel or wait for the classification before changing the model.")
            return
        dialog = self.settings_dialog()
        if dialog.exec():
            self.apply_settings_dialog(dialog)
