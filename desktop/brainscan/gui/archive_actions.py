"""The archive's two commands in the File menu, wired to the :class:`ArchivePresenter`:

- *Open from archive…* (Ctrl+Shift+A): the dialog (server, query, studies, series; retrieve and open);
- *Send report to archive* (Ctrl+Shift+U): the last report's DICOM outputs (STOW-RS), enabled once a
  report with DICOM outputs was written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction

from brainscan.gui.presenters.archive_presenter import ArchivePresenter
from brainscan.gui.window_actions import window_action

if TYPE_CHECKING:
    from brainscan.gui.main_window import MainWindow


class ArchiveActions:
    """Creates the archive's actions and puts them in the File menu, beside *Open DICOM folder* and *Write report*."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.open_archive = self._action("Open from &archive…", "Ctrl+Shift+A",
                                         "Search a DICOMweb archive (PACS) and open studies or series from it; "
                                         "they are retrieved in the background into a cache folder")
        self.send_report = self._action("Send report to a&rchive", "Ctrl+Shift+U",
                                        "Store the DICOM outputs of the last report (Secondary Captures and SR) on "
                                        "the archive server chosen in Open from archive (STOW-RS)")
        self.send_report.setEnabled(False)
        menu = window.actions_.file_menu
        actions = menu.actions()
        recent = window.actions_.recent_menu.menuAction()
        menu.insertAction(recent if recent in actions else None, self.open_archive)
        after_report = next((actions[i + 1] for i, a in enumerate(actions[:-1]) if a is window.actions_.write_report),
                            None)
        menu.insertAction(after_report, self.send_report)

    def _action(self, text: str, shortcut: str, tip: str) -> QAction:
        return window_action(self.window, text, shortcut, tip)


def install_archive(window: MainWindow) -> ArchivePresenter:
    """The window's archive presenter, its actions in the File menu, and the report's DICOM outputs followed."""
    presenter = ArchivePresenter(window.pool, window.opening, window.settings, window.status, window)
    actions = ArchiveActions(window)
    presenter.actions = actions
    actions.open_archive.triggered.connect(lambda _checked=False: presenter.show_dialog())
    actions.send_report.triggered.connect(lambda _checked=False: presenter.choose_and_send())
    window.reports.finished.connect(presenter.on_report_finished)

    def update() -> None:
        actions.send_report.setEnabled(presenter.report_folder is not None and not presenter.running)

    presenter.stateChanged.connect(update)
    return presenter
