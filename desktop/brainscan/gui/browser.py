"""The study/series browser: a tree of series (or folders of pictures) and their frames, with thumbnails.

Frames show a placeholder until the background loader has decoded them, then their thumbnail;
after classification, their label; a file that cannot be read shows a warning and its message.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QStyle, QTreeView, QWidget

from brainscan.engine.results.names import display_name
from brainscan.engine.results.record import FrameRecord
from brainscan.engine.viewer.state import FrameKey, SeriesGroup, frame_key

KEY_ROLE = Qt.ItemDataRole.UserRole + 1
ICON_SIDE = 48


def picture_icon(picture: np.ndarray) -> QIcon:
    """A QIcon of an H x W x 3 uint8 picture (copied)."""
    array = np.ascontiguousarray(picture)
    height, width = array.shape[:2]
    image = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    return QIcon(QPixmap.fromImage(image))


def placeholder_icon(side: int = ICON_SIDE) -> QIcon:
    pixmap = QPixmap(side, side)
    pixmap.fill(QColor("#2a2e33"))
    painter = QPainter(pixmap)
    painter.setPen(QColor("#6b7480"))
    painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "…")
    painter.end()
    return QIcon(pixmap)


class BrowserModel(QStandardItemModel):
    """Series as top-level rows, frames as their children, each frame row carrying its key."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHorizontalHeaderLabels(["Open images"])
        self._frames: dict[FrameKey, QStandardItem] = {}
        self._groups: dict[str, QStandardItem] = {}
        self._placeholder = placeholder_icon()

    def clear_all(self) -> None:
        self.removeRows(0, self.rowCount())
        self._frames.clear()
        self._groups.clear()

    def sync_group(self, group: SeriesGroup) -> QStandardItem:
        """Add ``group`` (or the frames it gained) to the tree."""
        item = self._groups.get(group.key)
        if item is None:
            item = QStandardItem(group.title)
            item.setEditable(False)
            item.setData(group.key, KEY_ROLE + 1)
            self.appendRow(item)
            self._groups[group.key] = item
        item.setText(group.title)
        item.setToolTip(group.title)
        for position, ref in enumerate(group.refs):
            key = frame_key(ref.path, ref.frame)
            if key in self._frames:
                continue
            child = QStandardItem(self._placeholder, f"{group.unit} {position + 1} · {ref.path.name}")
            child.setEditable(False)
            child.setData(key, KEY_ROLE)
            child.setToolTip(str(ref.path) + (f" (frame {ref.frame})" if ref.frame else ""))
            item.appendRow(child)
            self._frames[key] = child
            if item.icon().isNull() and position == 0:
                item.setIcon(self._placeholder)
        return item

    def item_of(self, key: FrameKey) -> QStandardItem | None:
        return self._frames.get(key)

    def set_thumbnail(self, key: FrameKey, picture: np.ndarray) -> None:
        item = self._frames.get(key)
        if item is None:
            return
        icon = picture_icon(picture)
        item.setIcon(icon)
        parent = item.parent()
        if parent is not None and item.row() == 0:
            parent.setIcon(icon)

    def set_failed(self, key: FrameKey, message: str, style: QStyle) -> None:
        item = self._frames.get(key)
        if item is None:
            return
        item.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
        item.setText(item.text().split("\n")[0] + "\ncannot be read")
        item.setToolTip(message)
        item.setForeground(QColor("#d9534f"))

    def set_result(self, key: FrameKey, result: FrameRecord) -> None:
        item = self._frames.get(key)
        if item is None:
            return
        base = item.text().split("\n")[0]
        if result.ok:
            item.setText(f"{base}\n{display_name(result.label)} {result.confidence:.0%}")
        else:
            item.setText(f"{base}\nerror")
            item.setToolTip(result.error)
            item.setForeground(QColor("#d9534f"))

    def clear_results(self) -> None:
        for item in self._frames.values():
            item.setText(item.text().split("\n")[0])


class BrowserView(QTreeView):
    """The tree of open images; selecting a frame emits ``frameActivated(key)``."""

    frameActivated = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.browser_model = BrowserModel(self)
        self.setModel(self.browser_model)
        self.setIconSize(QSize(ICON_SIDE, ICON_SIDE))
        self.setUniformRowHeights(True)
        self.setHeaderHidden(True)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # UID file names keep their start and end
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setToolTip("Open images: a DICOM series per row, or the pictures of one folder")
        self.selectionModel().currentChanged.connect(self._on_current)
        self._syncing = False

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._syncing or not current.isValid():
            return
        key = current.data(KEY_ROLE)
        if key is None:  # a series row: its first frame
            child = current.model().index(0, 0, current)
            key = child.data(KEY_ROLE) if child.isValid() else None
        if key is not None:
            self.frameActivated.emit(tuple(key))

    def select_key(self, key: FrameKey | None) -> None:
        """Show ``key`` as current without emitting ``frameActivated``."""
        item = self.browser_model.item_of(key) if key is not None else None
        if item is None:
            return
        index = item.index()
        self._syncing = True
        try:
            self.expand(index.parent())
            self.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.scrollTo(index)
        finally:
            self._syncing = False
