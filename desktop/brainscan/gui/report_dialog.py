"""The *Write report* dialog: what to report (scope), in which formats, with which privacy, where.

The dialog only collects choices; :class:`~brainscan.gui.report_runner.ReportRunner` writes the
folder through the engine's :class:`~brainscan.engine.folder_run.FolderRun`, the same loop as
``brainscan screen --report``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from brainscan import RESEARCH_USE_NOTICE
from brainscan.engine.input.frames import FrameRef

SCOPES = ("selection", "series", "shown", "all")
SCOPE_TEXT = {
    "selection": "Selected rows of the results table",
    "series": "The current series or folder",
    "shown": "The results the table shows (filters applied)",
    "all": "Everything open",
}


@dataclass(frozen=True)
class ReportRequest:
    """What the user asked for."""

    scope: str
    refs: tuple[FrameRef, ...]
    formats: tuple[str, ...]
    folder: Path
    deidentify: bool = False
    keep_identifiers: bool = False


def default_report_folder(parent: str | Path | None, now: datetime | None = None) -> Path:
    """A new folder name beside the last one used: ``brainscan-report-YYYYmmdd-HHMMSS``."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path(parent or Path.home()) / f"brainscan-report-{stamp}"


class ReportDialog(QDialog):
    """Choose the scope, the formats (PDF, HTML, DICOM), de-identification and the output folder.

    Parameters
    ----------
    scopes:
        The frames of each scope (:data:`SCOPES`); an empty scope is shown disabled.
    folder:
        The suggested output folder.
    """

    def __init__(self, scopes: Mapping[str, Sequence[FrameRef]], folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Write report")
        self._scopes = {name: tuple(scopes.get(name, ())) for name in SCOPES}
        layout = QVBoxLayout(self)

        notice = QLabel(f"<b>{RESEARCH_USE_NOTICE}</b> The notice is printed on every page.")
        notice.setWordWrap(True)
        layout.addWidget(notice)

        scope_box = QGroupBox("Report on")
        scope_layout = QVBoxLayout(scope_box)
        self.scope_group = QButtonGroup(self)
        self.scope_buttons: dict[str, QRadioButton] = {}
        for name in SCOPES:
            refs = self._scopes[name]
            dicom = sum(1 for ref in refs if ref.kind == "dicom")
            detail = f"{len(refs)} image{'s' if len(refs) != 1 else ''}" + (f", {dicom} DICOM" if dicom else "")
            button = QRadioButton(f"{SCOPE_TEXT[name]} ({detail})")
            button.setEnabled(bool(refs))
            button.setProperty("scope", name)
            self.scope_group.addButton(button)
            self.scope_buttons[name] = button
            scope_layout.addWidget(button)
        first = next((name for name in SCOPES if self._scopes[name]), None)
        if first is not None:
            self.scope_buttons[first].setChecked(True)
        layout.addWidget(scope_box)

        format_box = QGroupBox("Formats")
        format_layout = QVBoxLayout(format_box)
        self.pdf = QCheckBox("PDF report")
        self.html = QCheckBox("HTML report (one self-contained file)")
        self.dicom = QCheckBox("DICOM: a Secondary Capture per slice and a Structured Report (TID 1500) per study")
        self.dicom.setToolTip("For DICOM inputs only; written in a new series of each source study")
        self.pdf.setChecked(True)
        self.html.setChecked(True)
        for box in (self.pdf, self.html, self.dicom):
            format_layout.addWidget(box)
        layout.addWidget(format_box)

        privacy_box = QGroupBox("Privacy")
        privacy_layout = QVBoxLayout(privacy_box)
        self.deidentify = QCheckBox("De-identify the DICOM objects (basic profile, new UIDs)")
        self.keep_identifiers = QCheckBox("Show patient name, ID and birth date in the reports")
        self.keep_identifiers.setToolTip("Left out by default; the DICOM objects keep the study linkage")
        privacy_layout.addWidget(self.deidentify)
        privacy_layout.addWidget(self.keep_identifiers)
        layout.addWidget(privacy_box)

        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel("Folder"))
        self.folder_edit = QLineEdit(str(folder))
        self.folder_edit.setToolTip("results.csv, results.json, the reports and the DICOM objects go here; "
                                    "a folder with earlier results of the same model continues them")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        layout.addLayout(folder_row)

        self.problem = QLabel()
        self.problem.setStyleSheet("color: #b00020")
        layout.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Write")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

        for widget in (self.pdf, self.html, self.dicom, self.deidentify):
            widget.toggled.connect(self._update)
        self.scope_group.buttonToggled.connect(lambda *_: self._update())
        self.folder_edit.textChanged.connect(self._update)
        self._update()

    # -- state ---------------------------------------------------------------------------------------
    def scope(self) -> str | None:
        button = self.scope_group.checkedButton()
        return str(button.property("scope")) if button is not None else None

    def select_scope(self, name: str) -> None:
        self.scope_buttons[name].setChecked(True)

    def formats(self) -> tuple[str, ...]:
        return tuple(name for name, box in (("pdf", self.pdf), ("html", self.html), ("dicom", self.dicom))
                     if box.isChecked() and box.isEnabled())

    def request(self) -> ReportRequest | None:
        """The choices, or None while they cannot be written (the reason is shown in the dialog)."""
        scope = self.scope()
        if scope is None or self.problem_text():
            return None
        return ReportRequest(scope=scope, refs=self._scopes[scope], formats=self.formats(),
                             folder=Path(self.folder_edit.text().strip()).expanduser(),
                             deidentify=self.deidentify.isChecked() and "dicom" in self.formats(),
                             keep_identifiers=self.keep_identifiers.isChecked())

    def problem_text(self) -> str:
        scope = self.scope()
        if scope is None:
            return "Nothing is open to report on."
        if not self.formats():
            return "Choose at least one format."
        if not self.folder_edit.text().strip():
            return "Choose a folder for the report."
        return ""

    def _update(self) -> None:
        scope = self.scope()
        has_dicom = scope is not None and any(ref.kind == "dicom" for ref in self._scopes[scope])
        self.dicom.setEnabled(has_dicom)
        if not has_dicom:
            self.dicom.setToolTip("The chosen images hold no DICOM: DICOM objects are made for DICOM inputs only")
        self.deidentify.setEnabled(has_dicom and self.dicom.isChecked())
        problem = self.problem_text()
        self.problem.setText(problem)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)

    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Folder for the report", self.folder_edit.text())
        if chosen:
            self.folder_edit.setText(str(default_report_folder(chosen)))
