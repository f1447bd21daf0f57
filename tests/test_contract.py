from __future__ import annotations

import json

import pytest

from brainscan.engine.errors import ModelError
from brainscan.engine.model.contract import METADATA_KEY, ModelContract, TensorSpec, check_graph
from tiny_models import tiny_contract

GOOD_INPUTS = [TensorSpec("input", ["N", 3, 64, 64])]
GOOD_OUTPUTS = [
    TensorSpec("logits", ["N", 4]),
    TensorSpec("features", ["N", 8, 8, 8]),
    TensorSpec("cam_weight", [4, 8]),
]


def test_contract_survives_a_json_round_trip():
    contract = tiny_contract(metrics={"accuracy": 0.9}, test_time_augmentation=("hflip",))
    again = ModelContract.from_metadata({METADATA_KEY: contract.to_json()})
    assert again == contract


def test_contract_refuses_nonsense_values_and_names_them():
    with pytest.raises(ModelError, match="task 'tumour'"):
        tiny_contract(task="tumour")
    with pytest.raises(ModelError, match="two classes"):
        tiny_contract(task="binary")
    with pytest.raises(ModelError, match="input_size"):
        tiny_contract(input_size=(4, 4))


def test_model_without_contract_is_refused_with_the_fix():
    with pytest.raises(ModelError, match="no brainscan contract.*trainer export"):
        ModelContract.from_metadata({}, source="m.onnx")


def test_contract_from_a_newer_brainscan_is_refused():
    raw = json.loads(tiny_contract().to_json())
    raw["format"] = 99
    with pytest.raises(ModelError, match="update brainscan"):
        ModelContract.from_json(json.dumps(raw))


def test_matching_graph_passes():
    check_graph(tiny_contract(), GOOD_INPUTS, GOOD_OUTPUTS)


def test_graph_with_other_class_count_is_refused():
    outputs = [TensorSpec("logits", ["N", 2]), GOOD_OUTPUTS[1], TensorSpec("cam_weight", [2, 8])]
    with pytest.raises(ModelError, match="expected N x 4"):
        check_graph(tiny_contract(), GOOD_INPUTS, outputs)


def test_graph_with_other_input_size_is_refused():
    with pytest.raises(ModelError, match="input height is 128 but the contract says 64"):
        check_graph(tiny_contract(), [TensorSpec("input", ["N", 3, 128, 128])], GOOD_OUTPUTS)


def test_graph_without_cam_outputs_is_refused():
    with pytest.raises(ModelError, match="'features' is missing"):
        check_graph(tiny_contract(), GOOD_INPUTS, [GOOD_OUTPUTS[0], GOOD_OUTPUTS[2]])
