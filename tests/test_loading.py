"""The engine's public image input: discover() files and series, load_frame() pictures, typed refusals."""

from __future__ import annotations

import gc
import os
import shutil
import struct
import time
import tracemalloc
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

import dicom_factory as factory
from brainscan.engine.errors import (
    CorruptImageError,
    DicomError,
    ImageTooLargeError,
    InputError,
    NotAnImageError,
)
from brainscan.engine.input import dicom_decode, discovery, loading
from brainscan.engine.input.discovery import discover, find_inputs
from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.input.loading import load_frame, load_picture


def only_ref(path: Path) -> FrameRef:
    refs = discover([path])
    assert len(refs) == 1
    return refs[0]


def window_tags(path: Path) -> tuple[float, float] | None:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if "WindowCenter" not in ds:
        return None
    first = lambda v: float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v)  # noqa: E731
    return first(ds.WindowCenter), first(ds.WindowWidth)


# -- discovery ---------------------------------------------------------------------------------
def test_discover_orders_a_shuffled_series_by_position(synthetic_sagittal: factory.SagittalSeries) -> None:
    refs = discover([synthetic_sagittal.folder])
    assert [r.path for r in refs] == synthetic_sagittal.files_in_order
    assert {r.kind for r in refs} == {"dicom"} and len({r.series_uid for r in refs}) == 1
    assert [r.series_index for r in refs] == list(range(16))
    assert {r.series_length for r in refs} == {16}


def test_discover_finds_the_sagittal_series(sagittal_series_dir: Path) -> None:
    refs = [r for r in discover([sagittal_series_dir]) if r.kind == "dicom"]
    assert len(refs) >= 16 and len({r.series_uid for r in refs}) == 1
    assert [r.series_index for r in refs] == list(range(len(refs)))


def test_discover_expands_multiframe_files_into_frames(dicom_samples: SimpleNamespace) -> None:
    refs = discover([dicom_samples.multiframe])
    assert [(r.frame, r.series_index, r.series_length) for r in refs] == [(0, 0, 3), (1, 1, 3), (2, 2, 3)]


def test_every_file_in_a_mixed_folder_gets_exactly_one_ref(
    tmp_path: Path, real_jpgs: list[Path], dicom_samples: SimpleNamespace
) -> None:
    root = tmp_path / "study"
    (root / "sub").mkdir(parents=True)
    shutil.copy(real_jpgs[0], root / "a.jpg")
    (root / "b-notes.txt").write_text("not an image")
    (root / "c-empty.png").write_bytes(b"")
    (root / ".DS_Store").write_bytes(b"\0" * 10)
    shutil.copy(dicom_samples.no_pixels, root / "DICOMDIR")
    shutil.copy(dicom_samples.single, root / "sub" / "slice.dcm")
    os.symlink(root, root / "sub" / "loop")  # a symbolic link back up: must not loop
    found = find_inputs([root])
    assert [(r.path.relative_to(root).as_posix(), r.kind) for r in found.refs] == [
        ("a.jpg", "raster"),
        ("c-empty.png", "unknown"),  # named like a picture: it gets its error row
        ("sub/slice.dcm", "dicom"),
    ]
    assert found.skipped == {discovery.SKIPPED_NOT_IMAGES: [root / "b-notes.txt"]}
    assert found.notes() == ["1 file skipped: not images (b-notes.txt)"]
    explicit = discover([root / "DICOMDIR", root / ".DS_Store"])  # named files always get a ref
    assert [(r.path.name, r.kind) for r in explicit] == [("DICOMDIR", "dicom"), (".DS_Store", "unknown")]


def test_the_same_file_named_twice_gets_one_ref(real_jpgs: list[Path]) -> None:
    assert (
        len(
            discover(
                [real_jpgs[0], real_jpgs[0].parent / ".." / real_jpgs[0].parent.name / real_jpgs[0].name]
            )
        )
        == 1
    )


def test_discover_refuses_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as caught:
        discover([tmp_path / "no-such-folder"])
    assert str(tmp_path / "no-such-folder") in str(caught.value)


