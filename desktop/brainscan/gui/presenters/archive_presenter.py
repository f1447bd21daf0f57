"""*Open from archive* and *Send report to archive*: QIDO-RS searches, WADO-RS retrieval into a per-user cache
folder and STOW-RS of a report's DICOM outputs, each in the background on a
:class:`~brainscan.gui.job_runner.JobRunner` (progress and cancel), the engine's
:class:`~brainscan.engine.archive.Archive` doing the work.

The server is remembered in the settings (``archive/server``); credentials come from the environment
variables the engine reads or from the system keyring (*Sign in...* keeps them there), never from the
settings. Retrieved series land in the cache folder
(``archive/cache`` in the settings, else :func:`default_cache_folder`) as
``<StudyUID>/<SeriesUID>/<SOPUID>.dcm`` and are opened as a local DICOM folder is; a series already
there is not fetched again. Cancelling stops between two instances: the ones finished stay cached,
none is half-written, nothing is opened.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from brainscan.engine.archive import (
    Archive,
    ArchiveError,
    ArchiveLocation,
    Retrieval,
    Series,
    StoreOutcome,
    Study,
    StudyQuery,
)
from brainscan.engine.archive.access import is_archive_url, public_url
from brainscan.engine.archive.credentials import Credentials, save_to_keyring
from brainscan.engine.errors import BrainscanError
from brainscan.engine.run.archive_run import dicom_outputs, open_archive, record_stored
from brainscan.engine.run.folder_run import RunOutcome
from brainscan.gui.archive_dialog import ArchiveDialog, SignInDialog
from brainscan.gui.job_runner import JobRunner
from brainscan.gui.presenters.open_presenter import OpenPresenter
from brainscan.gui.settings import AppSettings
from brainscan.gui.status_line import StatusLine
from brainscan.gui.workers import WorkerPool

SERVER_KEY, CACHE_KEY = "archive/server", "archive/cache"
CACHE_ENV = "BRAINSCAN_ARCHIVE_CACHE"
NO_SERVER = "No archive server yet: choose one in File > Open from archive… (Ctrl+Shift+A)."


def default_cache_folder() -> Path:
    """Where retrieved series go: ``$BRAINSCAN_ARCHIVE_CACHE``, else the user's cache folder + ``brainscan/archive``
    (``~/.cache/brainscan/archive`` on Linux)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericCacheLocation)
    return Path(base or Path.home() / ".cache") / "brainscan" / "archive"


@dataclass
class Retrieved:
    """What one *Open* retrieved: the series folders to open, and the instances not retrieved."""

    folders: list[Path] = field(default_factory=list)
    fetched: int = 0
    cached: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def search_job(make: Callable[[str], Archive], server: str, query: StudyQuery) -> Iterator[tuple[str, object]]:
    try:
        query.matches()
    except ValueError as exc:
        yield ("failed", f"Search: {exc}")
        return
    try:
        yield ("studies", make(server).search_studies(query))
    except ArchiveError as exc:
        yield ("failed", str(exc))


def series_job(make: Callable[[str], Archive], server: str, study_uid: str) -> Iterator[tuple[str, object]]:
    try:
        yield ("series", (study_uid, make(server).find_series(study_uid)))
    except ArchiveError as exc:
        yield ("failed", str(exc))


def retrieve_job(make: Callable[[str], Archive], server: str, locations: Sequence[ArchiveLocation],
                 folder: Path) -> Iterator[tuple[str, object]]:
    """Yield ``("progress", (index, count, done, total))`` after each instance, then ``("done", Retrieved)``.

    The worker closes this generator between two instances when cancelled: no file is half-written.
    """
    archive = make(server)
    retrieved = Retrieved()
    try:
        for index, location in enumerate(locations):
            found = Retrieval()
            for done, total, so_far in archive.retrieve_steps(location, folder):
                found = so_far
                yield ("progress", (index, len(locations), done, total))
            retrieved.fetched += found.fetched
            retrieved.cached += found.cached
            retrieved.failed.extend(found.failed)
            for path in found.files:
                if path.parent not in retrieved.folders:
                    retrieved.folders.append(path.parent)
    except ArchiveError as exc:
        yield ("failed", str(exc))
        return
    yield ("done", retrieved)


