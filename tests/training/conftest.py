"""Shared fixtures of the trainer tests: real pictures, and one small model exported once.

torch and timm are imported inside the fixtures: the test modules skip themselves first
(``pytest.importorskip``) when the trainer extra is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("torch") is not None:
    # Before the test modules' importorskip("timm"): the trainer makes torchvision importable
    # where its C extension does not match torch (see trainer/torch_compat.py).
    import trainer  # noqa: F401

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TRAINING = DATA / "brain-tumor-mri" / "Training"
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


@pytest.fixture(scope="session")
def training_dir() -> Path:
    if not TRAINING.is_dir():
        pytest.skip(f"real data not found at {TRAINING}")
    return TRAINING


@pytest.fixture(scope="session")
def real_paths(training_dir: Path) -> list[Path]:
    """Four real pictures per class, spread over each folder."""
    paths = []
    for name in CLASSES:
        files = sorted((training_dir / name).glob("*.jpg"))
        paths.extend(files[:: max(1, len(files) // 4)][:4])
    return paths


@pytest.fixture(scope="session")
def real_pictures(real_paths: list[Path]) -> list[np.ndarray]:
    from trainer.data import read_picture

    return [read_picture(p) for p in real_paths]


@pytest.fixture(scope="session")
def contract():
    from brainscan.engine.model.contract import ModelContract

    return ModelContract(
        name="test-lite0",
        version="0.0.1",
        task="4class",
        classes=CLASSES,
        architecture="tf_efficientnet_lite0",
        input_size=(224, 224),
        metrics={"validation": {"accuracy": 0.0}},
        training={"note": "untrained head, for tests"},
    )


@pytest.fixture(scope="session")
def small_model():
    """Lite0 with the offline ImageNet backbone (real BN statistics) and a random 4-class head."""
    import torch

    from trainer.model import create_model

    torch.set_num_threads(2)
    model = create_model("tf_efficientnet_lite0", num_classes=4, weights="offline")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        head = model.get_classifier()
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.05)
        head.bias.copy_(torch.randn(head.bias.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def exported(small_model, contract, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.export import export_onnx

    return export_onnx(small_model, contract, tmp_path_factory.mktemp("onnx") / "model.onnx")


def copy_real(training_dir: Path, root: Path, per_class: int, *, start: int = 0, step: int = 97,
              folders: dict[str, str] | None = None) -> list[Path]:
    """Copy ``per_class`` real pictures of each class into ``root/<folder>/`` (folders renamed by ``folders``)."""
    import shutil

    copied = []
    for name in CLASSES:
        files = sorted((training_dir / name).glob("*.jpg"))[start::step][:per_class]
        target = root / (folders or {}).get(name, name)
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            copied.append(Path(shutil.copy(path, target / path.name)))
    return copied


@pytest.fixture(scope="session")
def tiny_root(training_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real pictures per class, plus one truncated JPEG and one text file named .jpg (both broken)."""
    root = tmp_path_factory.mktemp("tiny-data")
    copied = copy_real(training_dir, root, 12)
    (root / "glioma" / "zz-truncated.jpg").write_bytes(copied[0].read_bytes()[:300])
    (root / "notumor" / "zz-not-a-picture.jpg").write_text("this is not a picture\n")
    return root


def tiny_config(root: Path, runs: Path, name: str = "tiny", **changes):
    """A fit that takes seconds: 128-pixel input, 2 head epochs, 2 short fine-tuning epochs."""
    from trainer.config import FitConfig

    values = dict(
        name=name, data=(str(root),), runs_dir=str(runs), input_size=128, head_epochs=2, finetune_epochs=2.0,
        batch_size=8, val_fraction=0.25, patience=0, threads=2,
    )
    values.update(changes)
    return FitConfig(**values).resolved()


@pytest.fixture(scope="session")
def tiny_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run (its data holds two broken files, which are skipped)."""
    from trainer.fit import run_fit

    return run_fit(tiny_config(tiny_root, tmp_path_factory.mktemp("runs")), argv=["fit", "(test)"])
