"""The one preprocessing path from an 8-bit picture to the model's input tensor.

Training-time evaluation, the exported-model check and the application all call these two pure
functions, so what the model saw in training is what it sees in use.
"""

from __future__ import annotations

import cv2
import numpy as np

from brainscan.engine.model.contract import ModelContract

_CV2_INTERPOLATION = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def pad_to_square(picture: np.ndarray) -> np.ndarray:
    """Centre ``picture`` (H x W x C) on a black square canvas of side ``max(H, W)``."""
    height, width = picture.shape[:2]
    side = max(height, width)
    if height == width:
        return picture
    canvas = np.zeros((side, side, *picture.shape[2:]), dtype=picture.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = picture
    return canvas


def resize_for_model(picture: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Bring an 8-bit RGB picture (H x W x 3, uint8) to the contract's input size, still uint8."""
    if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 picture, got {picture.shape} {picture.dtype}")
    if contract.resize_mode == "pad-square":
        picture = pad_to_square(picture)
    height, width = contract.input_size
    if picture.shape[:2] == (height, width):
        return np.ascontiguousarray(picture)
    return cv2.resize(picture, (width, height), interpolation=_CV2_INTERPOLATION[contract.interpolation])


def _lookup_tables(contract: ModelContract) -> np.ndarray:
    """Per channel, the float32 value of each of the 256 grey levels: ``level * scale - shift``, computed
    exactly as on the whole picture, so looking them up gives the very same numbers (bit for bit)."""
    key = (tuple(contract.mean), tuple(contract.std))
    tables = _TABLES.get(key)
    if tables is None:
        std = np.asarray(contract.std, dtype=np.float32)
        scale = 1.0 / (255.0 * std)
        shift = np.asarray(contract.mean, dtype=np.float32) / std
        levels = np.arange(256, dtype=np.float32)
        tables = _TABLES[key] = np.stack([levels * scale[c] - shift[c] for c in range(3)]).astype(np.float32)
    return tables


_TABLES: dict[tuple[tuple[float, ...], tuple[float, ...]], np.ndarray] = {}


def normalize(batch: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Turn N x H x W x 3 uint8 pictures of the input size into the N x 3 x H x W float32 tensor.

    A table look-up per channel (``(level / 255 - mean) / std`` in float32, the same numbers as the
    arithmetic on every pixel, in a third of its time: 0.2 against 0.65 ms per 224 px picture).
    """
    if batch.ndim == 3:
        batch = batch[None]
    if batch.dtype != np.uint8:  # not 8-bit levels: the arithmetic itself
        std = np.asarray(contract.std, dtype=np.float32)
        scale = (1.0 / (255.0 * std)).reshape(1, 1, 1, 3)
        shift = (np.asarray(contract.mean, dtype=np.float32) / std).reshape(1, 1, 1, 3)
        return np.ascontiguousarray((batch.astype(np.float32) * scale - shift).transpose(0, 3, 1, 2))
    tables = _lookup_tables(contract)
    planar = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # uint8 N x 3 x H x W: a cheap copy
    tensor = np.empty(planar.shape, dtype=np.float32)
    for channel in range(3):
        np.take(tables[channel], planar[:, channel], out=tensor[:, channel])
    return tensor


def to_model_input(pictures: list[np.ndarray], contract: ModelContract) -> np.ndarray:
    """Resize and normalise a list of 8-bit pictures into one input batch."""
    resized = np.stack([resize_for_model(p, contract) for p in pictures])
    return normalize(resized, contract)
