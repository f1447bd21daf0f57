"""The occlusion map: its grid, what it computes, progress and cancel, on a tiny model and the shipped one;
and ``brainscan explain``, which writes it (or a CAM) as an overlay."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from brainscan.cli import main
from brainscan.engine.errors import Cancelled
from brainscan.engine.model.cam import cam_on_picture, map_on_picture, raw_cam
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.occlusion import (
    grid_centres,
    occlusion_boxes,
    occlusion_map,
    occlusion_on_picture,
)
from brainscan.engine.resources import default_model_path
from tiny_models import build_tiny_model, tiny_contract

FIGSHARE_PITUITARY = Path(__file__).resolve().parents[2] / "shared" / "data" / "figshare-boxes" / "pituitary"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Classifier:
    return Classifier(build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx"), device="cpu")


@pytest.fixture(scope="module")
def tiny_mirrored(tmp_path_factory) -> Classifier:
    """A tiny model whose contract asks the engine to average the picture and its mirror."""
    path = build_tiny_model(tmp_path_factory.mktemp("model") / "mirrored.onnx",
                            tiny_contract(test_time_augmentation=("hflip",)), seed=2)
    return Classifier(path, device="cpu")


def _noise(height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 255, (height, width, 3), dtype=np.uint8)


def test_the_grid_is_centred_on_each_cell_and_clipped_at_the_border():
    assert list(grid_centres(224)) == list(range(8, 224, 16))
    boxes = occlusion_boxes((224, 224))
    assert len(boxes) == 196
    assert boxes[0] == (0, 24, 0, 24)  # centred on (8, 8): clipped at the top and left
    assert boxes[14 + 1] == (8, 40, 8, 40)  # centred on (24, 24): the whole 32 px square
    assert boxes[-1] == (200, 224, 200, 224)


def test_the_map_has_one_value_per_position(tiny):
    assert occlusion_map(tiny, _noise(), 0).shape == (4, 4)  # a 64 px input, stride 16
    assert occlusion_map(tiny, _noise(), 0, stride=8, patch=16).shape == (8, 8)


@pytest.mark.parametrize("which", ["tiny", "tiny_mirrored"])
def test_each_value_is_the_drop_of_the_class_logit_under_a_black_square(which, request):
    classifier = request.getfixturevalue(which)
    picture, target = _noise(seed=3), 2
    drops = occlusion_map(classifier, picture, target)
    occluded = picture.copy()
    occluded[8:40, 24:56] = 0  # the square centred on (24, 40): row 1, column 2
    original, hidden = (p.logits[target] for p in classifier.predict([picture, occluded]))
    assert drops[1, 2] == pytest.approx(original - hidden, abs=1e-4)
    assert np.std(drops) > 0


def test_occluding_what_is_already_black_changes_nothing(tiny):
    picture = _noise()
    picture[40:] = 0  # the squares of the last row (rows 40 to 64) hide only black
    drops = occlusion_map(tiny, picture, 1, batch_size=5)
    np.testing.assert_allclose(drops[3], 0.0, atol=1e-5)
    assert np.abs(drops[:2]).max() > 1e-3


def test_progress_is_called_after_each_batch(tiny):
    calls = []
    occlusion_map(tiny, _noise(), 0, batch_size=4, progress=lambda done, total: calls.append((done, total)))
    # 16 squares and the original picture in batches of 4: the original is no position
    assert calls == [(0, 16), (3, 16), (7, 16), (11, 16), (15, 16), (16, 16)]


def test_cancel_stops_before_the_next_batch_with_a_typed_exception(tiny, monkeypatch):
    runs = []
    original = tiny.run_outputs
    monkeypatch.setattr(tiny, "run_outputs", lambda tensor: runs.append(len(tensor)) or original(tensor))
    asked = []
    with pytest.raises(Cancelled, match="3 of 16"):
        occlusion_map(tiny, _noise(), 0, batch_size=4, cancelled=lambda: asked.append(1) or len(asked) > 1)
    assert runs == [4]


def test_an_unknown_class_is_refused(tiny):
    with pytest.raises(ValueError, match="out of range"):
        occlusion_map(tiny, _noise(), 4)


def test_the_map_is_laid_over_the_picture_as_the_cam_maps_are():
    contract = tiny_contract()
    raw = np.maximum(np.random.default_rng(1).normal(size=(8, 8, 8)), 0).astype(np.float32)
    weight = np.random.default_rng(2).normal(size=(4, 8)).astype(np.float32)
    for shape in ((64, 64), (48, 80), (90, 30)):  # pad-square: the padding is cut off again
        assert np.array_equal(cam_on_picture("gradcam", raw, weight, 1, shape, contract),
                              map_on_picture(raw_cam("gradcam", raw, weight, 1), shape, contract))
    drops = np.array([[0.5, -1.0], [0.0, 2.0]], dtype=np.float32)
    heat = occlusion_on_picture(drops, (48, 80), contract)
    assert heat.shape == (48, 80) and heat.max() == pytest.approx(1.0) and heat.min() == 0.0
    assert not occlusion_on_picture(-np.abs(drops), (48, 80), contract).any()  # no evidence for the class: no heat


@pytest.mark.slow
def test_on_the_shipped_model_a_real_slice_gives_a_varying_14_by_14_map():
    """Not whether its peak lies on the tumour: that is a measured figure, not a test."""
    picture_path = FIGSHARE_PITUITARY / "1000.jpg"
    if not picture_path.is_file():
        pytest.skip("figshare-boxes is not on this machine")
    classifier = Classifier(default_model_path(), device="cpu")
    picture = cv2.cvtColor(cv2.imread(str(picture_path)), cv2.COLOR_BGR2RGB)
    target = classifier.classes.index("pituitary")
    drops = occlusion_map(classifier, picture, target)
    assert drops.shape == (14, 14) and np.isfinite(drops).all()
    assert drops.std() > 0.01 and drops.max() > 0
    assert occlusion_on_picture(drops, picture.shape[:2], classifier.contract).shape == picture.shape[:2]


# -- brainscan explain ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def slice_file(tmp_path) -> Path:
    path = tmp_path / "slice.png"
    cv2.imwrite(str(path), _noise(96, 128, seed=5))
    return path


def test_explain_writes_the_overlay_and_says_what_it_shows_in_one_line(model, real_jpgs, tmp_path, capsys):
    out = tmp_path / "occlusion.png"
    assert main(["explain", str(real_jpgs[0]), "--out", str(out), "--model", str(model), "--class", "notumor"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    height, width = cv2.imread(str(real_jpgs[0])).shape[:2]
    assert len(lines) == 1
    assert lines[0].startswith("notumor explained by Occlusion: peak at row ")
    assert f"of {height} x {width}" in lines[0] and str(out) in lines[0]
    written = cv2.imread(str(out))
    assert written.shape[1] == width and written.shape[0] > height  # the picture and its caption strips


def test_explain_says_when_no_occluded_square_lowers_the_logit(model, slice_file, tmp_path, capsys):
    """On this noise, hiding any square of the tiny model's input only raises meningioma's logit."""
    assert main(["explain", str(slice_file), "--out", str(tmp_path / "x.png"), "--model", str(model),
                 "--class", "meningioma"]) == 0
    assert "meningioma explained by Occlusion: no peak" in capsys.readouterr().out


def test_explain_with_a_cam_method_explains_the_predicted_class(model, slice_file, tmp_path, capsys):
    assert main(["explain", str(slice_file), "--out", str(tmp_path / "cam.png"), "--model", str(model),
                 "--method", "layercam"]) == 0
    line = capsys.readouterr().out
    predicted = line.split("(predicted ")[1].split()[0]
    assert line.startswith(f"{predicted} explained by LayerCAM")


def test_explain_picks_the_frame_of_a_multiframe_dicom(model, dicom_samples, tmp_path, capsys):
    assert main(["explain", str(dicom_samples.multiframe), "--frame", "2", "--out", str(tmp_path / "f2.png"),
                 "--model", str(model), "--method", "gradcam"]) == 0
    assert main(["explain", str(dicom_samples.multiframe), "--frame", "3", "--out", str(tmp_path / "f3.png"),
                 "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "has no frame 3" in err and not (tmp_path / "f3.png").exists()


@pytest.mark.parametrize(("arguments", "out", "message"), [
    (["--class", "oedema"], "x.png", "is not one of this model's"),
    (["--frame", "1"], "x.png", "is a single picture"),
    (["--method", "headcam"], "x.png", "needs a model with an explanation head"),
    (["--method", "gradcam"], "no-such-folder/x.png", "cannot write the overlay"),
])
def test_explain_refuses_bad_input_with_one_line_and_exit_two(
    arguments, out, message, model, slice_file, tmp_path, capsys
):
    out = tmp_path / out
    assert main(["explain", str(slice_file), "--out", str(out), "--model", str(model), *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_explain_of_a_missing_file_exits_two(model, tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nowhere.jpg"), "--out", str(tmp_path / "x.png"), "--model", str(model)]) == 2
    assert "nowhere.jpg" in capsys.readouterr().err
