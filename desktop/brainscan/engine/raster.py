"""Raster images (JPEG, PNG, BMP, TIFF) to the 8-bit RGB picture, and sniffing formats by content.

The format is always read from the first bytes, never from the file name: some ``.jpg`` files hold
PNG data. Before anything is decoded, the declared width and height are read from the header and
absurd sizes are refused (a decompression-bomb guard); truncated JPEG and PNG files are refused
rather than decoded to a partly grey picture.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from brainscan.engine.dicom_pixels import (
    Window,
    apply_window,
    grey_to_rgb,
    percentile_window,
    replace_non_finite,
)
from brainscan.engine.errors import CorruptImageError, ImageTooLargeError, InputError, NotAnImageError

MAX_FILE_BYTES = 1 << 30  # 1 GiB
MAX_SIDE = 30_000
MAX_PIXELS = 100_000_000
SNIFF_BYTES = 132  # enough for the DICOM preamble and "DICM"

RASTER_FORMATS = ("jpeg", "png", "bmp", "tiff")
SUPPORTED = "JPEG, PNG, BMP, TIFF or DICOM"
RECOPY = "the file was cut short while copying or downloading: copy it again from its source"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
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


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or SOS before any frame header
            return None
        length = struct.unpack_from(">H", data, position + 2)[0]
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, position + 5)
            return width, height
        position += 2 + length
    return None


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
            f"{MAX_PIXELS // 1_000_000} megapixels (a decompression bomb, or not a single MRI slice)",
            "downscale or crop it before screening",
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
    """Refuse JPEG without an end-of-image marker after its first scan, and PNG without IEND."""
    if fmt == "jpeg":
        scan = data.find(b"\xff\xda")
        # entropy-coded data never holds FF D9, so any after the first scan is the real end
        if scan < 0 or data.find(b"\xff\xd9", scan) < 0:
            raise CorruptImageError(path, "the JPEG data is truncated (no end-of-image marker)", RECOPY)
    elif fmt == "png" and not _png_has_iend(data):
        raise CorruptImageError(path, "the PNG data is truncated (no IEND chunk)", RECOPY)


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
        Empty, truncated or undecodable.
    ImageTooLargeError
        Above 1 GiB, or declaring too many pixels (checked before decoding).
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
    check_complete(path, data, fmt)
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise CorruptImageError(path, f"OpenCV cannot decode this {fmt.upper()} ({exc.err})", RECOPY) from exc
    if array is None or array.size == 0:
        raise CorruptImageError(path, f"OpenCV cannot decode this {fmt.upper()} data (damaged)", RECOPY)
    if size is None:
        check_size(path, array.shape[1], array.shape[0])
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
    values = array.astype(np.float32)
    window = percentile_window(values)
    picture = apply_window(values, window.center, window.width)
    if picture.shape[2] == 1:
        return RasterImage(grey_to_rgb(picture[:, :, 0]), values[:, :, 0], window, description)
    return RasterImage(np.ascontiguousarray(picture), None, None, description)


def composite_on_black(array: np.ndarray) -> np.ndarray:
    """Colour + alpha (H x W x 4, any depth) composited on black, keeping the dtype."""
    colour, alpha = array[:, :, :3], array[:, :, 3:4]
    if array.dtype.kind == "f":
        return colour * np.clip(alpha, 0, 1)
    full = float(np.iinfo(array.dtype).max)
    mixed = colour.astype(np.float64) * (alpha.astype(np.float64) / full)
    return np.floor(mixed + 0.5).astype(array.dtype)


def read_picture(path: str | Path) -> np.ndarray:
    """The 8-bit RGB picture (H x W x 3 uint8) of a raster file."""
    return decode_raster(path).picture
