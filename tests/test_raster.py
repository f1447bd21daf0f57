"""Raster input: formats sniffed by content, 8-bit RGB pictures, and refusals that name the file."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from brainscan.engine.errors import CorruptImageError, ImageTooLargeError, InputError, NotAnImageError
from brainscan.engine.input import raster, raster_headers


# -- helpers -------------------------------------------------------------------------------------
def encode(picture_bgr: np.ndarray, ext: str) -> bytes:
    ok, buffer = cv2.imencode(ext, picture_bgr)
    assert ok
    return buffer.tobytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def tiff_bytes(pixels: np.ndarray, big_endian: bool) -> bytes:
    """An uncompressed one-strip grey TIFF in either byte order (OpenCV only writes little endian)."""
    order = ">" if big_endian else "<"
    height, width = pixels.shape
    body = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    entries = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, pixels.dtype.itemsize * 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 0),  # strip offset, filled below
        (277, 3, 1),
        (278, 4, height),
        (279, 4, len(body)),
    ]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack(order + "H", value) + b"\0\0" if kind == 3 else struct.pack(order + "I", value)
        ifd += struct.pack(order + "HHI", tag, kind, 1) + packed
    magic = b"MM\x00*" if big_endian else b"II*\x00"
    return magic + struct.pack(order + "I", 8) + ifd + struct.pack(order + "I", 0) + body


@pytest.fixture(scope="module")
def grey_slice(real_jpgs: list[Path]) -> np.ndarray:
    return cv2.imread(str(real_jpgs[0]), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def colour_slice(grey_slice: np.ndarray) -> np.ndarray:
    """A real slice in false colour, BGR as OpenCV keeps it."""
    return cv2.applyColorMap(grey_slice, cv2.COLORMAP_JET)


# -- sniffing ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
        (b"BM" + b"\0" * 12 + struct.pack("<I", 40) + b"\0" * 20, "bmp"),
        (b"BMW text that starts like a bitmap", "unknown"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),
        (b"\0" * 128 + b"DICM\x02\x00", "dicom"),
        (b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", "dicom-raw"),
        (b"\x08\x00\x16\x00\x1a\x00\x00\x001.2.840.10008.5.1.4.1.1.4", "dicom-raw"),
        (b"Patient report: nothing to see\n", "unknown"),
        (b"", "empty"),
    ],
)
def test_sniff_reads_the_format_from_the_first_bytes(head: bytes, expected: str) -> None:
    assert raster_headers.sniff(head) == expected


def test_png_data_behind_a_jpg_name_decodes_as_png(tmp_path: Path, colour_slice: np.ndarray) -> None:
    path = write(tmp_path / "scan.jpg", encode(colour_slice, ".png"))
    image = raster.decode_raster(path)
    assert image.description.startswith("PNG")
    np.testing.assert_array_equal(image.picture, colour_slice[:, :, ::-1])


# -- the real Kaggle JPGs ------------------------------------------------------------------------
def test_real_jpgs_decode_to_what_opencv_shows_in_rgb(real_jpgs: list[Path]) -> None:
    kinds = set()
    for path in real_jpgs:
        image = raster.decode_raster(path)
        reference = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert image.picture.dtype == np.uint8 and image.picture.shape == (224, 224, 3)
        np.testing.assert_array_equal(image.picture, reference)
        assert image.values is None and image.window is None
        kinds.add(image.description)
    assert {"JPEG, 8-bit grey", "JPEG, 8-bit colour"} <= kinds  # both kinds are in the set


# -- depths and channels --------------------------------------------------------------------------
def test_grey_png_is_replicated_to_three_equal_channels(tmp_path: Path, grey_slice: np.ndarray) -> None:
    picture = raster.read_picture(write(tmp_path / "grey.png", encode(grey_slice, ".png")))
    for channel in range(3):
        np.testing.assert_array_equal(picture[:, :, channel], grey_slice)


def test_colour_comes_out_rgb_not_opencv_bgr(tmp_path: Path) -> None:
    red_bgr = np.zeros((40, 40, 3), np.uint8)  # above the minimum side (dicom_header.MIN_SIDE)
    red_bgr[:, :, 2] = 255
    picture = raster.read_picture(write(tmp_path / "red.png", encode(red_bgr, ".png")))
    assert picture[0, 0].tolist() == [255, 0, 0]


def test_rgba_is_composited_on_black(tmp_path: Path, colour_slice: np.ndarray) -> None:
    height, width = colour_slice.shape[:2]
    alpha = np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))
    bgra = np.dstack([colour_slice, alpha])
    picture = raster.read_picture(write(tmp_path / "rgba.png", encode(bgra, ".png")))
    expected = np.floor(colour_slice[:, :, ::-1] * (alpha[:, :, None] / 255.0) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(picture, expected)
    assert not picture[:, 0].any()  # fully transparent column: black
    np.testing.assert_array_equal(picture[:, -1], colour_slice[:, -1, ::-1])  # opaque: unchanged


def test_16_bit_png_is_scaled_from_its_full_range(tmp_path: Path, grey_slice: np.ndarray) -> None:
    values = grey_slice.astype(np.uint16) * 16 + 7  # 12-bit range in a 16-bit PNG
    image = raster.decode_raster(write(tmp_path / "deep.png", encode(values, ".png")))
    low, high = int(values.min()), int(values.max())
    expected = np.clip(np.floor((values - low) / (high - low) * 255 + 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(image.picture[:, :, 0], expected)
    assert image.picture[values >= high].min() == 255 and image.picture[values <= low].max() == 0
    np.testing.assert_array_equal(image.values, values.astype(np.float32))
    assert image.window is not None and image.window.source == "percentile"
    assert image.description == "PNG, 16-bit grey"


def test_bmp_decodes_like_the_png_of_the_same_pixels(tmp_path: Path, colour_slice: np.ndarray) -> None:
    bmp = raster.read_picture(write(tmp_path / "scan.bmp", encode(colour_slice, ".bmp")))
    np.testing.assert_array_equal(bmp, colour_slice[:, :, ::-1])


@pytest.mark.parametrize("big_endian", [False, True], ids=["little-endian", "big-endian"])
def test_tiff_of_either_byte_order_keeps_16_bit_values(
    tmp_path: Path, grey_slice: np.ndarray, big_endian: bool
) -> None:
    values = grey_slice.astype(np.uint16) * 257
    image = raster.decode_raster(write(tmp_path / "scan.tif", tiff_bytes(values, big_endian)))
    np.testing.assert_array_equal(image.values, values.astype(np.float32))
    png = raster.decode_raster(write(tmp_path / "same.png", encode(values, ".png")))
    np.testing.assert_array_equal(image.picture, png.picture)


def test_8_bit_tiff_is_kept_as_stored(tmp_path: Path, grey_slice: np.ndarray) -> None:
    picture = raster.read_picture(write(tmp_path / "scan.tiff", encode(grey_slice, ".tiff")))
    np.testing.assert_array_equal(picture[:, :, 1], grey_slice)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
def test_declared_size_is_read_from_the_header(ext: str, colour_slice: np.ndarray) -> None:
    wide = np.ascontiguousarray(colour_slice[:100])
    data = encode(wide, ext)
    assert raster_headers.declared_size(data, raster_headers.sniff(data)) == (224, 100)


def test_declared_size_of_big_endian_tiff(grey_slice: np.ndarray) -> None:
    data = tiff_bytes(grey_slice[:50], big_endian=True)
    assert raster_headers.declared_size(data, "tiff") == (224, 50)


# -- refusals ------------------------------------------------------------------------------------
def assert_refused(path: Path, error: type[InputError], words: str) -> InputError:
    with pytest.raises(error) as caught:
        raster.decode_raster(path)
    message = str(caught.value)
    assert str(path) in message and words in message
    assert "(" in message  # a fix follows the problem
    return caught.value


def test_empty_file_is_corrupt(tmp_path: Path) -> None:
    assert_refused(write(tmp_path / "empty.jpg", b""), CorruptImageError, "empty")


def test_truncated_jpeg_is_refused_not_half_decoded(tmp_path: Path, real_jpgs: list[Path]) -> None:
    data = real_jpgs[0].read_bytes()
    assert_refused(write(tmp_path / "cut.jpg", data[: len(data) - 600]), CorruptImageError, "truncated")


def test_truncated_png_is_refused(tmp_path: Path, colour_slice: np.ndarray) -> None:
    data = encode(colour_slice, ".png")
    assert_refused(write(tmp_path / "cut.png", data[: len(data) // 2]), CorruptImageError, "truncated")


def test_jpeg_with_trailing_bytes_after_its_end_is_accepted(tmp_path: Path, real_jpgs: list[Path]) -> None:
    data = real_jpgs[0].read_bytes()
    picture = raster.read_picture(write(tmp_path / "padded.jpg", data + b"\0" * 300))
    np.testing.assert_array_equal(picture, raster.read_picture(real_jpgs[0]))


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    assert_refused(
        write(tmp_path / "notes.jpg", b"MRI report: see attached\n"), NotAnImageError, "not a raster image"
    )


def test_garbage_after_a_jpeg_signature_is_corrupt(tmp_path: Path) -> None:
    garbage = b"\xff\xd8\xff" + np.random.default_rng(3).integers(0, 255, 5000, dtype=np.uint8).tobytes()
    assert_refused(write(tmp_path / "noise.jpg", garbage), CorruptImageError, "JPEG")


def test_png_declaring_50000_by_50000_is_refused_before_decoding(tmp_path: Path) -> None:
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 50_001 * 4))
        + png_chunk(b"IEND", b"")
    )
    started = time.perf_counter()
    error = assert_refused(write(tmp_path / "bomb.png", data), ImageTooLargeError, "50000 x 50000")
    assert time.perf_counter() - started < 0.5
    assert "megapixels" in error.problem


def test_jpeg_whose_frame_header_claims_40000_pixels_a_side_is_refused(
    tmp_path: Path, real_jpgs: list[Path]
) -> None:
    data = bytearray(real_jpgs[0].read_bytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[sof + 5 : sof + 9] = struct.pack(">HH", 40_000, 40_000)
    assert_refused(write(tmp_path / "bomb.jpg", bytes(data)), ImageTooLargeError, "40000 x 40000")


def test_bmp_declaring_an_absurd_width_is_refused(tmp_path: Path, colour_slice: np.ndarray) -> None:
    data = bytearray(encode(colour_slice, ".bmp"))
    data[18:22] = struct.pack("<i", 31_000)
    assert_refused(write(tmp_path / "bomb.bmp", bytes(data)), ImageTooLargeError, "31000 x 224")


def test_file_above_one_gib_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = write(tmp_path / "huge.png", b"\x89PNG\r\n\x1a\n")
    with open(path, "r+b") as handle:
        handle.truncate((1 << 30) + 1)  # sparse: no gigabyte is written
    assert_refused(path, ImageTooLargeError, "GiB")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        raster.decode_raster(tmp_path / "nowhere.png")
