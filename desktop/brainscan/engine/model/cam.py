"""Class activation maps in numpy, exact for a global-average-pool + linear head.

The exported graph returns the last feature maps ``A`` (C x h x w) and the classifier weight
``W`` (K x C). With ``logit_c = sum_k W[c, k] * mean_ij A[k, i, j] + b_c`` the gradient of the
class score is known in closed form, ``d logit_c / d A[k, i, j] = W[c, k] / (h * w)``, so
Grad-CAM, Grad-CAM++ and LayerCAM need no backward pass and no torch: switching the class or the
method never re-runs the network. Each method is one small function of ``(A, dA)``, following
pytorch-grad-cam's definitions (parity is tested in ``tests/training/test_cam_parity.py``).

A model may also carry an explanation head (its contract's ``explanation``; the graph's
``head_maps``, one finer map per class whose mean is that class's head score): :data:`HEAD_METHOD`
shows the map of the class asked for, the class activation map of that head (Zhou et al. 2016).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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

HEAD_METHOD = "headcam"  # the explanation head's map of the class (needs a model with ``head_maps``)


def _from_head(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    raise ValueError(f"{HEAD_METHOD!r} reads the model's head maps, not its last feature maps")


METHODS: dict[str, CamFunction] = {
    "gradcam": _gradcam,
    "gradcam++": _gradcam_plus_plus,
    "layercam": _layercam,
    "eigencam": _eigencam,
    HEAD_METHOD: _from_head,
}
CLASS_INDEPENDENT = frozenset({"eigencam"})
METHOD_TITLES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
    HEAD_METHOD: "Head CAM (14 x 14)",
}


AUTO = "auto"  # the model's own choice: its explanation head's method when it carries one, else Grad-CAM


def available_methods(has_head: bool) -> tuple[str, ...]:
    """The methods a model offers: all of them with an explanation head, the others without."""
    return tuple(m for m in METHODS if has_head or m != HEAD_METHOD)


def default_method(contract: ModelContract) -> str:
    """The heat map shown by default: the explanation head's method when the model has one."""
    method = contract.explanation.get("method") if contract.explanation else None
    return method if method in METHODS else "gradcam"


def resolve_method(method: str | None, contract: ModelContract) -> str | None:
    """``auto`` becomes :func:`default_method`; a method the model cannot give raises ValueError."""
    if method is None:
        return None
    if method == AUTO:
        return default_method(contract)
    if method not in available_methods(bool(contract.explanation)):
        raise ValueError(
            f"heat-map method {method!r} needs a model with an explanation head; this model ({contract.name} "
            f"{contract.version}) has none: choose one of {', '.join(available_methods(False))}, or auto"
        )
    return method


def raw_cam(
    method: str, features: np.ndarray, weight: np.ndarray, target: int, head_maps: np.ndarray | None = None
) -> np.ndarray:
    """The unscaled map (h x w) of ``method`` for class ``target``.

    Gradient methods apply a ReLU (as pytorch-grad-cam does); the head's map is taken as it is, so its
    peak is defined even where the class's evidence is negative everywhere (min-max scaling follows).
    """
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 <= target < weight.shape[0]:
        raise ValueError(f"target class {target} is out of range for {weight.shape[0]} classes")
    if method == HEAD_METHOD:
        if head_maps is None:
            raise ValueError(f"{HEAD_METHOD!r} needs a model with an explanation head; this one has none")
        return head_maps[target].astype(np.float32)
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
    method: str, features: np.ndarray, weight: np.ndarray, target: int, size: tuple[int, int] | None = None,
    head_maps: np.ndarray | None = None,
) -> np.ndarray:
    """The heat map of ``method`` for class ``target`` in [0, 1], at the model input's ``size``."""
    return scale_cam(raw_cam(method, features, weight, target, head_maps), size)


def cam_on_picture(
    method: str,
    features: np.ndarray,
    weight: np.ndarray,
    target: int,
    picture_shape: tuple[int, int],
    contract: ModelContract,
    head_maps: np.ndarray | None = None,
) -> np.ndarray:
    """The heat map laid over the original picture (height x width), undoing the square padding."""
    return map_on_picture(raw_cam(method, features, weight, target, head_maps), picture_shape, contract)


def map_on_picture(raw: np.ndarray, picture_shape: tuple[int, int], contract: ModelContract) -> np.ndarray:
    """Any map computed on the model input (h x w, unscaled) laid over the original picture, in [0, 1].

    Scaled as :func:`scale_cam` does; with the contract's ``pad-square`` resizing the map covers the padded
    square, which is cut back to the picture. The CAM methods and the occlusion map
    (:mod:`brainscan.engine.model.occlusion`) share it, so they land on the same pixels.
    """
    height, width = picture_shape
    raw = scale_cam(raw)
    if contract.resize_mode != "pad-square":
        return scale_cam(raw, (height, width))
    side = max(height, width)
    square = scale_cam(raw, (side, side))
    if (height, width) == (side, side):
        return square
    top, left = (side - height) // 2, (side - width) // 2
    return square[top : top + height, left : left + width].copy()  # a copy: the square is let go


def pointing_note(metrics: Mapping[str, object], method: str) -> str:
    """How far to trust the map: its measured pointing game from a contract's ``metrics``, or that none was.

    The trainer records it under ``metrics.pointing[method]`` (``all`` and per class, rates in 0..1, and
    ``on``: what it was measured on).
    """
    title = METHOD_TITLES.get(method, method)
    pointing = metrics.get("pointing") if isinstance(metrics, Mapping) else None
    measured = pointing.get(method) if isinstance(pointing, Mapping) else None
    if not isinstance(measured, Mapping) or not isinstance(measured.get("all"), (int, float)):
        return f"{title}: where its peak falls was not measured for this model; do not read it as the tumour's place"
    per_class = ", ".join(f"{name} {100 * value:.0f} %" for name, value in measured.items()
                          if name not in ("all", "on") and isinstance(value, (int, float)))
    on = f" of {measured['on']}" if measured.get("on") else ""
    return (f"{title}: its peak lies on the tumour box in {100 * measured['all']:.0f} %{on}"
            + (f" ({per_class})" if per_class else ""))
