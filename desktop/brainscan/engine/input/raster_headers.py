"""What a file declares before anything is decoded: its format, sniffed from the first bytes (never
the name: some ``.jpg`` files hold PNG data), and for raster images the width and height in the
header, checked against the size limits, against what the data can hold, and for completeness.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from pathlib import Path
from typing import NamedTuple

from brainscan.engine.errors import (
    CorruptImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    InputError,
    NotAnImageError,
)
from brainscan.engine.input.dicom_header import MAX_FRAME_PIXELS, MAX_SIDE, MIN_SIDE

MAX_FILE_BYTES = 1 << 30  # 1 GiB
MAX_PIXELS = MAX_FRAME_PIXELS  # the same limits as a DICOM frame (dicom_pixels), and MIN_SIDE too
SNIFF_BYTES = 352  # enough for the DICOM preamble and "DICM", and the NIfTI-1 magic at offset 344

RASTER_FORMATS = ("jpeg", "png", "bmp", "tiff")
SUPPORTED = "JPEG, PNG, BMP, TIFF or DICOM"
RECOPY = "the file was cut short while copying or downloading: copy it again from its source"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3}  # baseline, extended, progressive, lossless; not arithmetic
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: no length field


# -- sniffing -----------------------------------------------------------------------------------
def sniff(head: bytes) -> str:
    """The format of a file from its first bytes (at least :data:`SNIFF_BYTES` when available).

    Returns
    -------
    str
        ``"jpeg"``, ``"png"``, ``"bmp"``, ``"tiff"``, ``"dicom"`` ("DICM" at offset 128),
        ``"dicom-raw"`` (no preamble, but starting like a group 0x0002 or 0x0008 element: to be
        confirmed by reading it), ``"nifti"`` (single-file NIfTI-1 or NIfTI-2: "n+1\0" at offset 344,
        "n+2\0" at offset 4; gzipped NIfTI is told by its name, :func:`sniff_file`), ``"empty"`` or ``"unknown"``.
    """
    if not head:
        return "empty"
    if head[128:132] == b"DICM":
        return "dicom"
    if head[344:348] == b"n+1\0" or head[4:8] == b"n+2\0":
        return "nifti"
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
    """:func:`sniff` on the first bytes of ``path``; raises InputError when it cannot be read.

    A gzip stream named ``.nii.gz`` is ``"nifti"``: its header is inside the compressed data.
    """
    require_regular_file(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except FileNotFoundError as exc:
        raise InputError(path, "does not exist", "check the path") from exc
    except IsADirectoryError as exc:
        raise InputError(path, "is a folder, not a file", "give the folder to discover() instead") from exc
    except OSError as exc:
        raise InputError(
            path, f"cannot be read ({exc.strerror or exc})", "check that it is readable"
        ) from exc
    sniffed = sniff(head)
    if sniffed == "unknown" and head.startswith(b"\x1f\x8b") and str(path).lower().endswith(".nii.gz"):
        return "nifti"
    return sniffed


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
    Used to bound the memory of frames decoded ahead (:class:`brainscan.engine.run.decode_ahead.DecodeBudget`).
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


