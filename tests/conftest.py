"""Shared fixtures.

Image input: the real files under ``../shared/data`` where present, else real-content DICOM built
once per session from the real Kaggle JPGs (see ``tests/dicom_factory.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

import dicom_factory as factory


# -- image input (raster, DICOM) -----------------------------------------------------------------
@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``../shared/data`` relative to the repository root."""
    return factory.SHARED_DATA


@pytest.fixture(scope="session")
def real_jpgs() -> list[Path]:
    """Real brain-MRI JPGs from the four Kaggle training classes, spread out so that both grey and
    colour-encoded JPEGs are among them (the first is colour-encoded, the second grey)."""
    if not factory.KAGGLE_TRAINING.is_dir():
        pytest.skip(f"the Kaggle training JPGs are not at {factory.KAGGLE_TRAINING}")
    files = []
    for category in ("glioma", "meningioma", "notumor", "pituitary"):
        files += factory.kaggle_images(6, category, step=211)
    return files


@pytest.fixture(scope="session")
def factory_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dicom-factory")


@pytest.fixture(scope="session")
def synthetic_sagittal(factory_dir: Path, real_jpgs: list[Path]) -> factory.SagittalSeries:
    """A 16-slice sagittal-like series of real slices whose true order is known."""
    return factory.write_sagittal_series(
        factory_dir / "sagittal", factory.kaggle_images(16, "glioma", start=100)
    )


@pytest.fixture(scope="session")
def sagittal_series_dir(shared_data_dir: Path, synthetic_sagittal: factory.SagittalSeries) -> Path:
    """The real sagittal T1 series when present, else the synthetic one."""
    real = shared_data_dir / "dicom" / "sagittal-t1-brain"
    return real if real.is_dir() and any(real.iterdir()) else synthetic_sagittal.folder


@pytest.fixture(scope="session")
def synthetic_transfer_syntaxes(factory_dir: Path, real_jpgs: list[Path]) -> SimpleNamespace:
    """One real slice (12-bit) in nine transfer syntaxes, and the stored values they all hold."""
    pixels = factory.twelve_bit(factory.read_grey(real_jpgs[1]), seed=1)
    return SimpleNamespace(
        files=factory.write_transfer_syntaxes(factory_dir / "transfer-syntaxes", pixels), pixels=pixels
    )


@pytest.fixture(scope="session")
def shared_transfer_syntaxes(shared_data_dir: Path) -> list[Path]:
    """The real ``dicom/transfer-syntaxes/{1..9}.dcm`` (skipped when absent)."""
    files = [shared_data_dir / "dicom" / "transfer-syntaxes" / f"{n}.dcm" for n in range(1, 10)]
    if not all(f.is_file() for f in files):
        pytest.skip("../shared/data/dicom/transfer-syntaxes is not on this machine")
    return files


@pytest.fixture(scope="session")
def dicom_samples(factory_dir: Path, real_jpgs: list[Path]) -> SimpleNamespace:
    """Single DICOM files for particular cases, built from real slices."""
    folder = factory_dir / "samples"
    folder.mkdir()
    grey = [factory.twelve_bit(factory.read_grey(p), seed=n) for n, p in enumerate(real_jpgs[:4])]
    colour = factory.false_colour(factory.read_grey(real_jpgs[5]))
    mono2, mono1 = factory.write_monochrome_twins(folder / "twins", grey[0])
    mono2_tags, mono1_tags = factory.write_monochrome_twins(
        folder / "twins-windowed", grey[1], WindowCenter=400, WindowWidth=900
    )
    return SimpleNamespace(
        pixels=grey,
        single=factory.save(factory.new_dataset(grey[2]), folder / "single.dcm"),
        mono2=mono2,
        mono1=mono1,
        mono2_windowed=mono2_tags,
        mono1_windowed=mono1_tags,
        multiframe=factory.write_multiframe(folder / "multiframe.dcm", grey[:3]),
        multiframe_frames=[
            factory.save(factory.new_dataset(g), folder / f"frame{n}.dcm") for n, g in enumerate(grey[:3])
        ],
        rgb=factory.write_rgb(folder / "rgb.dcm", colour),
        rgb_pixels=colour,
        no_pixels=factory.write_without_pixels(folder / "report.dcm"),
        truncated=factory.write_truncated(folder / "truncated.dcm", grey[3]),
        raw=factory.write_without_preamble(folder / "raw-dataset", grey[2]),
    )


# -- a private cache ---------------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine's cache (weights verified before) in a temporary folder, never the user's; child
    processes the tests start inherit it."""
    folder = tmp_path_factory.mktemp("brainscan-cache")
    os.environ["BRAINSCAN_CACHE"] = str(folder)
    return folder
