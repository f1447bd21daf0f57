"""DICOM objects for DICOM inputs: a heat-map Secondary Capture per slice and a Structured Report per study.

Secondary Capture (SOP class 1.2.840.10008.5.1.4.1.1.7, RGB): the model's picture with the heat
map blended in and, burned in underneath, the label, the probability and "RESEARCH USE ONLY"; one
new series per source series, in the source's study (same Study Instance UID). Written while
screening, one file per slice, so memory stays flat and a resumed run keeps them.

Comprehensive 3D SR (1.2.840.10008.5.1.4.1.1.88.34) with TID 1500 Measurement Report: per slice a
measurement group with the class as a coded finding, the class probabilities, the algorithm
(TID 4019: name "brainscan", version, model name and version) and a reference to the source SOP
instance (and frame). Written at the end from the records of ``results.csv``, one per study.

Both carry brainscan in the Contributing Equipment Sequence (DCM 109103 Modifying Equipment, plus
DCM 109104 De-identifying Equipment with ``--deidentify``) and say RESEARCH USE ONLY in their series
description. UIDs the objects make are derived from the output folder's key (see
:mod:`~brainscan.engine.reports.privacy`), so a resumed run writes the same series.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from brainscan.engine.input import raster_headers
from brainscan.engine.input.frames import kind_of
from brainscan.engine.input.planes import ACQUIRED, frame_plane
from brainscan.engine.model.integrity import UNVERIFIED_WARNING, is_verified
from brainscan.engine.model.overlay import blend
from brainscan.engine.reports import common, privacy, sr_codes
from brainscan.engine.reports.annotation_sr import annotation_groups
from brainscan.engine.reports.thumbnails import colour_bar, frame_stem
from brainscan.engine.results.annotations import Annotations
from brainscan.engine.results.cells import path_text
from brainscan.engine.results.record import FrameRecord, FrameResult, frame_key

log = logging.getLogger(__name__)

MANUFACTURER = "brainscan"
SC_SERIES_DESCRIPTION = "brainscan heat map - RESEARCH USE ONLY"
SR_SERIES_DESCRIPTION = "brainscan findings - RESEARCH USE ONLY"
SC_SERIES_BASE = 9000
SR_SERIES_NUMBER = 9999
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
_ORIENTATION_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))  # +x, -x; +y, -y; +z, -z (LPS)


@dataclass
class DicomSettings:
    """What the objects say about how they were made."""

    application_version: str
    model_card: Mapping[str, Any]
    cam_method: str | None
    colormap: str = "jet"
    opacity: float = 0.45
    deidentify: bool = False


@dataclass
class DicomSummary:
    secondary_captures: int = 0
    structured_reports: list[Path] = field(default_factory=list)
    raster_inputs: int = 0
    failures: list[str] = field(default_factory=list)


# -- pictures ------------------------------------------------------------------------------------
CAPTION_FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_CAPTION_SCALE = 0.35  # capitals about 9 pixels high: the smallest that stays legible
CAPTION_MARGIN = 4
MIN_BAR_WIDTH = 64
MAX_BAR_WIDTH = 256


def _caption_width(lines: list[str], scale: float) -> int:
    """Pixels the widest of ``lines`` takes at ``scale`` (0 for no lines)."""
    return max((cv2.getTextSize(text, CAPTION_FONT, scale, 1)[0][0] for text in lines), default=0)


def burn_in(picture: np.ndarray, heat: np.ndarray | None, lines: list[str], *, colormap: str = "jet",
            opacity: float = 0.45) -> np.ndarray:
    """The overlay with a caption strip under it: ``lines`` of text, then the colour bar when there is heat.

    The text is scaled down to fit the picture's width, but not below :data:`MIN_CAPTION_SCALE`;
    a picture narrower than the caption at that scale (or than :data:`MIN_BAR_WIDTH`) is centred
    on a black background as wide as the caption, so that every picture, down to 1 x 1, gets the
    whole caption and colour bar. The picture's own pixels are never resampled.

    Parameters
    ----------
    picture
        H x W x 3 uint8, the model's picture.
    heat
        H x W heat map in [0, 1], or None for no heat map (and no colour bar).
    lines
        Caption lines, ASCII (OpenCV's Hershey font has no other glyphs).

    Returns
    -------
    numpy.ndarray
        (H + strip) x max(W, caption width) x 3 uint8, C-contiguous.
    """
    mixed = blend(picture, heat, colormap=colormap, opacity=opacity) if heat is not None else picture.copy()
    height, width = mixed.shape[:2]
    room = width - 2 * CAPTION_MARGIN
    scale = max(MIN_CAPTION_SCALE, min(1.0, width / 700))
    while scale > MIN_CAPTION_SCALE and _caption_width(lines, scale) > room:
        scale = max(MIN_CAPTION_SCALE, round(scale - 0.05, 2))
    canvas = max(width, _caption_width(lines, scale) + 2 * CAPTION_MARGIN,
                 MIN_BAR_WIDTH + 2 * CAPTION_MARGIN if heat is not None else 0)
    if canvas > width:  # too narrow for the caption: centre the picture on black, pixels untouched
        left = (canvas - width) // 2
        padded = np.zeros((height, canvas, 3), dtype=np.uint8)
        padded[:, left:left + width] = mixed
        mixed = padded
    line_height = int(22 * scale + 6)
    bar_height = max(4, line_height // 3) if heat is not None else 0
    strip = np.zeros((line_height * len(lines) + bar_height + 8, canvas, 3), dtype=np.uint8)
    for number, text in enumerate(lines):
        y = line_height * (number + 1)
        cv2.putText(strip, text, (CAPTION_MARGIN, y - 4), CAPTION_FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    if bar_height:  # the colour bar on its own row: low heat left, high heat right
        top = line_height * len(lines) + 2
        bar_width = min(MAX_BAR_WIDTH, canvas - 2 * CAPTION_MARGIN)
        strip[top:top + bar_height, CAPTION_MARGIN:CAPTION_MARGIN + bar_width] = colour_bar(colormap, bar_width, bar_height)
    return np.ascontiguousarray(np.vstack([mixed, strip]))


def patient_orientation(header: Dataset) -> tuple[str, str] | None:
    """Row and column directions as the dominant patient-axis letters, from Image Orientation (Patient)."""
    cosines = header.get("ImageOrientationPatient")
    if cosines is None or len(cosines) != 6:
        return None
    letters = []
    for vector in (np.asarray(cosines[:3], float), np.asarray(cosines[3:], float)):
        axis = int(np.argmax(np.abs(vector)))
        letters.append(_ORIENTATION_LETTERS[axis][0 if vector[axis] > 0 else 1])
    return letters[0], letters[1]


# -- shared pieces -------------------------------------------------------------------------------
def contributing_equipment(settings: DicomSettings, description: str):
    from highdicom import ContributingEquipment
    from pydicom.sr.codedict import codes

    items = [ContributingEquipment(
        MANUFACTURER, codes.DCM.ModifyingEquipment, manufacturer_model_name="brainscan",
        software_versions=settings.application_version, contribution_description=description[:1024],
    )]
    if settings.deidentify:
        items.append(ContributingEquipment(
            MANUFACTURER, codes.DCM.DeIdentifyingEquipment, manufacturer_model_name="brainscan",
            software_versions=settings.application_version, contribution_description=privacy.DEIDENTIFICATION_DESCRIPTION,
        ))
    return items


def read_source_header(path: Path) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


class DicomWriter:
    """Writes the DICOM outputs of one run into ``folder`` (``DIR/dicom``).

    Raises
    ------
    ReportError
        The folder cannot be used, or holds objects of the other ``--deidentify`` choice.
    """

    def __init__(self, folder: Path, settings: DicomSettings, uids: privacy.UidFactory | None = None) -> None:
        self.folder = common.ensure_folder(Path(folder))
        self.settings = settings
        # the run's one mapping (shared with results.csv under --deidentify), else this folder's own
        self.uids = uids or privacy.open_state(self.folder, deidentify=settings.deidentify)
        self.summary = DicomSummary()

    # -- secondary captures, while screening ------------------------------------------------------
    def sc_path(self, path: str | Path, frame: int) -> Path:
        return self.folder / f"SC-{frame_stem(path, frame)}.dcm"

    def add(self, result: FrameResult) -> Path | None:
        """Write the Secondary Capture of one classified DICOM frame (None for anything else).

        A frame whose object cannot be made is noted in ``summary.failures`` and skipped; a
        failed write (``OSError``: disk full, folder gone) is raised.
        """
        if not result.ok or result.frame is None or result.ref.kind != "dicom":
            return None
        try:
            dataset = self.secondary_capture(result)
        except Exception as exc:  # one odd header never stops the batch
            log.warning("no secondary capture for %s: %s", result.ref.path, exc)
            log.debug("secondary capture failure", exc_info=True)
            self.summary.failures.append(f"{result.ref.path} frame {result.ref.frame}: {type(exc).__name__}: {exc}")
            return None
        path = self.sc_path(result.ref.path, result.ref.frame)
        common.write_atomic(path, _to_bytes(dataset))
        self.summary.secondary_captures += 1
        return path

    def secondary_capture(self, result: FrameResult) -> Dataset:
        from highdicom import CoordinateSystemNames
        from highdicom.sc import SCImage

        source = read_source_header(Path(result.ref.path))
        header = privacy.reference_header(source, deidentify=self.settings.deidentify, uids=self.uids)
        cam = self.settings.cam_method or "no heat map"
        lines = [
            f"{result.label} {result.confidence:.2f} (tumour p {result.tumour_probability:.2f}) | {cam}",
            "RESEARCH USE ONLY - not for diagnosis",
        ]
        if result.frame is None:
            raise ValueError("the decoded frame was not kept (screen with keep_frames=True)")
        pixels = burn_in(result.frame.picture, result.heat, lines, colormap=self.settings.colormap,
                         opacity=self.settings.opacity)
        orientation = patient_orientation(header)
        series_uid = str(header.get("SeriesInstanceUID", "") or result.ref.path)
        source_uid = str(header.get("SOPInstanceUID", ""))
        sc = SCImage(
            pixel_array=pixels,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system=CoordinateSystemNames.PATIENT,
            study_instance_uid=str(header.StudyInstanceUID),
            series_instance_uid=self.uids.derive("sc-series", series_uid),
            series_number=SC_SERIES_BASE + int(header.get("SeriesNumber") or 0) % 1000,
            sop_instance_uid=self.uids.derive("sc", source_uid or result.ref.path, result.ref.frame),
            instance_number=result.ref.series_index + 1,
            manufacturer=MANUFACTURER,
            patient_orientation=orientation or ("L", "P"),
            series_description=SC_SERIES_DESCRIPTION,
            manufacturer_model_name="brainscan",
            software_versions=self.settings.application_version,
            contributing_equipment=contributing_equipment(
                self.settings, f"Heat map overlay and burned-in label by brainscan; {privacy_note(self.settings)}"),
        )
        sc.copy_patient_and_study_information(header)
        if orientation is None:
            sc.PatientOrientation = ""  # Type 2: unknown (the source has no orientation)
        sc.BodyPartExamined = str(header.get("BodyPartExamined") or "BRAIN")  # what the model screens
        sc.BurnedInAnnotation = "YES" if str(header.get("BurnedInAnnotation", "")).upper() == "YES" else "NO"
        sc.ImageComments = "RESEARCH USE ONLY. Not for diagnosis or any clinical decision." + (
            "" if is_verified(self.settings.model_card.get("integrity")) else f" {UNVERIFIED_WARNING}.")
        sc.DerivationDescription = (
            f"brainscan {self.settings.application_version}: model picture with the {cam} heat map of the "
            f"predicted class (colour map {self.settings.colormap}, opacity {self.settings.opacity:.2f}); "
            "label, probability and RESEARCH USE ONLY burned in below the image"
            + ("; the picture centred on a black background widened to fit the caption"
               if pixels.shape[1] > result.frame.picture.shape[1] else "")
        )[:1024]
        if source_uid:
            reference = Dataset()
            reference.ReferencedSOPClassUID = header.SOPClassUID
            reference.ReferencedSOPInstanceUID = source_uid
            if int(header.get("NumberOfFrames") or 1) > 1:
                reference.ReferencedFrameNumber = result.ref.frame + 1
            reference.PurposeOfReferenceCodeSequence = DicomSequence(
                [_code_item("121322", "DCM", "Source image for image processing operation")])
            sc.SourceImageSequence = DicomSequence([reference])
        return sc

    # -- structured reports, at the end ------------------------------------------------------------
    def write_reports(self, records: Iterable[FrameRecord], classes: tuple[str, ...],
                      annotations: Annotations | None = None) -> DicomSummary:
        """One Comprehensive 3D SR per study of the classified DICOM records; counts raster inputs apart.

        A person's measurements and key images (``annotations``) on those frames go into their study's SR
        (:mod:`~brainscan.engine.reports.annotation_sr`).

        Raises
        ------
        OSError
            A report that cannot be written.
        """
        kinds: dict[Path, str] = {}
        by_study: dict[str, list[tuple[FrameRecord, Dataset]]] = {}
        headers: dict[Path, Dataset] = {}
        raster_paths: set[Path] = set()
        for record in records:
            path = record.path
            if path not in kinds:
                try:
                    kinds[path] = kind_of(raster_headers.sniff_file(path))
                except Exception:
                    kinds[path] = "unknown"
            if kinds[path] == "raster":
                raster_paths.add(path)
            if kinds[path] != "dicom" or not record.ok or frame_plane(record.frame)[0] != ACQUIRED:
                continue  # a reformat (engine/input/planes.py) is no instance of its source to reference
            if path not in headers:
                try:
                    source = read_source_header(path)
                    headers[path] = privacy.reference_header(source, deidentify=self.settings.deidentify, uids=self.uids)
                except Exception as exc:
                    self.summary.failures.append(
                        f"{path_text(path)}: header unreadable for the report ({type(exc).__name__})")
                    continue
            header = headers[path]
            by_study.setdefault(str(header.get("StudyInstanceUID", "")), []).append((record, header))
        self.summary.raster_inputs = len(raster_paths)
        for study, items in by_study.items():
            try:
                headers_by_key = {frame_key(r.path, r.frame): h for r, h in items}
                extra = annotation_groups(annotations, headers_by_key, self.uids.derive,
                                          keep_text=not self.settings.deidentify) if annotations else []
                report = self.structured_report(study, items, classes, extra)
            except Exception as exc:
                log.warning("no structured report for study %s: %s", study, exc)
                log.debug("structured report failure", exc_info=True)
                self.summary.failures.append(f"structured report of study {study}: {type(exc).__name__}: {exc}")
                continue
            path = self.folder / f"SR-{hashlib.sha1(study.encode()).hexdigest()[:12]}.dcm"
            common.write_atomic(path, _to_bytes(report))
            self.summary.structured_reports.append(path)
        return self.summary

    def structured_report(self, study: str, items: list[tuple[FrameRecord, Dataset]],
                          classes: tuple[str, ...], extra_groups: Iterable = ()) -> Dataset:
        from highdicom import sr
        from highdicom.coding_schemes import CodingSchemeIdentificationItem
        from pydicom.sr.codedict import codes

        card = self.settings.model_card
        algorithm = sr.AlgorithmIdentification(
            name="brainscan",
            version=self.settings.application_version,
            parameters=[
                f"model {card.get('name', '')} {card.get('version', '')}",
                f"architecture {card.get('architecture', '')}",
                f"model SHA-256 {card.get('sha256', '')}",
                f"model integrity {card.get('integrity') or 'unknown'}",
                f"heat map {self.settings.cam_method or 'none'}",
                "RESEARCH USE ONLY",
            ],
            manufacturer=MANUFACTURER,
        )
        groups = []
        for record, header in items:
            frame = record.frame
            multiframe = int(header.get("NumberOfFrames") or 1) > 1
            source = sr.SourceImageForMeasurementGroup.from_source_image(header, [frame + 1] if multiframe else None)
            label = record.label
            measurements = [
                sr.Measurement(name=sr.CodedConcept(*sr_codes.probability_code(name)),
                               value=round(record.probability(name), 6), unit=codes.UCUM.NoUnits)
                for name in classes if not math.isnan(record.probability(name))
            ]
            index = record.series_index
            groups.append(sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=sr.TrackingIdentifier(
                    uid=self.uids.derive("tracking", header.SOPInstanceUID, frame),
                    identifier=f"slice {index + 1}" if index is not None else f"frame {frame + 1}",
                ),
                algorithm_id=algorithm,
                finding_sites=[sr.FindingSite(codes.SCT.Brain)],
                measurements=measurements,
                qualitative_evaluations=[sr.QualitativeEvaluation(
                    codes.DCM.Finding, sr.CodedConcept(*sr_codes.finding_code(label)))],
                source_images=[source],
            ))
        extra_groups = list(extra_groups)
        groups += extra_groups  # a person's measurements and key images
        observer = sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=sr.DeviceObserverIdentifyingAttributes(
                uid=self.uids.derive("device"), name="brainscan", manufacturer_name=MANUFACTURER,
                model_name=f"{card.get('name', '')} {card.get('version', '')}"[:64],
            ),
        )
        content = sr.MeasurementReport(
            observation_context=sr.ObservationContext(observer_device_context=observer),
            procedure_reported=codes.LN.BrainMRI,
            imaging_measurements=groups,
            title=codes.cid7021.ImagingMeasurementReport,
        )
        evidence = list({h.SOPInstanceUID: h for _, h in items}.values())
        report = sr.Comprehensive3DSR(
            evidence=evidence,
            content=content[0],
            series_instance_uid=self.uids.derive("sr-series", study),
            series_number=SR_SERIES_NUMBER,
            # the same findings give the same UID (storing a folder twice adds nothing); changed ones a new one
            sop_instance_uid=self.uids.derive("sr", study, hashlib.sha256(str(content[0]).encode()).hexdigest()),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            series_description=SR_SERIES_DESCRIPTION,
            manufacturer_model_name="brainscan",
            software_versions=self.settings.application_version,
            coding_schemes=[CodingSchemeIdentificationItem(sr_codes.LOCAL_SCHEME, name=sr_codes.LOCAL_SCHEME_NAME)],
            contributing_equipment=contributing_equipment(
                self.settings, f"Classification by brainscan; {privacy_note(self.settings)}"),
        )
        if self.settings.deidentify:
            report.copy_patient_and_study_information(evidence[0])
        if extra_groups:  # a person's notes and labels may hold any character: UTF-8
            report.SpecificCharacterSet = "ISO_IR 192"
        return report


def privacy_note(settings: DicomSettings) -> str:
    return "de-identified (basic profile)" if settings.deidentify else "patient and study modules kept from the source"
