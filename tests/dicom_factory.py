"""Real-content DICOM files for the tests, built from the real Kaggle brain-MRI JPGs.

Used where ``../shared/data/dicom`` is absent (and for the cases whose ground truth a test needs to
know). Every file carries the pixels of a real slice; what is synthetic is the DICOM wrapping:
12-bit values, geometry, rescale, window tags, patient identifiers and the encodings.

Encoders: pydicom's own RLE encoder, pylibjpeg-openjpeg for JPEG 2000 (both through
``Dataset.compress``), and python-gdcm's ``ImageChangeTransferSyntax`` for JPEG lossless
(process 14 and its selection value 1) and JPEG-LS (lossless, and near-lossless with NEAR=0).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"
KAGGLE_TRAINING = SHARED_DATA / "brain-tumor-mri" / "Training"
MULTIFRAME_GREY_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

IDENTIFIERS = {
    "PatientName": "Doe^Jane",
    "PatientID": "BS-000123",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "AccessionNumber": "ACC0001",
    "InstitutionName": "Example Hospital",
    "ReferringPhysicianName": "Who^Doctor",
    "StudyDate": "20240102",
}

# (file name, transfer syntax, encoder) in the order of ../shared/data/dicom/transfer-syntaxes
TRANSFER_SYNTAXES = (
    ("1.dcm", ExplicitVRLittleEndian, "pydicom (native)"),
    ("2.dcm", ImplicitVRLittleEndian, "pydicom (native)"),
    ("3.dcm", ExplicitVRBigEndian, "pydicom (native, pixel bytes swapped)"),
    ("4.dcm", RLELossless, "pydicom compress, 'pydicom' RLE encoder"),
    ("5.dcm", JPEGLossless, "gdcm ImageChangeTransferSyntax"),
    ("6.dcm", JPEGLosslessSV1, "gdcm ImageChangeTransferSyntax"),
    ("7.dcm", JPEGLSLossless, "gdcm ImageChangeTransferSyntax"),
    ("8.dcm", JPEGLSNearLossless, "gdcm ImageChangeTransferSyntax, NEAR=0"),
    ("9.dcm", JPEG2000Lossless, "pydicom compress, pylibjpeg-openjpeg"),
)


# -- real pixels -------------------------------------------------------------------------------
def kaggle_images(count: int, category: str = "glioma", start: int = 0, step: int = 1) -> list[Path]:
    """``count`` real JPGs of one category, every ``step``-th in file-name order from ``start``."""
    files = sorted((KAGGLE_TRAINING / category).glob("*.jpg"))[start::step][:count]
    if len(files) < count:
        raise FileNotFoundError(f"need {count} JPGs in {KAGGLE_TRAINING / category}, found {len(files)}")
    return files


def read_grey(path: Path) -> np.ndarray:
    """A real JPG as H x W uint8 grey."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise FileNotFoundError(path)
    return grey


def read_rgb(path: Path) -> np.ndarray:
    """A real JPG as H x W x 3 uint8 RGB."""
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def false_colour(grey: np.ndarray) -> np.ndarray:
    """A real grey slice through OpenCV's JET colour map, as H x W x 3 uint8 RGB (truly colour)."""
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def twelve_bit(grey: np.ndarray, seed: int = 0) -> np.ndarray:
    """8-bit grey to 12-bit-like MR values: ``grey * 4 + noise`` (0..1023), uint16."""
    noise = np.random.default_rng(seed).integers(0, 4, grey.shape)
    return (grey.astype(np.uint16) * 4 + noise).astype(np.uint16)


# -- datasets -----------------------------------------------------------------------------------
def new_dataset(
    pixels: np.ndarray,
    *,
    sop_class: str = MRImageStorage,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    series_uid: str | None = None,
    study_uid: str | None = None,
    **attributes: object,
) -> Dataset:
    """A complete dataset (explicit VR little endian) holding ``pixels`` and patient identifiers."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "MR" if sop_class == MRImageStorage else "OT"
    ds.SeriesDescription = "t1_mprage_sag (synthetic wrapping of a real slice)"
    ds.SeriesNumber = 3
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    ds.set_pixel_data(pixels, photometric, bits_stored)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def save(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` in the DICOM file format (preamble, "DICM", file meta)."""
    ds.save_as(path, enforce_file_format=True)
    return path


