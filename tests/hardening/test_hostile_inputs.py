"""A corpus of hostile and odd inputs, screened in one run of the real command.

Every hostile file must come out as an ``error`` row whose message names the file, the run exits
1 without a traceback, and the good files of the same run are ``ok``. Odd but valid files (16-bit,
unicode names) are ``ok``. Files under ``corpus/`` are inputs the fuzzer (``bench/fuzz_loaders.py``)
found to break the loaders before they were fixed. Many kinds are also tested one by one, at the
loader level, in ``tests/test_raster.py``, ``tests/test_loading.py``, ``tests/test_dicom_pixels.py``
and ``tests/test_odd_paths.py``; this is the end-to-end run over all of them together, plus the
kinds those files do not cover (TIFF and DICOM size bombs, unknown transfer syntax, garbled JPEG
2000, symbolic-link cycles, IDAT that inflates far beyond the image, zero width, float NaN TIFF).
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, RLELossless

import dicom_factory as factory
from brainscan.engine.errors import InputError
from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame
from tiny_models import build_tiny_model

CORPUS = Path(__file__).parent / "corpus"
UNICODE_GOOD = "ünïcødé 名前 🧠.jpg"
UNICODE_BAD = "schädel-Ω-断面.png"


# -- builders ----------------------------------------------------------------------------------------
def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, idat: bytes, depth: int = 8, colour: int = 0) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def inflating_idat(megabytes: int) -> bytes:
    """A deflate stream of ``megabytes`` MiB of zeros (about a thousandth of that on disk)."""
    packer = zlib.compressobj(9)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(megabytes)) + packer.flush()


def tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF whose IFD declares ``width x height`` 8-bit grey, with one tiny strip."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
               (277, 3, 1), (278, 4, height), (279, 4, 16)]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(16)


def float_tiff_with_nan(path: Path, grey: np.ndarray) -> Path:
    values = grey.astype(np.float32)
    values[:10] = np.nan
    values[10:20] = np.inf
    assert cv2.imwrite(str(path), values)
    return path


def dicom_declaring(path: Path, pixels: np.ndarray, rows: int, columns: int) -> Path:
    ds = factory.new_dataset(pixels)
    ds.Rows, ds.Columns = rows, columns  # the pixel data stays small
    return factory.save(ds, path)


def dicom_with_unknown_transfer_syntax(path: Path, pixels: np.ndarray) -> Path:
    ds = factory.new_dataset(pixels)
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.2.1143.999.4242"  # no such transfer syntax
    ds.PixelData = encapsulate([b"\xde\xad\xbe\xef" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return path


def garbled_jpeg2000(path: Path, pixels: np.ndarray) -> Path:
    """A JPEG 2000 slice whose codestream header (SIZ marker segment) is overwritten."""
    ds = factory.new_dataset(pixels)
    ds.compress(JPEG2000Lossless)
    data = bytearray(ds.PixelData)
    siz = data.find(b"\xff\x51")
    data[siz + 2 : siz + 40] = b"\xa5" * 38
    ds.PixelData = bytes(data)
    return factory.save(ds, path)


def garbled_rle(path: Path, pixels: np.ndarray) -> Path:
    """An RLE slice whose segment table claims 15 segments at offsets beyond the data."""
    ds = factory.new_dataset(pixels)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    data = bytearray(ds.PixelData)
    start = data.find(b"\xfe\xff\x00\xe0", 8 + 4)  # the first fragment item (after the basic offset table)
    table = start + 8
    data[table : table + 64] = struct.pack("<16I", 15, *range(10**6, 10**6 + 15))
    ds.PixelData = bytes(data)
    return factory.save(ds, path)


# -- the corpus ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory, real_jpgs) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("hostile")
    jpeg = real_jpgs[0].read_bytes()
    grey = cv2.imread(str(real_jpgs[1]), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA)
    pixels = factory.twelve_bit(small, seed=2)
    ok_png = cv2.imencode(".png", grey)[1].tobytes()
    error: dict[str, str] = {}  # file name -> words the error must hold
    either: set[str] = set()  # a decoder may cope or refuse: no traceback, and an error names the file

    def put(name: str, data: bytes) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    # good and odd-but-valid files
    shutil.copy(real_jpgs[0], folder / "good-1.jpg")
    shutil.copy(real_jpgs[2], folder / "good-2.jpg")
    shutil.copy(real_jpgs[3], folder / UNICODE_GOOD)
    put("deep-16-bit.png", cv2.imencode(".png", grey.astype(np.uint16) * 64 + 3)[1].tobytes())
    put("deep-16-bit.tif", cv2.imencode(".tiff", grey.astype(np.uint16) * 257)[1].tobytes())
    factory.save(factory.new_dataset(pixels), folder / "good-slice.dcm")
    ok = {"good-1.jpg", "good-2.jpg", UNICODE_GOOD, "deep-16-bit.png", "deep-16-bit.tif", "good-slice.dcm"}

    # empty, truncated, wrong content
    put("empty.jpg", b"")
    error["empty.jpg"] = "empty"
    put("truncated.jpg", jpeg[: len(jpeg) // 2])
    error["truncated.jpg"] = "truncated"
    put("truncated.png", ok_png[: len(ok_png) * 2 // 3])
    error["truncated.png"] = "truncated"
    put(UNICODE_BAD, ok_png[:100])
    error[UNICODE_BAD] = "truncated"
    put("report.dcm", b"%PDF-1.4\n% not an image\n")
    error["report.dcm"] = "is not a JPEG, PNG, BMP, TIFF or DICOM"
    put("scan.webp", b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(32))
    error["scan.webp"] = "is not a JPEG, PNG, BMP, TIFF or DICOM"

    # declared sizes: bombs refused before decoding
    put("bomb-50000.png", png(50_000, 50_000, zlib.compress(b"\0" * 1024)))
    error["bomb-50000.png"] = "50000 x 50000"
    sof = bytearray(jpeg)
    at = next(i for i in range(2, len(sof) - 1) if sof[i] == 0xFF and sof[i + 1] in (0xC0, 0xC1, 0xC2))
    sof[at + 5 : at + 9] = struct.pack(">HH", 65_000, 65_000)
    put("huge-sof.jpg", bytes(sof))
    error["huge-sof.jpg"] = "65000 x 65000"
    bmp = bytearray(cv2.imencode(".bmp", small)[1].tobytes())
    bmp[18:26] = struct.pack("<ii", 40_000, -40_000)
    put("huge.bmp", bytes(bmp))
    error["huge.bmp"] = "40000 x 40000"
    put("huge.tif", tiff_header(40_000, 40_000))
    error["huge.tif"] = "40000 x 40000"
    dicom_declaring(folder / "huge-rows.dcm", pixels, 40_000, 40_000)
    error["huge-rows.dcm"] = "40000 x 40000"
    put("zero-width.png", png(0, 64, zlib.compress(b"\0" * 65)))
    error["zero-width.png"] = "declares 0 x 64 pixels"
    # a small file whose IDAT inflates to 256 MiB behind a 64 x 64 header: decoding must stop at the image
    put("inflate-bomb.png", png(64, 64, inflating_idat(256)))
    either.add("inflate-bomb.png")
    float_tiff_with_nan(folder / "float-nan.tiff", small)
    either.add("float-nan.tiff")

    # DICOM: no pixels, unknown or damaged encodings
    factory.write_without_pixels(folder / "structured-report.dcm")  # a companion of the images: skipped, counted
    dicom_with_unknown_transfer_syntax(folder / "unknown-syntax.dcm", pixels)
    error["unknown-syntax.dcm"] = "1.2.826.0.1.3680043.2.1143.999.4242"
    garbled_jpeg2000(folder / "garbled-j2k.dcm", pixels)
    error["garbled-j2k.dcm"] = "JPEG 2000"
    garbled_rle(folder / "garbled-rle.dcm", pixels)
    error["garbled-rle.dcm"] = "garbled-rle.dcm"
    factory.write_truncated(folder / "truncated.dcm", pixels)
    error["truncated.dcm"] = "truncated"

    # links and permissions
    (folder / "cycle-a.jpg").symlink_to(folder / "cycle-b.jpg")
    (folder / "cycle-b.jpg").symlink_to(folder / "cycle-a.jpg")
    error["cycle-a.jpg"] = error["cycle-b.jpg"] = "cannot be read"
    (folder / "self-loop").symlink_to(folder)  # a folder that contains itself: walked once
    locked = put("locked.jpg", jpeg)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway: the check is meaningless here
        ok.add("locked.jpg")
    else:
        error["locked.jpg"] = "cannot be read"

    # inputs the fuzzer found
    for path in sorted(CORPUS.iterdir()):
        shutil.copy(path, folder / path.name)
        error[path.name] = path.name
    return SimpleNamespace(folder=folder, ok=ok, error=error, either=either)


@pytest.fixture(scope="module")
def screened(corpus, tmp_path_factory) -> SimpleNamespace:
    work = tmp_path_factory.mktemp("hostile-run")
    model = build_tiny_model(work / "tiny.onnx")
    out = work / "out"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "brainscan.cli", "screen", str(corpus.folder), "--out", str(out), "--model", str(model),
         "--progress", "never"],
        capture_output=True, text=True, timeout=300,
    )
    seconds = time.perf_counter() - started
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    return SimpleNamespace(done=done, rows=rows, seconds=seconds)


def test_the_run_exits_one_without_a_traceback_and_every_file_has_one_row(corpus, screened):
    assert screened.done.returncode == 1, screened.done.stderr[-2000:]
    assert "Traceback" not in screened.done.stderr
    expected = corpus.ok | set(corpus.error) | corpus.either
    assert sorted(screened.rows) == sorted(expected)
    assert "1 file skipped: DICOM objects without an image" in screened.done.stderr
    assert screened.seconds < 120


def test_good_and_odd_but_valid_files_are_ok(corpus, screened):
    for name in corpus.ok:
        assert screened.rows[name]["status"] == "ok", screened.rows[name]
        assert screened.rows[name]["label"]


@pytest.mark.parametrize("case", [
    "empty.jpg", "truncated.jpg", "truncated.png", UNICODE_BAD, "report.dcm", "scan.webp", "bomb-50000.png",
    "huge-sof.jpg", "huge.bmp", "huge.tif", "huge-rows.dcm", "zero-width.png",
    "unknown-syntax.dcm", "garbled-j2k.dcm", "garbled-rle.dcm", "truncated.dcm", "cycle-a.jpg", "cycle-b.jpg",
    "fuzz-rle-rust-panic.dcm", "fuzz-unknown-vr-in-position.dcm", "fuzz-unknown-vr-in-instance-number.dcm",
    "fuzz-j2k-gdcm-abort.dcm", "fuzz-jpeg-lossless-gdcm-abort.dcm",
])
def test_hostile_file_gets_an_error_row_naming_it(corpus, screened, case):
    row = screened.rows[case]
    assert row["status"] == "error", row
    assert case in row["error"] and corpus.error[case] in row["error"], row["error"]
    assert row["label"] == "" and row["p_glioma"] == ""


def test_files_a_decoder_may_accept_never_break_the_run(corpus, screened):
    for name in corpus.either:
        row = screened.rows[name]
        assert row["status"] in ("ok", "error")
        if row["status"] == "error":
            assert name in row["error"]


def test_every_corpus_file_the_fuzzer_found_is_listed_here():
    listed = {"fuzz-rle-rust-panic.dcm", "fuzz-unknown-vr-in-position.dcm", "fuzz-unknown-vr-in-instance-number.dcm",
              "fuzz-j2k-gdcm-abort.dcm", "fuzz-jpeg-lossless-gdcm-abort.dcm"}
    assert {p.name for p in CORPUS.iterdir()} == listed


def test_loaders_raise_only_input_errors_and_give_rgb8_pictures(corpus):
    """The fuzzing property, on the whole corpus, in process."""
    for ref in discover([corpus.folder]):
        try:
            frame = load_frame(ref)
        except InputError as exc:
            assert ref.path.name in str(exc)
            continue
        assert frame.picture.dtype == np.uint8 and frame.picture.ndim == 3 and frame.picture.shape[2] == 3


def test_inflate_bomb_is_handled_quickly(corpus):
    started = time.perf_counter()
    refs = discover([corpus.folder / "inflate-bomb.png"])
    with contextlib.suppress(InputError):
        load_frame(refs[0])
    assert time.perf_counter() - started < 5


def test_unreadable_file_check_is_skipped_as_root(corpus):
    if os.geteuid() == 0:
        pytest.skip("tests run as root here: chmod 000 does not stop root from reading, so that case is not checked")
    with pytest.raises(InputError, match="cannot be read"):
        load_frame(discover([corpus.folder / "locked.jpg"])[0])


def test_link_cycles_are_reported_once_and_never_recursed(corpus):
    names = [ref.path.name for ref in discover([corpus.folder])]  # the self-loop folder is walked once
    assert names.count("good-1.jpg") == 1 and names.count("cycle-a.jpg") == 1
