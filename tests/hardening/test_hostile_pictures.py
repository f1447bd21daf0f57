"""Pictures that lie about themselves: the input side of issue 11.

A DICOM slice declaring a million frames, a JPEG cut in half and closed with an end marker, a JPEG
header claiming 9999 x 9999 pixels over a few kilobytes of data, pictures of 1 x 1 and 12 x 12
pixels, an 8 x 8 DICOM frame. Each must be one error row saying what is wrong, found and refused
quickly, with nothing from the decoders (libjpeg, libpng, OpenCV) on stderr; and pictures at the
size limit must go through a whole run, overlays and report included, in under 1 GB.
"""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pydicom
import pytest

import dicom_factory as factory
from brainscan.engine.errors import CorruptImageError, DicomError, ImageTooLargeError, ImageTooSmallError
from brainscan.engine.input import raster
from brainscan.engine.input.dicom_header import MAX_FRAME_PIXELS, MAX_SIDE, MIN_SIDE
from brainscan.engine.input.discovery import discover
from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.input.loading import load_frame
from brainscan.engine.run import decode_ahead
from tiny_models import build_tiny_model

ROOT = Path(__file__).parents[2]
SHIPPED_MODEL = ROOT / "resources" / "models" / "brainscan-4class-lite0.onnx"
# The peak resident memory of the process itself, in KiB: VmHWM starts afresh at exec, where ru_maxrss
# carries over the parent's (a child of a 500 MB pytest would start "at" 500 MB).
PEAK_KIB = "int(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


# -- builders ----------------------------------------------------------------------------------------
def lying_frames(source: Path, target: Path, frames: int) -> Path:
    """A real slice whose header declares ``frames`` frames (its pixel data holds one)."""
    ds = pydicom.dcmread(source)
    ds.NumberOfFrames = frames
    ds.save_as(target)
    return target


