"""Real-world variety in training (issue 13): margins, gamma, bias field, blur and noise, each off by default."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from trainer.augment import AugmentConfig, augment_batch
from trainer.config import FitConfig
from trainer.data import load_pictures

pytestmark = pytest.mark.trainer
FIELD = AugmentConfig(margin=0.45, gamma=0.7, blur=0.3, noise=8.0, bias_field=0.3)


@pytest.fixture(scope="module")
def batch(real_paths):
    return load_pictures(real_paths[:8], FitConfig().contract())


def _pixels(tensor: torch.Tensor) -> np.ndarray:
    return ((tensor.numpy() * 0.5 + 0.5) * 255).round()  # the contract's mean = std = 0.5


def test_the_variety_is_off_unless_asked_for(batch):
    contract = FitConfig().contract()
    plain = augment_batch(batch, contract, AugmentConfig(), torch.Generator().manual_seed(5))
    zeros = AugmentConfig(margin=0.0, gamma=0.0, blur=0.0, noise=0.0, bias_field=0.0)
    torch.testing.assert_close(augment_batch(batch, contract, zeros, torch.Generator().manual_seed(5)), plain)


def test_the_variety_changes_the_look_and_stays_in_range(batch):
    contract = FitConfig().contract()
    plain = _pixels(augment_batch(batch, contract, AugmentConfig(), torch.Generator().manual_seed(5)))
    varied = _pixels(augment_batch(batch, contract, FIELD, torch.Generator().manual_seed(5)))
    assert varied.min() >= 0 and varied.max() <= 255
    assert np.abs(varied - plain).mean() > 2  # not the same pictures
    again = _pixels(augment_batch(batch, contract, FIELD, torch.Generator().manual_seed(5)))
    np.testing.assert_array_equal(varied, again)  # the same stream draws the same variety


def test_a_margin_shrinks_the_head_inside_a_black_frame(batch):
    contract = FitConfig().contract()
    only_margin = AugmentConfig(hflip=0, rotate_deg=0, shift=0, zoom=0, brightness=0, contrast=0, margin=0.45)
    plain = _pixels(augment_batch(batch, contract, AugmentConfig(hflip=0, rotate_deg=0, shift=0, zoom=0,
                                                                  brightness=0, contrast=0),
                                  torch.Generator().manual_seed(1)))
    shrunk = _pixels(augment_batch(batch, contract, only_margin, torch.Generator().manual_seed(1)))
    foreground = lambda pixels: (pixels.mean(axis=1) > 20).mean(axis=(1, 2))  # noqa: E731
    smaller = foreground(shrunk) < foreground(plain) - 0.01
    assert smaller.any() and (foreground(shrunk) <= foreground(plain) + 0.01).all()
