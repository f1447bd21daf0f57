"""Privacy of the outputs: what the DICOM objects carry from their source, and de-identification.

The PDF and HTML reports and the CSV hold no patient identifiers unless asked (``--keep-identifiers``).
A DICOM object must carry the patient and study modules, so the objects written for DICOM inputs
keep them, with the study linkage (same Study Instance UID as the source), unless de-identification
is asked (``--deidentify``). Then the DICOM PS3.15 Basic Application Level Confidentiality Profile
(Annex E, Table E.1-1) is applied to what the objects carry: names, IDs, dates and institution are
removed or replaced, and every UID is replaced by a new one derived from a random key of the output
folder, so that the objects of one run (and of its resumed runs) still refer to each other.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from brainscan.engine.reports.common import ReportError, describe_os_error, write_atomic

if TYPE_CHECKING:  # pydicom is imported when DICOM objects are written, never for a run over pictures
    from pydicom.dataset import Dataset

STATE_FILE = ".brainscan-dicom.json"
DEIDENTIFICATION_METHOD = "PS3.15 Basic Profile (brainscan), new UIDs per run"  # LO: at most 64
DEIDENTIFICATION_DESCRIPTION = (
    "brainscan: DICOM PS3.15 Basic Application Level Confidentiality Profile applied to the patient and study "
    "modules; every UID replaced by one derived from the output folder's key, consistent within the run"
)
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
PSEUDONYM_PREFIX = "BS"

# What a derived object takes from its source: the patient and study modules, the source's identity,
# and the facts the derived objects need (orientation, equipment for the acquisition record).
PATIENT_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDsSequence", "PatientBirthDate",
    "PatientBirthTime", "PatientSex", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup",
    "PatientComments", "PatientIdentityRemoved", "DeidentificationMethod",
)
STUDY_KEYWORDS = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "StudyDescription",
)
SOURCE_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "SeriesNumber",
    "InstanceNumber", "Modality", "FrameOfReferenceUID", "NumberOfFrames", "Rows", "Columns", "SamplesPerPixel",
    "PixelRepresentation", "ImageOrientationPatient", "PatientOrientation", "BodyPartExamined", "BurnedInAnnotation",
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "InstitutionName", "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber",
)
REFERENCE_KEYWORDS = PATIENT_KEYWORDS + STUDY_KEYWORDS + SOURCE_KEYWORDS
TYPE2_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "ReferringPhysicianName", "StudyID", "AccessionNumber")

# Table E.1-1 actions for those attributes. Z: emptied (or a consistent dummy, for name and ID);
# X: removed; U: a new UID, the same for the same source UID throughout one output folder.
# Everything not listed (SOP class, modality, orientation, manufacturer, model, numbers) is kept.
BASIC_PROFILE = {
    "PatientName": "Z", "PatientID": "Z", "PatientBirthDate": "Z", "PatientSex": "Z",
    "IssuerOfPatientID": "X", "OtherPatientIDsSequence": "X", "PatientBirthTime": "X", "PatientAge": "X",
    "PatientSize": "X", "PatientWeight": "X", "EthnicGroup": "X", "PatientComments": "X",
    "StudyDate": "Z", "StudyTime": "Z", "ReferringPhysicianName": "Z", "StudyID": "Z", "AccessionNumber": "Z",
    "StudyDescription": "X", "InstitutionName": "X", "InstitutionalDepartmentName": "X", "StationName": "X",
    "DeviceSerialNumber": "X", "SoftwareVersions": "X",
    "StudyInstanceUID": "U", "SeriesInstanceUID": "U", "SOPInstanceUID": "U", "FrameOfReferenceUID": "U",
}


@dataclass(frozen=True)
class UidFactory:
    """Deterministic UIDs (``2.25.<uuid>``) from the output folder's random key and a purpose."""

    key: str

    def derive(self, *parts: object) -> str:
        digest = hashlib.sha256("\0".join([self.key, *map(str, parts)]).encode("utf-8")).digest()
        return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"

    def replace(self, uid: str) -> str:
        """The de-identified stand-in of a source UID (rule U)."""
        return self.derive("deidentified-uid", uid)

    def pseudonym(self, patient_id: str) -> str:
        """A dummy patient ID, the same for the same source ID within this output folder."""
        return f"{PSEUDONYM_PREFIX}{hashlib.sha256(f'{self.key}|patient|{patient_id}'.encode()).hexdigest()[:10].upper()}"


def open_state(folder: Path, *, deidentify: bool) -> UidFactory:
    """The UID key of a DICOM output folder, created on first use.

    Raises
    ------
    ReportError
        The folder holds objects written with the other ``--deidentify`` choice (mixing them would
        break the study linkage or leak identifiers), or the state cannot be written.
    """
    path = folder / STATE_FILE
    if path.is_file():
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            key, before = str(state["key"]), bool(state["deidentified"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{path}: unreadable DICOM output state ({exc}); use a new --out folder") from exc
        if before != deidentify:
            was = "with" if before else "without"
            raise ReportError(
                f"{folder}: holds results written {was} --deidentify; run again {was} it, or use a new --out folder"
            )
        return UidFactory(key)
    key = secrets.token_hex(16)
    try:
        write_atomic(path, json.dumps({"key": key, "deidentified": deidentify}).encode("utf-8"))
    except OSError as exc:
        raise ReportError(describe_os_error(path, exc)) from exc
    return UidFactory(key)


def reference_header(source: Dataset, *, deidentify: bool, uids: UidFactory) -> Dataset:
    """The part of a source header that derived objects carry, de-identified when asked.

    The source is not changed. With ``deidentify`` the result follows :data:`BASIC_PROFILE` and
    carries Patient Identity Removed ``YES`` and the De-identification Method (and its code).
    """
    from pydicom.dataset import Dataset

    header = Dataset()
    for keyword in REFERENCE_KEYWORDS:
        if keyword in source:
            element = source[keyword]
            header[element.tag] = element
    for keyword in TYPE2_KEYWORDS:  # the objects must carry them, empty when the source lacks them
        if keyword not in header:
            setattr(header, keyword, "")
    if "Modality" not in header:
        header.Modality = "OT"
    if not header.get("StudyInstanceUID"):  # a study to belong to, the same for the whole series
        header.StudyInstanceUID = uids.derive("study-of-series", source.get("SeriesInstanceUID", ""))
    if not deidentify:
        return header
    original_id = str(source.get("PatientID", "") or "")
    original_name = str(source.get("PatientName", "") or "")
    for keyword, action in BASIC_PROFILE.items():
        if keyword not in header:
            continue
        if action == "X":
            delattr(header, keyword)
        elif action == "U":
            setattr(header, keyword, uids.replace(str(header[keyword].value)))
        else:
            setattr(header, keyword, "")
    pseudonym = uids.pseudonym(original_id or original_name or str(source.get("StudyInstanceUID", "")))
    header.PatientID = pseudonym
    header.PatientName = f"ANONYMOUS^{pseudonym}"
    mark_deidentified(header)
    return header


def mark_deidentified(ds: Dataset) -> None:
    """Set Patient Identity Removed, the De-identification Method and its code sequence."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = DicomSequence([item])
