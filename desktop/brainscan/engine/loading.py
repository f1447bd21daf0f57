"""The engine's image input: find the pictures to screen, and decode them.

:func:`discover` turns files and folders into :class:`FrameRef` items, one per 2-D picture (an
image file, or one frame or slice of DICOM), with DICOM series in anatomical order, without
decoding any pixel. :func:`load_frame` decodes one of them into a :class:`Frame`, whose
``picture`` is what the model sees (:data:`brainscan.engine.contract.PICTURE_RULE`). Every
problem with a file is raised as an :class:`~brainscan.engine.errors.InputError` subclass that
names the file and says what to do; nothing large is cached, so memory stays flat over a batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from brainscan.engine import dicom_pixels, dicom_series, raster
from brainscan.engine.errors import CorruptImageError, DicomError, InputError, NotAnImageError

# Shown with a frame: acquisition facts, never a person.
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
    "WindowCenter",
    "WindowWidth",
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
KINDS = ("raster", "dicom", "unknown")
DEFER_SIZE = "256 KB"  # pixel data is read only once the size guard has passed


@dataclass(frozen=True)
class FrameRef:
    """One 2-D picture to classify: an image file, or one frame or slice of DICOM."""

    path: Path
    frame: int = 0  # frame index in a multi-frame DICOM, else 0
    kind: str = "raster"  # "raster" | "dicom" | "unknown"
    series_uid: str = ""  # DICOM Series Instance UID ("" for raster)
    series_index: int = 0  # position of this slice within its sorted series (0-based)
    series_length: int = 1


@dataclass
class Frame:
    """A decoded picture and what a viewer needs to show it."""

    ref: FrameRef
    picture: np.ndarray  # uint8 H x W x 3, what the model sees (PICTURE_RULE)
    values: (
        np.ndarray | None
    )  # float32 H x W modality values for window/level; None for colour and 8-bit raster
    window: tuple[float, float] | None  # (center, width) in `values` used to make `picture`
    window_source: str  # "tags" | "percentile" | "none"
    tags: dict[str, str]  # display tags, no patient identifiers
    identifiers: dict[str, str] = field(default_factory=dict)  # patient and study identifiers, kept apart
    inverted: bool = False  # MONOCHROME1: `values` are shown inverted (low values bright)


# -- discovery ---------------------------------------------------------------------------------
# Names that say "picture": such a file found in a folder gets a result even when it cannot be read.
# Any other file found in a folder is kept only when its content sniffs as a picture or DICOM
# (extension-less DICOM is common), so a study folder's LICENSE or notes are skipped, not errors.
PICTURE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".dcm", ".dicom", ".dic", ".ima",
    # pictures brainscan cannot read: their error row says what to convert them to
    ".gif", ".webp", ".jp2", ".j2k", ".heic", ".heif", ".avif", ".nii", ".nrrd", ".mha", ".mhd", ".img",
})
# Left in every folder a run writes into (results.py holds it there); such a folder is never screened.
OUTPUT_MARKER = ".brainscan.lock"

SKIPPED_NOT_IMAGES = "not images"
SKIPPED_NON_IMAGE_DICOM = "DICOM objects without an image (reports, plans, waveforms)"
SKIPPED_OUTPUT = "brainscan output folders"


@dataclass
class Discovery:
    """What :func:`find_inputs` found: the frames to screen, and what it left out and why."""

    refs: list[FrameRef] = field(default_factory=list)
    skipped: dict[str, list[Path]] = field(default_factory=dict)  # reason -> files (or folders)

    def skip(self, reason: str, path: Path) -> None:
        self.skipped.setdefault(reason, []).append(path)

    def notes(self, examples: int = 3) -> list[str]:
        """One line per reason, e.g. ``2 files skipped: not images (LICENSE, README.md)``."""
        lines = []
        for reason, paths in self.skipped.items():
            names = ", ".join(p.name for p in paths[:examples]) + (", ..." if len(paths) > examples else "")
            what = "folder" if reason == SKIPPED_OUTPUT else "file"
            lines.append(f"{len(paths)} {what}{'s' if len(paths) != 1 else ''} skipped: {reason} ({names})")
        return lines


def has_picture_name(path: Path) -> bool:
    """Whether the file name says it is a picture or DICOM (the content decides what it really is)."""
    return path.suffix.lower() in PICTURE_SUFFIXES or path.name.lower().endswith(".nii.gz")


def is_output_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is (or was) written by a brainscan run: it holds :data:`OUTPUT_MARKER`."""
    return os.path.lexists(os.path.join(folder, OUTPUT_MARKER))


