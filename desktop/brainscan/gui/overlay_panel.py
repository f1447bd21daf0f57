"""The heat-map controls: target class, CAM method, opacity, colour map, threshold, on/off.

A thin view of the :class:`~brainscan.engine.viewer.overlay.OverlayModel`: every control is bound
to one field of it both ways (:mod:`brainscan.gui.binding`), so the panel holds no settings of its own.
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
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

from brainscan.engine.model.cam import (
    CLASS_INDEPENDENT,
    HEAD_METHOD,
    METHOD_TITLES,
    METHODS,
    default_method,
    pointing_note,
)
from brainscan.engine.model.contract import ModelContract
from brainscan.engine.model.overlay import COLORMAPS
from brainscan.engine.results.names import display_name
from brainscan.engine.viewer.overlay import PREDICTED, OverlayModel
from brainscan.gui.binding import bind_check, bind_combo, bind_percent, follow

METHOD_TIPS = {
    "gradcam": "Grad-CAM: feature maps weighted by the class gradient (exact for this model's head)",
    "gradcam++": "Grad-CAM++: higher-order weighting, sharper for several instances of a class",
    "layercam": "LayerCAM: per-position weighting, finer detail",
    "eigencam": "EigenCAM: first principal component of the features (does not depend on the class)",
    HEAD_METHOD: "Head CAM: the class map of the model's explanation head on finer (14 x 14) features, trained to "
                 "put the evidence on the tumour",
}


def _percent_slider(tip: str) -> QSlider:
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, 100)
    slider.setSingleStep(5)
    slider.setPageStep(10)
    slider.setToolTip(tip)
    return slider


class OverlayPanel(QWidget):
    """Shows and edits an :class:`OverlayModel` (the model is the only owner of the settings)."""

    def __init__(self, model: OverlayModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._classes: tuple[str, ...] = ()
        self._contract: ModelContract | None = None
        self.visible_box = QCheckBox("Show heat map")
        self.visible_box.setToolTip("Draw the class activation map over the image (H; hold Space to hide it briefly)")
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("Which class the map explains; 'predicted' follows each image's prediction")
        self.method_combo = QComboBox()
        for method in METHODS:
            self.method_combo.addItem(METHOD_TITLES.get(method, method), method)  # shown by title, keyed by name
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
        self._lay_out()
        self.set_classes(())
        self._bind(model)

    def _lay_out(self) -> None:
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

    def _bind(self, model: OverlayModel) -> None:
        self.opacity_slider.valueChanged.connect(self._update_labels)
        self.threshold_slider.valueChanged.connect(self._update_labels)
        bind_check(self.visible_box, model, "visible")
        bind_combo(self.target_combo, model, "target", to_model=int)
        bind_combo(self.method_combo, model, "method")
        bind_combo(self.colormap_combo, model, "colormap")
        bind_percent(self.opacity_slider, model, "opacity")
        bind_percent(self.threshold_slider, model, "threshold")
        follow(self, model.events.method, lambda _method: self._update_note())
        self._update_labels()

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

    def set_classes(self, classes: tuple[str, ...]) -> None:
        """Offer ``classes`` as targets (after a model change); keeps the choice when still valid."""
        self._classes = tuple(classes)
        wanted = self.model.target
        if wanted >= len(self._classes):
            wanted = PREDICTED
        with QSignalBlocker(self.target_combo):  # refilling the list is no choice of the user's
            self.target_combo.clear()
            self.target_combo.addItem("predicted class", PREDICTED)
            for index, name in enumerate(self._classes):
                self.target_combo.addItem(display_name(name), index)
            self.target_combo.setCurrentIndex(max(self.target_combo.findData(wanted), 0))
        self.model.target = wanted
        self._update_note()

    def set_model(self, contract: ModelContract) -> None:
        """Offer the methods this model can give (the head's only with a head) and say how far each is
        trusted (its measured pointing game); a newly loaded model starts on its own default map."""
        self._contract = contract
        has_head = bool(contract.explanation)
        items = self.method_combo.model()
        for row in range(self.method_combo.count()):
            method = self.method_combo.itemData(row)
            item = items.item(row) if hasattr(items, "item") else None
            if item is not None:
                item.setEnabled(has_head or method != HEAD_METHOD)
        self.model.method = default_method(contract)
        self._update_note()

    def _update_labels(self, *_args: object) -> None:
        self.opacity_value.setText(f"{self.opacity_slider.value()} %")
        self.threshold_value.setText(f"{self.threshold_slider.value() / 100:.2f}")

    def _update_note(self) -> None:
        method = self.model.method
        independent = method in CLASS_INDEPENDENT
        self.target_combo.setEnabled(not independent and bool(self._classes))
        note = METHOD_TIPS.get(method, "")
        if self._contract is not None:
            note = f"{note}\n{pointing_note(self._contract.metrics, method)}"
        if not self._classes:
            note = "No model loaded: choose one in Settings to classify and see heat maps."
        self.note.setText(note)
