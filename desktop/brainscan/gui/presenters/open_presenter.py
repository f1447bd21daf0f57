"""Opening images: files, folders and DICOM folders (by dialog, the recent list or a drop), found in the background."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

from brainscan.engine.input.frames import FrameRef
from brainscan.gui.browser import BrowserView
from brainscan.gui.frame_loader import FrameLoader
from brainscan.gui.settings import AppSettings
from brainscan.gui.status_line import StatusLine
from brainscan.gui.viewer_controller import ViewerController

IMAGE_FILTER = "Images and DICOM (*.dcm *.dicom *.ima *.jpg *.jpeg *.png *.bmp *.tif *.tiff);;All files (*)"


class OpenPresenter(QObject):
    """Opens paths into the viewer and remembers them as recent.

    Signals
    -------
    finished():
        What one :meth:`open_paths` found is open (or its errors are shown).
    """

    finished = Signal()

    def __init__(
        self, loader: FrameLoader, controller: ViewerController, browser: BrowserView, settings: AppSettings,
        status: StatusLine, parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self.loader = loader
        self.controller = controller
        self.browser = browser
        self.settings = settings
        self._status = status
        self._parent = parent
        loader.discovered.connect(self._on_discovered)

    def open_paths(self, paths: Sequence[str | os.PathLike]) -> None:
        """Open files and folders (discovery runs in the background); remembers them as recent."""
        paths = [os.fspath(p) for p in paths if os.fspath(p)]
        if not paths:
            return
        self.settings.add_recent(paths)
        self._status.message(f"Opening {', '.join(Path(p).name or p for p in paths[:3])}…")
        self.loader.discover(paths)

    def _on_discovered(self, refs: list[FrameRef], errors: list[str]) -> None:
        for message in errors:
            self._status.error(message)
        skipped = "; ".join(self.loader.skipped_notes)
        if refs:
            for group in self.controller.open_refs(refs):
                self.browser.browser_model.sync_group(group)
            self.browser.select_key(self.controller.session.current_key)
            self._status.message(
                f"{len(self.controller.session)} images open" + (f"; {skipped}" if skipped else ""), 8000)
        elif not errors:
            self._status.error("No images found there (JPEG, PNG, BMP, TIFF or DICOM)." + (f" {skipped}." if skipped else ""))
        self.finished.emit()

    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self._parent, "Open images", self.settings.last_folder(), IMAGE_FILTER)
        if paths:
            self.settings.set_last_folder(Path(paths[0]).parent)
            self.open_paths(paths)

    def choose_folder(self, title: str = "Open a folder of images") -> None:
        folder = QFileDialog.getExistingDirectory(self._parent, title, self.settings.last_folder())
        if folder:
            self.settings.set_last_folder(folder)
            self.open_paths([folder])

    def choose_dicom_folder(self) -> None:
        self.choose_folder("Open a DICOM folder (series are sorted along the slice normal)")

    def fill_recent_menu(self, menu: QMenu) -> None:
        menu.clear()
        recent = self.settings.recent()
        for path in recent:
            action = menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open_paths([p]))
        if recent:
            menu.addSeparator()
            menu.addAction("Clear the list", self.settings.clear_recent)
        else:
            menu.addAction("(nothing yet)").setEnabled(False)
