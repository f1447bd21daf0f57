"""DICOM pixel data to the 8-bit picture, as a chain of small pure functions.

The order is the one the standard gives (PS3.3 C.11, and :data:`brainscan.engine.contract.PICTURE_RULE`):

1. decode the stored values of one frame (:func:`decode_frame`);
2. the modality LUT, rescale slope and intercept or a Modality LUT Sequence (:func:`modality_lut`);
3. the VOI window, from the tags when they are sane, else the full range of the values
   (:data:`PERCENTILES`, :func:`voi_window`);
4. MONOCHROME1 inversion (:func:`invert_monochrome1`);
5. linear to 0-255 (:func:`apply_window`).

Colour images (RGB, YBR_* converted to RGB by pydicom, PALETTE COLOR through its LUT) skip steps 2-4.

The window mapping is the plain linear one, ``lower = center - width / 2`` to 0 and
``upper = center + width / 2`` to 255, the same levels a viewer gives pyqtgraph. It differs from
PS3.3 C.11.2.1.2.1 (which maps ``center - 0.5 ± (width - 1) / 2``) by less than one grey level for
any width above 255, and unlike it is defined for widths below 1 (float or finely rescaled data).
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import struct
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, pixel_array
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from brainscan.engine.errors import CorruptImageError, DicomError, ImageTooLargeError, InputError

# Picture sizes, shared with raster images (:mod:`brainscan.engine.raster`). The upper limits keep one
# frame's whole pipeline (decode, values, picture, heat map, overlay, thumbnail) well under 1 GB of memory
# (measured in tests/hardening/test_hostile_pictures.py); the lower one is the smallest picture that can
# hold a brain slice (the smallest real pictures here are 150 px; MR matrices start at 64).
MAX_SIDE = 6_144
MAX_FRAME_PIXELS = 4096 * 4096  # one frame (16.8 megapixels)
MAX_TOTAL_PIXELS = 1_000_000_000  # all frames of a file together
MIN_SIDE = 32
WINDOW_BLOCK_PIXELS = 1 << 20  # rows of this many pixels are windowed at a time (apply_window)
# The fallback window of the model's picture: the full range (0th to 100th percentile). The
# training pictures are 8-bit exports scaled from their full range, and a clipped window brightens
# the picture: on the 860 grouped-validation pictures wrapped as 12-bit values, the shipped model
# scored 0.980 with the full range, 0.977 with 0.1-99.9 and 0.967 with 0.5-99.5 (0.987 as stored;
# bench/window_fallback.py). The pair stays symmetric, so a MONOCHROME1 twin gets the mirror window.
PERCENTILES = (0.0, 100.0)
# The viewer's "Auto" display preset: a little clipping gives more contrast to look at.
DISPLAY_PERCENTILES = (0.5, 99.5)

# What makes a Window Center / Window Width pair "sane" for the data it comes with.
SANE_ROBUST_PERCENTILES = (1.0, 99.0)
SANE_MIN_WIDTH_FRACTION = 0.01  # of the robust (1st-99th percentile) range
SANE_MIN_SIGNAL_INSIDE = 0.05  # fraction of the signal (above the Otsu threshold) inside the window

DECODER_FIX = (
    "install the permissive decoders (pip install python-gdcm pylibjpeg pylibjpeg-openjpeg pylibjpeg-rle), "
    "or convert the file to uncompressed DICOM, e.g. `gdcmconv --raw in.dcm out.dcm`"
)
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_ALL_PLUGINS_FAILED = "Unable to decode as exceptions were raised by all available plugins"


class Window(NamedTuple):
    """A VOI window in modality values and where it came from (``"tags"`` or ``"percentile"``)."""

    center: float
    width: float
    source: str


# -- helpers -----------------------------------------------------------------------------------
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


# -- what the pixel data holds, against what the header declares ----------------------------------
_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian: an item of encapsulated pixel data
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_VRS_WITH_LONG_LENGTH = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class PixelCapacity(NamedTuple):
    """How many whole frames a pixel data element holds, and what it holds in words."""

    frames: int
    holds: str  # e.g. "131072 bytes (1 frame of 256 x 256)" or "3 compressed fragments"


def frame_bits(ds: Dataset, keyword: str = "PixelData") -> int:
    """Bits one uncompressed frame takes in ``keyword``; 0 when the header does not say.

    YBR_FULL_422 stores two samples per pixel, not three (PS3.5 8.2.1).
    """
    rows, columns = _int_tag(ds, "Rows", 0), _int_tag(ds, "Columns", 0)
    samples = _int_tag(ds, "SamplesPerPixel", 1)
    bits = {"FloatPixelData": 32, "DoubleFloatPixelData": 64}.get(keyword) or _int_tag(ds, "BitsAllocated", 0)
    if samples == 3 and photometric(ds) == "YBR_FULL_422":
        samples = 2
    return max(rows, 0) * max(columns, 0) * max(samples, 0) * max(bits, 0)


def _is_encapsulated(ds: Dataset, keyword: str) -> bool:
    uid = _transfer_syntax(ds)
    return keyword == "PixelData" and uid is not None and bool(getattr(uid, "is_encapsulated", False))


def _count_fragments(fp: BinaryIO, end: int, need: int) -> int:
    """Fragments of encapsulated pixel data at ``fp`` (its Basic Offset Table item first) that lie whole
    before ``end``, counted no further than ``need``: each frame takes at least one fragment."""
    header = fp.read(8)
    if len(header) < 8 or header[:4] != _ITEM_TAG:
        return 0
    fp.seek(struct.unpack_from("<I", header, 4)[0], io.SEEK_CUR)  # the Basic Offset Table
    count = 0
    while count < need:
        header = fp.read(8)
        if len(header) < 8 or header[:4] != _ITEM_TAG:
            break  # the sequence delimiter, or the end of the data
        length = struct.unpack_from("<I", header, 4)[0]
        if fp.tell() + length > end:
            break  # a fragment cut short
        fp.seek(length, io.SEEK_CUR)
        count += 1
    return count


def _capacity(ds: Dataset, keyword: str, fp: BinaryIO, length: int, end: int) -> PixelCapacity | None:
    """What the value at ``fp`` (of declared ``length``, the data ending at ``end``) holds."""
    frames = number_of_frames(ds)
    if length == _UNDEFINED_LENGTH or _is_encapsulated(ds, keyword):
        fragments = _count_fragments(fp, end, frames)
        plural = "" if fragments == 1 else "s"
        return PixelCapacity(fragments, f"{fragments} compressed fragment{plural}, so at most {fragments} frame{plural}")
    bits = frame_bits(ds, keyword)
    if bits <= 0:
        return None
    nbytes = max(0, min(length, end - fp.tell()))
    whole = nbytes * 8 // bits
    size = f"{_int_tag(ds, 'Columns', 0)} x {_int_tag(ds, 'Rows', 0)}"
    return PixelCapacity(whole, f"{nbytes} bytes, {whole} whole frame{'' if whole == 1 else 's'} of {size}")


def pixel_capacity(ds: Dataset) -> PixelCapacity | None:
    """How many frames a dataset's pixel data holds (a deferred value is measured in its file, not read).

    None when it cannot tell: no pixel data, a header without Rows, Columns or Bits Allocated, or a
    deferred value whose file is gone.
    """
    for keyword in PIXEL_DATA_KEYWORDS:
        element = ds.get_item(keyword, keep_deferred=True) if keyword in ds else None
        if element is None:
            continue
        value = element.value
        length = getattr(element, "length", None)
        if value is None:  # deferred: measured in the file
            filename = getattr(ds, "filename", None)
            tell = getattr(element, "value_tell", None)
            if not isinstance(filename, str | Path) or tell is None or length is None:
                return None
            try:
                with open(filename, "rb") as fp:
                    fp.seek(tell)
                    return _capacity(ds, keyword, fp, length, os.fstat(fp.fileno()).st_size)
            except OSError:
                return None
        if not isinstance(value, bytes | bytearray):
            return None
        return _capacity(ds, keyword, io.BytesIO(value), len(value), len(value))
    return None


def pixel_capacity_at(fp: BinaryIO, ds: Dataset) -> PixelCapacity | None:
    """:func:`pixel_capacity` of the pixel data element starting at ``fp``'s position, where
    ``pydicom.dcmread(fp, stop_before_pixels=True)`` left it: only the element's header (and, for
    compressed data, its item headers) are read, never the pixel values.

    None when it cannot tell (no pixel data element there, a deflated transfer syntax).
    """
    uid = _transfer_syntax(ds)
    if uid is not None and getattr(uid, "is_deflated", False):
        return None  # the file position is in the inflated stream, not the file
    implicit_vr, little_endian = getattr(ds, "original_encoding", (None, None))
    if implicit_vr is None:
        return None
    order = "<" if little_endian else ">"
    header = fp.read(8)
    if len(header) < 8:
        return None
    group, element = struct.unpack_from(order + "HH", header)
    keyword = _PIXEL_TAGS.get(group << 16 | element)
    if keyword is None:
        return None
    if implicit_vr:
        length = struct.unpack_from(order + "I", header, 4)[0]
    elif header[4:6] in _VRS_WITH_LONG_LENGTH:
        extra = fp.read(4)
        if len(extra) < 4:
            return None
        length = struct.unpack_from(order + "I", extra)[0]
    else:
        length = struct.unpack_from(order + "H", header, 6)[0]
    return _capacity(ds, keyword, fp, length, os.fstat(fp.fileno()).st_size)


def check_frames_fit(ds: Dataset) -> None:
    """Refuse a multi-frame header that declares more frames than its pixel data holds.

    A damaged or forged Number of Frames (a 230 KB slice declaring a million frames) would otherwise
    become a million frames to screen, each failing on its own.

    Raises
    ------
    DicomError
        Naming the declared frame count and what the pixel data holds.
    """
    frames = number_of_frames(ds)
    if frames <= 1:
        return  # a single frame cut short is reported as truncated when it is decoded
    capacity = pixel_capacity(ds)
    if capacity is None or capacity.frames >= frames:
        return
    raise DicomError(
        source_name(ds),
        f"declares {frames} frames (Number of Frames) but its pixel data holds {capacity.holds}: "
        "the file is truncated or its header is wrong",
        "copy the file again from its source; if the copy is complete, correct Number of Frames (0028,0008) "
        "to the frames it holds",
    )


# -- guards and decoding ---------------------------------------------------------------------
def check_declared_size(ds: Dataset) -> None:
    """Refuse absurd Rows x Columns x frames before any pixel is decoded.

    Raises
    ------
    ImageTooLargeError
        A side above :data:`MAX_SIDE`, more than :data:`MAX_FRAME_PIXELS` pixels in a frame or more
        than :data:`MAX_TOTAL_PIXELS` in all frames.
    """
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = number_of_frames(ds)
    if (
        max(rows, columns) > MAX_SIDE
        or rows * columns > MAX_FRAME_PIXELS
        or rows * columns * frames > MAX_TOTAL_PIXELS
    ):
        raise ImageTooLargeError(
            source_name(ds),
            f"declares {columns} x {rows} pixels x {frames} frames, beyond the limit of {MAX_SIDE} per side, "
            f"{MAX_FRAME_PIXELS:,} pixels per frame and {MAX_TOTAL_PIXELS:,} pixels in all",
            "this is not a 2-D MRI slice; export the slices you want to screen as separate images",
        )


def check_has_pixels(ds: Dataset) -> None:
    """Refuse a dataset without pixel data, telling a truncated image from a non-image object."""
    if any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        return
    if "Rows" in ds and "Columns" in ds:
        raise CorruptImageError(
            source_name(ds),
            f"describes a {ds.Columns} x {ds.Rows} image but its pixel data is missing: the file is truncated",
            "copy the file again from its source",
        )
    raise DicomError(
        source_name(ds),
        "has no pixel data (e.g. a structured report or DICOMDIR)",
        "screen the image files of the series instead",
    )


def decode_frame(ds: Dataset, frame_index: int = 0) -> np.ndarray:
    """Decode the stored values of one frame (colour converted to RGB by pydicom).

    Raises
    ------
    DicomError
        No pixel data, a frame index out of range, or a transfer syntax that cannot be decoded.
    CorruptImageError
        Pixel data shorter than the header declares.
    ImageTooLargeError
        From :func:`check_declared_size`.
    """
    check_has_pixels(ds)
    check_frames_fit(ds)
    check_declared_size(ds)
    frames = number_of_frames(ds)
    if not 0 <= frame_index < frames:
        raise DicomError(
            source_name(ds),
            f"has no frame {frame_index} (it holds {frames})",
            f"choose a frame from 0 to {frames - 1}",
        )
    try:
        array = decode_pixels(ds, frame_index if frames > 1 else None)
    except InputError:
        raise
    except RuntimeError as exc:
        if str(exc).startswith(_ALL_PLUGINS_FAILED):  # decoders exist, and each refused the data
            reasons = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
            raise DicomError(
                source_name(ds),
                f"its {transfer_syntax_label(ds)} pixel data cannot be decoded ({reasons or _first_line(exc)})",
                "the file may be damaged; " + DECODER_FIX,
            ) from exc
        raise DicomError(
            source_name(ds),
            f"its pixel data, encoded as {transfer_syntax_label(ds)}, cannot be decoded here ({_first_line(exc)})",
            DECODER_FIX,
        ) from exc
    except (NotImplementedError, ImportError) as exc:
        raise DicomError(
            source_name(ds),
            f"its pixel data, encoded as {transfer_syntax_label(ds)}, cannot be decoded here ({_first_line(exc)})",
            DECODER_FIX,
        ) from exc
    except ValueError as exc:
        if "less than expected" in str(exc):
            raise CorruptImageError(
                source_name(ds),
                f"the pixel data is truncated ({_first_line(exc)})",
                "copy the file again from its source",
            ) from exc
        raise DicomError(
            source_name(ds),
            f"its {transfer_syntax_label(ds)} pixel data cannot be decoded ({_first_line(exc)})",
            "the file may be damaged; " + DECODER_FIX,
        ) from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # a decoder plugin failing in its own way: still the file's problem.
        # Rust decoders (pylibjpeg-rle) panic with pyo3's PanicException, a BaseException (fuzzing finding)
        raise DicomError(
            source_name(ds),
            f"its {transfer_syntax_label(ds)} pixel data cannot be decoded ({type(exc).__name__}: {_first_line(exc)})",
            "the file may be damaged; " + DECODER_FIX,
        ) from exc
    if frames > 1 and array.ndim == (3 if is_colour(ds) else 2) + 1:  # a plugin that ignored `index`
        array = array[frame_index]
    return array


# -- choosing the decoder, and GDCM in a child process -----------------------------------------------
# GDCM aborts the whole process (an uncaught C++ exception, std::terminate) on some damaged JPEG 2000 and
# JPEG lossless data (fuzzing findings). Where another permissive decoder exists it is used first; GDCM,
# the only permissive decoder of JPEG lossless, runs in a child process, so a crash costs that file only.
SAFER_PLUGINS = (
    (frozenset(JPEG2000TransferSyntaxes), "pylibjpeg"),  # pylibjpeg-openjpeg
    (frozenset(JPEGLSTransferSyntaxes), "pyjpegls"),  # CharLS
    (frozenset(JPEGTransferSyntaxes), "pillow"),  # 8-bit baseline and extended
)
GDCM_TIMEOUT_S = 60.0


def _transfer_syntax(ds: Dataset) -> str | None:
    meta = getattr(ds, "file_meta", None)
    return getattr(meta, "TransferSyntaxUID", None) if meta is not None else None


def _available_plugins(uid: str | None) -> tuple[str, ...]:
    if uid is None:
        return ()
    try:
        return tuple(get_decoder(uid).available_plugins)
    except (NotImplementedError, ValueError):
        return ()


def decode_pixels(ds: Dataset, index: int | None) -> np.ndarray:
    """The stored values of frame ``index`` (None: the only frame), decoded without risking the process.

    A safer decoder first when there is one (see :data:`SAFER_PLUGINS`); GDCM only in a child process
    (:func:`decode_with_gdcm_isolated`); everything else as pydicom chooses.
    """
    uid = _transfer_syntax(ds)
    available = _available_plugins(uid)
    if "gdcm" not in available:
        return pixel_array(_frame_source(ds, index), index=index)
    safer = next((plugin for group, plugin in SAFER_PLUGINS if uid in group and plugin in available), None)
    if safer is not None:
        try:
            return pixel_array(ds, index=index, decoding_plugin=safer)
        except Exception:  # e.g. 12-bit JPEG for Pillow, or damaged data: GDCM gets its chance, isolated
            pass
    return decode_with_gdcm_isolated(ds, index)


def _frame_source(ds: Dataset, index: int | None) -> Dataset | str:
    """Where pydicom should read frame ``index`` from: the file itself for uncompressed multi-frame data left
    in it (deferred), so that only that frame's bytes are read, where the dataset would load every frame's
    (a 200 MB file would cost 200 MB a frame, twice over with two decode threads); else the dataset."""
    filename = getattr(ds, "filename", None)
    if (
        index is None
        or _is_encapsulated(ds, "PixelData")
        or getattr(ds, "preamble", None) is None  # read without file meta: the file alone does not say its syntax
        or not isinstance(filename, str | Path)
        or "PixelData" not in ds
        or ds.get_item("PixelData", keep_deferred=True).value is not None
        or not os.path.isfile(filename)
    ):
        return ds
    return str(filename)


def _child_setup() -> None:
    """In the child: stderr to the null device (GDCM's and libjpeg's messages about damaged data are noise
    there; the file's error row says what happened), and exit when the parent is gone (a parent killed
    with SIGKILL leaves no one to stop its child otherwise)."""
    import os
    import time

    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    parent = multiprocessing.parent_process()

    def watch() -> None:
        while parent is not None and parent.is_alive():
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="brainscan-gdcm-watch", daemon=True).start()


def _gdcm_decode_in_child(source: str | bytes, index: int | None) -> np.ndarray:
    """Runs in the child process: read the dataset (a path, or the bytes of one) and decode with GDCM."""
    ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source, force=True)
    return pixel_array(ds, index=index, decoding_plugin="gdcm")


class _IsolatedGdcm:
    """One child process (started on first use, replaced after a crash) that decodes with GDCM.

    Calls are serialised, so a crash is always the file being decoded, never a neighbour's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for process in list(getattr(pool, "_processes", {}).values()):  # a hung child: stop it
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)

    def decode(self, ds: Dataset, index: int | None) -> np.ndarray:
        filename = getattr(ds, "filename", None)
        if isinstance(filename, str | Path) and Path(filename).is_file():
            source: str | bytes = str(filename)
        else:  # a dataset in memory
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=False)
            source = buffer.getvalue()
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_child_setup
                )
            future = self._pool.submit(_gdcm_decode_in_child, source, index)
            try:
                return future.result(timeout=GDCM_TIMEOUT_S)
            except BrokenProcessPool as exc:
                self._discard()
                raise DicomError(
                    source_name(ds),
                    f"the GDCM decoder crashed on its {transfer_syntax_label(ds)} pixel data: the data is damaged",
                    "copy the file again from its source, or check it with `gdcminfo`",
                ) from exc
            except FutureTimeout as exc:
                self._discard()
                raise DicomError(
                    source_name(ds),
                    f"decoding its {transfer_syntax_label(ds)} pixel data took longer than {GDCM_TIMEOUT_S:.0f} s",
                    "the data is probably damaged; check it with `gdcminfo`",
                ) from exc

    def close(self) -> None:
        with self._lock:
            self._discard()