def test_discover_never_decodes_pixels(
    monkeypatch: pytest.MonkeyPatch, synthetic_sagittal: factory.SagittalSeries, real_jpgs: list[Path]
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("discover decoded pixels")

    monkeypatch.setattr(dicom_decode, "pixel_array", refuse)
    monkeypatch.setattr(cv2, "imdecode", refuse)
    assert len(discover([synthetic_sagittal.folder, *real_jpgs])) == 16 + len(real_jpgs)


def test_discover_handles_ten_thousand_files_quickly(tmp_path: Path, dicom_samples: SimpleNamespace) -> None:
    tiny_png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()
    tiny_dicom = dicom_samples.single.read_bytes()
    for index in range(9_500):
        (tmp_path / f"img{index:05d}.png").write_bytes(tiny_png)
    for index in range(500):
        (tmp_path / f"dcm{index:05d}.dcm").write_bytes(tiny_dicom)
    started = time.perf_counter()
    refs = discover([tmp_path])
    elapsed = time.perf_counter() - started
    assert len(refs) == 10_000
    assert elapsed < 15, f"discover took {elapsed:.1f} s for 10,000 files"


# -- loading -------------------------------------------------------------------------------------
def test_real_jpg_loads_as_its_rgb_picture(real_jpgs: list[Path]) -> None:
    frame = load_frame(only_ref(real_jpgs[1]))
    expected = cv2.cvtColor(cv2.imread(str(real_jpgs[1]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frame.picture, expected)
    assert frame.values is None and frame.window is None and frame.window_source == "none"
    assert frame.tags["Size"] == "224 x 224" and frame.identifiers == {}


def test_load_picture_is_the_picture_of_frame_zero(dicom_samples: SimpleNamespace) -> None:
    np.testing.assert_array_equal(
        load_picture(dicom_samples.multiframe),
        load_frame(FrameRef(dicom_samples.multiframe, kind="dicom")).picture,
    )


def test_degenerate_edge_window_is_rejected_and_sane_one_used(
    synthetic_sagittal: factory.SagittalSeries,
) -> None:
    sources = [load_frame(ref).window_source for ref in discover([synthetic_sagittal.folder])]
    assert sources == ["percentile"] + ["tags"] * 14 + ["percentile"]


def test_sane_windows_of_the_real_midline_slices_are_used(shared_data_dir: Path) -> None:
    folder = shared_data_dir / "dicom" / "sagittal-t1-brain"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not on this machine")
    refs = discover([folder])
    assert len(refs) == 16
    for ref in refs:
        frame = load_frame(ref)
        assert frame.window_source == "tags", f"{ref.path.name}: window {window_tags(ref.path)}"
        assert frame.window == window_tags(ref.path)
        assert frame.picture.shape == (256, 256, 3) and frame.values is not None


def test_lateral_slices_with_tiny_scanner_windows_still_show_their_signal(shared_data_dir: Path) -> None:
    """Slices 1-6 of the real series carry windows such as 11/22 and 25/65. On this data they are not
    placeholders: these edge slices hold noise of 0-22 ... 0-97 only, so each window spans (almost) its
    slice's own values. Whichever window is chosen, the picture must show the slice, not go black or
    white; the sane windows of slices 7-8 are used as they are."""
    folder = shared_data_dir / "dicom" / "sagittal-t1-lateral"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not on this machine")
    refs = discover([folder])
    assert [r.series_index for r in refs] == list(range(8))
    for number, ref in enumerate(refs, start=1):
        frame = load_frame(ref)
        grey = frame.picture[:, :, 0]
        assert np.mean(grey == 255) < 0.01, f"slice {number}: window {frame.window} saturates it white"
        assert np.percentile(grey, 99.9) >= 96, f"slice {number}: window {frame.window} leaves it black"
        if number >= 7:
            assert frame.window_source == "tags" and frame.window == window_tags(ref.path)
            continue
        center, width = frame.window
        inside = (frame.values >= center - width / 2) & (frame.values <= center + width / 2)
        assert inside.mean() >= 0.99, f"slice {number}: window {frame.window} clips its values"


def test_rescaled_slices_get_modality_values(synthetic_sagittal: factory.SagittalSeries) -> None:
    path = next(iter(synthetic_sagittal.rescaled))
    frame = load_frame(only_ref(path))
    np.testing.assert_array_equal(frame.values, synthetic_sagittal.stored[path].astype(np.float32) * 2 - 1024)


def dicom_frames(files: list[Path]) -> list[Frame]:
    return [load_frame(FrameRef(f, kind="dicom")) for f in files]


@pytest.mark.parametrize("source", ["synthetic", "shared"])
def test_nine_transfer_syntaxes_decode_to_identical_pixels_and_pictures(
    request: pytest.FixtureRequest, source: str
) -> None:
    if source == "shared":
        files = request.getfixturevalue("shared_transfer_syntaxes")
    else:
        files = request.getfixturevalue("synthetic_transfer_syntaxes").files
    frames = dicom_frames(files)
    syntaxes = {f.tags["TransferSyntax"] for f in frames}
    assert len(syntaxes) >= 7, syntaxes  # really different encodings
    for frame in frames[1:]:
        np.testing.assert_array_equal(frame.values, frames[0].values, err_msg=frame.tags["TransferSyntax"])
        np.testing.assert_array_equal(frame.picture, frames[0].picture, err_msg=frame.tags["TransferSyntax"])
        assert frame.window == frames[0].window


def test_synthetic_transfer_syntaxes_hold_the_source_values_exactly(
    synthetic_transfer_syntaxes: SimpleNamespace,
) -> None:
    names = []
    for frame in dicom_frames(synthetic_transfer_syntaxes.files):
        np.testing.assert_array_equal(frame.values, synthetic_transfer_syntaxes.pixels.astype(np.float32))
        names.append(frame.tags["TransferSyntax"].split(" (")[-1].rstrip(")"))
    assert names == [str(uid) for _, uid, _ in factory.TRANSFER_SYNTAXES]


def test_monochrome1_frame_looks_like_its_monochrome2_twin(dicom_samples: SimpleNamespace) -> None:
    mono2, mono1 = dicom_frames([dicom_samples.mono2, dicom_samples.mono1])
    np.testing.assert_array_equal(mono1.picture, mono2.picture)
    assert mono1.inverted and not mono2.inverted
    assert mono1.tags["PhotometricInterpretation"] == "MONOCHROME1"


def test_rgb_dicom_stays_colour(dicom_samples: SimpleNamespace) -> None:
    frame = load_frame(only_ref(dicom_samples.rgb))
    np.testing.assert_array_equal(frame.picture, dicom_samples.rgb_pixels)
    assert frame.values is None and frame.window_source == "none"


def test_dicom_without_preamble_is_found_and_read(dicom_samples: SimpleNamespace) -> None:
    ref = only_ref(dicom_samples.raw)
    assert ref.kind == "dicom"
    np.testing.assert_array_equal(load_frame(ref).picture, load_frame(only_ref(dicom_samples.single)).picture)


def test_patient_identifiers_stay_out_of_the_display_tags(synthetic_sagittal: factory.SagittalSeries) -> None:
    frame = load_frame(only_ref(synthetic_sagittal.files_in_order[3]))
    assert not set(frame.tags) & set(loading.IDENTIFIER_KEYWORDS)
    shown = " ".join(frame.tags.values())
    for keyword, value in factory.IDENTIFIERS.items():
        assert value not in shown, keyword
        assert frame.identifiers[keyword] == value
    assert {"Modality", "SeriesDescription", "InstanceNumber", "PixelSpacing", "TransferSyntax"} <= set(
        frame.tags
    )


# -- refusals ------------------------------------------------------------------------------------
def bomb_png(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )
    return path


def undecodable_dicom(path: Path, pixels: np.ndarray) -> Path:
    ds = factory.new_dataset(pixels)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\0" * 64])
    ds["PixelData"].VR = "OB"
    return factory.save(ds, path)


@pytest.fixture(scope="module")
def bad_files(
    tmp_path_factory: pytest.TempPathFactory, real_jpgs: list[Path], dicom_samples: SimpleNamespace
) -> dict:
    folder = tmp_path_factory.mktemp("bad")
    jpeg = real_jpgs[0].read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "report.jpg").write_text("MRI report\n")
    (folder / "fake-raw.dcm").write_bytes(b"\x08\x00\x05\x00CS" + b"\xff" * 40)
    return {
        "empty": (folder / "empty.jpg", CorruptImageError, "empty"),
        "truncated-jpeg": (folder / "cut.jpg", CorruptImageError, "truncated"),
        "text": (folder / "report.jpg", NotAnImageError, "not a JPEG, PNG, BMP, TIFF or DICOM"),
        "starts-like-dicom": (folder / "fake-raw.dcm", NotAnImageError, "not a"),
        "bomb": (bomb_png(folder / "bomb.png"), ImageTooLargeError, "50000 x 50000"),
        "no-pixels": (dicom_samples.no_pixels, DicomError, "has no pixel data"),
        "truncated-dicom": (dicom_samples.truncated, CorruptImageError, "truncated"),
        "no-decoder": (
            undecodable_dicom(folder / "video.dcm", dicom_samples.pixels[0]),
            DicomError,
            "python-gdcm",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "truncated-jpeg",
        "text",
        "starts-like-dicom",
        "bomb",
        "no-pixels",
        "truncated-dicom",
        "no-decoder",
    ],
)
def test_bad_file_raises_its_input_error_naming_the_file(bad_files: dict, case: str) -> None:
    path, error, words = bad_files[case]
    ref = only_ref(path)  # every file gets a ref ...
    with pytest.raises(error) as caught:  # ... and a clear refusal
        load_frame(ref)
    message = str(caught.value)
    assert str(path) in message and words in message
    assert caught.value.fix, "the message says what to do"


def test_unexpected_decoder_failures_become_input_errors(
    monkeypatch: pytest.MonkeyPatch, real_jpgs: list[Path], dicom_samples: SimpleNamespace
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise KeyError("decoder internals")

    monkeypatch.setattr(cv2, "imdecode", explode)
    monkeypatch.setattr(dicom_decode, "pixel_array", explode)
    with pytest.raises(CorruptImageError, match="decoder internals"):
        load_frame(only_ref(real_jpgs[0]))
    with pytest.raises(DicomError, match="decoder internals"):
        load_frame(only_ref(dicom_samples.single))


def test_memory_stays_flat_over_repeated_loads(
    synthetic_transfer_syntaxes: SimpleNamespace, real_jpgs: list[Path]
) -> None:
    refs = discover([*synthetic_transfer_syntaxes.files, *real_jpgs[:6]])
    for ref in refs:  # warm up pydicom's and OpenCV's one-time state
        load_frame(ref)
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(3):
            for ref in refs:
                load_frame(ref)
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            for ref in refs:
                load_frame(ref)
        gc.collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert second - first < 256 * 1024, f"grew by {(second - first) / 1024:.0f} KiB"