def iter_files(
    paths: Iterable[str | Path],
    *,
    exclude: Iterable[str | Path] = (),
    skipped: Discovery | None = None,
) -> Iterator[tuple[Path, bool]]:
    """``(file, named)`` for the files named (``named`` True) and the files inside folders named.

    Folders are recursed in sorted order. Inside folders, dotfiles, dot-folders and DICOMDIR files
    are skipped, symbolic links to folders are followed once (no loops), and every file is yielded
    once. Folders in ``exclude`` and brainscan output folders (:func:`is_output_folder`) are never
    entered, even when named; they are noted in ``skipped``. A file named explicitly is always yielded.

    Raises
    ------
    InputError
        A path that does not exist.
    """
    seen_files: set[str] = set()
    seen_dirs: set[str] = set()
    excluded = {os.path.realpath(p) for p in exclude}
    for item in paths:
        path = Path(item)
        if path.is_dir():
            yield from ((p, False) for p in _walk(path, seen_dirs, seen_files, excluded, skipped))
        elif path.exists() or path.is_symlink():
            key = os.path.realpath(path)
            if key not in seen_files:
                seen_files.add(key)
                yield path, True
        else:
            raise InputError(path, "does not exist", "check the path and that the drive is connected")


def _walk(
    root: Path, seen_dirs: set[str], seen_files: set[str], excluded: set[str], skipped: Discovery | None
) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen_dirs:  # a link back up, or a folder named twice
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        if real in excluded or is_output_folder(directory):
            if skipped is not None:
                skipped.skip(SKIPPED_OUTPUT, Path(directory))
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            path = Path(directory, name)
            key = os.path.realpath(path)
            if key not in seen_files and not os.path.isdir(path):
                seen_files.add(key)
                yield path


def kind_of(sniffed: str) -> str:
    """:func:`raster.sniff` result to a FrameRef kind."""
    if sniffed in raster.RASTER_FORMATS:
        return "raster"
    if sniffed in ("dicom", "dicom-raw"):
        return "dicom"
    return "unknown"


def _dicom_headers(path: Path, sniffed: str) -> list[dicom_series.SliceHeader] | None:
    """Slice headers of a DICOM file, or None when its header cannot be read or declares more frames
    than its pixel data holds (either way the file becomes one ref, and :func:`load_frame` says why)."""
    try:
        ds, capacity = dicom_series.read_header_and_capacity(path, force=sniffed == "dicom-raw")
        if sniffed == "dicom-raw" and not is_plausible_dicom(ds):
            return None
        frames = dicom_pixels.number_of_frames(ds)
        # every frame takes at least a byte of the file, whatever the pixel data element says
        holds = capacity.frames if capacity is not None else os.path.getsize(path)
        if frames > 1 and frames > holds:
            return None
        # values are converted when first read: a damaged one (e.g. an unknown VR) raises here
        return dicom_series.headers_from_dataset(ds, path)
    except Exception:  # any header problem is reported by load_frame, with the file named
        return None


def is_plausible_dicom(ds: Dataset) -> bool:
    """Whether a dataset read with force=True really is DICOM (it knows its class or its image)."""
    return any(keyword in ds for keyword in ("SOPClassUID", "Rows", "Modality", "SeriesInstanceUID"))


def discover(paths: Iterable[str | Path], *, exclude: Iterable[str | Path] = ()) -> list[FrameRef]:
    """Every picture to screen under ``paths``: :func:`find_inputs` without its notes."""
    return find_inputs(paths, exclude=exclude).refs


def find_inputs(
    paths: Iterable[str | Path],
    *,
    exclude: Iterable[str | Path] = (),
    on_file: Callable[[int], None] | None = None,
) -> Discovery:
    """Every picture to screen under ``paths``, without decoding pixels, and what was left out.

    Raster files give one :class:`FrameRef` each; DICOM files one per frame, grouped by series
    and sorted along the slice normal (see :mod:`brainscan.engine.dicom_series`), each series
    placed where its first file was found.

    Every file named on the command line, and every file found in a folder that is named like a
    picture (:data:`PICTURE_SUFFIXES`), gets a ref: an unreadable one a ``kind="unknown"`` ref, so
    that it gets an error row (:func:`load_frame` explains what is wrong with it). A file found in
    a folder that neither is named like a picture nor sniffs as one (a LICENSE, notes), and a DICOM
    object without an image (a structured report, an RT plan, an ECG) found in a folder, are
    skipped and counted in :attr:`Discovery.skipped`; so are output folders (``exclude``, and any
    folder a brainscan run writes into).

    Parameters
    ----------
    on_file:
        Called with the number of files looked at so far, after each (progress of a long walk).

    Raises
    ------
    InputError
        A path that does not exist.
    """
    found = Discovery()
    slots: list[FrameRef | str] = []  # a ref, or the key of a series placed here
    series: dict[str, list[dicom_series.SliceHeader]] = {}
    for count, (path, named) in enumerate(iter_files(paths, exclude=exclude, skipped=found), start=1):
        if on_file is not None:
            on_file(count)
        keep_anyway = named or has_picture_name(path)
        try:
            sniffed = raster.sniff_file(path)
        except InputError:
            sniffed = "unknown"
        headers = _dicom_headers(path, sniffed) if kind_of(sniffed) == "dicom" else None
        if headers is None:
            kind = "dicom" if sniffed == "dicom" else kind_of(sniffed)
            if kind == "unknown" and not keep_anyway:
                found.skip(SKIPPED_NOT_IMAGES, path)
            else:
                slots.append(FrameRef(path, kind=kind))
            continue
        if not named and not any(h.is_image for h in headers):
            found.skip(SKIPPED_NON_IMAGE_DICOM, path)
            continue
        for header in headers:
            key = dicom_series.series_key(header)
            if key not in series:
                series[key] = []
                slots.append(key)
            series[key].append(header)
    for slot in slots:
        if isinstance(slot, FrameRef):
            found.refs.append(slot)
        else:
            found.refs.extend(_series_refs(series[slot]))
    return found


