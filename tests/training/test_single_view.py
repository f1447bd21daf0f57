"""The one-view twin of a mirror-averaging model (trainer/single_view.py): same weights, exactly one view."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from brainscan.engine.model.contract import FEATURES, LOGITS, METADATA_KEY
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.preprocess import to_model_input
from brainscan.engine.resources import default_model_path
from trainer.__main__ import main as trainer_main
from trainer.errors import TrainerError
from trainer.export import export_onnx, open_session
from trainer.single_view import check_single_view, single_view, write_single_view

pytestmark = pytest.mark.trainer


@pytest.fixture(scope="module")
def mirrored(small_model, contract, tmp_path_factory):
    return export_onnx(small_model, contract.with_updates(views_in_graph=("hflip",)),
                       tmp_path_factory.mktemp("single-view") / "hflip.onnx")


def test_the_twin_computes_what_the_plain_export_of_the_same_weights_computes(mirrored, exported, contract,
                                                                                real_pictures, tmp_path):
    one = tmp_path / "one.onnx"
    assert write_single_view(mirrored, one) >= 1
    tensor = to_model_input(real_pictures[:4], contract)
    twin = open_session(one).run([LOGITS, FEATURES], {"input": tensor})
    plain = open_session(exported).run([LOGITS, FEATURES], {"input": tensor})
    np.testing.assert_allclose(twin[0], plain[0], atol=1e-5)
    np.testing.assert_allclose(twin[1], plain[1], atol=1e-5)
    both = open_session(mirrored).run([LOGITS], {"input": tensor})[0]
    assert np.abs(both - twin[0]).max() > 1e-3  # the mirror was really dropped


def test_the_shipped_model_s_twin_keeps_its_heads_and_opens_verified(tmp_path, real_pictures):
    one = tmp_path / "one-view.onnx"
    assert trainer_main(["single-view", str(default_model_path()), "--out", str(one)]) == 0
    classifier = Classifier(one, device="cpu")  # the checksum was restamped: no --allow-unverified needed
    assert classifier.contract.views_in_graph == ()
    tensor = to_model_input(real_pictures[:3], classifier.contract)
    assert check_single_view(default_model_path(), one, tensor) < 1e-4  # mirror model = mean of the two views
    names = [o.name for o in open_session(one).get_outputs()]
    assert {"head_maps", "domain_score"} <= set(names)
    assert one.stat().st_size < default_model_path().stat().st_size


def test_a_model_without_the_mirror_in_its_graph_is_refused(exported):
    with pytest.raises(TrainerError, match="one view already"):
        single_view(onnx.load(str(exported)))


def test_a_model_without_a_contract_is_refused(exported):
    model = onnx.load(str(exported))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    with pytest.raises(TrainerError, match="no brainscan contract"):
        single_view(model)
