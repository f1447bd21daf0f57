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
    from brainscan.engine.contract import ModelContract

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
