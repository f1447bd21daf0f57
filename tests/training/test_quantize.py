"""Static INT8 of the shipped model keeps its accuracy on a real subset, its contract and its CAM outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

import onnx

from brainscan.engine.model.contract import CAM_WEIGHT, FEATURES, LOGITS
from brainscan.engine.model.inference import Classifier
from trainer.config import FitConfig
from trainer.data import list_samples, load_pictures
from trainer.export import open_session, read_contract
from trainer.quantize import STEM, compare, describe_scope, engine_check, node_units, quantize_onnx

pytestmark = pytest.mark.trainer

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models" / "brainscan-4class-lite0.onnx"
FROM_BLOCK = 4  # measured: the whole graph in INT8 loses ~4 points; blocks 4-6 and the head lose none


@pytest.fixture(scope="module")
def pictures(training_dir):
    if not SHIPPED.is_file():
        pytest.skip(f"shipped model not found at {SHIPPED}")
    samples = list_samples(training_dir)
    labels = np.array([s.label for s in samples])
    calibration = np.concatenate([np.flatnonzero(labels == c)[5::150][:8] for c in range(4)])
    probe = np.concatenate([np.flatnonzero(labels == c)[40::110][:12] for c in range(4)])
    contract = FitConfig().contract()
    return (load_pictures([samples[i].path for i in calibration], contract),
            load_pictures([samples[i].path for i in probe], contract), labels[probe])


@pytest.fixture(scope="module")
def int8(pictures, tmp_path_factory):
    calibration, _, _ = pictures
    return quantize_onnx(SHIPPED, tmp_path_factory.mktemp("int8") / "int8.onnx", calibration, start=FROM_BLOCK)


def test_int8_keeps_the_accuracy_on_a_real_subset(int8, pictures):
    _, probe, labels = pictures
    result = compare(SHIPPED, int8, probe, labels, speed=False)
    assert result["images"] == 48
    assert result["int8_accuracy"] >= result["fp32_accuracy"] - 2 / 48, result
    assert result["agreement"] >= 46 / 48 and result["kept"] == (result["drop_points"] <= 0.3)
    assert result["int8_mb"] < result["fp32_mb"] * 0.6
    assert result["cam_weight_max_diff"] < 0.01


def test_int8_carries_the_contract_and_the_cam_outputs_and_the_engine_opens_it(int8, pictures):
    contract = read_contract(open_session(int8))
    assert contract == read_contract(open_session(SHIPPED))
    check = engine_check(int8)
    assert check["engine_opens"] and {LOGITS, FEATURES, CAM_WEIGHT} <= set(check["outputs"])
    classifier = Classifier(int8, device="cpu", threads=2)
    prediction = classifier.predict([pictures[1][0]])[0]
    assert prediction.features.shape == (1280, 7, 7) and abs(prediction.probabilities.sum() - 1) < 1e-5
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_scopes_are_named_by_block():
    units = node_units(onnx.load(str(SHIPPED)))
    assert units[0][1] == STEM and units[-1][1] == 7
    assert {u for _, u in units} == {STEM, *range(8)}
    assert describe_scope(STEM, 7) == "the whole graph in INT8"
    assert describe_scope(4, 7).startswith("blocks 4-6 and the head in INT8; the stem and blocks 0-3 in fp32")
