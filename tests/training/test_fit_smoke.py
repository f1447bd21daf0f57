"""A few training steps on real pictures lower the loss; a tiny full run writes what it should."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

import torch
import torch.nn.functional as F

from brainscan.engine.model.contract import ModelContract
from brainscan.engine.model.preprocess import normalize
from trainer.augment import AugmentConfig, augment_batch, normalize_tensor, plain_batch
from trainer.config import FitConfig
from trainer.data import CLASSES_4, list_samples, load_pictures
from trainer.fit import run_fit
from trainer.model import create_model
from trainer.run_folder import load_checkpoint
from trainer.training_loop import finetune, set_trainable

pytestmark = pytest.mark.trainer


@pytest.fixture(scope="module")
def sixty_four(training_dir):
    """16 real pictures per class at the input size, and their labels."""
    samples = list_samples(training_dir)
    labels = np.array([s.label for s in samples])
    chosen = np.concatenate([np.flatnonzero(labels == c)[::80][:16] for c in range(4)])
    config = FitConfig()
    return load_pictures([samples[i].path for i in chosen], config.contract()), labels[chosen]


def _loss(model, pictures, labels, contract) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(plain_batch(pictures, contract)), torch.as_tensor(labels)))


def test_training_normalisation_is_the_engines(sixty_four):
    pictures, _ = sixty_four
    contract = FitConfig().contract()
    ours = normalize_tensor(torch.from_numpy(pictures[:4]).permute(0, 3, 1, 2).float(), contract)
    np.testing.assert_allclose(ours.numpy(), normalize(pictures[:4], contract), atol=1e-6)
    still = AugmentConfig(hflip=0, rotate_deg=0, shift=0, zoom=0, brightness=0, contrast=0)
    same = augment_batch(pictures[:4], contract, still, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(same.numpy(), normalize(pictures[:4], contract), atol=1e-4)


def test_augmentation_keeps_shape_and_range(sixty_four):
    pictures, _ = sixty_four
    contract = FitConfig().contract()
    out = augment_batch(pictures[:8], contract, AugmentConfig(), torch.Generator().manual_seed(0))
    assert out.shape == (8, 3, 224, 224) and out.dtype == torch.float32
    assert float(out.min()) >= -1.0 - 1e-6 and float(out.max()) <= 1.0 + 1e-6
    assert not torch.allclose(out, plain_batch(pictures[:8], contract))


def test_only_the_last_blocks_and_the_head_train():
    model = create_model("tf_efficientnet_lite0", 4, "none")
    trainable = set_trainable(model, ("blocks.6", "conv_head", "bn2"))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {p.data_ptr() for p in trainable} == {p.data_ptr() for n, p in model.named_parameters() if n in names}
    assert all(n.startswith(("blocks.6", "conv_head", "bn2", "classifier")) for n in names)
    assert "classifier.weight" in names and "conv_stem.weight" not in names


def test_a_few_steps_reduce_the_training_loss(sixty_four):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    pictures, labels = sixty_four
    config = FitConfig(batch_size=16, finetune_lr=1e-3, warmup_fraction=0.0)
    model = create_model(config.architecture, 4, "offline").to(memory_format=torch.channels_last)
    before = _loss(model, pictures, labels, config.contract())
    result = finetune(model, pictures, labels, config, steps=8, augment=False)
    after = _loss(model, pictures, labels, config.contract())
    assert result["steps"] == 8
    assert after < before - 0.1, (before, after)


def test_a_tiny_run_saves_checkpoint_config_and_contract_and_exports(training_dir, tmp_path):
    from trainer.__main__ import main

    config = FitConfig(
        name="tiny", data=str(training_dir), runs_dir=str(tmp_path), limit=48, head_epochs=3,
        finetune_epochs=0.5, batch_size=16, val_fraction=0.2,
    )
    run_dir = run_fit(config, argv=["fit", "--limit", "48"])
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["limit"] == 48 and saved["classes"] == list(CLASSES_4)
    contract = ModelContract.from_json((run_dir / "contract.json").read_text())
    validation = contract.metrics["validation"]
    assert validation["images"] == contract.training["val_images"] > 0
    assert len(validation["confusion_matrix"]) == 4 and "near-duplicate" in validation["split"]
    for key in ("command", "config", "seed", "data_fingerprint", "machine", "wall_time_s", "images"):
        assert key in contract.training
    _, loaded, loaded_config = load_checkpoint(run_dir)
    assert loaded == contract and loaded_config == config.resolved()
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(run_dir), "--out", str(out), "--check-images", "4"]) == 0
    assert out.stat().st_size < 20_000_000
