"""Raster images (JPEG, PNG, BMP, TIFF) to the 8-bit RGB picture, and sniffing formats by content.

The format is always read from the first bytes, never from the file name: some ``.jpg`` files hold
PNG data. Before anything is decoded, the declared width and height are read from the header:
sizes too large for memory (a decompression-bomb guard), too small to hold a brain slice, or more
than a JPEG's data could code are refused. Truncated or damaged files are refused rather than
decoded to a partly grey picture: the decoders' own complaints, which libjpeg and libpng print on
stderr and otherwise go unread, are caught and judged (:class:`DecoderMessages`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import cv2
import numpy as np

from brainscan.engine.dicom_pixels import (
    MAX_FRAME_PIXELS,
    MAX_SIDE,
    MIN_SIDE,
    WINDOW_BLOCK_PIXELS,
    Window,
    apply_window,
    grey_to_rgb,
    percentile_window,
    replace_non_finite,
)
from brainscan.engine.errors import (
    CorruptImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    InputError,
    NotAnImageError,
)

MAX_FILE_BYTES = 1 << 30  # 1 GiB
MAX_PIXELS = MAX_FRAME_PIXELS  # the same limits as a DICOM frame (dicom_pixels), and MIN_SIDE too
SNIFF_BYTES = 132  # enough for the DICOM preamble and "DICM"

RASTER_FORMATS = ("jpeg", "png", "bmp", "tiff")
SUPPORTED = "JPEG, PNG, BMP, TIFF or DICOM"
RECOPY = "the file was cut short while copying or downloading: copy it again from its source"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3}  # baseline, extended, progressive, lossless; not arithmetic
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: no length field


class RasterImage(NamedTuple):
    """A decoded raster image: the picture, and for 16-bit grey also its values and window."""

    picture: np.ndarray  # H x W x 3 uint8
    values: np.ndarray | None  # H x W float32 for 16-bit (or float) grey, else None
    window: Window | None
    description: str  # e.g. "PNG, 16-bit grey"


# -- sniffing -----------------------------------------------------------------------------------
def sniff(head: bytes) -> str:
    """The format of a file from its first bytes (at least :data:`SNIFF_BYTES` when available).

    Returns
    -------
    str
        ``"jpeg"``, ``"png"``, ``"bmp"``, ``"tiff"``, ``"dicom"`` ("DICM" at offset 128),
        ``"dicom-raw"`` (no preamble, but starting like a group 0x0002 or 0x0008 element: to be
        confirmed by reading it), ``"empty"`` or ``"unknown"``.
    """
    if not head:
        return "empty"
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if (
        head.startswith(b"BM")
        and len(head) >= 18
        and struct.unpack_from("<I", head, 14)[0] in _BMP_HEADER_SIZES
    ):
        return "bmp"
    if looks_like_raw_dicom(head):
        return "dicom-raw"
    return "unknown"


def looks_like_raw_dicom(head: bytes) -> bool:
    """Whether the bytes start like a little-endian DICOM data element of group 0x0002 or 0x0008."""
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    element = struct.unpack_from("<H", head, 2)[0]
    explicit_vr = head[4:6].isalpha() and head[4:6].isupper()
    implicit_length = struct.unpack_from("<I", head, 4)[0]
    return element < 0x1000 and (explicit_vr or implicit_length < 1 << 16)


def sniff_file(path: Path) -> str:
    """:func:`sniff` on the first bytes of ``path``; raises InputError when it cannot be read."""
    require_regular_file(path)
    try:
        with open(path, "rb") as handle:
            return sniff(handle.read(SNIFF_BYTES))
    except FileNotFoundError as exc:
        raise InputError(path, "does not exist", "check the path") from exc
    except IsADirectoryError as exc:
        raise InputError(path, "is a folder, not a file", "give the folder to discover() instead") from exc
    except OSError as exc:
        raise InputError(
            path, f"cannot be read ({exc.strerror or exc})", "check that it is readable"
        ) from exc


def require_regular_file(path: Path) -> None:
    """Refuse, without opening them, what is not a plain file: a pipe or device would block or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise InputError(path, "is a broken symbolic link", "point the link at an existing file") from exc
        raise InputError(path, "does not exist", "check the path") from exc
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})", "check that it is readable") from exc
    if stat.S_ISDIR(mode):
        raise InputError(path, "is a folder, not a file", "give the folder itself as a PATH to search it")
    if not stat.S_ISREG(mode):
        raise NotAnImageError(path, "is not a regular file (a pipe, socket or device)", "leave it out")


