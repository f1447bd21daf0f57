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
    # Real-world variety (0 = off, the earlier recipes' behaviour): other scanners, exporters and framings.
    margin: float = 0.0  # with probability 1/2 the picture shrinks to a scale in [1 - margin, 1] (a black margin)
    gamma: float = 0.0  # gamma in [1 / (1 + g), 1 + g] (log-uniform)
    blur: float = 0.0  # probability of a Gaussian blur (sigma 1.2 px, mixed in with a random weight)
    noise: float = 0.0  # Gaussian noise of standard deviation in [0, noise] grey levels, probability 1/2
    bias_field: float = 0.0  # a smooth multiplicative field in [1 - b, 1 + b] (3 x 3 control points)


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
    return augment_batch_with_masks(batch, None, contract, config, generator)[0]


def augment_batch_with_masks(
    batch: np.ndarray | torch.Tensor, masks: torch.Tensor | None, contract: ModelContract, config: AugmentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`augment_batch`, and N x M x H x W ``masks`` (e.g. tumour boxes) moved by the same geometry.

    The masks go through the same rotation, zoom, shift, mirror and margin (one ``grid_sample``, bilinear),
    not through the intensity changes; the same random numbers are drawn with or without masks.
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
    if config.margin > 0:  # a larger sampling grid: the picture shrinks inside a black margin
        shrink = 1.0 - torch.rand(n, generator=generator) * config.margin
        scale = scale / torch.where(torch.rand(n, generator=generator) < 0.5, shrink, torch.ones(n))
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos * mirror, -sin, shift_x], 1), torch.stack([sin * mirror, cos, shift_y], 1)], 1
    ).to(device)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    if masks is not None:
        pixels = torch.cat([pixels, masks.to(device=device, dtype=pixels.dtype)], 1)
    pixels = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if masks is not None:
        pixels, masks = pixels[:, :3], pixels[:, 3:]
    brightness, contrast = brightness.to(device), contrast.to(device)
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
    pixels = ((pixels - mean) * contrast + mean) * brightness
    pixels = _field_variety(pixels.clamp(0, 255), config, generator)
    return normalize_tensor(pixels.clamp(0, 255), contract), masks


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, round(2.5 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _field_variety(pixels: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Gamma, bias field, blur and noise (each off at 0): other scanners' and exporters' looks, same anatomy."""
    n, channels, height, width = pixels.shape
    device = pixels.device
    if config.gamma > 0:
        log_gamma = _uniform(n, math.log1p(config.gamma), generator)
        pixels = 255.0 * (pixels / 255.0).clamp_min(0) ** torch.exp(log_gamma).view(n, 1, 1, 1).to(device)
    if config.bias_field > 0:
        points = 1.0 + _uniform(n * 9, config.bias_field, generator).view(n, 1, 3, 3).to(device)
        field = F.interpolate(points, size=(height, width), mode="bicubic", align_corners=True)
        pixels = pixels * field
    if config.blur > 0:
        kernel = _gaussian_kernel(1.2, device)
        size = kernel.numel()
        blurred = F.conv2d(pixels, kernel.view(1, 1, 1, size).repeat(channels, 1, 1, 1), padding=(0, size // 2),
                           groups=channels)
        blurred = F.conv2d(blurred, kernel.view(1, 1, size, 1).repeat(channels, 1, 1, 1), padding=(size // 2, 0),
                           groups=channels)
        weight = torch.where(torch.rand(n, generator=generator) < config.blur, torch.rand(n, generator=generator),
                             torch.zeros(n)).view(n, 1, 1, 1).to(device)
        pixels = pixels * (1 - weight) + blurred * weight
    if config.noise > 0:
        spread = torch.where(torch.rand(n, generator=generator) < 0.5, torch.rand(n, generator=generator) * config.noise,
                             torch.zeros(n)).view(n, 1, 1, 1)
        grain = torch.randn((n, 1, height, width), generator=generator) * spread  # the same grain on the 3 channels
        pixels = pixels + grain.to(device)
    return pixels


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
