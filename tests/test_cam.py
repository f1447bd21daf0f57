"""The numpy CAMs: exactness of the closed-form gradient, and behaviour of each method."""

from __future__ import annotations

import numpy as np
import pytest

from brainscan.engine.model.cam import (
    HEAD_METHOD,
    METHODS,
    cam_on_picture,
    class_gradients,
    compute_cam,
    principal_projection,
    raw_cam,
)
from tiny_models import tiny_contract

rng = np.random.default_rng(7)
FEATURES = np.maximum(rng.normal(size=(16, 7, 7)), 0).astype(np.float32)
WEIGHT = rng.normal(size=(4, 16)).astype(np.float32)
HEAD_MAPS = rng.normal(size=(4, 14, 14)).astype(np.float32)


def _logit(features: np.ndarray, target: int) -> float:
    return float(WEIGHT[target] @ features.mean(axis=(1, 2)))


def test_closed_form_gradient_matches_finite_differences():
    grads = class_gradients(WEIGHT, 2, (7, 7))
    step = 1e-2
    for channel, row, col in [(0, 0, 0), (5, 3, 4), (15, 6, 6)]:
        bumped = FEATURES.copy()
        bumped[channel, row, col] += step
        numeric = (_logit(bumped, 2) - _logit(FEATURES, 2)) / step
        assert numeric == pytest.approx(float(grads[channel, row, col]), rel=1e-3, abs=1e-5)


def test_gradcam_is_the_relu_of_the_class_weighted_feature_sum():
    expected = np.maximum(np.tensordot(WEIGHT[1] / 49.0, FEATURES, axes=1), 0)
    np.testing.assert_allclose(raw_cam("gradcam", FEATURES, WEIGHT, 1), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_a_map_scaled_to_the_unit_interval(method):
    heat = compute_cam(method, FEATURES, WEIGHT, 0, size=(224, 224), head_maps=HEAD_MAPS)
    assert heat.shape == (224, 224) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0, abs=1e-5)


def test_class_dependent_methods_change_with_the_target_class():
    for method in ("gradcam", "gradcam++", "layercam"):
        a, b = raw_cam(method, FEATURES, WEIGHT, 0), raw_cam(method, FEATURES, WEIGHT, 3)
        assert not np.allclose(a, b), method


def test_eigencam_ignores_the_class_and_points_at_the_strong_activations():
    features = np.zeros((8, 7, 7), np.float32)
    features[:, 2, 5] = 5.0  # one hot spot in every channel
    features += rng.normal(0, 0.01, features.shape).astype(np.float32)
    projection = principal_projection(features)
    assert np.unravel_index(np.argmax(projection), projection.shape) == (2, 5)
    np.testing.assert_allclose(raw_cam("eigencam", features, WEIGHT, 0), raw_cam("eigencam", features, WEIGHT, 3))


def test_unknown_method_and_class_are_refused():
    with pytest.raises(ValueError, match="unknown CAM method"):
        raw_cam("scorecam", FEATURES, WEIGHT, 0)
    with pytest.raises(ValueError, match="out of range"):
        raw_cam("gradcam", FEATURES, WEIGHT, 4)


def test_heat_map_on_a_wide_picture_drops_the_square_padding():
    features = np.zeros((4, 8, 8), np.float32)
    features[:, 4, 0] = 1.0  # left edge, vertically centred
    weight = np.ones((2, 4), np.float32)
    contract = tiny_contract(classes=("no", "yes"), task="binary")
    heat = cam_on_picture("gradcam", features, weight, 1, (50, 200), contract)
    assert heat.shape == (50, 200)
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    assert col < 30 and 10 < row < 40


def test_the_head_method_shows_the_asked_class_map_and_needs_a_head():
    for target in range(4):
        heat = raw_cam(HEAD_METHOD, FEATURES, WEIGHT, target, head_maps=HEAD_MAPS)
        np.testing.assert_array_equal(heat, HEAD_MAPS[target])  # the class's own map, negative evidence kept
    maps = HEAD_MAPS.copy()
    for target, (row, col) in ((2, (10, 3)), (1, (4, 12))):  # one clear peak per class, in different places
        maps[target, row, col] += 10
        heat = compute_cam(HEAD_METHOD, FEATURES, WEIGHT, target, (224, 224), maps)
        peak = np.unravel_index(np.argmax(heat), heat.shape)
        assert abs(peak[0] - (row * 16 + 7.5)) <= 8 and abs(peak[1] - (col * 16 + 7.5)) <= 8
    with pytest.raises(ValueError, match="explanation head"):
        raw_cam(HEAD_METHOD, FEATURES, WEIGHT, 0)