# -- declared sizes (before decoding) --------------------------------------------------------
def declared_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """``(width, height)`` as the header declares them, None when the header does not say."""
    reader = {"png": _png_size, "jpeg": _jpeg_size, "bmp": _bmp_size, "tiff": _tiff_size}.get(fmt)
    try:
        return reader(data) if reader else None
    except (struct.error, IndexError):
        return None


ESTIMATE_HEAD_BYTES = 1 << 16


def estimated_picture_bytes(path: str | Path) -> int | None:
    """What decoding a raster file will hold (picture, and values for deep grey), from its first bytes.

    None when the header there does not say (a JPEG frame header behind a large EXIF block, BigTIFF).
    Used to bound the memory of frames decoded ahead (:class:`brainscan.engine.screening.DecodeBudget`).
    """
    with open(path, "rb") as handle:
        head = handle.read(ESTIMATE_HEAD_BYTES)
    fmt = sniff(head)
    size = declared_size(head, fmt) if fmt in RASTER_FORMATS else None
    if size is None:
        return None
    pixels = size[0] * size[1]
    shallow = fmt == "jpeg" or (fmt == "png" and len(head) > 24 and head[24] <= 8)
    return pixels * (3 if shallow else 3 + 4)  # the RGB picture; float32 values for more than 8 bits


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


class JpegHeader(NamedTuple):
    """What a JPEG's frame header declares, and where its first scan starts."""

    width: int
    height: int
    marker: int  # the start-of-frame marker (0xC0 baseline, 0xC2 progressive, ...)
    sampling: tuple[tuple[int, int], ...]  # (horizontal, vertical) sampling factor of each component
    scan_start: int  # offset of the first start-of-scan marker, -1 when the data ends before it


def jpeg_header(data: bytes) -> JpegHeader | None:
    """The frame header of a JPEG, walking its marker segments (never into an EXIF thumbnail's data).

    None when no frame header comes before the first scan or the end of the data.
    """
    position, frame = 2, None
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker == 0xDA and frame is not None:
            return frame._replace(scan_start=position)
        if marker in (0xD9, 0xDA):  # EOI, or SOS before any frame header
            break
        length = struct.unpack_from(">H", data, position + 2)[0]
        if marker in _JPEG_SOF and frame is None:
            height, width, count = struct.unpack_from(">HHB", data, position + 5)
            sampling = tuple(
                (data[position + 11 + 3 * i] >> 4, data[position + 11 + 3 * i] & 0x0F)
                for i in range(count)
                if position + 11 + 3 * i < len(data)
            )
            frame = JpegHeader(width, height, marker, sampling, -1)
        position += 2 + length
    return frame


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    header = jpeg_header(data)
    return (header.width, header.height) if header else None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if struct.unpack_from("<I", data, 14)[0] == 12:  # BITMAPCOREHEADER
        width, height = struct.unpack_from("<HH", data, 18)
        return width, height
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height means top-down rows


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    if data[:4] not in (b"II*\x00", b"MM\x00*"):  # BigTIFF: left to OpenCV's own limits
        return None
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack_from(order + "I", data, 4)[0]
    count = struct.unpack_from(order + "H", data, offset)[0]
    found: dict[int, int] = {}
    for index in range(count):
        tag, kind = struct.unpack_from(order + "HH", data, offset + 2 + 12 * index)
        if tag in (256, 257):
            value_format = order + ("H" if kind == 3 else "I")
            found[tag] = struct.unpack_from(value_format, data, offset + 2 + 12 * index + 8)[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def check_size(path: Path, width: int, height: int) -> None:
    """Refuse more than :data:`MAX_PIXELS` pixels or a side above :data:`MAX_SIDE`."""
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            path,
            f"declares {width} x {height} pixels, beyond the limit of {MAX_SIDE} per side and "
            f"{MAX_PIXELS / 1e6:.1f} megapixels (a decompression bomb, or not a single MRI slice)",
            "downscale or crop it before screening",
        )


