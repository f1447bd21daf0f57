"""Decoding one picture: :func:`load_frame` turns a :class:`~brainscan.engine.input.frames.FrameRef` into a
:class:`~brainscan.engine.input.frames.Frame`, whose ``picture`` is what the model sees
(:data:`brainscan.engine.model.contract.PICTURE_RULE`), with the display tags of DICOM kept apart from
patient identifiers. Every problem with a file is raised as an
:class:`~brainscan.engine.errors.InputError` subclass that names the file and says what to do;
nothing large is cached, so memory stays flat over a batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainscan.engine.errors import CorruptImageError, DicomError, InputError, NotAnImageError
from brainscan.engine.input import (
    dicom_decode,
    dicom_header,
    dicom_pixels,
    raster,
    raster_headers,
)
from brainscan.engine.input.frames import Frame, FrameRef, is_plausible_dicom, kind_of
from brainscan.engine.input.picture_checks import MOSAIC_TAG

if TYPE_CHECKING:  # pydicom is imported where a DICOM file is met, never for a run over pictures
    from pydicom.dataset import Dataset

DISPLAY_KEYWORDS = (
    "Modality",
    "SOPClassUID",
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "BodyPartExamined",
    "ProtocolName",
    "SeriesDescription",
    "SeriesNumber",
    "ImageType",
    "InstanceNumber",
    "SliceLocation",
    "SliceThickness",
    "PixelSpacing",
    "Rows",
    "Columns",
    "BitsStored",
    "PhotometricInterpretation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
)
# The plane of one frame (the viewer's orientation letters, scale bar and slice position): per frame in an
# enhanced multi-frame object, else at the top level.
GEOMETRY_KEYWORDS = (
    ("PlaneOrientationSequence", "ImageOrientationPatient"),
    ("PlanePositionSequence", "ImagePositionPatient"),
    ("PixelMeasuresSequence", "PixelSpacing"),
)
# Kept apart so that outputs can leave them out.
IDENTIFIER_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientAddress",
    "AccessionNumber",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "StationName",
    "DeviceSerialNumber",
)
DEFER_SIZE = "256 KB"  # pixel data is read only once the size guard has passed


# -- loading -------------------------------------------------------------------------------------
def load_frame(ref: FrameRef) -> Frame:
    """Decode one picture.

    The format is sniffed again from the content (``ref.kind`` is only a hint).

    Raises
    ------
    InputError
        Only its subclasses, for any problem with the file: :class:`NotAnImageError`,
        :class:`CorruptImageError`, :class:`ImageTooLargeError`, :class:`DicomError`.
    """
    path = Path(ref.path)
    sniffed = raster_headers.sniff_file(path)  # refuses pipes, devices and broken links before opening
    raster_headers.check_file_size(path)
    if ref.kind == "reformat" or sniffed == "nifti":  # a slice of a volume (engine/input/volume_frames.py)
        from brainscan.engine.input.volume_frames import load_volume_frame

        return load_volume_frame(ref if ref.kind == "reformat" or ref.kind == "nifti" else replace(ref, kind="nifti"))
    if sniffed in raster_headers.RASTER_FORMATS:
        return _load_raster(ref)
    if sniffed in ("dicom", "dicom-raw"):
        return _load_dicom(ref, force=sniffed == "dicom-raw")
    raise NotAnImageError(
        path, f"is not a {raster_headers.SUPPORTED} file", "leave it out, or convert it to PNG or DICOM"
    )


def load_picture(path: str | Path) -> np.ndarray:
    """The 8-bit RGB picture (H x W x 3 uint8) of a file's first frame."""
    return load_frame(FrameRef(Path(path), kind=kind_of(raster_headers.sniff_file(Path(path))))).picture


def _load_raster(ref: FrameRef) -> Frame:
    try:
        image = raster.decode_raster(ref.path)
    except InputError:
        raise
    except Exception as exc:
        raise CorruptImageError(
            ref.path, f"cannot be decoded ({type(exc).__name__}: {exc})", raster_headers.RECOPY
        ) from exc
    height, width = image.picture.shape[:2]
    window = (image.window.center, image.window.width) if image.window else None
    return Frame(
        ref=ref,
        picture=image.picture,
        values=image.values,
        window=window,
        window_source=image.window.source if image.window else "none",
        tags={"Format": image.description, "Size": f"{width} x {height}"},
        identifiers={},
    )


