"""DICOM pixel data to stored values: guards against lying headers, and the decoder chosen per transfer syntax.

Before anything is decoded, the declared frames and sizes are checked against the pixel data that is
really there (:func:`check_frames_fit`, :func:`check_declared_size`). Decoding prefers the safer
permissive decoders; GDCM, which aborts the process on some damaged data, runs in a child process.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import struct
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

import numpy as np

from brainscan.engine.errors import CorruptImageError, DicomError, ImageTooLargeError, InputError
from brainscan.engine.input.dicom_header import (
    DECODER_FIX,
    MAX_FRAME_PIXELS,
    MAX_SIDE,
    MAX_TOTAL_PIXELS,
    PIXEL_DATA_KEYWORDS,
    _int_tag,
    is_colour,
    number_of_frames,
    photometric,
    source_name,
    transfer_syntax_label,
)

if TYPE_CHECKING:  # pydicom is imported where a DICOM file is met, never for a run over pictures
    from pydicom.dataset import Dataset

_ALL_PLUGINS_FAILED = "Unable to decode as exceptions were raised by all available plugins"

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
@cache
def safer_plugins() -> tuple[tuple[frozenset[str], str], ...]:
    """Per group of transfer syntaxes, the permissive decoder tried before GDCM."""
    from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

    return (
        (frozenset(JPEG2000TransferSyntaxes), "pylibjpeg"),  # pylibjpeg-openjpeg
        (frozenset(JPEGLSTransferSyntaxes), "pyjpegls"),  # CharLS
        (frozenset(JPEGTransferSyntaxes), "pillow"),  # 8-bit baseline and extended
    )


GDCM_TIMEOUT_S = 60.0


def pixel_array(src: Dataset | str, **kwargs: object) -> np.ndarray:
    """:func:`pydicom.pixels.pixel_array`, imported when a DICOM frame is first decoded."""
    from pydicom.pixels import pixel_array as decode

    return decode(src, **kwargs)


def _transfer_syntax(ds: Dataset) -> str | None:
    meta = getattr(ds, "file_meta", None)
    return getattr(meta, "TransferSyntaxUID", None) if meta is not None else None


def _available_plugins(uid: str | None) -> tuple[str, ...]:
    if uid is None:
        return ()
    from pydicom.pixels import get_decoder

    try:
        return tuple(get_decoder(uid).available_plugins)
    except (NotImplementedError, ValueError):
        return ()


def decode_pixels(ds: Dataset, index: int | None) -> np.ndarray:
    """The stored values of frame ``index`` (None: the only frame), decoded without risking the process.

    A safer decoder first when there is one (see :func:`safer_plugins`); GDCM only in a child process
    (:func:`decode_with_gdcm_isolated`); everything else as pydicom chooses.
    """
    uid = _transfer_syntax(ds)
    available = _available_plugins(uid)
    if "gdcm" not in available:
        return pixel_array(_frame_source(ds, index), index=index)
    safer = next((plugin for group, plugin in safer_plugins() if uid in group and plugin in available), None)
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
    import pydicom

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