def check_min_size(path: str | Path, width: int, height: int, what: str = "picture") -> None:
    """Refuse a picture with a side below :data:`MIN_SIDE`: too small to hold a brain slice.

    Raises
    ------
    ImageTooSmallError
        Naming the size and the minimum.
    """
    if min(width, height) < MIN_SIDE:
        raise ImageTooSmallError(
            path,
            f"the {what} is {width} x {height} pixels, too small to hold a brain slice "
            f"(the minimum is {MIN_SIDE} pixels a side)",
            "give the full-size slice, not an icon or thumbnail",
        )


def check_file_size(path: Path) -> int:
    """The file's size in bytes; refuses files above :data:`MAX_FILE_BYTES` and empty files."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageTooLargeError(
            path,
            f"is {size / (1 << 30):.1f} GiB, above the 1 GiB limit",
            "export the slice as a smaller image",
        )
    if size == 0:
        raise CorruptImageError(path, "is empty (0 bytes)", RECOPY)
    return size


# -- truncation ---------------------------------------------------------------------------------
def check_complete(path: Path, data: bytes, fmt: str) -> None:
    """Refuse JPEG without an end-of-image marker after its first scan, or with too little data for
    its declared size (:func:`check_jpeg_data_size`), and PNG without IEND."""
    if fmt == "jpeg":
        header = jpeg_header(data)
        # entropy-coded data never holds FF D9, so any after the first scan is the real end
        if header is None or header.scan_start < 0 or data.find(b"\xff\xd9", header.scan_start) < 0:
            raise CorruptImageError(path, "the JPEG data is truncated (no end-of-image marker)", RECOPY)
        check_jpeg_data_size(path, data, header)
    elif fmt == "png" and not _png_has_iend(data):
        raise CorruptImageError(path, "the PNG data is truncated (no IEND chunk)", RECOPY)


def jpeg_blocks(header: JpegHeader) -> int:
    """The 8 x 8 blocks of all components of a JPEG frame (ITU-T T.81, A.1.1 and A.2)."""
    sampling = [(max(1, h), max(1, v)) for h, v in header.sampling] or [(1, 1)]
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    return sum(
        math.ceil(math.ceil(header.width * h / h_max) / 8) * math.ceil(math.ceil(header.height * v / v_max) / 8)
        for h, v in sampling
    )


def check_jpeg_data_size(path: Path, data: bytes, header: JpegHeader) -> None:
    """Refuse a Huffman-coded JPEG whose scans are too short to code the size its header declares.

    Every 8 x 8 block of every component takes at least one bit of Huffman code (its DC difference),
    so a few kilobytes cannot hold a 9999 x 9999 picture: a forged or damaged header, refused before
    the decoder allocates the picture. Arithmetic-coded JPEG can code a flat block in less than a bit
    and is left to the pixel limit.
    """
    if header.marker not in _JPEG_HUFFMAN_SOF or header.scan_start < 0:
        return
    blocks, coded = jpeg_blocks(header), len(data) - header.scan_start
    if blocks > 8 * coded:
        raise CorruptImageError(
            path,
            f"its JPEG header declares {header.width} x {header.height} pixels ({blocks} blocks of 8 x 8), "
            f"but its {coded} bytes of image data can code at most {8 * coded} blocks: the header is damaged",
            RECOPY,
        )


def _png_has_iend(data: bytes) -> bool:
    position = len(_PNG_MAGIC)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            return False
        if kind == b"IEND":
            return True
        position = end
    return False


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
