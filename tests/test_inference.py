from __future__ import annotations

import numpy as np
import pytest

from brainscan.engine.errors import DeviceError, ModelError
from brainscan.engine.model.inference import Classifier, negative_class_index, softmax, tumour_probability
from tiny_models import build_tiny_model, tiny_contract


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _pictures(count: int, size=(90, 120)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def test_probabilities_sum_to_one_and_features_come_with_them(tiny_model):
    classifier = Classifier(tiny_model, device="cpu")
    predictions = classifier.predict(_pictures(3))
    assert len(predictions) == 3
    for p in predictions:
        assert p.probabilities.shape == (4,)
        assert p.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        assert p.features.shape == (8, 8, 8)
    assert classifier.cam_weight.shape == (4, 8)


def test_batched_and_single_predictions_agree(tiny_model):
    classifier = Classifier(tiny_model, device="cpu")
    pictures = _pictures(4)
    together = classifier.predict(pictures)
    alone = [classifier.predict([p])[0] for p in pictures]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_cpu_device_reports_the_cpu_provider(tiny_model):
    classifier = Classifier(tiny_model, device="cpu")
    assert classifier.device.used == "cpu"
    assert classifier.device.providers[0] == "CPUExecutionProvider"
    assert classifier.device.note == ""


def test_cuda_request_without_cuda_says_so_and_falls_back(tiny_model):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has a CUDA onnxruntime")
    classifier = Classifier(tiny_model, device="cuda")
    assert classifier.device.used == "cpu"
    assert "CUDA was requested" in classifier.device.note and "onnxruntime-gpu" in classifier.device.note


def test_unknown_device_is_refused(tiny_model):
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        Classifier(tiny_model, device="tpu")


def test_hflip_test_time_augmentation_averages_the_mirror(tmp_path):
    plain = Classifier(build_tiny_model(tmp_path / "a.onnx", seed=3), device="cpu")
    tta = Classifier(
        build_tiny_model(tmp_path / "b.onnx", tiny_contract(test_time_augmentation=("hflip",)), seed=3), device="cpu"
    )
    picture = _pictures(1, size=(64, 64))[0]
    mirrored = np.ascontiguousarray(picture[:, ::-1])
    mean_logits = (plain.predict([picture])[0].logits + plain.predict([mirrored])[0].logits) / 2
    np.testing.assert_allclose(tta.predict([picture])[0].logits, mean_logits, atol=1e-5)
    np.testing.assert_allclose(tta.predict([picture])[0].probabilities, softmax(mean_logits[None])[0], atol=1e-5)


def test_the_contract_temperature_calibrates_the_probabilities_and_keeps_the_top_class(tmp_path):
    plain = Classifier(build_tiny_model(tmp_path / "a.onnx", seed=5), device="cpu")
    calibrated = Classifier(build_tiny_model(
        tmp_path / "b.onnx", tiny_contract(metrics={"calibration": {"temperature": 0.5}}), seed=5), device="cpu")
    assert plain.temperature == 1.0 and calibrated.temperature == 0.5
    assert calibrated.model_card()["calibration_temperature"] == 0.5
    for before, after in zip(plain.predict(_pictures(4)), calibrated.predict(_pictures(4)), strict=True):
        np.testing.assert_allclose(after.logits, before.logits, atol=1e-6)
        np.testing.assert_allclose(after.probabilities, softmax(before.logits[None] / 0.5)[0], atol=1e-5)
        assert after.label_index == before.label_index


@pytest.mark.parametrize("recorded", [0.0, -1.0, float("nan"), 1e9, "0.5", True, None])
def test_a_damaged_temperature_is_ignored(recorded):
    from brainscan.engine.model.inference import calibration_temperature

    assert calibration_temperature({"calibration": {"temperature": recorded}}) == 1.0
    assert calibration_temperature({}) == 1.0


def test_missing_model_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(ModelError, match=r"nowhere\.onnx: model file not found; pass .* --model"):
        Classifier(tmp_path / "nowhere.onnx")


def test_truncated_model_is_refused(tiny_model, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(tiny_model.read_bytes()[:300])
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        Classifier(broken)


def test_text_file_posing_as_a_model_is_refused(tmp_path):
    fake = tmp_path / "fake.onnx"
    fake.write_text("hello")
    with pytest.raises(ModelError, match="fake.onnx"):
        Classifier(fake)


def test_model_without_contract_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no brainscan contract"):
        Classifier(build_tiny_model(tmp_path / "bare.onnx", with_contract=False))


def test_model_whose_graph_disagrees_with_its_contract_is_refused(tmp_path):
    wrong_classes = build_tiny_model(tmp_path / "k.onnx", graph_classes=2)
    with pytest.raises(ModelError, match="does not match its contract.*expected N x 4"):
        Classifier(wrong_classes)
    wrong_size = build_tiny_model(tmp_path / "s.onnx", graph_input_size=(128, 128))
    with pytest.raises(ModelError, match="input height is 128 but the contract says 64"):
        Classifier(wrong_size)


def test_tumour_probability_is_one_minus_no_tumour():
    classes = ("glioma", "meningioma", "notumor", "pituitary")
    assert negative_class_index(classes) == 2
    assert tumour_probability(np.array([0.1, 0.1, 0.7, 0.1]), classes) == pytest.approx(0.3)
    assert negative_class_index(("no", "yes")) == 0


def test_softmax_is_stable_for_large_logits():
    p = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(p, [[1.0, 0.0], [0.5, 0.5]])
