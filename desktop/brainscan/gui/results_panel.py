"""The results table (sortable, filterable, in step with the viewer) and the per-series summary."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QStyle,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from brainscan.engine.results.names import display_name
from brainscan.engine.results.record import FrameRecord
from brainscan.engine.results.series import SeriesSummary
from brainscan.engine.viewer.domain import (
    DOMAIN_CHOICES,
    domain_text,
    heat_outside_high,
    heat_outside_text,
    out_of_domain,
)
from brainscan.engine.viewer.results import RowFilter, position, verdict_cell
from brainscan.engine.viewer.state import FrameKey, frame_key

SORT_ROLE = Qt.ItemDataRole.UserRole + 2
KEY_ROLE = Qt.ItemDataRole.UserRole + 3
_Index = QModelIndex | QPersistentModelIndex
BASE_COLUMNS = ("File", "Slice", "Status", "Label", "Confidence", "Tumour p")
TAIL_COLUMNS = ("Domain", "Heat outside", "Message")
LABEL_COLUMN = 3
OUT_OF_DOMAIN_COLOUR = QColor("#8a8f96")  # a greyed class: kept for research, not to be read as a finding
WARNING_COLOUR = QColor("#e8870e")  # out of domain, a heat map mostly outside the head
_HEADER_TIPS = {
    "Tumour p": "Probability of any tumour: 1 - p(no tumour)",
    "Slice": "Position in the DICOM series (★ = the most suspicious slice of its series)",
    "Domain": "Whether the picture is the kind the model knows; OUT rows keep their probabilities for research only",
    "Heat outside": "Share of the heat map outside the head; above 50 % the map is a warning sign",
}


def _number(value: float, percent: bool = False) -> str:
    if value is None or math.isnan(value):
        return ""
    return f"{value:.1%}" if percent else f"{value:.3f}"


class ResultsTableModel(QAbstractTableModel):
    """One row per classified frame; columns: file, slice, status, label, confidences, domain, heat outside, message.

    A row out of domain shows its class greyed and in italics, the reason as its tooltip; a heat
    map mostly outside the head shows its share in a warning colour.

    The model shows ``records`` (the viewer session's, read, never copied) and keeps only which
    keys its rows show, in their order: :meth:`upsert` adds or refreshes rows once the session holds
    their records.
    """

    def __init__(self, records: Mapping[FrameKey, FrameRecord] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.records: Mapping[FrameKey, FrameRecord] = records if records is not None else {}
        self.keys: list[FrameKey] = []
        self.classes: tuple[str, ...] = ()
        self._index: dict[FrameKey, int] = {}
        self.suspicious: set[FrameKey] = set()

    @property
    def rows(self) -> list[FrameRecord]:
        """The records shown, in the model's row order."""
        return [record for key in self.keys if (record := self.records.get(key)) is not None]

    def record(self, row: int) -> FrameRecord | None:
        """The record of a source row (None while the session no longer holds it)."""
        return self.records.get(self.keys[row]) if 0 <= row < len(self.keys) else None

    @property
    def columns(self) -> list[str]:
        return [*BASE_COLUMNS, *(f"p {c}" for c in self.classes), *TAIL_COLUMNS]

    def set_classes(self, classes: tuple[str, ...]) -> None:
        self.beginResetModel()
        self.classes = tuple(classes)
        self.keys.clear()
        self._index.clear()
        self.suspicious.clear()
        self.endResetModel()

    def clear(self) -> None:
        self.set_classes(self.classes)

    def upsert(self, keys: Iterable[FrameKey]) -> None:
        """Show the records of ``keys``: new rows at the end, rows already shown redrawn."""
        fresh, shown = [], []
        for key in keys:
            row = self._index.get(key)
            if row is None:
                fresh.append(key)
            else:
                shown.append(row)
        if shown:  # one signal for the span: the panel recounts once per batch of results
            self.dataChanged.emit(self.index(min(shown), 0), self.index(max(shown), self.columnCount() - 1))
        if fresh:
            start = len(self.keys)
            self.beginInsertRows(QModelIndex(), start, start + len(fresh) - 1)
            for offset, key in enumerate(fresh):
                self._index[key] = start + offset
                self.keys.append(key)
            self.endInsertRows()

    def set_suspicious(self, keys: set[FrameKey]) -> None:
        changed = keys ^ self.suspicious
        self.suspicious = set(keys)
        for key in changed:
            position = self._index.get(key)
            if position is not None:
                self.dataChanged.emit(self.index(position, 0), self.index(position, self.columnCount() - 1))

    def row_of(self, key: FrameKey) -> int | None:
        return self._index.get(key)

    # -- Qt model interface -----------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.keys)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section]
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal:
            return _HEADER_TIPS.get(self.columns[section])
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        record = self.record(index.row()) if index.isValid() else None
        if record is None:
            return None
        key = self.keys[index.row()]
        column = index.column()
        if role == KEY_ROLE:
            return key
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            return self._value(key, record, column, role == SORT_ROLE)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(record, column)
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._foreground(record, column)
        if role == Qt.ItemDataRole.FontRole:
            return self._font(key, record, column)
        numeric = 4 <= column < len(BASE_COLUMNS) + len(self.classes) or self._tail(column) == "Heat outside"
        if role == Qt.ItemDataRole.TextAlignmentRole and numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _tail(self, column: int) -> str:
        """The name of a column after the probabilities ("" for the others)."""
        offset = column - (len(self.columns) - len(TAIL_COLUMNS))
        return TAIL_COLUMNS[offset] if offset >= 0 else ""

    def _tooltip(self, record: FrameRecord, column: int) -> str:
        if out_of_domain(record) and (column == LABEL_COLUMN or self._tail(column) == "Domain"):
            return f"Out of domain: {record.domain_reason}" if record.domain_reason else "Out of domain"
        if self._tail(column) == "Heat outside" and heat_outside_high(record):
            return "The heat map lies mostly outside the head: a warning sign"
        return record.error or str(record.path)

    def _foreground(self, record: FrameRecord, column: int) -> QColor | None:
        if not record.ok:
            return QColor("#d9534f")
        if out_of_domain(record) and column == LABEL_COLUMN:
            return OUT_OF_DOMAIN_COLOUR
        if out_of_domain(record) and self._tail(column) == "Domain":
            return WARNING_COLOUR
        if self._tail(column) == "Heat outside" and heat_outside_high(record):
            return WARNING_COLOUR
        return None

    def _font(self, key: FrameKey, record: FrameRecord, column: int) -> QFont | None:
        bold = key in self.suspicious
        italic = column == LABEL_COLUMN and out_of_domain(record)
        if not (bold or italic):
            return None
        font = QFont()
        font.setBold(bold)
        font.setItalic(italic)
        return font

    def _value(self, key: FrameKey, record: FrameRecord, column: int, sort: bool) -> Any:
        k = len(self.classes)
        if column == 0:
            return record.name.lower() if sort else record.name
        if column == 1:
            if sort:
                return (record.series_uid, record.series_index if record.series_index is not None else record.frame)
            star = " ★" if key in self.suspicious else ""
            return position(record) + star
        if column == 2:
            return record.status
        if column == 3:
            return display_name(record.label)
        if 4 <= column < 6 + k:
            if column == 4:
                value = record.confidence
            elif column == 5:
                value = record.tumour_probability
            else:
                value = record.probability(self.classes[column - 6])
            return (-1.0 if math.isnan(value) else value) if sort else _number(value, percent=column == 4)
        tail = self._tail(column)
        if tail == "Domain":
            return domain_text(record)
        if tail == "Heat outside":
            return (-1.0 if math.isnan(record.heat_outside) else record.heat_outside) if sort else heat_outside_text(record)
        return record.error


class ResultsProxy(QSortFilterProxyModel):
    """Sorting on numbers (not text) and filtering with :class:`RowFilter`."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.row_filter = RowFilter()
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_filter(self, row_filter: RowFilter) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt 6.9 and later
            self.beginFilterChange()
            self.row_filter = row_filter
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.row_filter = row_filter
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:
        model = self.sourceModel()
        assert isinstance(model, ResultsTableModel)
        record = model.record(source_row)
        return record is not None and self.row_filter.accepts(record)

    def lessThan(self, left: _Index, right: _Index) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


class ResultsPanel(QWidget):
    """Filters above the results table; selecting a row emits ``frameActivated(key)``."""

    frameActivated = Signal(object)

    def __init__(self, records: Mapping[FrameKey, FrameRecord] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table_model = ResultsTableModel(records, self)
        self.proxy = ResultsProxy(self)
        self.proxy.setSourceModel(self.table_model)
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("Show only images classified as this class")
        self.class_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.min_confidence = QDoubleSpinBox()
        self.min_confidence.setRange(0.0, 1.0)
        self.min_confidence.setSingleStep(0.05)
        self.min_confidence.setDecimals(2)
        self.min_confidence.setToolTip("Show only results at least this confident")
        self.domain_combo = QComboBox()
        self.domain_combo.setToolTip("Show only pictures the model knows (in domain), or only those it does not")
        for text, value in DOMAIN_CHOICES:
            self.domain_combo.addItem(text, value)
        self.errors_only = QCheckBox("Errors only")
        self.errors_only.setToolTip("Show only the files that could not be classified, with their message")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search file or message…")
        self.search.setClearButtonEnabled(True)
        self.count_label = QLabel()
        filters = QHBoxLayout()
        filters.addWidget(QLabel("Class"))
        filters.addWidget(self.class_combo)
        filters.addWidget(QLabel("Min. confidence"))
        filters.addWidget(self.min_confidence)
        filters.addWidget(QLabel("Domain"))
        filters.addWidget(self.domain_combo)
        filters.addWidget(self.errors_only)
        filters.addWidget(self.search, 1)
        filters.addWidget(self.count_label)

        self._syncing = False
        self._shown_key: FrameKey | None = None  # the frame on screen, which a filter change never moves
        # Connected before the view's selection model exists, so these run first: while the proxy drops,
        # sorts or resets rows, the selection model moves its current row, which must not navigate.
        for begin in (self.proxy.rowsAboutToBeRemoved, self.proxy.layoutAboutToBeChanged,
                      self.proxy.modelAboutToBeReset):
            begin.connect(self._begin_sync)
        for end in (self.proxy.rowsRemoved, self.proxy.layoutChanged, self.proxy.modelReset):
            end.connect(self._end_sync)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.setToolTip("Click a row to show that image; click a header to sort")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(filters)
        layout.addWidget(self.table)

        self.set_classes(())
        self.class_combo.currentIndexChanged.connect(self._filters_changed)
        self.min_confidence.valueChanged.connect(self._filters_changed)
        self.domain_combo.currentIndexChanged.connect(self._filters_changed)
        self.errors_only.toggled.connect(self._filters_changed)
        self.search.textChanged.connect(self._filters_changed)
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        self.table.horizontalHeader().sortIndicatorChanged.connect(self._scroll_to_current)  # after the sort
        self.proxy.rowsInserted.connect(self._update_count)
        self.proxy.modelReset.connect(self._update_count)
        self.proxy.layoutChanged.connect(self._update_count)
        self.table_model.dataChanged.connect(self._update_count)  # a replaced record may change the counts
        self.table_model.dataChanged.connect(self._fit_slice_column)  # a star may have come or gone
        self.table_model.rowsInserted.connect(self._fit_slice_column)

    def set_classes(self, classes: tuple[str, ...]) -> None:
        self.table_model.set_classes(classes)
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("any", "")
        for name in classes:
            self.class_combo.addItem(display_name(name), name)  # shown for people, filtered by the raw name
        self.class_combo.blockSignals(False)
        self._filters_changed()
        header = self.table.horizontalHeader()
        metrics = header.fontMetrics()
        widths = {0: 200, 1: 70, 2: 50, 3: 95, len(self.table_model.columns) - len(TAIL_COLUMNS): 170}
        for column, title in enumerate(self.table_model.columns):
            header.resizeSection(column, widths.get(column, max(70, metrics.horizontalAdvance(title) + 24)))
        self._fit_slice_column()

    def _fit_slice_column(self, *_args: object) -> None:
        """Size the Slice column to its widest text, the star of the most suspicious slice and bold included."""
        model = self.table_model
        texts = {position(r) for r in model.rows} | {"Slice"}
        bold = QFont(self.table.font())
        bold.setBold(True)
        widest = max(QFontMetrics(bold).horizontalAdvance(text + " ★") for text in texts)
        header = self.table.horizontalHeader()
        width = max(widest + 2 * self.table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin) + 12,
                    header.sectionSizeFromContents(1).width())
        if header.sectionSize(1) < width:
            header.resizeSection(1, width)

    def current_filter(self) -> RowFilter:
        return RowFilter(
            label=str(self.class_combo.currentData() or ""),
            min_confidence=float(self.min_confidence.value()),
            errors_only=self.errors_only.isChecked(),
            text=self.search.text().strip(),
            domain=str(self.domain_combo.currentData() or ""),
        )

    def _filters_changed(self, *_args: object) -> None:
        """A filter changed: the rows shown change, the frame on screen never does."""
        self.class_combo.setEnabled(not self.errors_only.isChecked())
        self.min_confidence.setEnabled(not self.errors_only.isChecked())
        self.domain_combo.setEnabled(not self.errors_only.isChecked())
        self._syncing = True
        try:
            self.proxy.set_filter(self.current_filter())
        finally:
            self._syncing = False
        self.select_key(self._shown_key)
        self._update_count()

    def _begin_sync(self, *_args: object) -> None:
        self._syncing = True

    def _end_sync(self, *_args: object) -> None:
        self._syncing = False
        if self._shown_key is not None and self.selected_key() != self._shown_key:
            self.select_key(self._shown_key)  # the rows moved: keep the selection on the frame on screen

    def _scroll_to_current(self, *_args: object) -> None:
        current = self.table.selectionModel().currentIndex()
        if current.isValid():
            self.table.scrollTo(current, QAbstractItemView.ScrollHint.PositionAtCenter)

    def shown_key_hidden(self) -> bool:
        """Whether the frame on screen has a result that the filters hide."""
        key = self._shown_key
        source_row = self.table_model.row_of(key) if key is not None else None
        if source_row is None:
            return False
        return not self.proxy.mapFromSource(self.table_model.index(source_row, 0)).isValid()

    def _update_count(self, *_args: object) -> None:
        total = self.table_model.rowCount()
        rows = self.table_model.rows
        errors = sum(1 for row in rows if not row.ok)
        outside = sum(1 for row in rows if out_of_domain(row))
        text = f"{self.proxy.rowCount()} of {total} shown"
        if errors:
            text += f" · {errors} error{'s' if errors != 1 else ''}"
        if outside:
            text += f" · {outside} out of domain"
        hidden = self.shown_key_hidden()
        if hidden:
            text += " · current slice hidden by the filter"
        self.count_label.setText(text)
        self.count_label.setToolTip(
            "The image on screen does not pass the filters: no row is selected" if hidden else "")

    def visible_keys(self) -> list[FrameKey]:
        return [tuple(self.proxy.index(r, 0).data(KEY_ROLE)) for r in range(self.proxy.rowCount())]

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._syncing or not current.isValid():
            return
        self.frameActivated.emit(tuple(current.data(KEY_ROLE)))

    def select_key(self, key: FrameKey | None) -> None:
        """The frame on screen is ``key``: select its row (when shown) without emitting ``frameActivated``;
        no row is selected (and none is current) while the filters hide it."""
        self._shown_key = key
        source_row = self.table_model.row_of(key) if key is not None else None
        self._syncing = True
        try:
            index = QModelIndex() if source_row is None else self.proxy.mapFromSource(
                self.table_model.index(source_row, 0))
            if not index.isValid():
                self.table.selectionModel().clear()  # no current row either: clicking any row navigates
                self._update_count()
                return
            self.table.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
            )
            self.table.scrollTo(index)
        finally:
            self._syncing = False
        self._update_count()

    def selected_keys(self) -> list[FrameKey]:
        """The keys of every selected row (Ctrl- or Shift-click), in the table's order."""
        rows = sorted(self.table.selectionModel().selectedRows(0), key=lambda index: index.row())
        return [tuple(index.data(KEY_ROLE)) for index in rows]

    def selected_key(self) -> FrameKey | None:
        index = self.table.selectionModel().currentIndex()
        return tuple(index.data(KEY_ROLE)) if index.isValid() else None


class SeriesSummaryPanel(QTableWidget):
    """Per DICOM series: its verdict, slices, errors, labels, the most suspicious slice (click to show it) and
    slices out of domain."""

    frameActivated = Signal(object)
    HEADERS = ("Series", "Verdict", "Slices", "Errors", "Labels", "Most suspicious", "Label", "Tumour p",
               "Out of domain")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(list(self.HEADERS))
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.horizontalHeader().setStretchLastSection(True)
        self.setToolTip("Per DICOM series, the slice with the highest tumour probability; click to show it")
        self.cellClicked.connect(self._clicked)
        self._keys: list[FrameKey | None] = []

    def show_summary(self, summary: list[SeriesSummary], names: Mapping[str, str] | None = None) -> None:
        """Show ``summary``; ``names`` are the series' names by UID (the UID's tail for the others)."""
        names = names or {}
        self.setRowCount(len(summary))
        self._keys = []
        for row, entry in enumerate(summary):
            labels = ", ".join(f"{display_name(name)} {count}" for name, count in sorted(entry.labels.items()))
            best = entry.most_suspicious
            index = None if best is None else best.series_index
            probability = entry.max_tumour_probability
            verdict, verdict_tip, verdict_warning = verdict_cell(entry)
            cells = (
                names.get(entry.series_uid) or "…" + entry.series_uid[-12:],
                verdict,
                str(entry.slices),
                str(entry.errors),
                labels,
                "" if index is None else f"slice {index + 1}/{entry.slices}",
                "" if best is None else display_name(best.label),
                "" if probability is None else f"{probability:.3f}",
                str(entry.out_of_domain),
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{text}\n{entry.series_uid}" if column == 0 else verdict_tip if column == 1 else text)
                if column == 1 and verdict_warning:
                    item.setForeground(WARNING_COLOUR)
                if column == 8 and entry.out_of_domain:
                    item.setForeground(WARNING_COLOUR)
                    item.setToolTip("Slices whose picture is not the kind the model knows; their classes are not findings")
                self.setItem(row, column, item)
            self._keys.append(None if best is None else frame_key(best.path, best.frame))
        self.resizeColumnsToContents()

    def _clicked(self, row: int, _column: int) -> None:
        if 0 <= row < len(self._keys) and self._keys[row] is not None:
            self.frameActivated.emit(self._keys[row])