def with_transfer_syntax(ds: Dataset, transfer_syntax: str) -> Dataset:
    """A copy of an uncompressed dataset re-labelled for another native transfer syntax."""
    out = copy.deepcopy(ds)
    out.file_meta.TransferSyntaxUID = transfer_syntax
    if transfer_syntax == ExplicitVRBigEndian and int(ds.BitsAllocated) > 8:
        out.PixelData = ds.pixel_array.astype(ds.pixel_array.dtype.newbyteorder(">")).tobytes()
    return out


def gdcm_transcode(source: Path, target: Path, transfer_syntax: str) -> Path:
    """Re-encode ``source`` with python-gdcm (JPEG lossless and JPEG-LS, which pydicom cannot write)."""
    import gdcm  # only the factory needs it

    kinds = {
        JPEGLossless: gdcm.TransferSyntax.JPEGLosslessProcess14,
        JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
        JPEGLSLossless: gdcm.TransferSyntax.JPEGLSLossless,
        JPEGLSNearLossless: gdcm.TransferSyntax.JPEGLSNearLossless,
    }
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    if not reader.Read():
        raise RuntimeError(f"gdcm cannot read {source}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(kinds[transfer_syntax]))
    change.SetInput(reader.GetImage())
    if transfer_syntax == JPEGLSNearLossless:
        codec = gdcm.JPEGLSCodec()
        codec.SetLossless(False)
        codec.SetLossyError(0)  # NEAR = 0: near-lossless syntax, exact pixels
        change.SetUserCodec(codec)
    if not change.Change():
        raise RuntimeError(f"gdcm cannot encode {source} as {transfer_syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"gdcm cannot write {target}")
    return target


# -- the test sets ------------------------------------------------------------------------------
def write_transfer_syntaxes(folder: Path, pixels: np.ndarray) -> list[Path]:
    """One image in the nine transfer syntaxes of :data:`TRANSFER_SYNTAXES`, as ``1.dcm`` .. ``9.dcm``."""
    folder.mkdir(parents=True, exist_ok=True)
    base = new_dataset(pixels, InstanceNumber=1)
    paths = []
    for name, transfer_syntax, _encoder in TRANSFER_SYNTAXES:
        path = folder / name
        if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian):
            save(with_transfer_syntax(base, transfer_syntax), path)
        elif transfer_syntax in (RLELossless, JPEG2000Lossless):
            ds = copy.deepcopy(base)
            plugin = {"encoding_plugin": "pydicom"} if transfer_syntax == RLELossless else {}
            ds.compress(transfer_syntax, **plugin)
            save(ds, path)
        else:
            gdcm_transcode(folder / "1.dcm", path, transfer_syntax)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class SagittalSeries:
    """A synthetic sagittal series and its ground truth."""

    folder: Path
    files_in_order: list[Path]  # by position along the slice normal
    normal: np.ndarray
    degenerate: set[Path]  # the slices carrying WindowCenter 11 / WindowWidth 22
    rescaled: set[Path]  # the slices with RescaleSlope 2 / RescaleIntercept -1024
    stored: dict[Path, np.ndarray]  # stored values of each file


def oblique_frame(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column direction cosines whose cross product is the unit ``normal``."""
    normal = normal / np.linalg.norm(normal)
    row = np.cross([0.0, 0.0, 1.0], normal)
    row /= np.linalg.norm(row)
    column = np.cross(normal, row)
    return row, column, normal


def write_sagittal_series(folder: Path, images: list[Path], *, seed: int = 7) -> SagittalSeries:
    """A 16-slice sagittal-like MR series of real slices with misleading names and numbers.

    Slice ``i`` (true order) sits at ``1.2 * i`` mm along an oblique normal, with random in-plane
    offsets; Instance Number runs backwards (16 .. 1); files are written in shuffled order under
    shuffled names; every third slice is stored with RescaleSlope 2 / RescaleIntercept -1024; the
    two edge slices carry the degenerate WindowCenter 11 / WindowWidth 22, the others a sane 500/1000.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    row, column, normal = oblique_frame(np.array([0.96, 0.22, 0.15]))
    series_uid, study_uid = generate_uid(), generate_uid()  # one study holds the series
    count = len(images)
    names = [f"IM{n:05d}" for n in rng.permutation(count) * 7 + 3]
    paths = [folder / name for name in names]
    degenerate, rescaled, stored = set(), set(), {}
    for i in rng.permutation(count):  # the writing order is shuffled too
        values = twelve_bit(read_grey(images[i]), seed=int(i))
        position = np.array([-20.0, -110.0, 95.0]) + 1.2 * i * normal + rng.uniform(-5, 5) * row
        position += rng.uniform(-5, 5) * column
        attributes: dict[str, object] = {
            "InstanceNumber": count - int(i),
            "ImageOrientationPatient": [round(float(v), 6) for v in (*row, *column)],
            "ImagePositionPatient": [round(float(v), 4) for v in position],
            "PixelSpacing": [0.9375, 0.9375],
            "SliceThickness": 1.2,
            "RescaleSlope": 1,
            "RescaleIntercept": 0,
            "WindowCenter": 500,
            "WindowWidth": 1000,
        }
        if i % 3 == 1:
            values = ((values.astype(np.int32) + 1024) // 2).astype(np.uint16)
            attributes.update(RescaleSlope=2, RescaleIntercept=-1024)
            rescaled.add(paths[i])
        if i in (0, count - 1):
            attributes.update(WindowCenter=11, WindowWidth=22)
            degenerate.add(paths[i])
        save(new_dataset(values, series_uid=series_uid, study_uid=study_uid, **attributes), paths[i])
        stored[paths[i]] = values
    return SagittalSeries(folder, paths, normal, degenerate, rescaled, stored)


def write_monochrome_twins(folder: Path, pixels: np.ndarray, **attributes: object) -> tuple[Path, Path]:
    """A MONOCHROME2 slice and its MONOCHROME1 twin (stored ``4095 - v``), which must look identical."""
    folder.mkdir(parents=True, exist_ok=True)
    twin_attributes = dict(attributes)
    if "WindowCenter" in attributes:
        twin_attributes["WindowCenter"] = 4095 - float(attributes["WindowCenter"])  # type: ignore[arg-type]
    mono2 = save(new_dataset(pixels, **attributes), folder / "mono2.dcm")
    inverted = (4095 - pixels.astype(np.int32)).astype(np.uint16)
    mono1 = save(new_dataset(inverted, photometric="MONOCHROME1", **twin_attributes), folder / "mono1.dcm")
    return mono2, mono1


def write_multiframe(path: Path, frames: list[np.ndarray]) -> Path:
    """A multi-frame grey word secondary capture of real slices (no window tags)."""
    ds = new_dataset(np.stack(frames), sop_class=MULTIFRAME_GREY_WORD_SC)
    return save(ds, path)


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    """An 8-bit RGB secondary capture."""
    return save(
        new_dataset(rgb, sop_class=SecondaryCaptureImageStorage, photometric="RGB", bits_stored=8), path
    )


def write_without_pixels(path: Path) -> Path:
    """A Basic Text SR: valid DICOM with no pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    return save(ds, path)


def write_truncated(path: Path, pixels: np.ndarray, keep_fraction: float = 0.6) -> Path:
    """A slice whose file is cut off inside its pixel data."""
    save(new_dataset(pixels), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def write_without_preamble(path: Path, pixels: np.ndarray) -> Path:
    """A bare dataset (implicit VR little endian): no preamble, no "DICM", no file meta."""
    ds = new_dataset(pixels, InstanceNumber=1)
    del ds.file_meta
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    return path
