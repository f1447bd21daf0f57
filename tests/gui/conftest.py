"""Fixtures of the viewer tests: real images, a tiny model, an isolated settings file and the window.

Qt is imported inside the fixtures only, so the Qt-free view-model tests in this folder run
without PySide6. The settings of every test live in its ``tmp_path`` (and QSettings' default
paths are pointed at a temporary folder), so no test touches a person's real settings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import dicom_factory as factory
from tiny_models import build_tiny_model, tiny_contract


@pytest.fixture(scope="session")
def gui_data(tmp_path_factory: pytest.TempPathFactory):
    """Small copies of real data: 8 Kaggle JPGs (two per class), a 16-slice DICOM series, a broken JPG."""
    if not factory.KAGGLE_TRAINING.is_dir():
        pytest.skip(f"the Kaggle training JPGs are not at {factory.KAGGLE_TRAINING}")
    root = tmp_path_factory.mktemp("viewer-data")
    jpgs = root / "jpgs"
    jpgs.mkdir()
    for category in ("glioma", "meningioma", "notumor", "pituitary"):
        for source in factory.kaggle_images(2, category, start=40, step=97):
            shutil.copy(source, jpgs / f"{category}-{source.name}")
    series = factory.write_sagittal_series(root / "series", factory.kaggle_images(16, "glioma", start=300))
    broken = root / "broken"
    broken.mkdir()
    good = sorted(jpgs.glob("*.jpg"))[0].read_bytes()
    (broken / "cut-short.jpg").write_bytes(good[: len(good) // 2])
    shutil.copy(sorted(jpgs.glob("*.jpg"))[1], broken / "fine.jpg")
    return type("GuiData", (), {"root": root, "jpgs": jpgs, "series": series, "broken": broken})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def other_models(tmp_path_factory: pytest.TempPathFactory):
    """A second valid model (binary), one without a contract, one whose graph contradicts its contract, and one
    whose contract records no weights checksum (unverified)."""
    folder = tmp_path_factory.mktemp("other-models")
    binary = build_tiny_model(
        folder / "binary.onnx", tiny_contract(name="tiny-binary", task="binary", classes=("no", "tumour")), seed=3
    )
    no_contract = build_tiny_model(folder / "no-contract.onnx", with_contract=False)
    mismatch = build_tiny_model(folder / "mismatch.onnx", graph_classes=3)
    unverified = build_tiny_model(folder / "unverified.onnx", stamp=False)
    not_onnx = folder / "not-a-model.onnx"
    not_onnx.write_bytes(b"this is not an ONNX file")
    return type("Models", (), {"binary": binary, "no_contract": no_contract, "mismatch": mismatch, "not_onnx": not_onnx,
                               "unverified": unverified})


@pytest.fixture(autouse=True)
def _isolated_qsettings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point QSettings' user locations at a temporary folder and drop $BRAINSCAN_SETTINGS."""
    monkeypatch.delenv("BRAINSCAN_SETTINGS", raising=False)
    try:
        from PySide6.QtCore import QSettings
    except ImportError:
        yield
        return
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp_path / "qsettings-user"))
    yield


@pytest.fixture(autouse=True)
def _garbage_collected_in_the_gui_thread():
    """After each test, collect its garbage here, in the GUI thread, and give collection back to the interpreter.

    A window's worker pool moves cycle collection to the GUI thread (brainscan.gui.gui_thread_gc); without this a
    later test's worker could be the thread that collects this test's Qt objects."""
    yield
    try:
        from brainscan.gui.gui_thread_gc import restore_automatic_gc
    except ImportError:
        return
    restore_automatic_gc()


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    return tmp_path / "viewer-settings.ini"


@pytest.fixture
def make_window(qtbot, settings_file: Path, tiny_model: Path):
    """Build main windows on an isolated settings file with the tiny model; all are shut down after."""
    import pyqtgraph as pg

    from brainscan.gui.main_window import MainWindow
    from brainscan.gui.settings import AppSettings

    pg.setConfigOptions(mouseRateLimit=-1)  # tests send mouse moves faster than 100 per second
    windows = []

    def make(model: Path | None = tiny_model, device: str = "cpu", path: Path = settings_file, *,
             allow_unverified: bool = False) -> MainWindow:
        settings = AppSettings(path)
        if model is not None:
            settings.model_path = model
        settings.device = device
        window = MainWindow(settings, model_in_background=False, allow_unverified=allow_unverified)
        window.resize(1280, 800)
        window.show()
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
        assert window.pool.pool.activeThreadCount() == 0, "a worker thread outlived the window"
        assert window.pool.running == 0


@pytest.fixture
def window(make_window):
    return make_window()

