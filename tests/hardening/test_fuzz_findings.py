"""Regression tests for what fuzzing the loaders found (bench/fuzz_loaders.py), at the loader level."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import dicom_factory as factory
from brainscan.engine.errors import CorruptImageError, DicomError, ImageTooLargeError, InputError
from brainscan.engine.input import dicom_decode
from brainscan.engine.input.dicom_pixels import replace_non_finite
from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame

CORPUS = Path(__file__).parent / "corpus"


def only_ref(path: Path):
    refs = discover([path])
    assert len(refs) == 1
    return refs[0]


def test_rust_decoder_panic_becomes_a_dicom_error(tmp_path):
    """pylibjpeg-rle panics (pyo3 PanicException, a BaseException) on a damaged RLE segment."""
    path = shutil.copy(CORPUS / "fuzz-rle-rust-panic.dcm", tmp_path / "slice.dcm")
    with pytest.raises(DicomError, match="RLE Lossless.*cannot be decoded.*PanicException") as caught:
        load_frame(only_ref(Path(path)))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", ["fuzz-unknown-vr-in-position.dcm", "fuzz-unknown-vr-in-instance-number.dcm"])
def test_header_value_with_an_unknown_vr_does_not_break_discovery(tmp_path, name):
    """pydicom converts values when first read: discover() raised NotImplementedError for the whole run."""
    path = Path(shutil.copy(CORPUS / name, tmp_path / name))
    ref = only_ref(path)
    assert ref.kind == "dicom"
    with pytest.raises(InputError) as caught:
        load_frame(ref)
    assert str(path) in str(caught.value)


def test_damaged_jpeg2000_that_made_gdcm_abort_the_process_is_a_dicom_error(tmp_path):
    """GDCM throws an uncaught C++ exception (std::terminate, the process dies) on this damaged JPEG 2000.
    pylibjpeg-openjpeg is tried first, then GDCM in a child process whose crash is this file's error.
    Checked in a subprocess all the same: a regression would abort pytest."""
    path = shutil.copy(CORPUS / "fuzz-j2k-gdcm-abort.dcm", tmp_path / "slice.dcm")
    code = (
        "import sys; from pathlib import Path; from brainscan.engine.errors import DicomError\n"
        "from brainscan.engine.input.discovery import discover\nfrom brainscan.engine.input.loading import load_frame\n"
        "try:\n    load_frame(discover([Path(sys.argv[1])])[0])\n"
        "except DicomError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]
    assert "JPEG 2000" in done.stdout and "the GDCM decoder crashed" in done.stdout


def test_damaged_jpeg_lossless_crashes_only_the_gdcm_child_process(tmp_path):
    """GDCM, the only permissive JPEG lossless decoder, aborts on this damaged file (gdcm::Exception through
    std::terminate). It decodes in a child process: the crash becomes this file's DicomError, and the
    next file decodes in a fresh child."""
    broken = Path(shutil.copy(CORPUS / "fuzz-jpeg-lossless-gdcm-abort.dcm", tmp_path / "broken.dcm"))
    with pytest.raises(DicomError, match="the GDCM decoder crashed on its JPEG Lossless") as caught:
        load_frame(only_ref(broken))
    assert str(broken) in str(caught.value)
    pixels = factory.twelve_bit(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1)))
    plain = factory.save(factory.new_dataset(pixels), tmp_path / "plain.dcm")
    good = factory.gdcm_transcode(plain, tmp_path / "good.dcm", factory.JPEGLosslessSV1)
    frame = load_frame(only_ref(good))
    np.testing.assert_array_equal(frame.values, pixels.astype(np.float32))


def test_a_hung_gdcm_child_is_stopped_and_reported(tmp_path, monkeypatch):

    dicom_decode._GDCM.close()  # the next decode starts a child: far longer than the timeout
    monkeypatch.setattr(dicom_decode, "GDCM_TIMEOUT_S", 0.001)
    pixels = factory.twelve_bit(np.full((64, 64), 100, np.uint8))
    plain = factory.save(factory.new_dataset(pixels), tmp_path / "plain.dcm")
    slow = factory.gdcm_transcode(plain, tmp_path / "slow.dcm", factory.JPEGLosslessSV1)
    with pytest.raises(DicomError, match="took longer than 0 s"):
        load_frame(only_ref(slow))
    monkeypatch.setattr(dicom_decode, "GDCM_TIMEOUT_S", 60.0)
    assert load_frame(only_ref(slow)).picture.shape == (64, 64, 3)  # a fresh child after the stop


def test_float_tiff_with_nan_and_infinity_gives_a_finite_picture(tmp_path):
    values = np.tile(np.linspace(0, 100, 32, dtype=np.float32), (32, 1))
    values[0, :4] = [np.nan, np.inf, -np.inf, np.nan]
    path = tmp_path / "float.tiff"
    assert cv2.imwrite(str(path), values)
    frame = load_frame(only_ref(path))
    assert frame.picture.dtype == np.uint8 and frame.picture.shape == (32, 32, 3)
    assert np.isfinite(frame.values).all()
    clean = values.copy()
    clean[0, :4] = [0, 100, 0, 0]  # NaN and -inf to the lowest finite value, +inf to the highest
    np.testing.assert_array_equal(frame.values, clean)


def test_float_tiff_without_any_finite_value_is_refused(tmp_path):
    path = tmp_path / "nothing.tiff"
    assert cv2.imwrite(str(path), np.full((64, 64), np.nan, np.float32))
    with pytest.raises(CorruptImageError, match="no finite pixel value"):
        load_frame(only_ref(path))


def test_replace_non_finite_leaves_finite_and_integer_data_alone():
    integers = np.arange(6, dtype=np.uint16)
    floats = np.arange(6, dtype=np.float32)
    assert replace_non_finite(integers) is integers and replace_non_finite(floats) is floats


def test_one_dicom_frame_of_400_megapixels_is_refused_before_decoding(tmp_path):
    """A small compressed file could declare a 20000 x 20000 frame: about 10 GB to window. Not a finding of
    the fuzzer (its inputs are 64 KB) but of reading the guard while fixing its findings."""
    ds = factory.new_dataset(np.zeros((8, 8), np.uint16))
    ds.Rows, ds.Columns = 20_000, 20_000
    path = factory.save(ds, tmp_path / "wide.dcm")
    with pytest.raises(ImageTooLargeError, match="20000 x 20000 pixels x 1 frames"):
        load_frame(only_ref(path))


CHILD_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])

def main():
    import numpy as np, pydicom, dicom_factory as factory
    from pathlib import Path
    from brainscan.engine.input import dicom_decode
    folder = Path(sys.argv[2])
    plain = factory.save(factory.new_dataset(factory.twelve_bit(np.full((64, 64), 9, np.uint8))), folder / "p.dcm")
    path = factory.gdcm_transcode(plain, folder / "j.dcm", factory.JPEGLosslessSV1)
    dicom_decode.decode_with_gdcm_isolated(pydicom.dcmread(path), None)
    print("decoded", flush=True)
    time.sleep(120)

if __name__ == "__main__":
    main()
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the child processes through /proc")
def test_gdcm_child_exits_when_its_parent_is_killed(tmp_path):
    """A `brainscan screen` killed with SIGKILL must not leave its GDCM child behind."""
    parent = subprocess.Popen([sys.executable, "-c", CHILD_SCRIPT, str(Path(__file__).parents[1]), str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert parent.stdout.readline().strip() == "decoded"
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent_of(p) == parent.pid]
        workers = [p for p in children if b"spawn_main" in _read(p / "cmdline")]
        assert workers, "the GDCM child should be running"
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(p.exists() for p in workers):
        time.sleep(0.1)
    assert not any(p.exists() for p in workers)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _parent_of(process: Path) -> int:
    fields = _read(process / "stat").rsplit(b")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else -1
