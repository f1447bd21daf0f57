"""A run's archive ends: instances retrieved into the output folder's cache before it, outputs stored after it.

``brainscan screen URL ... --out DIR`` retrieves each study or series into
``DIR/archive-cache/<StudyUID>/<SeriesUID>/<SOPUID>.dcm`` (:data:`CACHE_DIR`; what is there already
is not fetched again, so a resumed run picks up where it stopped) and screens those folders like any
other; the rows of a cached file name the instance's URL (:attr:`RunSettings.sources`).

What could not be retrieved does not stop the others: an instance whose transfer failed gets an
error row (its ``path`` the instance's URL, its ``error`` naming the server and the fix), and a URL
whose study or series could not be listed (unreachable, refused, unknown) gets one error row whose
``path`` is that URL (frame 0; its ``series_uid`` when the URL names a series). Both stand for a
file in the cache folder that is not there (:attr:`ArchiveInputs.failed_results`); when a later run
retrieves the instance or lists the URL, their error rows give way to the results
(:attr:`ArchiveInputs.replace`).
``--store ROOT`` sends the run's DICOM outputs (``DIR/dicom``: Secondary Captures and the SR) after
the run and records what was stored, and what was not, in ``results.json`` under ``"stored"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from brainscan.engine.archive.access import (
    Archive,
    ArchiveError,
    ArchiveLocation,
    Cancelled,
    Progress,
    Retrieval,
    StoreOutcome,
    parse_archive_url,
    public_url,
)
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.reports.common import DICOM_DIR
from brainscan.engine.results.files import atomic_write_text
from brainscan.engine.results.record import FrameResult
from brainscan.engine.results.store import RESULTS_JSON, OutputError, write_failure

CACHE_DIR = "archive-cache"


def open_archive(root: str) -> Archive:
    """The archive at a DICOMweb root (DIMSE would be chosen here by its own URL scheme)."""
    from brainscan.engine.archive.dicomweb import DicomWebArchive

    return DicomWebArchive(root)


@dataclass(frozen=True)
class UrlFailure:
    """A URL that gave nothing: not a study or series URL, or an archive that could not list it."""

    url: str  # as given, without a credential
    error: ArchiveError
    location: ArchiveLocation | None = None  # None: not a study or series URL (no error row)
    stand_in: Path | None = None  # the cache folder the URL would have filled (the error row's file)


@dataclass
class ArchiveInputs:
    """What the archive URLs of a run gave: the cache folders to screen, the file -> URL mapping, the failures."""

    folders: list[Path] = field(default_factory=list)
    retrieval: Retrieval = field(default_factory=Retrieval)
    errors: list[UrlFailure] = field(default_factory=list)
    listed: list[Path] = field(default_factory=list)  # stand-ins of the URLs listed now (their error rows go)

    @property
    def sources(self) -> dict[str, str]:
        """Every file that stands for an archive URL: retrieved instances, failed ones, failed URLs."""
        found = {str(path): url for path, url in self.retrieval.missing.items()}
        found.update((str(failure.stand_in), failure.url) for failure in self.errors if failure.stand_in)
        found.update((str(path), url) for path, url in self.retrieval.files.items())
        return found

    @property
    def replace(self) -> frozenset[str]:
        """Files whose earlier rows give way to this run's: instances transferred now, URLs listed now."""
        return frozenset(str(path) for path in [*self.retrieval.transferred, *self.listed])

    @property
    def failed_results(self) -> tuple[FrameResult, ...]:
        """An error result per instance not retrieved and per URL that could not be listed (module notes)."""
        results = []
        for path, url in self.retrieval.missing.items():
            why = dict(self.retrieval.failed).get(url, "not retrieved")
            server = url.split("/studies/", 1)[0]
            results.append(FrameResult(FrameRef(Path(path), 0, "dicom", path.parent.name), "error",
                                       error=f"{server}: {why}"))
        for failure in self.errors:
            if failure.stand_in is not None and failure.location is not None:
                ref = FrameRef(failure.stand_in, 0, "dicom", failure.location.series_uid or "")
                results.append(FrameResult(ref, "error", error=str(failure.error)))
        return tuple(results)