_GDCM = _IsolatedGdcm()


def decode_with_gdcm_isolated(ds: Dataset, index: int | None) -> np.ndarray:
    """Decode with GDCM in a child process; a crash or hang there is a :class:`DicomError` for this file."""
    return _GDCM.decode(ds, index)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_colour(ds: Dataset) -> bool:
    """True for RGB, YBR_* and PALETTE COLOR images."""
    return int(ds.get("SamplesPerPixel", 1) or 1) > 1 or photometric(ds) == "PALETTE COLOR"


def photometric(ds: Dataset) -> str:
    """The Photometric Interpretation, upper case, ``"MONOCHROME2"`` when absent."""
    return str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()


# -- the grey chain ------------------------------------------------------------------------------
def modality_lut(array: np.ndarray, ds: Dataset, frame: int = 0) -> np.ndarray:
    """Stored values to modality values (float64), PS3.3 C.11.1.

    Rescale Slope and Intercept (per frame for enhanced objects) are applied in float64, so 16-bit
    values never overflow. A Modality LUT Sequence is applied by pydicom and wins over rescale,
    as the standard says only one of them is present.
    """
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(array, ds), dtype=np.float64)
    slope = _first_float(frame_attribute(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first_float(
        frame_attribute(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    )
    values = array.astype(np.float64)
    if slope is not None and slope != 0 and slope != 1:
        values *= slope
    if intercept:
        values += intercept
    return values


def modality_values(array: np.ndarray, ds: Dataset, frame: int = 0) -> np.ndarray:
    """:func:`modality_lut` as float32, computed a block of rows at a time: the same values, without a
    float64 copy of the whole frame."""
    step = max(1, WINDOW_BLOCK_PIXELS // max(1, array[0].size)) if array.ndim else 1
    if "ModalityLUTSequence" in ds or array.ndim == 0 or array.shape[0] <= step:
        return modality_lut(array, ds, frame).astype(np.float32)
    values = np.empty(array.shape, np.float32)
    for top in range(0, array.shape[0], step):
        values[top : top + step] = modality_lut(array[top : top + step], ds, frame)
    return values


def percentile_window(values: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> Window:
    """The window from the given low and high percentiles (order statistics, no interpolation).

    Order statistics keep the window of a MONOCHROME1 image exactly the mirror of its MONOCHROME2
    twin's. A flat image falls back to its min-max range, a constant one to a width of 1.
    """
    if tuple(percentiles) == (0.0, 100.0):  # the full range: the same order statistics, with no sorted copy
        low, high = float(values.min()), float(values.max())
    else:
        flat = values.reshape(-1)
        low, high = (float(v) for v in np.percentile(flat, percentiles, method="nearest"))
        if high <= low:
            low, high = float(flat.min()), float(flat.max())
    if high <= low:
        return Window(low, 1.0, "percentile")
    return Window((low + high) / 2, high - low, "percentile")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold between background and signal, over the minimum to 99.9th-percentile range."""
    flat = values.reshape(-1)
    low, high = float(flat.min()), float(np.percentile(flat, 99.9))
    if high <= low:
        return low
    counts, edges = np.histogram(flat, bins=bins, range=(low, high))
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts, dtype=np.float64)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centers)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def is_sane_window(values: np.ndarray, center: float, width: float) -> bool:
    """Whether a window from the tags shows the data it comes with.

    Sane means: a positive width of at least :data:`SANE_MIN_WIDTH_FRACTION` of the robust
    (1st-99th percentile) range; overlapping that range; and holding at least
    :data:`SANE_MIN_SIGNAL_INSIDE` of the signal (pixels above Otsu's threshold) rather than
    saturating it all to white or black. A placeholder such as center 11 width 22 on MR data
    reaching 1000 holds background noise only and fails the last test.
    """
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        return False
    lower, upper = center - width / 2, center + width / 2
    p_low, p_high = (float(v) for v in np.percentile(values, SANE_ROBUST_PERCENTILES, method="nearest"))
    if p_high <= p_low:  # (nearly) constant data: any window containing it will do
        return lower <= p_low <= upper
    if width < SANE_MIN_WIDTH_FRACTION * (p_high - p_low) or upper <= p_low or lower >= p_high:
        return False
    signal = values[values > otsu_threshold(values)]
    if signal.size == 0:
        return True
    inside = np.count_nonzero((signal >= lower) & (signal <= upper))
    return inside >= SANE_MIN_SIGNAL_INSIDE * signal.size


def voi_window(values: np.ndarray, ds: Dataset, frame: int = 0) -> Window:
    """The VOI window (in modality values): Window Center/Width when sane, else the full range.

    Only the first of multi-valued Window Center/Width is considered; enhanced objects are read
    from their Frame VOI LUT Sequence. Sanity is judged on the values as displayed (negated for
    MONOCHROME1), so an image and its MONOCHROME1 twin get the same verdict.
    """
    center = _first_float(frame_attribute(ds, frame, "FrameVOILUTSequence", "WindowCenter"))
    width = _first_float(frame_attribute(ds, frame, "FrameVOILUTSequence", "WindowWidth"))
    if center is not None and width is not None:
        # judged as displayed: MONOCHROME1 shows its low values bright
        mirror = -1.0 if photometric(ds) == "MONOCHROME1" else 1.0
        if is_sane_window(values * mirror, center * mirror, width):
            return Window(center, width, "tags")
    return percentile_window(values)


def invert_monochrome1(values: np.ndarray, window: Window, ds: Dataset) -> tuple[np.ndarray, Window]:
    """MONOCHROME1 shows low values bright: negate values and window so the picture comes out inverted.

    Inverting before quantisation (rather than ``255 - picture``) keeps a MONOCHROME1 image and its
    MONOCHROME2 twin bit-identical, with no rounding ties going different ways.
    """
    if photometric(ds) != "MONOCHROME1":
        return values, window
    return -values, Window(-window.center, window.width, window.source)


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map ``center ± width / 2`` linearly to 0..255 (uint8), clipping outside; see the module notes.

    Computed in float64 a block of rows at a time (:data:`WINDOW_BLOCK_PIXELS`), so a large frame
    needs only its 8-bit result besides its values, not five float64 copies of it.
    """
    width = max(float(width), np.finfo(np.float64).tiny)
    lower = float(center) - width / 2
    values = np.asarray(values)
    if values.ndim == 0 or values.size <= WINDOW_BLOCK_PIXELS:
        return _window_block(values, lower, width)
    picture = np.empty(values.shape, np.uint8)
    step = max(1, WINDOW_BLOCK_PIXELS // max(1, values[0].size))
    for start in range(0, values.shape[0], step):
        picture[start : start + step] = _window_block(values[start : start + step], lower, width)
    return picture


def _window_block(values: np.ndarray, lower: float, width: float) -> np.ndarray:
    scaled = (values.astype(np.float64, copy=False) - lower) * 255.0 / width
    return np.floor(np.clip(scaled, 0.0, 255.0) + 0.5).astype(np.uint8)


def replace_non_finite(values: np.ndarray) -> np.ndarray | None:
    """Float values with NaN and -inf set to the lowest finite value and +inf to the highest.

    Returns the array unchanged when all values are finite (always for integers), and None when none
    is: such a picture has nothing to show (float TIFF or DICOM Float Pixel Data; fuzzing finding).
    """
    if values.dtype.kind != "f":
        return values
    finite = np.isfinite(values)
    if finite.all():
        return values
    if not finite.any():
        return None
    low, high = values[finite].min(), values[finite].max()
    return np.where(finite, values, np.where(values == np.inf, high, low)).astype(values.dtype)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """Replicate an H x W uint8 picture into H x W x 3."""
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


# -- colour -------------------------------------------------------------------------------------
def colour_to_rgb8(array: np.ndarray, ds: Dataset) -> np.ndarray:
    """An RGB (already converted from YBR by pydicom) or PALETTE COLOR frame to H x W x 3 uint8."""
    if photometric(ds) == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
        if array.dtype != np.uint8:  # 16-bit LUT entries
            array = (array.astype(np.uint32) >> 8).astype(np.uint8)
    if array.dtype != np.uint8:
        array = replace_non_finite(array)
        if array is None:
            raise DicomError(source_name(ds), "holds no finite pixel value (all NaN or infinite)", "check how it was exported")
        window = percentile_window(array.astype(np.float64))
        array = apply_window(array, window.center, window.width)
    return np.ascontiguousarray(array[..., :3])


# -- the whole chain ---------------------------------------------------------------------------
def to_picture(ds: Dataset, frame_index: int = 0) -> tuple[np.ndarray, np.ndarray | None, Window | None]:
    """One frame of a dataset as the picture the model sees.

    Returns
    -------
    picture:
        H x W x 3 uint8 (:data:`~brainscan.engine.contract.PICTURE_RULE`).
    values:
        H x W float32 modality values (before any MONOCHROME1 inversion), None for colour.
    window:
        The :class:`Window` used (in modality values), None for colour.
    """
    array = decode_frame(ds, frame_index)
    if is_colour(ds):
        return colour_to_rgb8(array, ds), None, None
    if array.ndim != 2:
        raise DicomError(
            source_name(ds),
            f"decoded to an array of shape {array.shape}, not one grey frame",
            "check Samples per Pixel and Number of Frames in the header",
        )
    values = replace_non_finite(modality_values(array, ds, frame_index))
    if values is None:
        raise DicomError(source_name(ds), "holds no finite pixel value (all NaN or infinite)", "check how it was exported")
    window = voi_window(values, ds, frame_index)
    shown, shown_window = invert_monochrome1(values, window, ds)
    grey = apply_window(shown, shown_window.center, shown_window.width)
    return grey_to_rgb(grey), values, window
