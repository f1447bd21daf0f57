"""The tags of the image on screen (DICOM display tags, or the format of a picture), never a person."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from brainscan.engine.input.frames import Frame


class TagsPanel(QWidget):
    """A two-column table of the current frame's tags, with a filter box."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter tags…")
        self.filter_edit.setClearButtonEnabled(True)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Tag", "Value"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().resizeSection(0, 120)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setToolTip("Tags of the image on screen (patient identifiers are never shown)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.table)
        self.filter_edit.textChanged.connect(self._apply_filter)
        self._tags: dict[str, str] = {}

    def show_frame(self, frame: Frame | None, extra: dict[str, str] | None = None) -> None:
        tags = dict(extra or {})
        if frame is not None:
            tags.update(frame.tags)
        if tags == self._tags:
            return
        self._tags = tags
        self.table.setRowCount(len(tags))
        for row, (name, value) in enumerate(tags.items()):
            self.table.setItem(row, 0, QTableWidgetItem(name))
            item = QTableWidgetItem(value)
            item.setToolTip(value)
            self.table.setItem(row, 1, item)
        self._apply_filter(self.filter_edit.text())

    def value(self, name: str) -> str | None:
        return self._tags.get(name)

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for row in range(self.table.rowCount()):
            name = self.table.item(row, 0).text().lower()
            value = self.table.item(row, 1).text().lower()
            self.table.setRowHidden(row, bool(needle) and needle not in name and needle not in value)
