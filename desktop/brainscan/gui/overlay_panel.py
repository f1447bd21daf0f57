"""The heat-map controls: target class, CAM method, opacity, colour map, threshold, on/off."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from brainscan.engine.model.cam import CLASS_INDEPENDENT, METHODS
from brainscan.engine.model.overlay import COLORMAPS
from brainscan.engine.viewer.overlay import PREDICTED, OverlaySettings

METHOD_TIPS = {
    "gradcam": "Grad-CAM: feature maps weighted by the class gradient (exact for this model's head)",
    "gradcam++": "Grad-CAM++: higher-order weighting, sharper for several instances of a class",
    "layercam": "LayerCAM: per-position weighting, finer detail",
    "eigencam": "EigenCAM: first principal component of the features (does not depend on the class)",
}


def _percent_slider(tip: str) -> QSlider:
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, 100)
    slider.setSingleStep(5)
    slider.setPageStep(10)
    slider.setToolTip(tip)
    return slider


class OverlayPanel(QWidget):
    """Edits an :class:`OverlaySettings`; emits ``settingsChanged`` at every change."""

    settingsChanged = Signal(object)

    def __init__(self, settings: OverlaySettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._classes: tuple[str, ...] = ()
        self.visible_box = QCheckBox("Show heat map")
        self.visible_box.setToolTip("Draw the class activation map over the image (H; hold Space to hide it briefly)")
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("Which class the map explains; 'predicted' follows each image's prediction")
        self.method_combo = QComboBox()
        for method in METHODS:
            self.method_combo.addItem(method, method)
            self.method_combo.setItemData(self.method_combo.count() - 1, METHOD_TIPS.get(method, ""), Qt.ItemDataRole.ToolTipRole)
        self.method_combo.setToolTip("How the map is computed from the stored features (no re-run of the network)")
        self.colormap_combo = QComboBox()
        for name in COLORMAPS:
            self.colormap_combo.addItem(name, name)
        self.colormap_combo.setToolTip("Colour map of the heat layer")
        self.opacity_slider = _percent_slider("Opacity of the heat layer")
        self.threshold_slider = _percent_slider("Heat below this value is left uncoloured")
        self.opacity_value = QLabel()
        self.threshold_value = QLabel()
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(mid);")

        form = QFormLayout()
        form.addRow(self.visible_box)
        form.addRow("Class", self.target_combo)
        form.addRow("Method", self.method_combo)
        form.addRow("Colour map", self.colormap_combo)
        form.addRow("Opacity", self._with_value(self.opacity_slider, self.opacity_value))
        form.addRow("Threshold", self._with_value(self.threshold_slider, self.threshold_value))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.note)
        layout.addStretch(1)

        self.set_classes(())
        self._load(settings)
        self.visible_box.toggled.connect(self._changed)
        self.target_combo.currentIndexChanged.connect(self._changed)
        self.method_combo.currentIndexChanged.connect(self._changed)
        self.colormap_combo.currentIndexChanged.connect(self._changed)
        self.opacity_slider.valueChanged.connect(self._changed)
        self.threshold_slider.valueChanged.connect(self._changed)

    @staticmethod
    def _with_value(slider: QSlider, value: QLabel) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(slider, 1)
        value.setMinimumWidth(value.fontMetrics().horizontalAdvance("100 %") + 4)
        value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(value)
        return box

    @property
    def settings(self) -> OverlaySettings:
        return self._settings

    def set_classes(self, classes: tuple[str, ...]) -> None:
        """Offer ``classes`` as targets (after a model change); keeps the choice when still valid."""
        self._classes = tuple(classes)
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        self.target_combo.addItem("predicted class", PREDICTED)
        for index, name in enumerate(self._classes):
            self.target_combo.addItem(name, index)
        wanted = self._settings.target
        position = self.target_combo.findData(wanted if wanted < len(self._classes) else PREDICTED)
        self.target_combo.setCurrentIndex(max(position, 0))
        self.target_combo.blockSignals(False)
        if self._settings.target >= len(self._classes):
            self._settings = self._settings.updated(target=PREDICTED)
        self._update_note()

    def set_settings(self, settings: OverlaySettings) -> None:
        """Show ``settings`` (from an action or a restore) without emitting twice."""
        if settings != self._settings:
            self._load(settings)
            self.settingsChanged.emit(self._settings)

    def _load(self, settings: OverlaySettings) -> None:
        self._settings = settings
        widgets = (self.visible_box, self.target_combo, self.method_combo, self.colormap_combo,
                   self.opacity_slider, self.threshold_slider)
        for widget in widgets:
            widget.blockSignals(True)
        self.visible_box.setChecked(settings.visible)
        self.target_combo.setCurrentIndex(max(self.target_combo.findData(settings.target), 0))
        self.method_combo.setCurrentIndex(max(self.method_combo.findData(settings.method), 0))
        self.colormap_combo.setCurrentIndex(max(self.colormap_combo.findData(settings.colormap), 0))
        self.opacity_slider.setValue(round(settings.opacity * 100))
        self.threshold_slider.setValue(round(settings.threshold * 100))
        for widget in widgets:
            widget.blockSignals(False)
        self._update_labels()

    def _changed(self, *_args: object) -> None:
        self._settings = OverlaySettings(
            visible=self.visible_box.isChecked(),
            target=int(self.target_combo.currentData()) if self.target_combo.currentData() is not None else PREDICTED,
            method=str(self.method_combo.currentData()),
            opacity=self.opacity_slider.value() / 100.0,
            colormap=str(self.colormap_combo.currentData()),
            threshold=self.threshold_slider.value() / 100.0,
        )
        self._update_labels()
        self.settingsChanged.emit(self._settings)

    def _update_labels(self) -> None:
        self.opacity_value.setText(f"{self.opacity_slider.value()} %")
        self.threshold_value.setText(f"{self.threshold_slider.value() / 100:.2f}")
        self._update_note()

    def _update_note(self) -> None:
        method = self._settings.method
        independent = method in CLASS_INDEPENDENT
        self.target_combo.setEnabled(not independent and bool(self._classes))
        note = METHOD_TIPS.get(method, "")
        if not self._classes:
            note = "No model loaded: choose one in Settings to classify and see heat maps."
        self.note.setText(note)
