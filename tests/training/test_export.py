"""The ONNX export: the contract travels inside the file, and onnxruntime reproduces torch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

import torch

from brainscan.engine.errors import ModelError
from brainscan.engine.model.contract import CAM_WEIGHT, FEATURES, LOGITS, ModelContract, check_graph
from brainscan.engine.model.preprocess import to_model_input
from trainer.export import (
    check_export,
    open_session,
    read_contract,
    session_specs,
    write_contract,
)

pytestmark = pytest.mark.trainer


def test_contract_round_trips_through_the_onnx_metadata(exported, contract):
    session = open_session(exported)
    read_back = ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map)
    assert read_back == contract


def test_graph_has_contract_names_a_dynamic_batch_and_static_maps(exported, contract):
    inputs, outputs = session_specs(open_session(exported))
    check_graph(contract, inputs, outputs)
    assert [i.name for i in inputs] == ["input"]
    assert isinstance(inputs[0].shape[0], str)
    shapes = {o.name: o.shape for o in outputs}
    assert list(shapes) == [LOGITS, FEATURES, CAM_WEIGHT]
    assert shapes[FEATURES][1:] == [1280, 7, 7]
    assert shapes[CAM_WEIGHT] == [4, 1280]


def test_onnxruntime_matches_torch_on_real_pictures(exported, small_model, real_pictures):
    result = check_export(exported, small_model, real_pictures)
    assert result.images == 16
    assert result.max_logit_diff < 1e-3
    assert result.max_probability_diff < 1e-4
    assert result.same_prediction == 1.0
    assert result.max_cam_weight_diff == 0.0


def test_any_batch_size_gives_the_same_logits(exported, contract, real_pictures):
    session = open_session(exported)
    tensor = to_model_input(real_pictures[:3], contract)
    together = session.run([LOGITS], {"input": tensor})[0]
    one_by_one = np.concatenate([session.run([LOGITS], {"input": tensor[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)


def test_cam_weight_output_is_the_classifier_weight(exported, small_model, contract, real_pictures):
    session = open_session(exported)
    weight = session.run([CAM_WEIGHT], {"input": to_model_input(real_pictures[:1], contract)})[0]
    np.testing.assert_array_equal(weight, small_model.get_classifier().weight.detach().numpy())


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"classes": ("glioma", "meningioma", "pituitary")}, "logits"),
        ({"input_size": (256, 256)}, "height"),
    ],
    ids=["wrong-class-count", "wrong-input-size"],
)
def test_a_tampered_contract_is_refused(exported, contract, real_pictures, small_model, tmp_path, change, complaint):
    tampered = tmp_path / "tampered.onnx"
    shutil.copy(exported, tampered)
    write_contract(tampered, contract.with_updates(**change))
    session = open_session(tampered)
    with pytest.raises(ModelError, match=complaint):
        check_graph(read_contract(session), *session_specs(session))
    with pytest.raises(ModelError, match=complaint):
        check_export(tampered, small_model, real_pictures[:2])


def test_a_file_without_contract_is_refused_with_the_fix(exported, tmp_path):
    import onnx

    bare = onnx.load(str(exported))
    del bare.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(bare, str(path))
    with pytest.raises(ModelError, match="python -m trainer export"):
        read_contract(open_session(path))


def test_exported_lite0_fits_the_size_budget(exported):
    assert exported.stat().st_size < 20_000_000


def test_fixed_padding_copy_computes_what_the_model_computes(small_model):
    from trainer.model import FixedPadConv2d, with_fixed_padding

    fixed = with_fixed_padding(small_model, (224, 224))
    assert any(isinstance(m, FixedPadConv2d) for m in fixed.modules())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), small_model(x))


def test_the_export_records_a_weights_checksum_that_the_engine_verifies(exported, tmp_path):
    import onnx
    from onnx import numpy_helper

    from brainscan.engine.model.inference import Classifier
    from brainscan.engine.model.integrity import VERIFIED

    assert Classifier(exported, device="cpu").integrity == VERIFIED

    altered = onnx.load(str(exported))
    tensor = max(altered.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(tensor).copy()
    values.flat[0] += 0.5
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    path = tmp_path / "altered.onnx"
    onnx.save(altered, str(path))
    with pytest.raises(ModelError, match="do not match the checksum"):
        Classifier(path, device="cpu")


def test_evaluating_an_onnx_file_applies_its_test_time_augmentation_as_the_engine_does(
        exported, contract, real_pictures, tmp_path):
    from brainscan.engine.model.inference import Classifier
    from trainer.scorers import OnnxScorer

    mirrored = tmp_path / "hflip.onnx"
    shutil.copy(exported, mirrored)
    write_contract(mirrored, contract.with_updates(test_time_augmentation=("hflip",)))
    pictures = np.stack(real_pictures[:3])
    plain_logits, _ = OnnxScorer(exported).run(pictures)
    flipped_logits, _ = OnnxScorer(exported).run(np.ascontiguousarray(pictures[:, :, ::-1]))
    tta_logits, features = OnnxScorer(mirrored).run(pictures)
    np.testing.assert_allclose(tta_logits, (plain_logits + flipped_logits) / 2, atol=1e-4)
    assert features.shape[0] == 3
    engine = Classifier(mirrored, device="cpu").predict(list(pictures))
    np.testing.assert_allclose(np.stack([p.logits for p in engine]), tta_logits, atol=1e-4)
