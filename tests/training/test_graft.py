"""The explanation head and the domain guard grafted onto a real exported graph compute what numpy says.

The shipped model's graph (EfficientNet-Lite0 with the mirror averaged inside) gets a head with random
weights and a guard fitted on a few real pictures; the grafted graph's ``head_maps`` and ``domain_score``
must equal the head (torch) and the guard (numpy) on the same pictures, the classifier's logits must be
those of the graph it was grafted on, and the guard's statistics must round-trip through the file.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from brainscan.engine.input.loading import load_picture
from brainscan.engine.model.contract import DOMAIN_SCORE, HEAD_MAPS, LOGITS, ModelContract
from brainscan.engine.model.preprocess import to_model_input
from brainscan.engine.resources import default_model_path
from trainer.domain_guard import fit_guard
from trainer.explain_head import ExplainHead
from trainer.graft import graft, guard_features
from trainer.graph_taps import extract, tapped_session


@pytest.fixture(scope="module")
def grafted(tmp_path_factory, real_paths):
    path = default_model_path()
    model = onnx.load(str(path))
    contract = ModelContract.from_metadata({p.key: p.value for p in model.metadata_props})
    pictures = [load_picture(p) for p in real_paths]
    batch = next(extract(tapped_session(path), contract, pictures, batch_size=len(pictures)))
    features = guard_features(batch)
    labels = np.arange(len(pictures)) % contract.num_classes
    guard = fit_guard(features, labels, contract.num_classes, rank=4)
    torch.manual_seed(0)
    head = ExplainHead(features.shape[1] - batch["pooled"].shape[1], contract.num_classes).eval()
    with torch.no_grad():
        head.scale.uniform_(0.5, 1.5)
        head.shift.normal_()
    graft(model, head, guard, mirrored="hflip" in contract.views_in_graph)
    out = tmp_path_factory.mktemp("graft") / "grafted.onnx"
    onnx.save(model, str(out))
    return path, out, contract, pictures, batch, head, guard


def _run(path, outputs, tensor):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(outputs, {session.get_inputs()[0].name: tensor})


def test_the_grafted_outputs_equal_the_head_and_the_guard_computed_apart(grafted):
    _, out, contract, pictures, batch, head, guard = grafted
    maps, scores = _run(out, [HEAD_MAPS, DOMAIN_SCORE], to_model_input(pictures, contract))
    stages = np.concatenate([batch[tap] for tap in batch if tap.startswith("/blocks")], axis=1)
    with torch.no_grad():
        expected = head(torch.from_numpy(stages.astype(np.float32))).numpy()
    assert maps.shape == (len(pictures), contract.num_classes, 14, 14)
    np.testing.assert_allclose(maps, expected, atol=2e-4)
    np.testing.assert_allclose(scores, guard.score(guard_features(batch)), rtol=1e-4)


def test_grafting_leaves_the_classifier_untouched(grafted):
    original, out, contract, pictures, *_ = grafted
    tensor = to_model_input(pictures, contract)
    (before,), (after,) = _run(original, [LOGITS], tensor), _run(out, [LOGITS], tensor)
    np.testing.assert_array_equal(before, after)


def test_the_guard_statistics_round_trip_through_the_file(grafted):
    *_, guard = grafted
    _, out, *_ = grafted
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    np.testing.assert_array_equal(stored["/domain_guard/means"][0], guard.means)
    np.testing.assert_array_equal(stored["/domain_guard/directions"], guard.directions)
    np.testing.assert_array_equal(stored["/domain_guard/variances"], guard.variances)


def test_the_head_maps_follow_a_mirrored_picture(grafted):
    _, out, contract, pictures, *_ = grafted
    picture = pictures[0]
    maps, mirrored = (_run(out, [HEAD_MAPS], to_model_input([p], contract))[0][0] for p in (picture, picture[:, ::-1]))
    # the graph averages the picture and its mirror, so its maps are exactly mirror-equivariant
    np.testing.assert_allclose(mirrored, maps[..., ::-1], atol=2e-4)


def test_grafting_again_replaces_the_earlier_graft(grafted):
    _, out, contract, _, _, head, guard = grafted
    model = onnx.load(str(out))
    before = (len(model.graph.node), len(model.graph.initializer), [o.name for o in model.graph.output])
    graft(model, head, guard, mirrored="hflip" in contract.views_in_graph)
    assert (len(model.graph.node), len(model.graph.initializer), [o.name for o in model.graph.output]) == before
