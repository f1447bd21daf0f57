"""Keeps the viewer's measurements and key images with the study: read when a study is opened, written on
every change (the sidecar files of :mod:`brainscan.engine.results.annotations`).

The sidecar lives beside the study's files when their folder is writable, else in :func:`annotations_folder`
(beside the viewer's settings file) under a name derived from the Study Instance UID or the folder's path.
Only folders whose sidecar was read are written, so an edit never overwrites annotations not yet read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from brainscan.engine.results import annotations as sidecar
from brainscan.engine.viewer.annotations import AnnotationsModel
from brainscan.gui.binding import follow
from brainscan.gui.settings import AppSettings
from brainscan.gui.viewer_controller import ViewerController

log = logging.getLogger(__name__)

ANNOTATIONS_FOLDER = "annotations"


def annotations_folder(settings: AppSettings) -> Path:
    """Where the sidecars of read-only studies are kept: ``annotations/`` beside the settings file."""
    return Path(settings.location).resolve().parent / ANNOTATIONS_FOLDER


class AnnotationStore(QObject):
    """Reads and writes the sidecars of what is open (see the module docstring).

    Signals
    -------
    saved(paths):
        The sidecar files just written.
    failed(message):
        A sidecar that could not be written (the annotations stay on screen).
    """

    saved = Signal(object)
    failed = Signal(str)

    def __init__(self, model: AnnotationsModel, controller: ViewerController, settings: AppSettings,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.controller = controller
        self.folder = annotations_folder(settings)
        self.loaded: set[str] = set()  # the files whose sidecar was read
        follow(self, model.events.annotations, lambda _value: self.save())

    def load_open(self) -> int:
        """Read the sidecars of the files opened since the last call; returns the records added."""
        paths = {str(ref.path) for ref in self.controller.session.refs()}
        new = sorted(p for p in paths if p not in self.loaded)
        if not new:
            return 0
        found = sidecar.load(new, self.folder)
        self.loaded.update(new)
        before = len(self.model.annotations.measurements) + len(self.model.annotations.key_images)
        self.model.merge(found)
        return len(self.model.annotations.measurements) + len(self.model.annotations.key_images) - before

    def save(self) -> list[Path]:
        """Write the sidecar of every folder read (atomically).

        Frames opened without passing by *Open* (a series made by the viewer itself) have their sidecars
        read first, so that writing never drops what a sidecar already held.
        """
        annotated = {frame[0] for frame in self.model.annotations.frames()}
        session = {str(ref.path) for ref in self.controller.session.refs()}
        unread = sorted(p for p in session if p not in self.loaded and os.path.realpath(p) in annotated)
        if unread:
            found = sidecar.load(unread, self.folder)
            self.loaded.update(unread)
            if found and self.model.merge(found):
                return []  # the merge is announced next, and that announcement writes
        if not self.loaded:
            return []
        try:
            written = sidecar.save(self.model.annotations, sorted(self.loaded), self.folder)
        except OSError as exc:
            message = f"The measurements could not be saved: {exc.filename or self.folder}: {exc.strerror or exc}"
            log.warning(message)
            self.failed.emit(message)
            return []
        self.saved.emit(written)
        return written

    def forget(self) -> None:
        """Everything was closed: nothing is written until a study is opened again."""
        self.loaded.clear()
        self.model.clear()
