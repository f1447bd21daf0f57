"""The settings dialog: the model file (with its model card) and the inference device.

A model is checked by opening it (:class:`~brainscan.engine.inference.Classifier` reads and checks
its contract). A wrong model is refused with the reason shown in the dialog, and the model in use
stays; only a model that opened is handed back with :attr:`SettingsDialog.classifier`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from brainscan import RESEARCH_USE_NOTICE
from brainscan.engine.errors import BrainscanError
from brainscan.engine.model.inference import DEVICES, Classifier
from brainscan.engine.resources import default_model_path

DEVICE_LABELS = {
    "auto": "Automatic (CUDA when available, else CPU)",
    "cuda": "CUDA (NVIDIA GPU; falls back to the CPU, saying why)",
    "cpu": "CPU",
}

Loader = Callable[[Path, str], Classifier]


CARD_FIELDS = ("name", "version", "task", "classes", "architecture", "input_size", "test_time_augmentation",
               "views_in_graph", "file", "sha256", "integrity", "intended_use")
CARD_BLOCKS = ("metrics", "training")
_ZERO_WIDTH_SPACE = "\u200b"


def card_rows(card: dict[str, object]) -> list[tuple[str, str]]:
    """The model card as (label, value) rows: plain text, metrics and training as indented JSON."""
    rows = []
    for key in CARD_FIELDS:
        value = card.get(key)
        text = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        rows.append((key.replace("_", " ").capitalize(), text))
    for key in CARD_BLOCKS:
        rows.append((key.capitalize(), json.dumps(card.get(key) or {}, indent=1, default=str)[:4000]))
    return rows


def breakable(text: str, every: int = 24) -> str:
    """``text`` with break opportunities in long unbroken runs (checksums, paths), so a wrapped label never
    grows wider than its column."""
    out, run = [], 0
    for char in text:
        out.append(char)
        run = 0 if char.isspace() else run + 1
        if char in "/\\_." or run >= every:
            out.append(_ZERO_WIDTH_SPACE)
            run = 0
    return "".join(out)


class ModelCardView(QScrollArea):
    """The model card as a form: labels on one line at their own width, values word-wrapped in the stretching
    column, selectable; scrolls vertically."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.labels: list[QLabel] = []
        self.values: list[QLabel] = []
        self._text = ""
        self.show_message("")

    def _reset(self) -> QFormLayout:
        body = QWidget()
        form = QFormLayout(body)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setWidget(body)
        self.labels, self.values = [], []
        return form

    def show_card(self, card: dict[str, object]) -> None:
        form = self._reset()
        rows = card_rows(card)
        for title, text in rows:
            label = QLabel(f"<b>{html.escape(title)}</b>")
            label.setMinimumWidth(label.sizeHint().width())  # never squeezed into one letter per line
            value = QLabel()
            value.setTextFormat(Qt.TextFormat.PlainText)
            value.setText(text if title.lower() in CARD_BLOCKS else breakable(text))
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            if title.lower() in CARD_BLOCKS:
                value.setStyleSheet("font-family: monospace;")
            value.setToolTip(text if len(text) < 300 else "")
            form.addRow(label, value)
            self.labels.append(label)
            self.values.append(value)
        self._text = "\n".join(f"{title}\t{text}" for title, text in rows)

    def show_message(self, text: str) -> None:
        form = self._reset()
        message = QLabel(text)
        message.setWordWrap(True)
        form.addRow(message)
        self._text = text

    def toPlainText(self) -> str:
        return self._text


class SettingsDialog(QDialog):
    """Choose the model file and device.

    Parameters
    ----------
    loader:
        Opens a model on a device, raising :class:`~brainscan.engine.errors.BrainscanError`
        for a wrong one.
    model_path, device:
        The current choice.
    current:
        The classifier in use (its card is shown until another file is chosen).
    """

    def __init__(
        self,
        loader: Loader,
        model_path: Path,
        device: str,
        current: Classifier | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings — brainscan")
        self.setMinimumWidth(640)
        self._loader = loader
        self.classifier: Classifier | None = None
        self.path_edit = QLineEdit(str(model_path))
        self.path_edit.setToolTip("An ONNX model exported by the brainscan trainer (it carries its contract)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        shipped = QPushButton("Shipped model")
        shipped.setToolTip(str(default_model_path()))
        shipped.clicked.connect(lambda: self._set_path(default_model_path()))
        check = QPushButton("Check")
        check.setToolTip("Open the model and show its card, without using it yet")
        check.clicked.connect(self.check)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        path_row.addWidget(shipped)
        path_row.addWidget(check)
        self.device_combo = QComboBox()
        for name in DEVICES:
            self.device_combo.addItem(DEVICE_LABELS[name], name)
        self.device_combo.setCurrentIndex(max(self.device_combo.findData(device), 0))
        self.device_combo.setToolTip("Where inference runs; the provider really used is shown in the status bar")
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("QLabel { color: #b00020; font-weight: bold; }")
        self.error_label.hide()
        self.card_view = ModelCardView()
        self.card_view.setMinimumHeight(260)
        notice = QLabel(RESEARCH_USE_NOTICE)
        notice.setStyleSheet("color: #8a5a00;")
        form = QFormLayout()
        form.addRow("Model file", path_row)
        form.addRow("Device", self.device_combo)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.try_accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(QLabel("Model card"))
        layout.addWidget(self.card_view, 1)
        layout.addWidget(notice)
        layout.addWidget(buttons)
        if current is not None:
            self.card_view.show_card(current.model_card())
        else:
            self.card_view.show_message("No model in use.")

    @property
    def model_path(self) -> Path:
        return Path(self.path_edit.text().strip())

    @property
    def device(self) -> str:
        return str(self.device_combo.currentData())

    def _set_path(self, path: Path) -> None:
        self.path_edit.setText(str(path))
        self.check()

    def _browse(self) -> None:
        start = str(self.model_path.parent if self.model_path.parent.exists() else default_model_path().parent)
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model", start, "ONNX models (*.onnx);;All files (*)")
        if path:
            self._set_path(Path(path))

    def _open(self) -> Classifier | None:
        try:
            classifier = self._loader(self.model_path, self.device)
        except BrainscanError as exc:
            self.error_label.setText(f"This model cannot be used: {exc}")
            self.error_label.show()
            self.card_view.show_message("The model in use is kept.")
            return None
        self.error_label.hide()
        self.card_view.show_card(classifier.model_card())
        return classifier

    def check(self) -> bool:
        """Open the chosen file and show its card (or why it is refused)."""
        return self._open() is not None

    def try_accept(self) -> bool:
        """Accept only when the chosen model opens; else show why and stay open."""
        classifier = self._open()
        if classifier is None:
            return False
        self.classifier = classifier
        self.accept()
        return True
