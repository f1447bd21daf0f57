"""Class activation maps in numpy, exact for a global-average-pool + linear head.

The exported graph returns the last feature maps ``A`` (C x h x w) and the classifier weight
``W`` (K x C). With ``logit_c = sum_k W[c, k] * mean_ij A[k, i, j] + b_c`` the gradient of the
class score is known in closed form, ``d logit_c / d A[k, i, j] = W[c, k] / (h * w)``, so
Grad-CAM, Grad-CAM++ and LayerCAM need no backward pass and no torch: switching the class or the
method never re-runs the network. Each method is one small function of ``(A, dA)``, following
pytorch-grad-cam's definitions (parity is tested in ``tests/training/test_cam_parity.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from brainscan.engine.model.contract import ModelContract

_EPS = 1e-7


def class_gradients(weight: np.ndarray, target: int, spatial: tuple[int, int]) -> np.ndarray:
    """The exact gradient of ``logit[target]`` with respect to the feature maps (C x h x w)."""
    height, width = spatial
    per_channel = weight[target].astype(np.float32) / float(height * width)
    return np.broadcast_to(per_channel[:, None, None], (weight.shape[1], height, width))


def _gradcam(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    weights = grads.mean(axis=(1, 2))
    return np.tensordot(weights, activations, axes=1)


def _gradcam_plus_plus(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    grads_2 = grads**2
    grads_3 = grads_2 * grads
    sum_activations = activations.sum(axis=(1, 2))[:, None, None]
    aij = grads_2 / (2 * grads_2 + sum_activations * grads_3 + 1e-6)
    aij = np.where(grads != 0, aij, 0)
    weights = (np.maximum(grads, 0) * aij).sum(axis=(1, 2))
    return np.tensordot(weights, activations, axes=1)


def _layercam(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    return (np.maximum(grads, 0) * activations).sum(axis=0)


def principal_projection(activations: np.ndarray) -> np.ndarray:
    """Projection of each position's channel vector on the first principal component (h x w).

    The sign of a principal component is arbitrary; it is chosen so that the projection
    correlates positively with the channel-summed activation, so the map highlights where the
    network responds rather than the background.
    """
    channels, height, width = activations.shape
    flat = np.nan_to_num(activations.reshape(channels, -1).T.astype(np.float32))
    flat = flat - flat.mean(axis=0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    projection = flat @ vt[0]
    energy = activations.reshape(channels, -1).sum(axis=0)
    if np.dot(projection, energy - energy.mean()) < 0:
        projection = -projection
    return projection.reshape(height, width)


def _eigencam(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    return principal_projection(activations)


CamFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]

METHODS: dict[str, CamFunction] = {
    "gradcam": _gradcam,
    "gradcam++": _gradcam_plus_plus,
    "layercam": _layercam,
    "eigencam": _eigencam,
}
CLASS_INDEPENDENT = frozenset({"eigencam"})


def raw_cam(method: str, features: np.ndarray, weight: np.ndarray, target: int) -> np.ndarray:
    """The unscaled map (h x w, ReLU applied) of ``method`` for class ``target``."""
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 <= target < weight.shape[0]:
        raise ValueError(f"target class {target} is out of range for {weight.shape[0]} classes")
    grads = class_gradients(weight, target, features.shape[1:])
    return np.maximum(METHODS[method](features.astype(np.float32), grads), 0).astype(np.float32)


def scale_cam(raw: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Min-max scale a map to [0, 1], resize bilinearly to ``size`` = (height, width), scale again.

    The same order as pytorch-grad-cam (scale per layer, resize, scale the aggregate), so the
    peak is exactly 1 and a threshold means the same thing at every size.
    """
    scaled = _unit(raw)
    if size is not None:  # at picture size: scaled in place, with no copy of a large map
        resized = cv2.resize(scaled.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        resized -= resized.min()
        resized /= _EPS + resized.max()
        scaled = resized
    return scaled.astype(np.float32, copy=False)


def _unit(values: np.ndarray) -> np.ndarray:
    shifted = values - values.min()
    return shifted / (_EPS + shifted.max())


def compute_cam(
    method: str, features: np.ndarray, weight: np.ndarray, target: int, size: tuple[int, int] | None = None
) -> np.ndarray:
    """The heat map of ``method`` for class ``target`` in [0, 1], at the model input's ``size``."""
    return scale_cam(raw_cam(method, features, weight, target), size)


def cam_on_picture(
    method: str,
    features: np.ndarray,
    weight: np.ndarray,
    target: int,
    picture_shape: tuple[int, int],
    contract: ModelContract,
) -> np.ndarray:
    """The heat map laid over the original picture (height x width), undoing the square padding."""
    height, width = picture_shape
    raw = scale_cam(raw_cam(method, features, weight, target))
    if contract.resize_mode != "pad-square":
        return scale_cam(raw, (height, width))
    side = max(height, width)
    square = scale_cam(raw, (side, side))
    if (height, width) == (side, side):
        return square
    top, left = (side - height) // 2, (side - width) // 2
    return square[top : top + height, left : left + width].copy()  # a copy: the square is let go
