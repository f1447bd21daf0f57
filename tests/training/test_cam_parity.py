"""The engine's numpy CAMs, fed by onnxruntime, equal pytorch-grad-cam's on the torch model.

The engine computes Grad-CAM, Grad-CAM++ and LayerCAM from the exported ``features`` and
``cam_weight`` with the closed-form gradient of a GAP + linear head; pytorch-grad-cam takes the
gradient by autograd at ``model.bn2`` (the same maps: bn2's output, its activation included).
Both maps are compared after scaling to [0, 1] at 224 x 224: pytorch-grad-cam min-max scales the
7 x 7 map, resizes it, then min-max scales again (its multi-layer aggregation); the engine stops
after the resize (its maximum is then a little under 1), so both are min-max scaled once more.

Eigen-CAM has no gradient: it projects the maps on their first principal component, whose sign
is arbitrary. pytorch-grad-cam keeps whatever sign the SVD returns; the engine chooses the sign
that correlates positively with the channel-summed activation. So the engine is compared with
pytorch-grad-cam's own ``get_2d_projection`` on the torch activations with that same sign rule
applied, and pytorch-grad-cam's ``EigenCAM`` is checked to be that projection up to its sign.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from brainscan.engine.model.cam import compute_cam
from brainscan.engine.model.contract import CAM_WEIGHT, FEATURES
from brainscan.engine.model.preprocess import to_model_input
from trainer.export import open_session

pytestmark = pytest.mark.trainer

SIZE = (224, 224)
TOLERANCE = 1e-3
GRADIENT_METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM}


def _unit(cam: np.ndarray) -> np.ndarray:
    """Min-max scaled to [0, 1]."""
    cam = cam - cam.min()
    return cam / (1e-7 + cam.max())


@pytest.fixture(scope="module")
def case(exported, contract, real_pictures):
    """One real tumour picture: its input tensor and the ONNX outputs for it."""
    tensor = to_model_input([real_pictures[0]], contract)
    features, weight = open_session(exported).run([FEATURES, CAM_WEIGHT], {"input": tensor})
    return tensor, features[0], weight


@pytest.mark.parametrize("method", list(GRADIENT_METHODS))
def test_gradient_cams_match_pytorch_grad_cam_for_every_class(method, case, small_model):
    tensor, features, weight = case
    cam = GRADIENT_METHODS[method](model=small_model, target_layers=[small_model.bn2])
    errors = []
    for target in range(weight.shape[0]):
        reference = _unit(cam(input_tensor=torch.from_numpy(tensor), targets=[ClassifierOutputTarget(target)])[0])
        ours = _unit(compute_cam(method, features, weight, target, SIZE))
        assert ours.shape == reference.shape == SIZE
        assert ours.max() > 0.5 and ours.std() > 0.05, "a degenerate (flat) map would pass trivially"
        errors.append(float(np.abs(ours - reference).max()))
    assert max(errors) < TOLERANCE, f"{method}: max abs difference per class {errors}"


def _torch_activations(model, tensor: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.forward_features(torch.from_numpy(tensor)).numpy()


def _sign_rule(projection: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """The engine's rule: the sign whose projection correlates with the summed activation."""
    energy = activations.sum(axis=0).ravel()
    return projection if np.dot(projection.ravel(), energy - energy.mean()) >= 0 else -projection


def test_eigencam_matches_the_pytorch_grad_cam_projection_with_the_engine_sign(case, small_model):
    tensor, features, weight = case
    activations = _torch_activations(small_model, tensor)
    projection = _sign_rule(get_2d_projection(activations)[0], activations[0])
    reference = _unit(scale_cam_image(np.maximum(projection, 0)[None], (SIZE[1], SIZE[0]))[0])
    for target in range(weight.shape[0]):  # class-independent
        ours = _unit(compute_cam("eigencam", features, weight, target, SIZE))
        assert float(np.abs(ours - reference).max()) < TOLERANCE


def test_pytorch_grad_cam_eigencam_is_that_projection_up_to_sign(case, small_model):
    tensor, _, _ = case
    activations = _torch_activations(small_model, tensor)
    projection = get_2d_projection(activations)[0]
    theirs = _unit(EigenCAM(model=small_model, target_layers=[small_model.bn2])(
        input_tensor=torch.from_numpy(tensor), targets=None
    )[0])
    candidates = [_unit(scale_cam_image(np.maximum(s * projection, 0)[None], (SIZE[1], SIZE[0]))[0]) for s in (1, -1)]
    assert min(float(np.abs(theirs - c).max()) for c in candidates) < TOLERANCE
