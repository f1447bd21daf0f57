"""Toolbar and window icons: the SVGs in ``resources/icons``, else a standard Qt icon."""

from __future__ import annotations

from functools import cache

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QStyle

from brainscan.engine.resources import resources_dir

_FALLBACK = {
    "open-file": QStyle.StandardPixmap.SP_FileIcon,
    "open-folder": QStyle.StandardPixmap.SP_DirOpenIcon,
    "open-dicom": QStyle.StandardPixmap.SP_DirIcon,
    "classify": QStyle.StandardPixmap.SP_MediaPlay,
    "cancel": QStyle.StandardPixmap.SP_MediaStop,
    "settings": QStyle.StandardPixmap.SP_FileDialogDetailedView,
    "export-image": QStyle.StandardPixmap.SP_DialogSaveButton,
    "export-csv": QStyle.StandardPixmap.SP_DialogSaveButton,
}


@cache
def icon(name: str) -> QIcon:
    """The icon ``name`` (an SVG scales cleanly on high-DPI screens)."""
    path = resources_dir() / "icons" / f"{name}.svg"
    if path.is_file():
        found = QIcon(str(path))
        if not found.isNull():
            return found
    style = QApplication.style()
    if name in _FALLBACK and style is not None:
        return style.standardIcon(_FALLBACK[name])
    return QIcon()
