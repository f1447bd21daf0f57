"""*Open from archive*: the dialog's widgets (server, query, studies, series, progress); what they do is the
:class:`~brainscan.gui.presenters.archive_presenter.ArchivePresenter`'s.

Patient names and IDs appear in the studies table so a person can choose; they are written nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from brainscan.engine.archive import Series, Study, StudyQuery
from brainscan.engine.archive.credentials import CA_VARIABLE, PASSWORD_VARIABLE, TOKEN_VARIABLE, USER_VARIABLE

CREDENTIALS_NOTE = (f"Credentials come from the environment ({TOKEN_VARIABLE}, a bearer token, or "
                    f"{USER_VARIABLE} and {PASSWORD_VARIABLE}) or from the system keyring (Sign in...); "
                    f"{CA_VARIABLE} names a CA bundle for a private certificate authority. Patient names and IDs "
                    "are shown here only and written nowhere.")
STUDY_COLUMNS = ("Patient name", "Patient ID", "Date", "Description", "Modalities", "Series", "Instances")
SERIES_COLUMNS = ("Number", "Description", "Modality", "Instances")
MODALITIES = ("", "MR", "CT", "PT", "OT", "SR")


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:]}" if len(value) == 8 and value.isdigit() else value


def _table(columns: Sequence[str], multiple: bool) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection if multiple
                           else QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _fill(table: QTableWidget, rows: Sequence[Sequence[str]]) -> None:
    table.clearSelection()
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if text.isdigit():
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class ArchiveDialog(QDialog):
    """The widgets of *Open from archive* (modeless: a retrieval goes on in the background)."""

    def __init__(self, server: str, cache: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open from archive (DICOMweb) — research use only")
        self.resize(900, 600)
        self.server = QLineEdit(server)
        self.server.setPlaceholderText("http(s)://host[:port]/dicom-web")
        self.server.setToolTip("The archive's DICOMweb root (remembered)")
        self.sign_in = QPushButton("Sign &in...")
        self.sign_in.setToolTip("Keep a user and password, or a bearer token, for this server in the system keyring "
                                "(used by the viewer and brainscan screen; the environment's credentials win)")
        note = QLabel(CREDENTIALS_NOTE)
        note.setWordWrap(True)
        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit()
        self.patient_name.setToolTip("Matches from the start of the name (Doe finds Doe^Jane); * and ? are wildcards")
        self.date_from = QLineEdit()
        self.date_to = QLineEdit()
        for field in (self.date_from, self.date_to):
            field.setPlaceholderText("YYYY-MM-DD")
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.description = QLineEdit()
        self.description.setToolTip("Matches anywhere in the study description")
        self.search = QPushButton("&Search")
        self.search.setDefault(True)
        self.search.setToolTip("Find the studies matching the fields (QIDO-RS); empty fields match everything")

        top = QFormLayout()
        server_row = QHBoxLayout()
        server_row.addWidget(self.server, 1)
        server_row.addWidget(self.sign_in)
        top.addRow("&Server:", server_row)
        top.addRow(note)
        query = QGridLayout()
        for column, (label, widget) in enumerate((("Patient ID", self.patient_id), ("Patient name", self.patient_name),
                                                  ("From", self.date_from), ("To", self.date_to),
                                                  ("Modality", self.modality), ("Description", self.description))):
            query.addWidget(QLabel(label), 0, column)
            query.addWidget(widget, 1, column)
        query.addWidget(self.search, 1, 6)

        self.studies = _table(STUDY_COLUMNS, multiple=False)
        self.series = _table(SERIES_COLUMNS, multiple=True)
        self.series.setToolTip("Select the series to open; with none selected, Open retrieves the whole study")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.studies)
        splitter.addWidget(self.series)

        self.error = QLabel()
        self.error.setObjectName("archiveError")
        self.error.setStyleSheet("color: #b00020;")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.info = QLabel(f"Retrieved series are kept in {cache}")
        self.info.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.open = QPushButton("&Open")
        self.open.setToolTip("Retrieve the selected series (or the whole study) in the background and open them")
        self.open.setEnabled(False)
        self.cancel = QPushButton("&Cancel retrieval")
        self.cancel.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.cancel)
        buttons.addWidget(self.open)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(query)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.info)
        layout.addLayout(buttons)

    def query(self) -> StudyQuery:
        return StudyQuery(patient_id=self.patient_id.text(), patient_name=self.patient_name.text(),
                          date_from=self.date_from.text(), date_to=self.date_to.text(),
                          modality=self.modality.currentText(), description=self.description.text())

    def show_error(self, text: str) -> None:
        """One line (the full text also in the tooltip); "" clears it."""
        line = " ".join(text.split())
        self.error.setText(line)
        self.error.setToolTip(line)

    def show_studies(self, studies: Sequence[Study]) -> None:
        _fill(self.studies, [(s.patient_name, s.patient_id, _date(s.date), s.description, s.modalities,
                              _count(s.series_count), _count(s.instance_count)) for s in studies])
        self.show_series([])

    def show_series(self, series: Sequence[Series]) -> None:
        _fill(self.series, [(s.number, s.description, s.modality, _count(s.instance_count)) for s in series])

    def selected_study_row(self) -> int:
        rows = sorted({index.row() for index in self.studies.selectionModel().selectedRows()})
        return rows[0] if rows else -1

    def selected_series_rows(self) -> list[int]:
        return sorted({index.row() for index in self.series.selectionModel().selectedRows()})

    def set_busy(self, busy: bool, retrieving: bool = False) -> None:
        self.search.setEnabled(not busy)
        self.cancel.setEnabled(retrieving)
        self.progress.setVisible(retrieving)
        self.open.setEnabled(not busy and self.selected_study_row() >= 0)


class SignInDialog(QDialog):
    """The credentials to keep in the system keyring for one server: a user and password, or a token."""

    def __init__(self, server: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Sign in to {server}")
        self.user = QLineEdit()
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.token = QCheckBox("A bearer token (no user)")
        self.token.toggled.connect(lambda on: self.user.setEnabled(not on))
        form = QFormLayout(self)
        form.addRow(QLabel(f"Kept in the system keyring for {server}, never in brainscan's settings or outputs."))
        form.addRow("&User:", self.user)
        form.addRow("&Password or token:", self.secret)
        form.addRow(self.token)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