def cut_with_end_marker(jpeg: bytes) -> bytes:
    """The first half of a JPEG, closed with an end-of-image marker as if it were whole."""
    return jpeg[: len(jpeg) // 2] + b"\xff\xd9"


def with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF) declares ``width x height``, its data unchanged."""
    data = bytearray(jpeg)
    at = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def with_damaged_idat(png: bytes) -> bytes:
    """A PNG whose first IDAT chunk has a byte flipped (its CRC no longer matches)."""
    data = bytearray(png)
    idat = data.find(b"IDAT")
    data[idat + 20] ^= 0xFF
    return bytes(data)


def real_grey(path: Path, side: int) -> np.ndarray:
    return cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (side, side), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def real_slice(sagittal_series_dir: Path) -> Path:
    return sorted(sagittal_series_dir.glob("*.dcm"))[0]


def only_ref(path: Path) -> FrameRef:
    (ref,) = discover([path])
    return ref


# -- DICOM that declares frames its pixel data does not hold ----------------------------------------
@pytest.mark.parametrize("frames", [1_000_000, 2**31 - 1])
def test_a_slice_declaring_absurd_frames_is_one_ref_found_in_milliseconds(tmp_path, real_slice, frames):
    path = lying_frames(real_slice, tmp_path / "liar.dcm", frames)
    started = time.perf_counter()
    refs = discover([path])
    elapsed = time.perf_counter() - started
    assert [(ref.path, ref.frame, ref.kind) for ref in refs] == [(path, 0, "dicom")]
    assert elapsed < 0.5, f"discovery took {elapsed:.2f} s"


@pytest.mark.parametrize("frames", [1_000_000, 2**31 - 1])
def test_loading_a_slice_declaring_absurd_frames_names_the_count_and_what_the_data_holds(tmp_path, real_slice, frames):
    path = lying_frames(real_slice, tmp_path / "liar.dcm", frames)
    with pytest.raises(DicomError, match=f"declares {frames} frames") as caught:
        load_frame(only_ref(path))
    message = str(caught.value)
    assert "liar.dcm" in message and "1 whole frame of" in message and "Number of Frames (0028,0008)" in message


def test_compressed_data_with_fewer_fragments_than_declared_frames_is_one_error(tmp_path, shared_transfer_syntaxes):
    rle = shared_transfer_syntaxes[3]  # 4.dcm: RLE lossless, one frame in one fragment
    path = lying_frames(rle, tmp_path / "rle-liar.dcm", 5000)
    refs = discover([path])
    assert len(refs) == 1
    with pytest.raises(DicomError, match="declares 5000 frames .* 1 compressed fragment"):
        load_frame(refs[0])


def test_a_real_multiframe_file_still_gives_one_ref_per_frame(tmp_path, real_jpgs):
    frames = [factory.twelve_bit(real_grey(p, 64), seed=n) for n, p in enumerate(real_jpgs[:3])]
    path = factory.write_multiframe(tmp_path / "three.dcm", frames)
    refs = discover([path])
    assert [ref.frame for ref in refs] == [0, 1, 2]
    assert load_frame(refs[2]).picture.shape == (64, 64, 3)


@linux_only
def test_one_frame_of_a_large_uncompressed_multiframe_file_is_read_alone(tmp_path, real_jpgs):
    """Loading a frame reads that frame's bytes, not the whole 96 MB of pixel data (twice over on two threads)."""
    slice_ = factory.twelve_bit(real_grey(real_jpgs[1], 1024), seed=3)
    path = factory.write_multiframe(tmp_path / "long.dcm", [slice_ + n for n in range(48)])
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        import numpy as np, pydicom
        from brainscan.engine.input import dicom_pixels
        from brainscan.engine.input.discovery import discover
        from brainscan.engine.input.loading import load_frame
        refs = discover([Path({str(path)!r})])
        before = {PEAK_KIB}
        frame = load_frame(refs[40])
        grown = {PEAK_KIB} - before
        expected, _, _ = dicom_pixels.to_picture(pydicom.dcmread(refs[40].path), 40)
        print(len(refs), grown, bool(np.array_equal(frame.picture, expected)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    count, grown, same = done.stdout.split()
    assert (count, same) == ("48", "True")
    assert int(grown) < 60_000, f"loading one 2 MB frame grew the peak by {int(grown) / 1024:.0f} MiB"


# -- damaged and forged JPEG ----------------------------------------------------------------------------
def test_jpeg_cut_in_half_with_an_end_marker_is_corrupt_not_a_confident_result(tmp_path, real_jpgs):
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut_with_end_marker(real_jpgs[0].read_bytes()))
    with pytest.raises(CorruptImageError, match="cut.jpg: the JPEG data is damaged or cut short .*premature end"):
        load_frame(only_ref(path))


def test_the_whole_jpeg_still_decodes(real_jpgs):
    for path in real_jpgs:
        assert load_frame(only_ref(path)).picture.shape[2] == 3


@linux_only
@pytest.mark.parametrize(
    ("width", "height", "error", "words"),
    [
        (9999, 9999, ImageTooLargeError, "9999 x 9999"),
        (4000, 4000, CorruptImageError, "can code at most"),  # within the size limit: too little data for it
    ],
)
def test_jpeg_header_claiming_more_pixels_than_its_data_holds_is_refused_before_decoding(
    tmp_path, real_jpgs, width, height, error, words
):
    path = tmp_path / "forged.jpg"
    path.write_bytes(with_declared_size(real_jpgs[0].read_bytes(), width, height))
    script = textwrap.dedent(
        f"""
        import json, time
        from pathlib import Path
        from brainscan.engine.input.discovery import discover
        from brainscan.engine.input.loading import load_frame
        ref, = discover([Path({str(path)!r})])
        before = {PEAK_KIB}
        started = time.perf_counter()
        try:
            load_frame(ref)
            outcome = "decoded"
        except Exception as exc:
            outcome = type(exc).__name__ + ": " + str(exc)
        grown = {PEAK_KIB} - before
        print(json.dumps({{"outcome": outcome, "seconds": time.perf_counter() - started, "grown": grown}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["outcome"].startswith(error.__name__) and words in result["outcome"], result
    assert result["seconds"] < 0.5
    assert result["grown"] < 20_000, result  # KiB; decoding 4000 x 4000 RGB would take 48 MB at least


# -- pictures too small to hold a brain slice ------------------------------------------------------------
@pytest.mark.parametrize("side", [1, 12, MIN_SIDE - 1])
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_a_picture_below_the_minimum_side_is_refused_naming_the_minimum(tmp_path, side, ext):
    path = tmp_path / f"tiny{ext}"
    assert cv2.imwrite(str(path), np.full((side, side + 40), 128, np.uint8))
    with pytest.raises(ImageTooSmallError, match=f"{side + 40} x {side} pixels.*minimum is {MIN_SIDE} pixels a side"):
        load_frame(only_ref(path))


def test_a_picture_at_the_minimum_side_is_screened(tmp_path, real_jpgs):
    path = tmp_path / "small.png"
    assert cv2.imwrite(str(path), real_grey(real_jpgs[1], MIN_SIDE))
    assert load_frame(only_ref(path)).picture.shape == (MIN_SIDE, MIN_SIDE, 3)


def test_an_8_by_8_dicom_frame_is_refused_naming_the_minimum(tmp_path):
    path = factory.save(factory.new_dataset(np.full((8, 8), 700, np.uint16)), tmp_path / "icon.dcm")
    with pytest.raises(ImageTooSmallError, match=f"icon.dcm: the DICOM frame is 8 x 8 pixels.*minimum is {MIN_SIDE}"):
        load_frame(only_ref(path))


# -- one run over all of them ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile_pictures(tmp_path_factory, real_jpgs, sagittal_series_dir) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("hostile-pictures")
    jpeg = real_jpgs[0].read_bytes()
    png = cv2.imencode(".png", real_grey(real_jpgs[1], 224))[1].tobytes()
    error = {  # file name -> words its error must hold
        "cut.jpg": "premature end of data segment",
        "forged-9999.jpg": "9999 x 9999",
        "forged-4000.jpg": "can code at most",
        "one-pixel.png": "minimum is",
        "twelve.jpg": "minimum is",
        "icon.dcm": "minimum is",
        "liar.dcm": "declares 1000000 frames",
        "damaged-idat.png": "cannot decode",
        "bomb-9990.png": "9990 x 9990",
    }
    (folder / "cut.jpg").write_bytes(cut_with_end_marker(jpeg))
    (folder / "forged-9999.jpg").write_bytes(with_declared_size(jpeg, 9999, 9999))
    (folder / "forged-4000.jpg").write_bytes(with_declared_size(jpeg, 4000, 4000))
    cv2.imwrite(str(folder / "one-pixel.png"), np.zeros((1, 1), np.uint8))
    cv2.imwrite(str(folder / "twelve.jpg"), np.full((12, 12), 90, np.uint8))
    factory.save(factory.new_dataset(np.full((8, 8), 700, np.uint16)), folder / "icon.dcm")
    lying_frames(sorted(sagittal_series_dir.glob("*.dcm"))[0], folder / "liar.dcm", 1_000_000)
    (folder / "damaged-idat.png").write_bytes(with_damaged_idat(png))
    # 2.3 MB of zeros per 100 megapixels: refused from the header, never decoded
    idat = zlib.compress(bytes(9990 * 9991), 9)
    header = struct.pack(">IIBBBBB", 9990, 9990, 8, 0, 0, 0, 0)
    (folder / "bomb-9990.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + b"".join(
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
            for kind, body in ((b"IHDR", header), (b"IDAT", idat), (b"IEND", b""))
        )
    )
    (folder / "good.jpg").write_bytes(jpeg)
    return SimpleNamespace(folder=folder, error=error, ok={"good.jpg"})


def screen_folder(folder: Path, out: Path, model: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "brainscan.cli", "screen", str(folder), "--out", str(out), "--model", str(model),
         "--progress", "never", *extra],
        capture_output=True, text=True, timeout=300,
    )
    seconds = time.perf_counter() - started
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    return done, rows, seconds


def test_each_hostile_picture_is_one_error_row_with_nothing_from_the_decoders_on_stderr(hostile_pictures, tmp_path):
    model = build_tiny_model(tmp_path / "tiny.onnx")
    out = tmp_path / "out"
    for run in (1, 2):  # twice into one folder: the second run resumes, and says as little
        done, rows, seconds = screen_folder(hostile_pictures.folder, out, model)
        assert done.returncode == 1, done.stderr[-2000:]
        foreign = [line for line in done.stderr.splitlines() if not line.startswith("brainscan")]
        assert not foreign, f"run {run}: lines on stderr that are not brainscan's own: {foreign}"
        assert seconds < 30
    assert sorted(rows) == sorted(set(hostile_pictures.error) | hostile_pictures.ok)
    for name, words in hostile_pictures.error.items():
        assert rows[name]["status"] == "error" and name in rows[name]["error"], rows[name]
        assert words in rows[name]["error"], rows[name]["error"]
    assert rows["good.jpg"]["status"] == "ok"


# -- memory ------------------------------------------------------------------------------------------------
SCREEN_AND_PEAK = f"""
import sys
from brainscan import cli
status = cli.main(sys.argv[1:])
print({PEAK_KIB}, status)
"""


@linux_only
@pytest.mark.slow
def test_three_pictures_at_the_size_limit_go_through_overlays_and_reports_in_under_1_gb(tmp_path, real_jpgs):
    """16-bit grey at the pixel limit (values, picture, heat map, overlay and thumbnail at full size), and as
    wide as allowed (the heat map is drawn on the padded square): the worst single frames, three in a row."""
    if not SHIPPED_MODEL.is_file():
        pytest.skip("the shipped model is not in resources/models")
    folder = tmp_path / "big"
    folder.mkdir()
    side = int(MAX_FRAME_PIXELS**0.5)
    wide = (MAX_SIDE, MAX_FRAME_PIXELS // MAX_SIDE)
    grey = cv2.imread(str(real_jpgs[1]), cv2.IMREAD_GRAYSCALE)
    for name, (width, height) in {"square-1.png": (side, side), "square-2.png": (side, side), "wide.png": wide}.items():
        picture = cv2.resize(grey, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.uint16) * 257
        assert cv2.imwrite(str(folder / name), picture)
    out = tmp_path / "out"
    command = ["screen", str(folder), "--out", str(out), "--save-overlays", "--report", "html", "--progress", "never"]
    done = subprocess.run([sys.executable, "-c", SCREEN_AND_PEAK, *command], capture_output=True, text=True, timeout=300)
    peak_kib, status = done.stdout.split()[-2:]
    assert status == "0", done.stderr[-2000:]
    assert len(list((out / "overlays").glob("*.png"))) == 3 and (out / "report.html").is_file()
    assert int(peak_kib) < 1 << 20, f"peak RSS {int(peak_kib) / 1024:.0f} MiB"


def test_decoding_ahead_holds_frames_within_its_budget_yet_lets_a_larger_one_through(monkeypatch):
    """Frames of 10 MB with a 25 MB budget: never more than two decoded and waiting, or decoding, at once;
    a 100 MB frame, four times the budget, still comes through."""
    sizes = [10 << 20] * 12 + [100 << 20] + [10 << 20] * 3
    alive = {"now": 0, "most": 0}
    lock = threading.Lock()

    def fake_load(ref: FrameRef) -> Frame:
        with lock:
            alive["now"] += 1
            alive["most"] = max(alive["most"], alive["now"])
        time.sleep(0.01)
        picture = np.zeros(sizes[ref.frame], np.uint8).reshape(-1, 1024, 1)  # nbytes is what counts
        return Frame(ref, picture, None, None, "none", {})

    monkeypatch.setattr(decode_ahead, "load_frame", fake_load)
    refs = [FrameRef(Path(f"/nowhere/{n}"), frame=n, kind="unknown") for n in range(len(sizes))]
    budget = decode_ahead.DecodeBudget(25 << 20)
    seen = []
    for ref, frame in decode_ahead.decode_ahead(refs, workers=2, ahead=8, budget=budget):
        nbytes = decode_ahead.frame_bytes(frame)
        budget.use(nbytes)
        seen.append((ref.frame, nbytes))
        time.sleep(0.005)
        del frame
        with lock:
            alive["now"] -= 1
        budget.let_go(nbytes)
    assert seen == [(n, size) for n, size in enumerate(sizes)]
    assert alive["most"] <= 3  # two within the budget, and the one the consumer holds
    assert budget.held == 0


def test_decoder_messages_of_other_threads_are_passed_on_not_swallowed(capfd):
    with raster.DECODER_MESSAGES.capture() as said:
        sys.stderr.write("a progress line from another thread\n")
        sys.stderr.flush()
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
    err = capfd.readouterr().err
    assert "a progress line from another thread" in err and "libpng" not in err
    assert said == ["libpng warning: iCCP: known incorrect sRGB profile\n"]
