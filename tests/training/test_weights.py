"""Offline ImageNet weights load by position into timm's Lite0, and wrong weights are refused."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

import torch

from trainer.errors import WeightsError
from trainer.model import create_model
from trainer.torch_compat import ensure_torchvision
from trainer.weights import load_by_position, offline_weights_path

pytestmark = pytest.mark.trainer


def test_torchvision_imports_with_this_torch():
    assert ensure_torchvision() in ("native", "python-only")


def test_offline_weights_fill_the_backbone_and_leave_a_new_head():
    model = create_model("tf_efficientnet_lite0", 4, "offline")
    source = torch.load(offline_weights_path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.conv_stem.weight, source["_conv_stem.weight"])
    torch.testing.assert_close(model.bn2.running_var, source["_bn1.running_var"])
    assert model.get_classifier().weight.shape == (4, 1280)
    assert float(model.get_classifier().weight.detach().abs().sum()) == 0.0


def test_weights_for_another_architecture_are_refused_with_a_reason():
    model = create_model("tf_efficientnet_lite1", 4, "none")
    source = torch.load(offline_weights_path(), map_location="cpu", weights_only=True)
    with pytest.raises(WeightsError, match="not for this architecture"):
        load_by_position(model, source)


def test_offline_weights_only_for_lite0():
    with pytest.raises(WeightsError, match="--weights timm"):
        create_model("tf_efficientnet_lite1", 4, "offline")