def store_job(make: Callable[[str], Archive], server: str, out: Path) -> Iterator[tuple[str, object]]:
    """Send ``out``'s DICOM outputs one file at a time (cancel between files), then record them in results.json."""
    files = dicom_outputs(out)
    archive = make(server)
    outcome = StoreOutcome(archive.server)
    recorded = False
    try:
        for done, path in enumerate(files, start=1):
            one = archive.store([path])
            outcome.stored.extend(one.stored)
            outcome.failed.extend(one.failed)
            yield ("progress", (done, len(files)))
        record_stored(out, outcome)
        recorded = True
    except (ArchiveError, BrainscanError) as exc:
        yield ("failed", str(exc))
        return
    finally:
        if not recorded and outcome.stored:  # cancelled or failed part-way: what the archive took is recorded
            with contextlib.suppress(BrainscanError):
                record_stored(out, outcome)
    yield ("done", outcome)


class ArchivePresenter(QObject):
    """The archive dialog's searches and retrievals, and the report's store, one job at a time.

    Signals
    -------
    stateChanged():
        A job started or ended, or a report with DICOM outputs became available.
    searched(message):
        A search or a series listing ended ("" when it worked; else the one-line error shown).
    retrieved(folders, message):
        A retrieval ended: the folders opened (empty when cancelled or failed) and its error or "".
    stored(outcome, message):
        A store ended: the :class:`StoreOutcome` (None when it could not run) and its error or "".
    """

    stateChanged = Signal()
    searched = Signal(str)
    retrieved = Signal(object, str)
    stored = Signal(object, str)

    def __init__(self, pool: WorkerPool, opening: OpenPresenter, settings: AppSettings, status: StatusLine,
                 parent: QWidget, make_archive: Callable[[str], Archive] = open_archive) -> None:
        super().__init__(parent)
        self.runner = JobRunner(pool, "archive", self)
        self.runner.itemsReady.connect(self._on_items)
        self.runner.finished.connect(self._on_finished)
        self.opening = opening
        self.settings = settings
        self.make_archive = make_archive
        self._status = status
        self._parent = parent
        self.dialog: ArchiveDialog | None = None
        self.studies: list[Study] = []
        self.series: list[Series] = []
        self.report_folder: Path | None = None  # the last report folder with DICOM outputs
        self.actions: object = None  # the File menu's actions (gui/archive_actions.py sets them)
        self._kind = ""
        self._result: object = None
        self._error = ""
        self._pending_series = ""

    # -- remembered settings ------------------------------------------------------------------------
    @property
    def server(self) -> str:
        return str(self.settings.qsettings.value(SERVER_KEY, "") or "")

    @server.setter
    def server(self, url: str) -> None:
        self.settings.qsettings.setValue(SERVER_KEY, url)

    @property
    def cache_folder(self) -> Path:
        value = str(self.settings.qsettings.value(CACHE_KEY, "") or "")
        return Path(value) if value else default_cache_folder()

    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def retrieving(self) -> bool:
        return self.runner.running and self._kind == "retrieve"

    # -- the dialog -----------------------------------------------------------------------------------
    def show_dialog(self) -> ArchiveDialog:
        if self.dialog is None:
            dialog = ArchiveDialog(self.server, str(self.cache_folder), self._parent)
            dialog.search.clicked.connect(self.search)
            dialog.sign_in.clicked.connect(self.sign_in)
            dialog.open.clicked.connect(self.open_selected)
            dialog.cancel.clicked.connect(self.cancel)
            dialog.studies.itemSelectionChanged.connect(self._on_study_selected)
            self.dialog = dialog
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog

    def _show_error(self, text: str) -> None:
        """A refusal in the dialog's error line (it is open whenever this is called)."""
        if self.dialog is not None:
            self.dialog.show_error(text)

    def _server_from_dialog(self) -> str:
        assert self.dialog is not None
        url = self.dialog.server.text().strip().rstrip("/")
        if not is_archive_url(url):
            self._show_error(f"{public_url(url) or 'Server'}: is not a DICOMweb root "
                             "(give http(s)://host[:port]/<root>, e.g. http://pacs:8042/dicom-web)")
            return ""
        self.server = url
        return url

    def sign_in(self) -> SignInDialog | None:
        """Ask for credentials for the dialog's server and keep them in the system keyring (window-modal)."""
        if self.dialog is None:
            return None
        server = self._server_from_dialog()
        if not server:
            return None
        asking = SignInDialog(public_url(server), self.dialog)
        asking.accepted.connect(lambda: self._keep_credentials(server, asking))
        asking.open()
        return asking

    def _keep_credentials(self, server: str, asking: SignInDialog) -> None:
        assert self.dialog is not None
        secret, user = asking.secret.text(), asking.user.text().strip()
        if not secret or not (user or asking.token.isChecked()):
            self._show_error(f"{public_url(server)}: nothing kept (give a user and a password, or a token)")
            return
        credentials = (Credentials("bearer", "", secret) if asking.token.isChecked()
                       else Credentials("basic", user, secret))
        try:
            save_to_keyring(server, credentials)
        except ArchiveError as exc:
            self._show_error(str(exc))
            return
        self.dialog.show_error("")
        self._status.message(f"{public_url(server)}: credentials kept in the system keyring", 8000)

    def search(self) -> bool:
        """Search the server in the dialog with its fields (in the background)."""
        dialog = self.dialog
        if dialog is None or self.runner.running:
            return False
        server = self._server_from_dialog()
        if not server:
            return False
        dialog.show_error("")
        self.studies, self.series = [], []
        dialog.show_studies([])
        query = dialog.query()
        return self._start("search", lambda: search_job(self.make_archive, server, query))

    def _on_study_selected(self) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        row = dialog.selected_study_row()
        self.series = []
        dialog.show_series([])
        dialog.set_busy(self.runner.running, self.retrieving)
        if 0 <= row < len(self.studies):
            self._list_series(self.studies[row].study_uid)

    def _list_series(self, study_uid: str) -> None:
        if self.runner.running:
            self._pending_series = study_uid
            return
        server = self.server
        self._start("series", lambda: series_job(self.make_archive, server, study_uid))

    def open_selected(self) -> bool:
        """Retrieve the selected series (the whole study when none is) into the cache folder, then open them."""
        dialog = self.dialog
        if dialog is None or self.runner.running:
            return False
        row = dialog.selected_study_row()
        if not 0 <= row < len(self.studies):
            self._show_error("Choose a study first (search, then click a row).")
            return False
        server = self._server_from_dialog()
        if not server:
            return False
        study = self.studies[row].study_uid
        rows = [r for r in dialog.selected_series_rows() if r < len(self.series)]
        locations = ([ArchiveLocation(server, study, self.series[r].series_uid) for r in rows] if rows
                     else [ArchiveLocation(server, study)])
        folder = self.cache_folder
        dialog.show_error("")
        dialog.progress.setRange(0, 0)
        self._status.message(f"Retrieving {len(locations) if rows else 'the whole study'}"
                             f"{' series' if rows else ''} from {public_url(server)}…")
        return self._start("retrieve", lambda: retrieve_job(self.make_archive, server, locations, folder))

    def cancel(self) -> None:
        """Stop the running retrieval or store between two instances (Esc, or the dialog's button)."""
        if self.runner.running and self._kind in ("retrieve", "store"):
            self.runner.cancel()
            self._status.message("Cancelling…")

    # -- the report -----------------------------------------------------------------------------------
    def on_report_finished(self, outcome: RunOutcome | None, message: str) -> None:
        """Remember the folder of a report that wrote DICOM outputs (what *Send report to archive* sends)."""
        if message or outcome is None or outcome.interrupted or outcome.reports is None:
            return
        written = [path for path in outcome.reports.written if path.suffix == ".dcm"]
        if written:
            self.report_folder = written[0].parent.parent  # <report folder>/dicom/<file>.dcm
            self.stateChanged.emit()

    def choose_and_send(self) -> None:
        """*Send report to archive*: ask, then store the last report's DICOM outputs on the remembered server."""
        if self.report_folder is None:
            self._status.error("No report with DICOM outputs yet: write one with Write report (Ctrl+R), DICOM ticked.")
            return
        if not self.server:
            self._status.error(NO_SERVER)
            return
        files = len(dicom_outputs(self.report_folder))
        answer = QMessageBox.question(self._parent, "Send report to archive",
                                      f"Send the {files} DICOM objects of {self.report_folder} to "
                                      f"{public_url(self.server)}?")
        if answer == QMessageBox.StandardButton.Yes:
            self.send_report(self.report_folder)

    def send_report(self, folder: Path) -> bool:
        """STOW-RS of ``folder``/dicom/*.dcm to the remembered server, in the background."""
        server = self.server
        if not server:
            self._status.error(NO_SERVER)
            return False
        if self.runner.running:
            self._status.error("Wait for the archive search or retrieval to end (or cancel it with Esc).")
            return False
        if not dicom_outputs(folder):
            self._status.error(f"{folder}: holds no DICOM outputs (write the report with DICOM ticked)")
            return False
        self._status.message(f"Sending {folder.name}'s DICOM outputs to {public_url(server)}…")
        return self._start("store", lambda: store_job(self.make_archive, server, folder))

    # -- the job ----------------------------------------------------------------------------------------
    def _start(self, kind: str, job: Callable[[], Iterator[tuple[str, object]]]) -> bool:
        self._kind, self._result, self._error = kind, None, ""
        if not self.runner.start(job):
            return False
        if kind in ("retrieve", "store"):
            self._status.start_progress(0)
        if self.dialog is not None:
            self.dialog.set_busy(True, kind == "retrieve")
        self.stateChanged.emit()
        return True

    def _on_items(self, items: list[tuple[str, object]]) -> None:
        for kind, value in items:
            if kind == "progress":
                self._on_progress(value)  # type: ignore[arg-type]
            elif kind == "failed":
                self._error = str(value)
            else:
                self._result = value

    def _on_progress(self, value: tuple[int, ...]) -> None:
        if self._kind == "retrieve":
            index, count, done, total = value
            if self.dialog is not None:
                self.dialog.progress.setRange(0, total)
                self.dialog.progress.setValue(done)
            self._status.set_progress(done, total)
            series = f"series {index + 1} of {count}: " if count > 1 else ""
            self._status.message(f"Retrieving {series}{done} of {total} instances…")
        else:
            done, total = value
            self._status.set_progress(done, total)
            self._status.message(f"Sending to the archive: {done} of {total} files…")

    def _on_finished(self, cancelled: bool, failure: str) -> None:
        kind, result = self._kind, self._result
        error = self._error or (f"{public_url(self.server)}: unexpected error ({failure}) "
                                "(check the server URL; the log has the details)" if failure else "")
        if kind in ("retrieve", "store"):
            self._status.end_progress()
        if self.dialog is not None:
            self.dialog.progress.setRange(0, 1)
            self.dialog.progress.setValue(0)
        getattr(self, f"_{kind}_finished")(result, error, cancelled)
        if self.dialog is not None:
            self.dialog.set_busy(False)
            if error:
                self.dialog.show_error(error)
        self.stateChanged.emit()
        pending, self._pending_series = self._pending_series, ""
        if pending and not self.runner.running:
            self._list_series(pending)

    def _search_finished(self, result: object, error: str, cancelled: bool) -> None:
        if isinstance(result, list) and self.dialog is not None:
            self.studies = result
            self.dialog.show_studies(result)
            self.dialog.info.setText(f"{len(result)} studies found on {public_url(self.server)}"
                                     + (" (select one to see its series)" if result else ""))
        self.searched.emit(error)

    def _series_finished(self, result: object, error: str, cancelled: bool) -> None:
        dialog = self.dialog
        if isinstance(result, tuple) and dialog is not None:
            study_uid, series = result
            row = dialog.selected_study_row()
            if 0 <= row < len(self.studies) and self.studies[row].study_uid == study_uid:
                self.series = series
                dialog.show_series(series)
        self.searched.emit(error)

    def _retrieve_finished(self, result: object, error: str, cancelled: bool) -> None:
        folders: list[Path] = []
        if cancelled:
            self._status.message("Retrieval cancelled: the instances finished stay cached; nothing was opened", 15000)
        elif error:
            self._status.error(error)
        elif isinstance(result, Retrieved):
            folders = result.folders
            note = f"{result.fetched} instances retrieved, {result.cached} already in {self.cache_folder}"
            if result.failed:
                note += f"; {len(result.failed)} not retrieved ({result.failed[0][1]})"
                error = f"{public_url(self.server)}: {len(result.failed)} instances not retrieved: {result.failed[0][1]}"
            if self.dialog is not None:
                self.dialog.info.setText(note)
            if folders:
                self.opening.open_paths(folders)
                if self.dialog is not None and not error:
                    self.dialog.hide()
            self._status.message(note, 15000)
        self.retrieved.emit(folders, error)

    def _store_finished(self, result: object, error: str, cancelled: bool) -> None:
        outcome = result if isinstance(result, StoreOutcome) else None
        if cancelled:
            self._status.error("Sending to the archive cancelled: the files sent so far stay on the archive")
        elif error or outcome is None:
            self._status.error(f"Report not sent: {error}")
        else:
            text = f"{len(outcome.stored)} DICOM objects stored on {outcome.server}"
            if outcome.failed:
                text += f"; {len(outcome.failed)} refused: {outcome.failed[0]['file']}: {outcome.failed[0]['why']}"
                self._status.error(text)
            else:
                self._status.message(text, 20000)
        self.stored.emit(outcome, error)