def fetch_archive_inputs(
    urls: Iterable[str],
    out: Path,
    *,
    archive_for: Callable[[str], Archive] = open_archive,
    progress: Callable[[ArchiveLocation], Progress | None] | None = None,
    cancelled: Cancelled | None = None,
) -> ArchiveInputs:
    """Retrieve every study or series named by ``urls`` into ``out``/:data:`CACHE_DIR`.

    A URL that is not a study or series URL, or whose archive cannot be reached, refuses access or
    has no such study, is an entry of ``errors`` (:class:`UrlFailure`); the other URLs are retrieved.
    The instances already fetched stay cached, whatever happens.

    Raises
    ------
    KeyboardInterrupt, brainscan.engine.errors.Cancelled
        Interrupted (Ctrl-C) or ``cancelled``: no half-written file is left in the cache.
    """
    cache = (Path(out) / CACHE_DIR).absolute()
    found = ArchiveInputs()
    archives: dict[str, Archive] = {}
    for url in urls:
        location: ArchiveLocation | None = None
        folder: Path | None = None
        try:
            location = parse_archive_url(url)
            folder = cache / location.study_uid
            if location.series_uid:
                folder = folder / location.series_uid
            archive = archives.get(location.root) or archives.setdefault(location.root, archive_for(location.root))
            retrieval = archive.retrieve(location, cache, progress=progress(location) if progress else None,
                                         cancelled=cancelled)
        except ArchiveError as exc:
            found.errors.append(UrlFailure(public_url(url), exc, location, folder))
            continue
        found.retrieval.merge(retrieval)
        found.listed.append(folder)
        if folder not in found.folders and folder.is_dir():
            found.folders.append(folder)
    return found


def dicom_outputs(out: Path) -> list[Path]:
    """The DICOM objects a run wrote (``--report dicom``): Secondary Captures and Structured Reports."""
    folder = Path(out) / DICOM_DIR
    return sorted(path for path in folder.rglob("*.dcm") if path.is_file()) if folder.is_dir() else []


def store_outputs(archive: Archive, out: Path, *, progress: Progress | None = None) -> StoreOutcome:
    """Send the run's DICOM outputs to ``archive`` and record the outcome in ``results.json``.

    Raises
    ------
    ArchiveError
        The archive cannot be reached or refuses access (nothing recorded).
    OutputError
        ``results.json`` cannot be rewritten.
    """
    outcome = archive.store(dicom_outputs(out), progress=progress)
    record_stored(out, outcome)
    return outcome


def record_stored(out: Path, outcome: StoreOutcome) -> None:
    """Add ``"stored": {"server", "stored", "failed"}`` to ``out``/results.json (atomically).

    What earlier runs stored on the same server is kept: ``stored`` is every SOP Instance UID the
    server took, ``failed`` the files this store could not send. A store on another server moves the
    earlier record to ``"stored_elsewhere"`` (a list, one record per server).
    """
    path = Path(out) / RESULTS_JSON
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        record = outcome.to_dict()
        earlier = document.get("stored")
        elsewhere = [item for item in document.get("stored_elsewhere", []) if isinstance(item, dict)]
        if isinstance(earlier, dict) and earlier.get("server") == outcome.server:
            record["stored"] = list(dict.fromkeys([*earlier.get("stored", []), *outcome.stored]))
        elif isinstance(earlier, dict):
            elsewhere = [item for item in elsewhere if item.get("server") != earlier.get("server")] + [earlier]
        mine = next((item for item in elsewhere if item.get("server") == outcome.server), None)
        if mine is not None:  # back to a server stored on before
            record["stored"] = list(dict.fromkeys([*mine.get("stored", []), *record["stored"]]))
            elsewhere.remove(mine)
        document["stored"] = record
        if elsewhere:
            document["stored_elsewhere"] = elsewhere
        atomic_write_text(path, json.dumps(document, indent=1, ensure_ascii=False), errors="backslashreplace")
    except OSError as exc:
        raise OutputError(write_failure(path, exc)) from exc
    except ValueError as exc:
        raise OutputError(f"{path}: cannot be read back to record what was stored ({exc})") from exc
