"""The :class:`~brainscan.engine.archive.access.Archive` protocol over DICOMweb: QIDO-RS, WADO-RS, STOW-RS.

Plain ``requests``: each instance is retrieved on its own (``GET .../instances/<SOPUID>``, multipart),
streamed to a ``.part`` file and its one part cut out into ``<SOPUID>.dcm`` (memory stays flat
whatever the file's size), so an interrupted retrieval keeps every instance already finished and
a dropped connection costs one instance. Credentials come from the environment or the system
keyring (:mod:`brainscan.engine.archive.credentials`), never from the command line, and are never
written anywhere; ``BRAINSCAN_ARCHIVE_CA`` names a CA bundle (PEM) for a server with a private
certificate authority. TLS certificates are always verified.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from brainscan.engine.archive.access import (
    ArchiveError,
    ArchiveLocation,
    Cancelled,
    Instance,
    Progress,
    Retrieval,
    Series,
    StoreOutcome,
    Study,
    StudyQuery,
    public_url,
)
from brainscan.engine.archive.credentials import CA_VARIABLE, CREDENTIALS_FIX, Credentials, credentials_for
from brainscan.engine.errors import Cancelled as CancelledError

AGAIN = "run the same command again to fetch it"  # the fix of an instance whose transfer failed
_ACCEPT_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_CHUNK = 1 << 16
_TIMEOUT = (10.0, 60.0)  # connect, read (seconds between bytes)

# DICOM JSON tags
_STUDY_UID, _SERIES_UID, _SOP_UID, _SERIES_DESCRIPTION = "0020000D", "0020000E", "00080018", "0008103E"
# The series descriptions of brainscan's DICOM outputs (engine/reports/dicom_outputs.py) begin so
OWN_SERIES_PREFIX = "brainscan "
_FAILED_SOPS, _FAILURE_REASON, _REFERENCED_SOP_UID = "00081198", "00081197", "00081155"
_STUDY_DATE, _STUDY_DESCRIPTION, _MODALITIES, _MODALITY = "00080020", "00081030", "00080061", "00080060"
_PATIENT_NAME, _PATIENT_ID, _SERIES_NUMBER = "00100010", "00100020", "00200011"
_STUDY_SERIES, _STUDY_INSTANCES, _SERIES_INSTANCES = "00201206", "00201208", "00201209"
_STUDY_FIELDS = [_STUDY_DATE, _STUDY_DESCRIPTION, _MODALITIES, _PATIENT_NAME, _PATIENT_ID, _STUDY_SERIES,
                 _STUDY_INSTANCES]
_SERIES_FIELDS = [_SERIES_NUMBER, _SERIES_DESCRIPTION, _MODALITY, _SERIES_INSTANCES]


def session_with(credentials: Credentials, ca_bundle: str = "") -> requests.Session:
    """A session that sends ``credentials`` and verifies TLS (against ``ca_bundle`` when given)."""
    session = requests.Session()
    session.trust_env = False  # no ~/.netrc credentials or proxies picked up behind the user's back
    if credentials.scheme == "bearer":
        session.headers["Authorization"] = f"Bearer {credentials.secret}"
    elif credentials.scheme == "basic":
        session.auth = (credentials.user, credentials.secret)
    session.verify = ca_bundle if ca_bundle else True
    return session


def session_for(root: str, environ: Mapping[str, str] | None = None, *, keyring: Any = None) -> requests.Session:
    """A session for the server at ``root``: credentials from the environment, else the system keyring
    (``keyring``: a stand-in for the ``keyring`` module, for tests), CA bundle from the environment."""
    environ = os.environ if environ is None else environ
    return session_with(credentials_for(root, environ, backend=keyring), environ.get(CA_VARIABLE, ""))


def _value(item: Mapping[str, Any], tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or [""]
    value = values[0]
    if isinstance(value, dict):  # a person name
        value = value.get("Alphabetic", "")
    return str(value)


def _values(item: Mapping[str, Any], tag: str) -> str:
    """A multi-valued attribute (``ModalitiesInStudy``) as ``MR\\SR``-style text joined with ", "."""
    values = (item.get(tag) or {}).get("Value") or []
    return ", ".join(str(v) for v in values if v not in (None, ""))


def _count(item: Mapping[str, Any], tag: str) -> int | None:
    try:
        return int(_value(item, tag))
    except ValueError:
        return None


def _series_order(series: Series) -> tuple[int, str]:
    try:
        return (int(series.number), series.series_uid)
    except ValueError:
        return (1 << 30, series.series_uid)


class DicomWebArchive:
    """A DICOMweb server at ``root`` (e.g. ``http://host:8042/dicom-web``)."""

    def __init__(self, root: str, session: requests.Session | None = None) -> None:
        self.root = root.rstrip("/")
        self.server = public_url(self.root)
        self.session = session if session is not None else session_for(self.root)

    # -- HTTP, with the errors a person can act on ---------------------------------------------------
    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=_TIMEOUT, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise ArchiveError(self.server, "its TLS certificate cannot be verified",
                               f"set {CA_VARIABLE} to the CA bundle (PEM) that signed it") from exc
        except requests.exceptions.ConnectionError as exc:
            raise ArchiveError(self.server, "cannot be reached (no answer or connection refused)",
                               "check the URL, the network, and that the archive is running") from exc
        except requests.exceptions.Timeout as exc:
            raise ArchiveError(self.server, "does not answer (timed out)", "try again, or check the archive") from exc
        except requests.exceptions.RequestException as exc:
            raise ArchiveError(self.server, f"request failed ({type(exc).__name__})", "check the URL") from exc
        if response.status_code in (401, 403):
            response.close()
            what = "401 Unauthorized" if response.status_code == 401 else "403 Forbidden"
            raise ArchiveError(self.server, f"refused access (HTTP {what})", CREDENTIALS_FIX)
        return response

    def _json(self, url: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        response = self._request("GET", url, params=params, headers={"Accept": "application/dicom+json"})
        if response.status_code == 204:
            return []
        if response.status_code == 404:
            return []
        if response.status_code >= 400:
            raise ArchiveError(self.server, f"query refused (HTTP {response.status_code})",
                               "check that the URL is the archive's DICOMweb root")
        try:
            answer = response.json() if response.content.strip() else []
        except ValueError as exc:
            raise ArchiveError(self.server, "answered a query with something that is not DICOM JSON",
                               "check that the URL is the archive's DICOMweb root") from exc
        return answer if isinstance(answer, list) else []

    # -- query ----------------------------------------------------------------------------------------
    def find_studies(self, **match: str) -> list[Study]:
        answer = self._json(f"{self.root}/studies", params=dict(match))
        return [Study(_value(item, _STUDY_UID), _value(item, "00080020"), _value(item, "00081030"),
                      _value(item, "00080061")) for item in answer if _value(item, _STUDY_UID)]

    def search_studies(self, query: StudyQuery, limit: int = 200) -> list[Study]:
        params: dict[str, Any] = {**query.matches(), "includefield": _STUDY_FIELDS, "limit": str(limit)}
        # wildcards stay bare: a server such as Orthanc reads a percent-encoded "*" as a literal star
        answer = self._json(f"{self.root}/studies?{urlencode(params, doseq=True, safe='*?')}")
        studies = [Study(_value(item, _STUDY_UID), _value(item, _STUDY_DATE), _value(item, _STUDY_DESCRIPTION),
                         _values(item, _MODALITIES), patient_name=_value(item, _PATIENT_NAME),
                         patient_id=_value(item, _PATIENT_ID), series_count=_count(item, _STUDY_SERIES),
                         instance_count=_count(item, _STUDY_INSTANCES))
                   for item in answer if _value(item, _STUDY_UID)]
        return sorted(studies, key=lambda study: (study.date, study.study_uid), reverse=True)

    def find_series(self, study_uid: str) -> list[Series]:
        answer = self._json(f"{self.root}/studies/{study_uid}/series", params={"includefield": _SERIES_FIELDS})
        series = [Series(study_uid, _value(item, _SERIES_UID), _value(item, _SERIES_NUMBER),
                         _value(item, _SERIES_DESCRIPTION), _value(item, _MODALITY), _count(item, _SERIES_INSTANCES))
                  for item in answer if _value(item, _SERIES_UID)]
        return sorted(series, key=_series_order)

    def find_instances(self, location: ArchiveLocation) -> list[Instance]:
        study = location.study_uid
        if location.series_uid:
            series = [location.series_uid]
        else:
            answer = self._json(f"{self.root}/studies/{study}/series")
            if not answer:
                raise ArchiveError(self.server, f"has no study {study}",
                                   "check the StudyInstanceUID in the URL, or search the archive for the study")
            # brainscan's own outputs stored back into the study (--store) are not screened again
            series = [_value(item, _SERIES_UID) for item in answer
                      if not _value(item, _SERIES_DESCRIPTION).startswith(OWN_SERIES_PREFIX)]
            series = [uid for uid in series if uid]
        instances = []
        for series_uid in series:
            base = f"{self.root}/studies/{study}/series/{series_uid}/instances"
            sops = sorted(uid for uid in (_value(item, _SOP_UID) for item in self._json(base)) if uid)
            instances.extend(Instance(study, series_uid, sop, public_url(f"{base}/{sop}")) for sop in sops)
        if not instances:
            raise ArchiveError(self.server, f"has no instance in {location.url.removeprefix(location.root + '/')}",
                               "check the Study and Series Instance UIDs in the URL")
        return instances

    # -- retrieve -------------------------------------------------------------------------------------
    def retrieve(self, location: ArchiveLocation, folder: Path, *, progress: Progress | None = None,
                 cancelled: Cancelled | None = None) -> Retrieval:
        found = Retrieval()
        for done, total, so_far in self.retrieve_steps(location, folder, cancelled=cancelled):
            found = so_far
            if progress is not None:
                progress(done, total)
        return found

    def retrieve_steps(self, location: ArchiveLocation, folder: Path, *,
                       cancelled: Cancelled | None = None) -> Iterator[tuple[int, int, Retrieval]]:
        instances = self.find_instances(location)
        found = Retrieval()
        for done, instance in enumerate(instances):
            if cancelled is not None and cancelled():
                raise CancelledError("retrieval cancelled")
            target = instance.cache_path(folder)
            if target.is_file() and target.stat().st_size > 0:
                found.cached += 1
                found.files[target] = instance.url
            else:
                why = self._fetch(instance, target)
                if why:
                    found.failed.append((instance.url, why))
                    found.missing[target] = instance.url
                else:
                    found.fetched += 1
                    found.files[target] = instance.url
                    found.transferred.append(target)
            yield done + 1, len(instances), found

    def _fetch(self, instance: Instance, target: Path) -> str:
        """Stream one instance into ``target``; returns why it failed ("" when it did not)."""
        url = (f"{self.root}/studies/{instance.study_uid}/series/{instance.series_uid}/instances/"
               f"{instance.sop_uid}")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        try:
            response = self._request("GET", url, headers={"Accept": _ACCEPT_INSTANCE}, stream=True)
        except ArchiveError as exc:
            if "refused access" in exc.problem:
                raise
            return f"{exc.problem}; {AGAIN}"
        try:
            if response.status_code >= 400:
                return f"not retrieved (HTTP {response.status_code}); {AGAIN}, or check the instance on the archive"
            with open(part, "wb") as stream:
                for chunk in response.iter_content(_CHUNK):
                    stream.write(chunk)
            _cut_single_part(part, target, response.headers.get("Content-Type", ""))
            return ""
        except (requests.exceptions.RequestException, ValueError) as exc:
            return f"retrieval broke off ({type(exc).__name__}); {AGAIN}"
        except OSError as exc:
            raise ArchiveError(self.server, f"cannot write {target} ({exc.strerror or exc})",
                               "free some disk space or choose another --out folder") from exc
        finally:
            response.close()
            part.unlink(missing_ok=True)
            target.with_name(target.name + ".tmp").unlink(missing_ok=True)

    # -- store ----------------------------------------------------------------------------------------
    def store(self, files: Iterable[Path], *, progress: Progress | None = None,
              cancelled: Cancelled | None = None) -> StoreOutcome:
        """STOW-RS, one request per file (a refusal names its file)."""
        from pydicom import dcmread

        outcome = StoreOutcome(self.server)
        files = list(files)
        for done, path in enumerate(files):
            if cancelled is not None and cancelled():
                raise CancelledError("store cancelled")
            try:
                sop_uid = str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
                data = Path(path).read_bytes()
            except Exception as exc:
                outcome.failed.append({"file": str(path), "why": f"not a readable DICOM file ({type(exc).__name__})"})
                continue
            boundary = uuid.uuid4().hex
            body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
                    + f"\r\n--{boundary}--\r\n".encode())
            response = self._request(
                "POST", f"{self.root}/studies", data=body,
                headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                         "Accept": "application/dicom+json"})
            why = _stow_refusal(response, sop_uid)
            if why:
                outcome.failed.append({"file": str(path), "why": why})
            else:
                outcome.stored.append(sop_uid)
            if progress is not None:
                progress(done + 1, len(files))
        return outcome


