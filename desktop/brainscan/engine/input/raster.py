"""Raster images (JPEG, PNG, BMP, TIFF) to the 8-bit RGB picture.

Before decoding, :mod:`~brainscan.engine.input.raster_headers` refuses sizes too large for memory (a
decompression-bomb guard), too small to hold a brain slice, or more than a JPEG's data could code.
Truncated or damaged files are refused rather than decoded to a partly grey picture: the decoders'
own complaints, which libjpeg and libpng print on stderr and otherwise go unread, are caught and
judged (:class:`DecoderMessages`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import cv2
import numpy as np

from brainscan.engine.errors import (
    CorruptImageError,
    NotAnImageError,
)
from brainscan.engine.input.dicom_pixels import (
    WINDOW_BLOCK_PIXELS,
    Window,
    apply_window,
    grey_to_rgb,
    percentile_window,
    replace_non_finite,
)
from brainscan.engine.input.raster_headers import (
    RASTER_FORMATS,
    RECOPY,
    SUPPORTED,
    check_complete,
    check_file_size,
    check_min_size,
    check_size,
    declared_size,
    sniff_file,
)


class RasterImage(NamedTuple):
    """A decoded raster image: the picture, and for 16-bit grey also its values and window."""

    picture: np.ndarray  # H x W x 3 uint8
    values: np.ndarray | None  # H x W float32 for 16-bit (or float) grey, else None
    window: Window | None
    description: str  # e.g. "PNG, 16-bit grey"


# -- what the decoders say -------------------------------------------------------------------------
# libjpeg's warnings: the first one of a decode is printed, later ones only counted. Each means pixels
# were made up (grey blocks for data that is missing or cannot be read), so the picture is refused.
CORRUPT_JPEG = re.compile(
    r"Corrupt JPEG data[^\n]*|Premature end of JPEG file|Inconsistent progression sequence[^\n]*"
)
# Everything the decoders print (libjpeg's other warnings, libpng, OpenCV's log), passed on to no one.
# libjpeg's and libpng's own words are found anywhere (another thread's progress bar may precede them on
# the line); OpenCV's log prefix and libtiff's only at the start of a line.
DECODER_CHATTER = re.compile(
    r"(?:Corrupt JPEG data|Premature end of JPEG file|Inconsistent progression sequence|"
    r"Warning: unknown JFIF revision number|Invalid SOS parameters for sequential JPEG|Unsupported marker type|"
    r"Application transferred too many scanlines|Unknown Adobe color transform code|libpng (?:warning|error): |"
    r"(?m:^)(?:\[ ?(?:WARN|ERROR|INFO|DEBUG):|TIFF\w*: ))[^\n]*\n?"
)


class DecoderMessages:
    """What the decoders inside OpenCV print on stderr (fd 2) while one picture decodes.

    libjpeg and libpng write straight to the process's fd 2, whatever Python's ``sys.stderr`` is, and
    say nothing to the caller: a JPEG cut short and closed with an end marker decodes "fine", with
    only "Corrupt JPEG data: premature end of data segment" on stderr. So fd 2 is pointed at a
    temporary file around each decode, one decode at a time (fd 2 belongs to the whole process; the
    decode-ahead threads take turns); what the decoders wrote is returned and kept off the terminal,
    and anything else written meanwhile (another thread's log line, a progress bar) is passed on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Run the body with fd 2 captured; the list yielded receives the decoders' text afterwards."""
        said: list[str] = []
        with self._lock:
            redirected = self._redirect()
            try:
                yield said
            finally:
                if redirected is not None:
                    target, saved = redirected
                    os.dup2(saved, 2)
                    os.close(saved)
                    said.append(self._drain(target))

    def _redirect(self) -> tuple[int, int] | None:
        """Point fd 2 at the capture file: ``(its fd, the saved fd 2)``, None where that cannot be done."""
        try:
            try:
                os.fstat(2)
            except OSError:  # no stderr at all (a windowed program): the null device takes its place for good,
                null = os.open(os.devnull, os.O_WRONLY)  # so that no file opened later becomes fd 2
                if null != 2:
                    os.dup2(null, 2)
                    os.close(null)
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for the process's life)
            target = self._file.fileno()
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(target, 2)
        except (OSError, ValueError):
            return None
        return target, saved

    @staticmethod
    def _drain(target: int) -> str:
        size = os.lseek(target, 0, os.SEEK_END)
        os.lseek(target, 0, os.SEEK_SET)
        text = os.read(target, min(size, 1 << 16)).decode("utf-8", errors="replace") if size else ""
        os.ftruncate(target, 0)
        os.lseek(target, 0, os.SEEK_SET)
        decoders = "".join(match.group(0) for match in DECODER_CHATTER.finditer(text))
        others = DECODER_CHATTER.sub("", text)
        if others:
            with contextlib.suppress(OSError):
                os.write(2, others.encode("utf-8", errors="replace"))
        return decoders


DECODER_MESSAGES = DecoderMessages()


def imdecode_checked(path: Path, data: bytes, fmt: str) -> np.ndarray:
    """``cv2.imdecode(data, IMREAD_UNCHANGED)``, refusing what the decoder could not read whole.

    Raises
    ------
    CorruptImageError
        OpenCV cannot decode it, or libjpeg said the data was damaged or cut short (its message quoted).
    """
    label = fmt.upper()
    with DECODER_MESSAGES.capture() as said:
        try:
            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:
            array, failure = None, f"OpenCV cannot decode this {label} ({exc.err})"
        else:
            failure = f"OpenCV cannot decode this {label} data (damaged)"
    messages = said[0] if said else ""
    first_line = messages.strip().splitlines()[0] if messages.strip() else ""
    corrupt = CORRUPT_JPEG.search(messages) if fmt == "jpeg" else None
    if corrupt is not None:
        raise CorruptImageError(path, f"the JPEG data is damaged or cut short (libjpeg: {corrupt.group(0)})", RECOPY)
    if array is None or array.size == 0:
        raise CorruptImageError(path, failure + (f"; {first_line}" if first_line else ""), RECOPY)
    return array


# -- decoding -----------------------------------------------------------------------------------
def decode_raster(path: str | Path) -> RasterImage:
    """Decode a JPEG, PNG, BMP or TIFF file into the 8-bit RGB picture (PICTURE_RULE).

    8-bit images are kept as stored; other depths are scaled linearly from their minimum to their
    maximum (as the 8-bit training pictures were exported); alpha is composited on black; grey is replicated to three channels.

    Raises
    ------
    NotAnImageError
        The content is not one of the raster formats.
    CorruptImageError
        Empty, truncated, damaged (the decoder said so), or a JPEG too short for its declared size.
    ImageTooLargeError
        Above 1 GiB, or declaring too many pixels (checked before decoding).
    ImageTooSmallError
        A side below :data:`MIN_SIDE` (checked before decoding where the header says).
    """
    path = Path(path)
    fmt = sniff_file(path)
    check_file_size(path)
    if fmt not in RASTER_FORMATS:
        raise NotAnImageError(path, f"is not a raster image ({fmt} content)", f"give a {SUPPORTED} file")
    data = path.read_bytes()
    size = declared_size(data, fmt)
    if size is None and fmt != "tiff":
        raise CorruptImageError(path, f"its {fmt.upper()} header is damaged (no image size found)", RECOPY)
    if size is not None:
        check_size(path, *size)
        if min(size) == 0:
            raise CorruptImageError(path, f"its {fmt.upper()} header declares {size[0]} x {size[1]} pixels", RECOPY)
        check_min_size(path, *size)
    check_complete(path, data, fmt)
    array = imdecode_checked(path, data, fmt)
    del data
    if size is None:
        check_size(path, array.shape[1], array.shape[0])
        check_min_size(path, array.shape[1], array.shape[0])
    if array.ndim == 3 and array.shape[2] > 4:
        raise NotAnImageError(path, f"has {array.shape[2]} channels", "give a grey, RGB or RGBA image")
    array = replace_non_finite(array)  # float TIFF with NaN or infinity (fuzzing finding)
    if array is None:
        raise CorruptImageError(path, "holds no finite pixel value (all NaN or infinite)", "check how it was exported")
    return to_rgb8(array, fmt.upper())


def to_rgb8(array: np.ndarray, label: str = "image") -> RasterImage:
    """An OpenCV array (grey, BGR or BGRA; any depth) to the 8-bit RGB picture."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    channels = 1 if array.ndim == 2 else array.shape[2]
    depth = f"{array.dtype.itemsize * 8}-bit" if array.dtype.kind in "ui" else str(array.dtype)
    kind = {1: "grey", 2: "grey + alpha", 3: "colour", 4: "colour + alpha"}.get(
        channels, f"{channels} channels"
    )
    description = f"{label}, {depth} {kind}"
    if channels == 2:  # grey + alpha as some decoders give it
        array = np.dstack([array[:, :, 0]] * 3 + [array[:, :, 1]])
    elif channels == 1:
        array = array[:, :, None]
    if array.shape[2] == 4:
        array = composite_on_black(array)
    if array.shape[2] == 3:
        array = array[:, :, ::-1]  # OpenCV's BGR to RGB
    if array.dtype == np.uint8:
        return RasterImage(
            np.ascontiguousarray(np.broadcast_to(array, (*array.shape[:2], 3))), None, None, description
        )
    if array.shape[2] == 1:
        values = array[:, :, 0].astype(np.float32)
        window = percentile_window(values)
        return RasterImage(grey_to_rgb(apply_window(values, window.center, window.width)), values, window, description)
    # deep colour: windowed straight from the stored values (exact in float64), without a float copy of them
    window = percentile_window(array)
    return RasterImage(apply_window(array, window.center, window.width), None, None, description)


def composite_on_black(array: np.ndarray) -> np.ndarray:
    """Colour + alpha (H x W x 4, any depth) composited on black, keeping the dtype.

    Computed a block of rows at a time, so 16-bit colour needs no float64 copies of the whole picture.
    """
    step = max(1, WINDOW_BLOCK_PIXELS // max(1, array.shape[1]))
    if array.shape[0] <= step:
        return _composite_rows(array)
    mixed = np.empty((*array.shape[:2], 3), array.dtype)
    for top in range(0, array.shape[0], step):
        mixed[top : top + step] = _composite_rows(array[top : top + step])
    return mixed


def _composite_rows(array: np.ndarray) -> np.ndarray:
    colour, alpha = array[:, :, :3], array[:, :, 3:4]
    if array.dtype.kind == "f":
        return colour * np.clip(alpha, 0, 1)
    full = float(np.iinfo(array.dtype).max)
    mixed = colour.astype(np.float64) * (alpha.astype(np.float64) / full)
    return np.floor(mixed + 0.5).astype(array.dtype)


def read_picture(path: str | Path) -> np.ndarray:
    """The 8-bit RGB picture (H x W x 3 uint8) of a raster file."""
    return decode_raster(path).picture