def _series_refs(headers: list[dicom_series.SliceHeader]) -> list[FrameRef]:
    ordered, _method = dicom_series.sort_series(headers)
    return [
        FrameRef(
            h.path,
            frame=h.frame,
            kind="dicom",
            series_uid=h.series_uid,
            series_index=i,
            series_length=len(ordered),
        )
        for i, h in enumerate(ordered)
    ]


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
    sniffed = raster.sniff_file(path)  # refuses pipes, devices and broken links before opening
    raster.check_file_size(path)
    if sniffed in raster.RASTER_FORMATS:
        return _load_raster(ref)
    if sniffed in ("dicom", "dicom-raw"):
        return _load_dicom(ref, force=sniffed == "dicom-raw")
    raise NotAnImageError(
        path, f"is not a {raster.SUPPORTED} file", "leave it out, or convert it to PNG or DICOM"
    )


def load_picture(path: str | Path) -> np.ndarray:
    """The 8-bit RGB picture (H x W x 3 uint8) of a file's first frame."""
    return load_frame(FrameRef(Path(path), kind=kind_of(raster.sniff_file(Path(path))))).picture


def _load_raster(ref: FrameRef) -> Frame:
    try:
        image = raster.decode_raster(ref.path)
    except InputError:
        raise
    except Exception as exc:
        raise CorruptImageError(
            ref.path, f"cannot be decoded ({type(exc).__name__}: {exc})", raster.RECOPY
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
    try:
        ds = pydicom.dcmread(path, force=force, defer_size=DEFER_SIZE)
    except InvalidDicomError as exc:
        raise NotAnImageError(path, f"is not a {raster.SUPPORTED} file ({exc})", "leave it out") from exc
    except Exception as exc:
        raise CorruptImageError(
            path, f"its DICOM header cannot be read ({type(exc).__name__}: {exc})", raster.RECOPY
        ) from exc
    if force and not is_plausible_dicom(ds):
        raise NotAnImageError(path, f"is not a {raster.SUPPORTED} file", "leave it out")
    complete_transfer_syntax(ds)
    return ds


def complete_transfer_syntax(ds: Dataset) -> None:
    """Give a bare dataset (no file meta) the native transfer syntax it was read with."""
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
        dicom_pixels.check_has_pixels(ds)
        if "Rows" in ds and "Columns" in ds:  # before decoding: an 8 x 8 frame holds no brain slice
            raster.check_min_size(ref.path, int(ds.Columns or 0), int(ds.Rows or 0), "DICOM frame")
        picture, values, window = dicom_pixels.to_picture(ds, ref.frame)
    except InputError:
        raise
    except Exception as exc:
        raise DicomError(
            ref.path,
            f"cannot be turned into a picture ({type(exc).__name__}: {exc})",
            "check the file with `gdcminfo` or `dcmdump`; " + dicom_pixels.DECODER_FIX,
        ) from exc
    try:
        tags = display_tags(ds, ref.frame)
        identifiers = dataset_strings(ds, IDENTIFIER_KEYWORDS)
    except Exception as exc:  # values are converted when first read: one may be damaged (fuzzing finding)
        raise DicomError(
            ref.path, f"its header holds a value that cannot be read ({type(exc).__name__}: {exc})", raster.RECOPY
        ) from exc
    return Frame(
        ref=ref,
        picture=picture,
        values=values,
        window=(window.center, window.width) if window else None,
        window_source=window.source if window else "none",
        tags=tags,
        identifiers=identifiers,
        inverted=values is not None and dicom_pixels.photometric(ds) == "MONOCHROME1",
    )


# -- tags ----------------------------------------------------------------------------------------
def tag_text(value: object) -> str:
    """A DICOM value as display text (multi-values joined by ``\\``)."""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return str(value)


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
    tags["TransferSyntax"] = dicom_pixels.transfer_syntax_label(ds)
    frames = dicom_pixels.number_of_frames(ds)
    if frames > 1:
        tags["Frame"] = f"{frame + 1} of {frames}"
    return tags
