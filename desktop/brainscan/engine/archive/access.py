"""What every archive offers, whatever its protocol: query, retrieve into a folder, store files.

:class:`Archive` is the protocol the command line (and later the viewer) drives; DICOMweb
(:mod:`~brainscan.engine.archive.dicomweb`) implements it, a DIMSE one (pynetdicom: C-FIND,
C-GET/C-MOVE, C-STORE) can sit beside it. Retrieved instances land in a cache folder as
``<folder>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``; an instance already there is not fetched again
(a resumed run costs a query, not a transfer). Errors a person can act on are :class:`ArchiveError`:
``server: problem (fix)``, one line, never carrying a credential.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from brainscan.engine.errors import BrainscanError

Progress = Callable[[int, int], None]  # (done, total)
Cancelled = Callable[[], bool]

_UID = r"[0-9]+(?:\.[0-9]+)*"
_URL = re.compile(rf"^(?P<root>https?://[^?#]+?)/studies/(?P<study>{_UID})(?:/series/(?P<series>{_UID}))?/?$")


class ArchiveError(BrainscanError):
    """An archive that cannot be used: unreachable, refusing access, without the study asked for.

    The message is ``server: problem (fix)``; ``server`` never holds a user name or password.
    """

    def __init__(self, server: str, problem: str, fix: str | None = None) -> None:
        self.server = server
        self.problem = problem
        self.fix = fix
        message = f"{server}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages and outputs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def is_archive_url(text: str) -> bool:
    """Whether a command-line argument names an archive (``http://`` or ``https://``) rather than a path."""
    return text.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class ArchiveLocation:
    """A study, or one series of it, on an archive: ``<root>/studies/<study>[/series/<series>]``."""

    root: str  # the DICOMweb root, e.g. http://host:8042/dicom-web (no trailing slash)
    study_uid: str
    series_uid: str | None = None

    @property
    def url(self) -> str:
        url = f"{self.root}/studies/{self.study_uid}"
        return f"{url}/series/{self.series_uid}" if self.series_uid else url


def parse_archive_url(text: str) -> ArchiveLocation:
    """The study or series a DICOMweb URL names.

    Raises
    ------
    ArchiveError
        The URL does not end in ``/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]``.
    """
    match = _URL.match(text.strip())
    if match is None:
        raise ArchiveError(public_url(text), "is not a DICOMweb study or series URL",
                           "give http(s)://host[:port]/<root>/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]")
    return ArchiveLocation(match["root"].rstrip("/"), match["study"], match["series"])


@dataclass(frozen=True)
class Instance:
    """One DICOM instance on an archive, and where its file goes in a cache folder."""

    study_uid: str
    series_uid: str
    sop_uid: str
    url: str  # where it is retrieved from (the instance's WADO-RS URL, never with a credential)

    def cache_path(self, folder: Path) -> Path:
        return Path(folder) / self.study_uid / self.series_uid / f"{self.sop_uid}.dcm"


@dataclass
class Retrieval:
    """What a retrieval left in the cache folder."""

    files: dict[Path, str] = field(default_factory=dict)  # cached file -> the instance's URL
    fetched: int = 0  # transferred now
    cached: int = 0  # already in the cache folder (a resumed run)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (url, why) of instances not retrieved
    missing: dict[Path, str] = field(default_factory=dict)  # where a failed instance would be -> its URL
    transferred: list[Path] = field(default_factory=list)  # the files fetched now (not those already cached)

    def merge(self, other: Retrieval) -> None:
        self.files.update(other.files)
        self.fetched += other.fetched
        self.cached += other.cached
        self.failed.extend(other.failed)
        self.missing.update(other.missing)
        self.transferred.extend(other.transferred)


@dataclass
class StoreOutcome:
    """What a store sent: the SOP Instance UIDs the archive accepted, and the files it did not take."""

    server: str
    stored: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # {"file": ..., "why": ...}

    def to_dict(self) -> dict[str, object]:
        return {"server": self.server, "stored": list(self.stored), "failed": [dict(f) for f in self.failed]}


@dataclass(frozen=True)
class Study:
    """A study as a query finds it.

    ``patient_name`` and ``patient_id`` are for a person choosing the study on screen only: they are
    left out of ``repr`` (so a log line never carries them) and brainscan writes them to no output.
    ``series_count`` and ``instance_count`` are None when the archive did not say.
    """

    study_uid: str
    date: str = ""
    description: str = ""
    modalities: str = ""
    patient_name: str = field(default="", repr=False)
    patient_id: str = field(default="", repr=False)
    series_count: int | None = None
    instance_count: int | None = None


@dataclass(frozen=True)
class Series:
    """One series of a study as a query finds it (display values; ``instance_count`` None when not said)."""

    study_uid: str
    series_uid: str
    number: str = ""
    description: str = ""
    modality: str = ""
    instance_count: int | None = None


_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def _dicom_date(text: str, which: str) -> str:
    text = text.strip()
    if not text:
        return ""
    match = _DATE.match(text)
    if match is None:
        raise ValueError(f"the {which} date {text!r} is not a date: give YYYY-MM-DD or YYYYMMDD")
    return "".join(match.groups())


def _wildcard(text: str, *, anywhere: bool) -> str:
    """``text`` as a QIDO-RS wildcard match: as given when it holds ``*`` or ``?``, else a prefix (or substring)."""
    text = text.strip()
    if not text or "*" in text or "?" in text:
        return text
    return f"*{text}*" if anywhere else f"{text}*"


@dataclass(frozen=True)
class StudyQuery:
    """What a person searches an archive for; empty fields match everything.

    ``patient_name`` matches from its start (``Doe`` finds ``Doe^Jane``), ``description`` anywhere in the
    study description, both unless they hold their own ``*``/``?`` wildcards; ``patient_id`` and
    ``modality`` match exactly; the dates (``YYYY-MM-DD`` or ``YYYYMMDD``, either end may be empty) bound
    the study date, both included.
    """

    patient_id: str = ""
    patient_name: str = ""
    date_from: str = ""
    date_to: str = ""
    modality: str = ""
    description: str = ""

    def matches(self) -> dict[str, str]:
        """The QIDO-RS matching keys (DICOM keywords) of the query.

        Raises
        ------
        ValueError
            A date that is not a date, or a range that ends before it starts.
        """
        keys: dict[str, str] = {}
        if self.patient_id.strip():
            keys["PatientID"] = self.patient_id.strip()
        if self.patient_name.strip():
            keys["PatientName"] = _wildcard(self.patient_name, anywhere=False)
        start, end = _dicom_date(self.date_from, "first"), _dicom_date(self.date_to, "last")
        if start and end and end < start:
            raise ValueError("the date range ends before it starts")
        if start or end:
            keys["StudyDate"] = start if start == end else f"{start}-{end}"
        if self.modality.strip():
            keys["ModalitiesInStudy"] = self.modality.strip().upper()
        if self.description.strip():
            keys["StudyDescription"] = _wildcard(self.description, anywhere=True)
        return keys


class Archive(Protocol):
    """An archive, whatever the protocol (DICOMweb now, DIMSE later).

    Every method raises :class:`ArchiveError` when the archive cannot be used at all; one instance
    that fails mid-retrieval is a ``failed`` entry of the :class:`Retrieval`, not an exception.
    ``cancelled`` is polled between instances; when it says so the method raises
    :class:`~brainscan.engine.errors.Cancelled` and leaves no half-written file behind.
    """

    server: str  # how messages name it (no credential)

    def find_studies(self, **match: str) -> list[Study]:
        """Studies matching DICOM attribute keywords (``PatientID="123"``, ``StudyDate="20240101-"``)."""
        ...

    def search_studies(self, query: StudyQuery, limit: int = 200) -> list[Study]:
        """Studies matching ``query`` (at most ``limit``), with their patient, counts and modalities for display."""
        ...

    def find_series(self, study_uid: str) -> list[Series]:
        """The series of a study, by series number, with their instance counts (empty for an unknown study)."""
        ...

    def find_instances(self, location: ArchiveLocation) -> list[Instance]:
        """Every instance of the study or series (raises :class:`ArchiveError` when there is none)."""
        ...

    def retrieve(self, location: ArchiveLocation, folder: Path, *, progress: Progress | None = None,
                 cancelled: Cancelled | None = None) -> Retrieval:
        """Fetch the study's or series' instances into ``folder`` (see the module notes), skipping those there."""
        ...

    def retrieve_steps(self, location: ArchiveLocation, folder: Path, *,
                       cancelled: Cancelled | None = None) -> Iterator[tuple[int, int, Retrieval]]:
        """:meth:`retrieve` as a generator: ``(done, total, what is retrieved so far)`` after each instance.

        Closing it between two steps (a viewer's cancel) stops the retrieval with no half-written file:
        the instances finished stay in ``folder`` and are not fetched again.
        """
        ...

    def store(self, files: Iterable[Path], *, progress: Progress | None = None,
              cancelled: Cancelled | None = None) -> StoreOutcome:
        """Send DICOM files to the archive; each one refused is a ``failed`` entry saying why."""
        ...
