"""What a DICOM header says about its pixels: sizes, frames, the file it came from, colour.

Small readers shared by the decoding (:mod:`~brainscan.engine.input.dicom_decode`) and the pixel chain
(:mod:`~brainscan.engine.input.dicom_pixels`), and the picture size limits shared with raster images.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydicom is imported where a DICOM file is met, never for a run over pictures
    from pydicom.dataset import Dataset

# Picture sizes, shared with raster images (:mod:`brainscan.engine.input.raster`). The upper limits keep one
# frame's whole pipeline (decode, values, picture, heat map, overlay, thumbnail) well under 1 GB of memory
# (measured in tests/hardening/test_hostile_pictures.py); the lower one is the smallest picture that can
# hold a brain slice (the smallest real pictures here are 150 px; MR matrices start at 64).
MAX_SIDE = 6_144
MAX_FRAME_PIXELS = 4096 * 4096  # one frame (16.8 megapixels)
MAX_TOTAL_PIXELS = 1_000_000_000  # all frames of a file together
MIN_SIDE = 32
DECODER_FIX = (
    "install the permissive decoders (pip install python-gdcm pylibjpeg pylibjpeg-openjpeg pylibjpeg-rle), "
    "or convert the file to uncompressed DICOM, e.g. `gdcmconv --raw in.dcm out.dcm`"
)
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# -- helpers -----------------------------------------------------------------------------------
def import_pydicom() -> ModuleType:
    """pydicom, imported when the first DICOM file is read (a run over pictures never needs it).

    Importing pydicom sets its logger to WARNING; a level the application gave that logger before
    (``brainscan screen`` silences the decoders' tracebacks) is kept.
    """
    if "pydicom" not in sys.modules:
        logger = logging.getLogger("pydicom")
        level = logger.level
        import pydicom

        if level != logging.NOTSET:
            logger.setLevel(level)
    import pydicom

    return pydicom


def source_name(ds: Dataset) -> str:
    """The file a dataset came from, for error messages."""
    filename = getattr(ds, "filename", None)
    return str(filename) if isinstance(filename, str | Path) and str(filename) else "<DICOM dataset>"


def transfer_syntax_label(ds: Dataset) -> str:
    """``"JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)"``, or ``"unknown"``."""
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid is None:
        return "unknown (no Transfer Syntax UID)"
    name = uid.name if uid.name != str(uid) else "unrecognised transfer syntax"
    return f"{name} ({uid})"


def _first_float(value: object) -> float | None:
    """The first value of a possibly multi-valued numeric tag, or None when unusable."""
    from pydicom.multival import MultiValue  # already loaded: the value came from a dataset

    if isinstance(value, MultiValue | list | tuple):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def frame_attribute(ds: Dataset, frame: int, sequence: str, keyword: str) -> object | None:
    """Look ``keyword`` up for one frame: per-frame group, then shared group, then the top level.

    Enhanced multi-frame objects keep rescale (``PixelValueTransformationSequence``) and window
    (``FrameVOILUTSequence``) in their functional groups; classic objects keep them at the top.
    """
    for groups_keyword, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_keyword)
        if groups is None or index >= len(groups):
            continue
        items = groups[index].get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return ds.get(keyword)


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent or unusable."""
    value = _first_float(ds.get("NumberOfFrames", 1))
    return max(1, int(value)) if value is not None else 1


def _int_tag(ds: Dataset, keyword: str, default: int) -> int:
    """An integer tag, ``default`` when absent or unusable."""
    value = _first_float(ds.get(keyword, default))
    return int(value) if value is not None else default



def is_colour(ds: Dataset) -> bool:
    """True for RGB, YBR_* and PALETTE COLOR images."""
    return int(ds.get("SamplesPerPixel", 1) or 1) > 1 or photometric(ds) == "PALETTE COLOR"


def photometric(ds: Dataset) -> str:
    """The Photometric Interpretation, upper case, ``"MONOCHROME2"`` when absent."""
    return str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()


