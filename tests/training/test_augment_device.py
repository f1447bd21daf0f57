"""The augmentation is batched tensor code that runs on the pictures' device with the same random stream."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

import torch

from brainscan.engine.model.preprocess import normalize
from trainer.augment import AugmentConfig, augment_batch, plain_tensor
from trainer.config import FitConfig
from trainer.data import load_pictures
from trainer.device import Runtime, select_device
from trainer.errors import TrainerError

pytestmark = pytest.mark.trainer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def batch(real_paths):
    return load_pictures(real_paths[:6], FitConfig().contract())


@pytest.mark.parametrize("device", DEVICES)
def test_augmentation_on_device_tensors_equals_the_numpy_path(batch, device):
    contract = FitConfig().contract()
    reference = augment_batch(batch, contract, AugmentConfig(), torch.Generator().manual_seed(3))
    on_device = torch.from_numpy(batch).to(device)
    out = augment_batch(on_device, contract, AugmentConfig(), torch.Generator().manual_seed(3))
    assert out.device.type == device and out.dtype == torch.float32 and out.shape == (6, 3, 224, 224)
    torch.testing.assert_close(out.cpu(), reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_plain_device_input_is_the_engines_normalisation(batch, device):
    contract = FitConfig().contract()
    ours = plain_tensor(torch.from_numpy(batch).to(device), contract).cpu().numpy()
    np.testing.assert_allclose(ours, normalize(batch, contract), atol=1e-6)
    mirrored = plain_tensor(torch.from_numpy(batch), contract, mirror=True).numpy()
    np.testing.assert_allclose(mirrored, normalize(np.ascontiguousarray(batch[:, :, ::-1]), contract), atol=1e-6)


def test_each_picture_gets_its_own_transform_and_the_stream_is_reproducible(batch):
    contract = FitConfig().contract()
    same = np.repeat(batch[:1], 4, axis=0)
    out = augment_batch(same, contract, AugmentConfig(), torch.Generator().manual_seed(0))
    assert all(not torch.allclose(out[0], out[i]) for i in range(1, 4))
    again = augment_batch(same, contract, AugmentConfig(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(same.astype(np.float32), contract, AugmentConfig(), torch.Generator())


def test_runtime_on_the_cpu_runs_the_model_in_channels_last_without_autocast():
    rt = Runtime.from_config("cpu", "auto", True)
    assert rt.device.type == "cpu" and not rt.bf16
    x = rt.prepare(torch.zeros(2, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with rt.autocast():
        assert torch.ones(2, 2).mm(torch.ones(2, 2)).dtype == torch.float32
    bf16 = Runtime.from_config("cpu", "bf16", False)
    with bf16.autocast():
        assert torch.ones(2, 2).mm(torch.ones(2, 2)).dtype == torch.bfloat16
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainerError, match="no CUDA GPU"):
            select_device("cuda")
