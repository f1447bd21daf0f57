"""The from-scratch baseline trains, exports with exact CAM outputs, and reproduces torch in onnxruntime."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

import numpy as np
import torch
import torch.nn.functional as F

from brainscan.engine.model.contract import ModelContract
from trainer.augment import plain_batch
from trainer.config import FitConfig
from trainer.data import load_pictures
from trainer.errors import WeightsError
from trainer.export import check_export, export_onnx
from trainer.model import SmallCNN, create_model
from trainer.training_loop import finetune

pytestmark = pytest.mark.trainer


def test_smallcnn_learns_from_scratch_on_real_pictures(real_paths):
    torch.manual_seed(0)
    config = FitConfig(architecture="smallcnn", input_size=96, batch_size=8, finetune_lr=3e-3,
                       warmup_fraction=0.0, drop_rate=0.0).resolved()
    contract = config.contract()
    pictures = load_pictures(real_paths, contract)
    labels = np.repeat(np.arange(4), 4)
    model = create_model("smallcnn", 4, "none", drop_rate=0.0)
    model.eval()
    with torch.no_grad():
        before = float(F.cross_entropy(model(plain_batch(pictures, contract)), torch.as_tensor(labels)))
    result = finetune(model, pictures, labels, config, steps=30, augment=False)
    model.eval()
    with torch.no_grad():
        after = float(F.cross_entropy(model(plain_batch(pictures, contract)), torch.as_tensor(labels)))
    # Training-mode loss (batch statistics) falls fast; the eval-mode loss, with running statistics
    # still catching up after 30 steps, falls too.
    assert result["last_loss"] < 0.5 * result["first_loss"] and after < before, (before, after, result)


def test_smallcnn_exports_with_cam_outputs_and_matches_torch(real_pictures, tmp_path):
    model = SmallCNN(4).eval()
    contract = ModelContract(name="scratch", version="0", task="4class",
                             classes=("glioma", "meningioma", "notumor", "pituitary"), architecture="smallcnn",
                             input_size=(224, 224))
    path = export_onnx(model, contract, tmp_path / "small.onnx")
    result = check_export(path, model, real_pictures[:4])
    assert result.max_logit_diff < 1e-3 and result.max_cam_weight_diff == 0.0
    assert path.stat().st_size < 8_000_000  # 1.9 M parameters


def test_smallcnn_refuses_pretrained_weights():
    with pytest.raises(WeightsError, match="from scratch"):
        create_model("smallcnn", 4, "offline")
