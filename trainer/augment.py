"""Training-time augmentation as batched tensor operations on whatever device holds the pictures.

One random affine transform per picture (rotation, zoom, shift, mirror) applied by a single
``grid_sample``, then brightness and contrast, then the contract's normalisation. The input is the
uint8 N x H x W x 3 batch (numpy, or a tensor on the CPU or the GPU); the output is the float32
N x 3 x H x W tensor on the same device. Random numbers come from a CPU ``torch.Generator`` (a few
per picture, moved to the device), so a run draws the same augmentations on any device and a
resumed run continues the same stream.

Validation and export checks do not augment; they use
:func:`brainscan.engine.model.preprocess.normalize` (or :func:`plain_tensor`, which computes the same
normalisation on the device; a test checks the two agree).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from brainscan.engine.model.contract import ModelContract
from brainscan.engine.model.preprocess import normalize


@dataclass(frozen=True)
class AugmentConfig:
    hflip: float = 0.5  # probability of a mirror image
    rotate_deg: float = 15.0
    shift: float = 0.06  # fraction of the side
    zoom: float = 0.10  # scale in [1 - zoom, 1 + zoom]
    brightness: float = 0.15  # factor in [1 - b, 1 + b]
    contrast: float = 0.15  # factor in [1 - c, 1 + c] around the picture's mean


def _uniform(n: int, spread: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2 - 1) * spread


def normalize_tensor(pixels: torch.Tensor, contract: ModelContract) -> torch.Tensor:
    """``(pixels / 255 - mean) / std`` for an N x 3 x H x W float tensor of 0-255 values, on its device."""
    mean = torch.tensor(contract.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(contract.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (pixels / 255.0 - mean) / std


def _as_nchw_float(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    pixels = torch.as_tensor(batch)
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 uint8 pictures, got {tuple(pixels.shape)} {pixels.dtype}")
    return pixels.permute(0, 3, 1, 2).float()


def augment_batch(
    batch: np.ndarray | torch.Tensor, contract: ModelContract, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Randomly augmented, normalised N x 3 x H x W float32 tensor from N x H x W x 3 uint8.

    Parameters
    ----------
    batch:
        uint8 pictures as numpy or as a tensor on any device; the result is on that device.
    generator:
        A CPU generator: the per-picture parameters are drawn on the CPU and moved over.
    """
    pixels = _as_nchw_float(batch)
    device = pixels.device
    n = pixels.shape[0]
    angle = _uniform(n, math.radians(config.rotate_deg), generator)
    scale = 1.0 / (1.0 + _uniform(n, config.zoom, generator))  # sampling grid: zoom in = smaller grid
    mirror = torch.where(torch.rand(n, generator=generator) < config.hflip, -1.0, 1.0)
    shift_x, shift_y = _uniform(n, 2 * config.shift, generator), _uniform(n, 2 * config.shift, generator)
    brightness = 1.0 + _uniform(n, config.brightness, generator).view(n, 1, 1, 1)
    contrast = 1.0 + _uniform(n, config.contrast, generator).view(n, 1, 1, 1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos * mirror, -sin, shift_x], 1), torch.stack([sin * mirror, cos, shift_y], 1)], 1
    ).to(device)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    pixels = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    brightness, contrast = brightness.to(device), contrast.to(device)
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
    pixels = ((pixels - mean) * contrast + mean) * brightness
    return normalize_tensor(pixels.clamp(0, 255), contract)


def plain_tensor(batch: np.ndarray | torch.Tensor, contract: ModelContract, *, mirror: bool = False) -> torch.Tensor:
    """The un-augmented input tensor on the batch's device (optionally mirrored)."""
    pixels = _as_nchw_float(batch)
    if mirror:
        pixels = pixels.flip(-1)
    return normalize_tensor(pixels, contract)


def plain_batch(batch: np.ndarray, contract: ModelContract, *, mirror: bool = False) -> torch.Tensor:
    """The un-augmented input tensor, by the engine's own normalisation (optionally mirrored)."""
    if mirror:
        batch = batch[:, :, ::-1]
    return torch.from_numpy(normalize(np.ascontiguousarray(batch), contract))
