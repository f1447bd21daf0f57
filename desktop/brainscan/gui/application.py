"""The QApplication of the viewer (organisation, names, style, icon and high-DPI scaling)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from brainscan import __version__
from brainscan.gui.icons import icon
from brainscan.gui.settings import APPLICATION, ORGANISATION


def create_application(argv: Sequence[str]) -> QApplication:
    """The QApplication, with high-DPI scaling that follows the screen exactly (the running one if any)."""
    existing = QApplication.instance()
    if existing is not None:
        return existing  # type: ignore[return-value]
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication(list(argv))
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("brainscan viewer")
    app.setApplicationVersion(__version__)
    app.setStyle("Fusion")
    app.setWindowIcon(icon("brainscan"))
    return app