def _stow_refusal(response: requests.Response, sop_uid: str) -> str:
    """Why a STOW-RS response did not take ``sop_uid`` ("" when it did)."""
    try:
        answer = response.json() if response.content.strip() else {}
    except ValueError:
        answer = {}
    failed = (answer.get(_FAILED_SOPS) or {}).get("Value") or [] if isinstance(answer, dict) else []
    for item in failed:
        if _value(item, _REFERENCED_SOP_UID) in ("", sop_uid):
            reason = _value(item, _FAILURE_REASON)
            return f"refused by the archive (HTTP {response.status_code}, failure reason {reason or 'not given'})"
    if response.status_code >= 400:
        return f"refused by the archive (HTTP {response.status_code})"
    return ""


def _cut_single_part(part: Path, target: Path, content_type: str) -> None:
    """Copy the one body of a multipart/related file into ``target`` (atomically), streaming.

    Raises
    ------
    ValueError
        The file is not one complete multipart part (a connection dropped mid-transfer).
    """
    if "multipart/" not in content_type.lower():  # a server that answers the bare file
        os.replace(part, target)
        return
    boundary = ""
    for item in content_type.split(";"):
        key, _, value = item.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise ValueError("multipart answer without a boundary")
    delimiter = b"\r\n--" + boundary.encode()
    size = part.stat().st_size
    with open(part, "rb") as stream:
        head = stream.read(_CHUNK)
        opening = head.find(b"--" + boundary.encode())
        header_end = head.find(b"\r\n\r\n", max(opening, 0))
        if opening < 0 or header_end < 0:
            raise ValueError("multipart answer without a part")
        headers = head[opening:header_end].decode("latin-1").lower().splitlines()
        start = header_end + 4
        declared = next((int(line.split(":", 1)[1]) for line in headers if line.startswith("content-length:")), None)
        tail_start = max(start, size - len(delimiter) - 64)
        stream.seek(tail_start)
        tail = stream.read()
        closing = tail.rfind(delimiter + b"--")
        if closing < 0:
            raise ValueError("multipart answer cut short")
        end = tail_start + closing
        if declared is not None and declared != end - start:
            raise ValueError("multipart part shorter than declared")
        stream.seek(start)
        temporary = target.with_name(target.name + ".tmp")
        with open(temporary, "wb") as out:
            remaining = end - start
            while remaining > 0:
                chunk = stream.read(min(_CHUNK, remaining))
                if not chunk:
                    raise ValueError("multipart answer cut short")
                out.write(chunk)
                remaining -= len(chunk)
    os.replace(temporary, target)
