"""The graph onnxruntime optimised, kept per machine in the user's cache (issue 14's start-up): later starts
open it, with the very same outputs; it is kept only for a model that passed its checks, and a damaged copy
or an unusable cache folder only costs the optimisation again."""

from __future__ import annotations

import onnx
import pytest
from onnx import numpy_helper

from brainscan.engine.errors import ModelError
from brainscan.engine.input.loading import load_picture
from brainscan.engine.model import optimised_models
from brainscan.engine.model.inference import Classifier
from brainscan.engine.resources import default_model_path
from tiny_models import build_tiny_model


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("BRAINSCAN_CACHE", str(folder))
    return folder


def _copies(cache):
    folder = cache / optimised_models.OPTIMISED_DIR
    return sorted(folder.glob("*.onnx")) if folder.is_dir() else []


def test_the_second_start_opens_the_optimised_copy_with_the_same_outputs(own_cache, real_jpgs):
    if not default_model_path().is_file():
        pytest.skip("the shipped model is not in this checkout")
    pictures = [load_picture(path) for path in real_jpgs[:3]]
    first = Classifier(default_model_path(), device="cpu", threads=1)
    assert first.session_source == default_model_path()
    (copy,) = _copies(own_cache)
    assert copy == optimised_models.optimised_path(first.sha256)
    second = Classifier(default_model_path(), device="cpu", threads=1)
    assert second.session_source == copy and second.integrity == first.integrity == "verified"
    assert second.contract == first.contract
    for a, b in zip(first.predict(pictures), second.predict(pictures), strict=True):
        assert (a.logits == b.logits).all() and (a.features == b.features).all()
        assert a.domain_score == b.domain_score and (a.head_maps == b.head_maps).all()


def test_a_damaged_copy_is_dropped_and_made_again(own_cache, tmp_path):
    model = build_tiny_model(tmp_path / "tiny.onnx", seed=4)
    Classifier(model, device="cpu")
    (copy,) = _copies(own_cache)
    copy.write_bytes(b"not a model")
    again = Classifier(model, device="cpu")
    assert again.session_source == model  # the original, optimised again
    (remade,) = _copies(own_cache)
    assert remade.stat().st_size > 100
    assert Classifier(model, device="cpu").session_source == remade


def test_a_copy_that_disagrees_with_the_contract_is_dropped(own_cache, tmp_path):
    model = build_tiny_model(tmp_path / "tiny.onnx", seed=7)
    Classifier(model, device="cpu")
    (copy,) = _copies(own_cache)
    other = onnx.load(str(copy))
    del other.metadata_props[:]  # a copy that lost its contract
    onnx.save(other, str(copy))
    again = Classifier(model, device="cpu")
    assert again.session_source == model and again.integrity == "verified"
    (remade,) = _copies(own_cache)
    assert Classifier(model, device="cpu").session_source == remade


def test_a_model_refused_leaves_no_copy(own_cache, tmp_path):
    model = onnx.load(str(build_tiny_model(tmp_path / "tiny.onnx", seed=5)))
    tensor = next(t for t in model.graph.initializer if t.name == "fc_b")
    values = numpy_helper.to_array(tensor).copy()
    values[0] += 0.25
    tensor.CopyFrom(numpy_helper.from_array(values, "fc_b"))
    onnx.save(model, str(tmp_path / "altered.onnx"))
    with pytest.raises(ModelError, match="do not match the checksum"):
        Classifier(tmp_path / "altered.onnx", device="cpu")
    assert _copies(own_cache) == []
    assert not list((own_cache / optimised_models.OPTIMISED_DIR).glob(".*"))  # no temporary file left


def test_an_unusable_cache_folder_only_costs_the_optimisation(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("BRAINSCAN_CACHE", str(blocked))
    model = build_tiny_model(tmp_path / "tiny.onnx", seed=6)
    for _ in range(2):
        classifier = Classifier(model, device="cpu", allow_unverified=True)
        assert classifier.session_source == model


def test_copies_are_kept_per_cpu_and_onnxruntime(monkeypatch):
    digest = "ab" * 32
    here = optimised_models.optimised_path(digest)
    assert here.name.startswith(digest[:32]) and f"ort{optimised_models.ort.__version__}" in here.name
    monkeypatch.setattr(optimised_models, "cpu_identity", lambda: "another CPU|avx512f")
    assert optimised_models.optimised_path(digest) != here
