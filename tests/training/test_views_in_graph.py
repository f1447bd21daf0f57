"""Test-time views built into the graph: exact averaged logits, CAM maps that explain them, honest metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from brainscan.engine.errors import ModelError
from brainscan.engine.model.cam import compute_cam
from brainscan.engine.model.contract import CAM_WEIGHT, FEATURES, LOGITS
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.preprocess import to_model_input
from trainer.errors import TrainerError
from trainer.export import check_export, export_onnx, open_session, read_contract
from trainer.graph_metrics import metrics_for_graph

pytestmark = pytest.mark.trainer


@pytest.fixture(scope="module")
def mirrored(small_model, contract, tmp_path_factory):
    return export_onnx(small_model, contract.with_updates(views_in_graph=("hflip",)),
                       tmp_path_factory.mktemp("views") / "hflip.onnx")


def _run(path, tensor):
    return open_session(path).run([LOGITS, FEATURES, CAM_WEIGHT], {"input": tensor})


def test_the_graph_averages_the_logits_of_the_picture_and_its_mirror(mirrored, exported, contract, real_pictures):
    tensor = to_model_input(real_pictures[:4], contract)
    averaged, _, _ = _run(mirrored, tensor)
    plain, _, _ = _run(exported, tensor)
    mirror, _, _ = _run(exported, np.ascontiguousarray(tensor[..., ::-1]))
    np.testing.assert_allclose(averaged, (plain + mirror) / 2, atol=1e-4)
    assert np.abs(averaged - plain).max() > 1e-3  # the mirror really changes something


def test_the_cam_of_the_averaged_maps_explains_the_averaged_decision(mirrored, contract, real_pictures):
    tensor = to_model_input(real_pictures[:2], contract)
    logits, features, weight = _run(mirrored, tensor)
    # GAP + linear head: the pooled averaged maps give the averaged logits (up to the bias)
    pooled = features.mean(axis=(2, 3)) @ weight.T
    np.testing.assert_allclose(logits - pooled, np.broadcast_to((logits - pooled)[:1], logits.shape), atol=1e-4)
    cam = compute_cam("gradcam", features[0], weight, int(logits[0].argmax()), (224, 224))
    assert cam.shape == (224, 224) and np.isfinite(cam).all() and cam.max() > 0


def test_the_export_check_compares_with_torchs_own_average(mirrored, small_model, real_pictures):
    result = check_export(mirrored, small_model, real_pictures[:6])
    assert result.max_logit_diff < 1e-3 and result.same_prediction == 1.0


def test_the_engine_does_not_mirror_again_and_says_where_the_views_are(mirrored, real_pictures):
    classifier = Classifier(mirrored, device="cpu")
    assert classifier.contract.test_time_augmentation == ()
    assert classifier.model_card()["views_in_graph"] == ["hflip"]
    logits, _, _ = _run(mirrored, to_model_input(real_pictures[:1], classifier.contract))
    np.testing.assert_allclose(classifier.predict(real_pictures[:1])[0].logits, logits[0], atol=1e-5)


def test_a_view_averaged_in_the_graph_and_by_the_engine_is_refused(contract):
    with pytest.raises(ModelError, match="inside the graph already"):
        contract.with_updates(views_in_graph=("hflip",), test_time_augmentation=("hflip",))


def _scores(**changes):
    base = {
        "split": "validation", "split_description": "held-out 10 pictures", "run": "twin",
        "views_in_graph": ["hflip"], "test_time_augmentation": [], "data_fingerprint": "abc",
        "accuracy": 0.9, "macro_f1": 0.88, "images": 10, "calibration": {"temperature": 0.5},
    }
    return {**base, **changes}


def test_graph_metrics_are_carried_only_when_scored_on_the_same_views_and_data(contract):
    graph = contract.with_updates(views_in_graph=("hflip",), training={"data_fingerprint": "abc"},
                                  metrics={"validation": {"accuracy": 0.8, "caveat": "same source"}, "refit": {"images": 12}})
    metrics = metrics_for_graph(graph, _scores(), "m.json")
    assert metrics["validation"]["accuracy"] == 0.9 and metrics["calibration"]["temperature"] == 0.5
    assert metrics["single_view_validation"] == {"accuracy": 0.8}
    assert "refit on all 12 pictures" in metrics["validation"]["scope"] and metrics["validation"]["caveat"]
    with pytest.raises(TrainerError, match="views"):
        metrics_for_graph(graph, _scores(views_in_graph=[]), "m.json")
    with pytest.raises(TrainerError, match="trained on abc"):
        metrics_for_graph(graph, _scores(data_fingerprint="other"), "m.json")
    with pytest.raises(TrainerError, match="'test' split"):
        metrics_for_graph(graph, _scores(split="test"), "m.json")


def test_the_exported_contract_carries_the_views(mirrored):
    contract = read_contract(open_session(mirrored))
    assert contract.views_in_graph == ("hflip",)
    assert json.loads(contract.to_json())["views_in_graph"] == ["hflip"]
