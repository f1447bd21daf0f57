"""What input is made of: :class:`FrameRef`, one 2-D picture to screen (an image file, or one frame or
slice of DICOM), found without decoding; and :class:`Frame`, that picture decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainscan.engine.input import raster_headers

if TYPE_CHECKING:  # pydicom is imported where a DICOM file is met, never for a run over pictures
    from pydicom.dataset import Dataset

KINDS = ("raster", "dicom", "unknown", "nifti", "reformat")
@dataclass(frozen=True)
class FrameRef:
    """One 2-D picture to classify: an image file, or one frame or slice of DICOM, or one slice of a volume
    (a NIfTI file's, or a DICOM series' reformat: :mod:`brainscan.engine.input.planes` numbers their frames)."""

    path: Path
    frame: int = 0  # frame index in a multi-frame DICOM, else 0; a volume's slice (input/planes.py)
    kind: str = "raster"  # "raster" | "dicom" | "unknown" | "nifti" | "reformat" (of a DICOM series)
    series_uid: str = ""  # DICOM Series Instance UID ("" for raster)
    series_index: int = 0  # position of this slice within its sorted series (0-based)
    series_length: int = 1
    # a reformat's DICOM series, as acquired (not part of the identity: path and frame are)
    sources: tuple[FrameRef, ...] = field(default=(), compare=False, repr=False)


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


def kind_of(sniffed: str) -> str:
    """:func:`raster_headers.sniff` result to a FrameRef kind."""
    if sniffed in raster_headers.RASTER_FORMATS:
        return "raster"
    if sniffed in ("dicom", "dicom-raw"):
        return "dicom"
    if sniffed == "nifti":
        return "nifti"
    return "unknown"


def is_plausible_dicom(ds: Dataset) -> bool:
    """Whether a dataset read with force=True really is DICOM (it knows its class or its image)."""
    return any(keyword in ds for keyword in ("SOPClassUID", "Rows", "Modality", "SeriesInstanceUID"))