def read_dicom(path: Path, *, force: bool = False) -> Dataset:
    """A DICOM file with its pixel data deferred (read only when decoded).

    Raises
    ------
    NotAnImageError
        Not DICOM after all.
    CorruptImageError
        A header that cannot be parsed.
    """
    pydicom = dicom_header.import_pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, force=force, defer_size=DEFER_SIZE)
    except InvalidDicomError as exc:
        raise NotAnImageError(path, f"is not a {raster_headers.SUPPORTED} file ({exc})", "leave it out") from exc
    except Exception as exc:
        raise CorruptImageError(
            path, f"its DICOM header cannot be read ({type(exc).__name__}: {exc})", raster_headers.RECOPY
        ) from exc
    if force and not is_plausible_dicom(ds):
        raise NotAnImageError(path, f"is not a {raster_headers.SUPPORTED} file", "leave it out")
    complete_transfer_syntax(ds)
    return ds


def complete_transfer_syntax(ds: Dataset) -> None:
    """Give a bare dataset (no file meta) the native transfer syntax it was read with."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if "TransferSyntaxUID" in getattr(ds, "file_meta", Dataset()):
        return
    implicit_vr, little_endian = ds.original_encoding
    if implicit_vr is None:
        return
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian
        if implicit_vr
        else ExplicitVRLittleEndian
        if little_endian
        else ExplicitVRBigEndian
    )


def _load_dicom(ref: FrameRef, *, force: bool) -> Frame:
    ds = read_dicom(Path(ref.path), force=force)
    try:
        dicom_decode.check_has_pixels(ds)
        if "Rows" in ds and "Columns" in ds:  # before decoding: an 8 x 8 frame holds no brain slice
            raster_headers.check_min_size(ref.path, int(ds.Columns or 0), int(ds.Rows or 0), "DICOM frame")
        picture, values, window = dicom_pixels.to_picture(ds, ref.frame)
    except InputError:
        raise
    except Exception as exc:
        raise DicomError(
            ref.path,
            f"cannot be turned into a picture ({type(exc).__name__}: {exc})",
            "check the file with `gdcminfo` or `dcmdump`; " + dicom_header.DECODER_FIX,
        ) from exc
    try:
        tags = display_tags(ds, ref.frame)
        identifiers = dataset_strings(ds, IDENTIFIER_KEYWORDS)
    except Exception as exc:  # values are converted when first read: one may be damaged (fuzzing finding)
        raise DicomError(
            ref.path, f"its header holds a value that cannot be read ({type(exc).__name__}: {exc})", raster_headers.RECOPY
        ) from exc
    return Frame(
        ref=ref,
        picture=picture,
        values=values,
        window=(window.center, window.width) if window else None,
        window_source=window.source if window else "none",
        tags=tags,
        identifiers=identifiers,
        inverted=values is not None and dicom_header.photometric(ds) == "MONOCHROME1",
    )


# -- tags ----------------------------------------------------------------------------------------
def tag_text(value: object) -> str:
    """A DICOM value as display text (multi-values joined by ``\\``)."""
    from pydicom.multival import MultiValue  # already loaded: the value came from a dataset

    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return str(value)


def mosaic_tiles(ds: Dataset) -> str:
    """A Siemens mosaic's tile count (private tag (0019,100A) NumberOfImagesInMosaic), "yes" when only its
    ImageType says MOSAIC, "" for any other frame."""
    element = ds.get((0x0019, 0x100A))
    value = getattr(element, "value", None)
    if isinstance(value, bytes) and len(value) == 2:  # read without its private dictionary (implicit VR)
        value = int.from_bytes(value, "big" if ds.original_encoding[1] is False else "little")
    if isinstance(value, int) and value > 1:
        return str(value)
    image_type = ds.get("ImageType")
    if image_type is not None and "MOSAIC" in tag_text(image_type).upper().split("\\"):
        return "yes"
    return ""


def dataset_strings(ds: Dataset, keywords: Iterable[str]) -> dict[str, str]:
    """The present, non-empty values of ``keywords`` as text."""
    result = {}
    for keyword in keywords:
        value = ds.get(keyword)
        if value is not None and value != "":
            result[keyword] = tag_text(value)
    return result


def display_tags(ds: Dataset, frame: int) -> dict[str, str]:
    """The small display dict of a DICOM frame, free of patient identifiers."""
    tags = dataset_strings(ds, DISPLAY_KEYWORDS)
    if "SOPClassUID" in tags:
        tags["SOPClassUID"] = getattr(ds.SOPClassUID, "name", tags["SOPClassUID"])
    for sequence, keyword in GEOMETRY_KEYWORDS:
        value = dicom_header.frame_attribute(ds, frame, sequence, keyword)
        if value is not None and value != "":
            tags[keyword] = tag_text(value)
    tags["TransferSyntax"] = dicom_header.transfer_syntax_label(ds)
    mosaic = mosaic_tiles(ds)
    if mosaic:
        tags[MOSAIC_TAG] = mosaic
    frames = dicom_header.number_of_frames(ds)
    if frames > 1:
        tags["Frame"] = f"{frame + 1} of {frames}"
    return tags
