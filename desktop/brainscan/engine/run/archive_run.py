"""A run's archive ends: instances retrieved into the output folder's cache before it, outputs stored after it.

``brainscan screen URL ... --out DIR`` retrieves each study or series into
``DIR/archive-cache/<StudyUID>/<SeriesUID>/<SOPUID>.dcm`` (:data:`CACHE_DIR`; what is there already
is not fetched again, so a resumed run picks up where it stopped) and screens those folders like any
other; the rows of a cached file name the instance's URL (:attr:`RunSettings.sources`).
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
    ArchiveLocation,
    Progress,
    Retrieval,
    StoreOutcome,
    parse_archive_url,
)
from brainscan.engine.reports.common import DICOM_DIR
from brainscan.engine.results.files import atomic_write_text
from brainscan.engine.results.store import RESULTS_JSON, OutputError, write_failure

CACHE_DIR = "archive-cache"


def open_archive(root: str) -> Archive:
    """The archive at a DICOMweb root (DIMSE would be chosen here by its own URL scheme)."""
    from brainscan.engine.archive.dicomweb import DicomWebArchive

    return DicomWebArchive(root)


@dataclass
class ArchiveInputs:
    """What the archive URLs of a run gave: the cache folders to screen and the file -> URL mapping."""

    folders: list[Path] = field(default_factory=list)
    retrieval: Retrieval = field(default_factory=Retrieval)

    @property
    def sources(self) -> dict[str, str]:
        return {str(path): url for path, url in self.retrieval.files.items()}


def fetch_archive_inputs(
    urls: Iterable[str],
    out: Path,
    *,
    archive_for: Callable[[str], Archive] = open_archive,
    progress: Callable[[ArchiveLocation], Progress | None] | None = None,
) -> ArchiveInputs:
    """Retrieve every study or series named by ``urls`` into ``out``/:data:`CACHE_DIR`.

    Raises
    ------
    ArchiveError
        A URL that is not a study or series URL, an archive that cannot be reached, refuses access
        or has no such study: nothing is screened (the instances already fetched stay cached).
    """
    cache = (Path(out) / CACHE_DIR).absolute()
    found = ArchiveInputs()
    archives: dict[str, Archive] = {}
    for url in urls:
        location = parse_archive_url(url)
        archive = archives.get(location.root) or archives.setdefault(location.root, archive_for(location.root))
        retrieval = archive.retrieve(location, cache, progress=progress(location) if progress else None)
        found.retrieval.merge(retrieval)
        folder = cache / location.study_uid
        if location.series_uid:
            folder = folder / location.series_uid
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
    """Add ``"stored": {"server", "stored", "failed"}`` to ``out``/results.json (atomically)."""
    path = Path(out) / RESULTS_JSON
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        document["stored"] = outcome.to_dict()
        atomic_write_text(path, json.dumps(document, indent=1, ensure_ascii=False), errors="backslashreplace")
    except OSError as exc:
        raise OutputError(write_failure(path, exc)) from exc
    except ValueError as exc:
        raise OutputError(f"{path}: cannot be read back to record what was stored ({exc})") from exc
