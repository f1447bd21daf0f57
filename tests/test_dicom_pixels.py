"""DICOM pixels to picture: modality LUT, VOI window (tags only when sane), MONOCHROME1, colour."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import RLELossless

import dicom_factory as factory
from brainscan.engine.errors import CorruptImageError, DicomError, ImageTooLargeError
from brainscan.engine.input import dicom_pixels

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # shipped inside the package


def bundled(name: str) -> Path:
    path = PYDICOM_FILES / name
    if not path.is_file():
        pytest.skip(f"pydicom's bundled {name} is not installed")
    return path


def grey_dataset(values: np.ndarray, **attributes: object) -> Dataset:
    return factory.new_dataset(values, **attributes)


@pytest.fixture(scope="module")
def mr_values(dicom_samples: SimpleNamespace) -> np.ndarray:
    """Stored 12-bit values of a real slice (0..1023, black background)."""
    return dicom_samples.pixels[0]


# -- modality LUT ----------------------------------------------------------------------------------
def test_rescale_is_applied_in_float_without_integer_overflow() -> None:
    stored = np.array([[0, 1000, 65535]], dtype=np.uint16)
    ds = grey_dataset(stored, bits_stored=16, RescaleSlope=2, RescaleIntercept=-1024)
    values = dicom_pixels.modality_lut(stored, ds)
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, [[-1024.0, 976.0, 130046.0]])


def test_missing_rescale_keeps_the_stored_values() -> None:
    stored = np.array([[5, 4095]], dtype=np.uint16)
    np.testing.assert_array_equal(dicom_pixels.modality_lut(stored, grey_dataset(stored)), [[5.0, 4095.0]])


def test_modality_lut_sequence_is_applied() -> None:
    stored = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    ds = grey_dataset(stored, bits_stored=16)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    item.ModalityLUTType = "HU"
    item.LUTData = [100, 200, 400, 800]
    ds.ModalityLUTSequence = Sequence([item])
    np.testing.assert_array_equal(dicom_pixels.modality_lut(stored, ds), [[100.0, 200.0, 400.0, 800.0]])


def test_enhanced_rescale_is_read_from_the_functional_groups() -> None:
    stored = np.array([[10, 20]], dtype=np.uint16)
    ds = grey_dataset(stored)
    transform = Dataset()
    transform.RescaleSlope = 3
    transform.RescaleIntercept = 1
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    np.testing.assert_array_equal(dicom_pixels.modality_lut(stored, ds), [[31.0, 61.0]])


# -- the VOI window --------------------------------------------------------------------------------
def test_degenerate_window_11_22_on_data_reaching_1000_is_rejected(mr_values: np.ndarray) -> None:
    values = mr_values.astype(np.float32)
    assert values.max() > 900
    window = dicom_pixels.voi_window(values, grey_dataset(mr_values, WindowCenter=11, WindowWidth=22))
    assert window.source == "percentile"
    low, high = float(values.min()), float(values.max())  # the full range, as the training exports
    assert (window.center, window.width) == ((low + high) / 2, high - low)


def test_sane_window_from_the_tags_is_used(mr_values: np.ndarray) -> None:
    window = dicom_pixels.voi_window(
        mr_values.astype(np.float32), grey_dataset(mr_values, WindowCenter=450, WindowWidth=800)
    )
    assert window == dicom_pixels.Window(450.0, 800.0, "tags")


def test_only_the_first_of_several_windows_is_considered(mr_values: np.ndarray) -> None:
    ds = grey_dataset(mr_values, WindowCenter=[450, 11], WindowWidth=[800, 22])
    assert dicom_pixels.voi_window(mr_values.astype(np.float32), ds).source == "tags"
    ds = grey_dataset(mr_values, WindowCenter=[11, 450], WindowWidth=[22, 800])
    assert dicom_pixels.voi_window(mr_values.astype(np.float32), ds).source == "percentile"


@pytest.mark.parametrize(
    ("center", "width", "why"),
    [
        (500, 0, "zero width"),
        (500, -10, "negative width"),
        (20_000, 1000, "far above the data"),
        (-5000, 1000, "far below the data"),
        (500, 3, "narrower than 1% of the data's range"),
        (1500, 800, "above all the signal: everything black"),
    ],
)
def test_insane_windows_fall_back_to_percentiles(
    mr_values: np.ndarray, center: float, width: float, why: str
) -> None:
    ds = grey_dataset(mr_values, WindowCenter=center, WindowWidth=width)
    assert dicom_pixels.voi_window(mr_values.astype(np.float32), ds).source == "percentile", why


def test_window_tags_that_are_not_numbers_fall_back_to_percentiles(mr_values: np.ndarray) -> None:
    ds = grey_dataset(mr_values)
    ds.add_new(0x00281050, "DS", "")
    assert dicom_pixels.voi_window(mr_values.astype(np.float32), ds).source == "percentile"


def test_percentile_window_of_a_constant_image_is_usable() -> None:
    window = dicom_pixels.percentile_window(np.full((4, 4), 7.0))
    assert window.width > 0
    picture = dicom_pixels.apply_window(np.full((4, 4), 7.0), window.center, window.width)
    assert picture.dtype == np.uint8 and len(np.unique(picture)) == 1


def test_apply_window_is_linear_from_lower_to_upper_bound() -> None:
    values = np.array([-100.0, 0.0, 50.0, 100.0, 25.0, 400.0])
    picture = dicom_pixels.apply_window(values, center=50.0, width=100.0)
    assert picture.dtype == np.uint8
    assert picture.tolist() == [0, 0, 128, 255, 64, 255]  # 127.5 and 63.75 round up


def test_apply_window_works_for_widths_below_one() -> None:
    assert dicom_pixels.apply_window(np.array([0.0, 0.0005, 0.001]), center=0.0005, width=0.001).tolist() == [
        0,
        128,
        255,
    ]


# -- whole pictures ----------------------------------------------------------------------------
def test_grey_picture_replicates_the_window_into_three_channels(mr_values: np.ndarray) -> None:
    ds = grey_dataset(mr_values, WindowCenter=450, WindowWidth=800)
    picture, values, window = dicom_pixels.to_picture(ds)
    assert picture.shape == (*mr_values.shape, 3) and picture.dtype == np.uint8
    assert values is not None and values.dtype == np.float32
    assert window == dicom_pixels.Window(450.0, 800.0, "tags")
    np.testing.assert_array_equal(picture[:, :, 0], dicom_pixels.apply_window(values, 450.0, 800.0))
    assert (picture[:, :, 0] == picture[:, :, 2]).all()


def test_rescaled_slice_gives_the_same_picture_as_its_unrescaled_twin(mr_values: np.ndarray) -> None:
    even = (mr_values // 2) * 2  # representable after halving
    plain = grey_dataset(even)
    halved = grey_dataset(
        ((even.astype(np.int32) + 1024) // 2).astype(np.uint16), RescaleSlope=2, RescaleIntercept=-1024
    )
    picture_plain, values_plain, _ = dicom_pixels.to_picture(plain)
    picture_halved, values_halved, _ = dicom_pixels.to_picture(halved)
    np.testing.assert_array_equal(values_halved, values_plain)
    np.testing.assert_array_equal(picture_halved, picture_plain)


@pytest.mark.parametrize("pair", ["percentile", "tags"])
def test_monochrome1_picture_equals_its_monochrome2_twin(dicom_samples: SimpleNamespace, pair: str) -> None:
    mono2, mono1 = (
        (dicom_samples.mono2, dicom_samples.mono1)
        if pair == "percentile"
        else (dicom_samples.mono2_windowed, dicom_samples.mono1_windowed)
    )
    picture2, values2, window2 = dicom_pixels.to_picture(pydicom.dcmread(mono2))
    picture1, values1, window1 = dicom_pixels.to_picture(pydicom.dcmread(mono1))
    assert window1.source == window2.source == pair
    np.testing.assert_array_equal(values1, 4095 - values2)  # values stay modality values
    np.testing.assert_array_equal(picture1, picture2)
    assert picture1.std() > 20  # a real picture, not a flat one


def test_invert_monochrome1_negates_values_and_window_only_for_monochrome1() -> None:
    values = np.array([[1.0, 2.0]])
    window = dicom_pixels.Window(1.5, 1.0, "tags")
    ds = grey_dataset(np.zeros((1, 2), np.uint16))
    assert dicom_pixels.invert_monochrome1(values, window, ds) == (values, window)
    ds.PhotometricInterpretation = "MONOCHROME1"
    shown, shown_window = dicom_pixels.invert_monochrome1(values, window, ds)
    np.testing.assert_array_equal(shown, -values)
    assert shown_window == dicom_pixels.Window(-1.5, 1.0, "tags")


def test_rgb_dicom_keeps_its_colours(dicom_samples: SimpleNamespace) -> None:
    picture, values, window = dicom_pixels.to_picture(pydicom.dcmread(dicom_samples.rgb))
    np.testing.assert_array_equal(picture, dicom_samples.rgb_pixels)
    assert values is None and window is None


def test_ybr_jpeg_is_converted_to_rgb() -> None:
    rgb, _, _ = dicom_pixels.to_picture(pydicom.dcmread(bundled("SC_rgb_dcmtk_+eb+cr.dcm")))  # RGB, uncompressed
    ybr, _, _ = dicom_pixels.to_picture(pydicom.dcmread(bundled("SC_rgb_jpeg_dcmtk.dcm")))  # YBR_FULL_422 baseline JPEG
    assert ybr.shape == rgb.shape
    assert np.abs(ybr.astype(int) - rgb.astype(int)).mean() < 3
    assert rgb[5, 50].tolist() == [255, 0, 0]  # the red band stays red, not blue


def test_palette_colour_goes_through_its_lut() -> None:
    picture, values, _ = dicom_pixels.to_picture(pydicom.dcmread(bundled("examples_palette.dcm")))
    assert picture.ndim == 3 and picture.shape[2] == 3 and values is None
    assert (picture[:, :, 0] != picture[:, :, 2]).any()


def test_each_frame_of_a_multiframe_file_is_its_own_picture(dicom_samples: SimpleNamespace) -> None:
    multi = pydicom.dcmread(dicom_samples.multiframe)
    for index, single_path in enumerate(dicom_samples.multiframe_frames):
        picture, values, _ = dicom_pixels.to_picture(multi, index)
        expected, expected_values, _ = dicom_pixels.to_picture(pydicom.dcmread(single_path))
        np.testing.assert_array_equal(values, expected_values)
        np.testing.assert_array_equal(picture, expected)
    with pytest.raises(DicomError, match="has no frame 3"):
        dicom_pixels.to_picture(multi, 3)


# -- refusals ----------------------------------------------------------------------------------
def test_dataset_without_pixel_data_is_a_dicom_error_naming_the_file(dicom_samples: SimpleNamespace) -> None:
    with pytest.raises(DicomError, match="has no pixel data") as caught:
        dicom_pixels.to_picture(pydicom.dcmread(dicom_samples.no_pixels))
    assert str(dicom_samples.no_pixels) in str(caught.value)


def test_image_header_without_its_pixels_is_reported_as_truncated(dicom_samples: SimpleNamespace) -> None:
    ds = pydicom.dcmread(dicom_samples.single)
    del ds.PixelData
    with pytest.raises(CorruptImageError, match="truncated"):
        dicom_pixels.to_picture(ds)


def test_truncated_pixel_data_is_corrupt(dicom_samples: SimpleNamespace) -> None:
    with pytest.raises(CorruptImageError, match="truncated") as caught:
        dicom_pixels.to_picture(pydicom.dcmread(dicom_samples.truncated))
    assert str(dicom_samples.truncated) in str(caught.value)


def test_transfer_syntax_without_a_decoder_names_it_and_the_fix(
    tmp_path: Path, mr_values: np.ndarray
) -> None:
    ds = grey_dataset(mr_values)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\0" * 64])
    ds["PixelData"].VR = "OB"
    path = factory.save(ds, tmp_path / "video.dcm")
    with pytest.raises(DicomError) as caught:
        dicom_pixels.to_picture(pydicom.dcmread(path))
    message = str(caught.value)
    assert str(path) in message and "MPEG2 Main Profile / Main Level" in message and "python-gdcm" in message


def test_damaged_compressed_data_is_a_dicom_error(tmp_path: Path, mr_values: np.ndarray) -> None:
    ds = grey_dataset(mr_values)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + b"\x13" * 200])
    ds["PixelData"].VR = "OB"
    path = factory.save(ds, tmp_path / "broken-jls.dcm")
    with pytest.raises(DicomError, match="JPEG-LS Lossless"):
        dicom_pixels.to_picture(pydicom.dcmread(path))


@pytest.mark.parametrize(
    ("rows", "columns", "frames"),
    [(40_000, 256, 1), (256, 30_001, 1), (512, 512, 4000)],
    ids=["tall", "wide", "too-many-frames"],
)
def test_absurd_declared_size_is_refused_before_decoding(rows: int, columns: int, frames: int) -> None:
    ds = grey_dataset(np.zeros((2, 2), np.uint16))
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    # one tiny fragment a frame: as many frames as declared, far too short to decode (which would fail differently)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([b"\0\0"] * frames)
    with pytest.raises(ImageTooLargeError, match=f"{columns} x {rows}"):
        dicom_pixels.to_picture(ds)
