"""The pointing game of the heat maps `brainscan screen` writes (issue 17): boxes, hits, aggregation, the engine path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from brainscan.engine.input.frames import FrameRef
from brainscan.engine.model.cam import METHODS
from brainscan.engine.model.inference import Classifier, Prediction
from brainscan.engine.resources import default_model_path
from brainscan.engine.run.screening import screen
from trainer import pointing
from trainer.boxes import Box, hit_region_share, pointing_hit, read_yolo_box
from trainer.metrics import classification_report
from trainer.pointing import (
    BoxedPicture,
    MapPoint,
    Measured,
    Measurement,
    box_file_for,
    boxed_pictures,
    id_mask,
    measure,
    measure_prediction,
    read_ids,
    summarise,
)

pytestmark = pytest.mark.trainer

FIGSHARE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "figshare-boxes"
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
BOX = Box(100.0, 100.0, 150.0, 150.0, 512, 512, "glioma")  # 15 px of tolerance at 512 px


@pytest.fixture(scope="module")
def figshare() -> Path:
    if not (FIGSHARE / "glioma" / "1841.txt").is_file():
        pytest.skip(f"figshare boxes not found at {FIGSHARE}")
    return FIGSHARE


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    return Classifier(default_model_path(), device="cpu", threads=2)


def _synthetic(peak: tuple[int, int]) -> np.ndarray:
    heat = 0.5 * BOX.mask().astype(np.float32)  # heat spread evenly over the box ...
    heat[peak] = 1.0  # ... and the peak elsewhere (or on it)
    return heat


@pytest.mark.parametrize(("peak", "hit"), [
    ((125, 165), True), ((125, 166), False),  # right edge: x1 = 150, + 15 px
    ((125, 84), True), ((125, 83), False),  # left edge: pixel 84 spans [84, 85), touching x0 - 15 = 85
    ((165, 125), True), ((166, 125), False),  # bottom edge
    ((84, 84), True), ((83, 84), False),  # the corner
])
def test_a_known_peak_hits_or_misses_at_the_tolerance_boundary(monkeypatch, peak, hit):
    heat = _synthetic(peak)
    asked = []

    def fake_map(prediction, classifier, method, target, shape):
        asked.append((method, target, shape))
        return heat

    monkeypatch.setattr(pointing, "heat_map_for", fake_map)
    prediction = Prediction(np.array([0.1, 0.2, 0.3, 0.4]), np.zeros(4), np.zeros((2, 7, 7)))  # predicts class 3
    skipped: dict[str, str] = {}
    points = measure_prediction(prediction, None, (512, 512), BOX, 0, ["gradcam", "eigencam"], skipped)
    assert skipped == {}
    assert set(points) == {(m, t) for m in ("gradcam", "eigencam") for t in ("predicted", "true")}
    for point in points.values():
        assert point.peak == peak and point.hit is hit
        inside = BOX.mask()[peak]
        assert point.inside == pytest.approx(1.0 if inside else 1250 / 1251, abs=1e-6)
    # the predicted class (3) and the true one (0) for Grad-CAM; class 0 once for the class-independent EigenCAM
    assert asked == [("gradcam", 3, (512, 512)), ("gradcam", 0, (512, 512)), ("eigencam", 0, (512, 512))]


def test_a_method_the_model_cannot_give_is_skipped_with_its_reason(monkeypatch):
    def fake_map(prediction, classifier, method, target, shape):
        if method == "layercam":
            raise ValueError("needs head maps")
        return _synthetic((125, 125))

    monkeypatch.setattr(pointing, "heat_map_for", fake_map)
    prediction = Prediction(np.array([0.9, 0.1]), np.zeros(2), np.zeros((2, 7, 7)))
    skipped: dict[str, str] = {}
    points = measure_prediction(prediction, None, (512, 512), BOX, 0, ["gradcam", "layercam"], skipped)
    assert skipped == {"layercam": "ValueError: needs head maps"}
    assert set(points) == {("gradcam", "predicted"), ("gradcam", "true")}
    assert points[("gradcam", "true")].hit and points[("gradcam", "true")].inside == pytest.approx(1.0)


def test_the_chance_level_is_the_share_of_pixels_a_peak_may_hit():
    rows = np.arange(512)
    hits = np.array([[pointing_hit((r, c), BOX) for c in rows[::8]] for r in rows[::8]])
    assert hit_region_share(BOX) == pytest.approx(hits.mean(), abs=0.01)
    assert hit_region_share(BOX) == pytest.approx((166 - 84) ** 2 / 512**2)


def test_a_real_figshare_box_is_read_in_pixels_of_its_picture(figshare):
    # glioma/1841.txt: "2 0.61 0.38 0.10 0.05" (label 2 = glioma; centre, width, height as fractions)
    box = read_yolo_box(figshare / "glioma" / "1841.txt", 512, 512)
    assert box.label == "glioma"
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((286.72, 181.76, 337.92, 207.36))
    assert box.mask().sum() == (338 - 287) * (207 - 182)
    picture = figshare / "glioma" / "1841.jpg"
    assert box_file_for(picture, figshare, (figshare,)) == figshare / "glioma" / "1841.txt"  # beside it
    assert box_file_for(picture, figshare / "glioma") == figshare / "glioma" / "1841.txt"  # flat in the folder
    assert box_file_for(picture, figshare / "meningioma", (figshare,)) is None


def test_box_files_in_a_tree_mirroring_the_pictures_and_id_lists(tmp_path):
    pictures, boxes = tmp_path / "pictures", tmp_path / "boxes"
    for name in ("glioma/7.jpg", "glioma/12.jpg", "pituitary/3.jpg", "pituitary/9.jpg"):
        (pictures / name).parent.mkdir(parents=True, exist_ok=True)
        (pictures / name).write_bytes(b"")
    for name in ("glioma/7.txt", "glioma/12.txt", "pituitary/3.txt"):  # no box for pituitary/9
        (boxes / name).parent.mkdir(parents=True, exist_ok=True)
        (boxes / name).write_text("0 0.5 0.5 0.1 0.1")
    found = boxed_pictures(pictures, CLASSES, boxes=boxes)
    assert [(p.name, p.label, p.box_file.relative_to(boxes).as_posix()) for p in found] == [
        ("glioma/7.jpg", 0, "glioma/7.txt"), ("glioma/12.jpg", 0, "glioma/12.txt"), ("pituitary/3.jpg", 3, "pituitary/3.txt")]
    ids = tmp_path / "ids.txt"
    ids.write_text("# twins not trained on\n12.jpg\n\n3  # a comment\n")
    assert read_ids(ids) == {"12", "3"}
    assert [p.id for p in boxed_pictures(pictures, CLASSES, boxes=boxes, only=read_ids(ids))] == ["12", "3"]
    assert [p.id for p in boxed_pictures(pictures, CLASSES, boxes=boxes, exclude={"7"}, limit=1)] == ["12", "3"]
    assert id_mask([Path("a/1.jpg"), Path("b/2.png")], {"1", "2"}, {"2"}).tolist() == [True, False]


def _measured(label: int, predicted: int, hits: list[bool], inside: float) -> list[Measured]:
    picture = BoxedPicture(Path(f"{label}.jpg"), label, Path(f"{label}.txt"))
    return [
        Measured(picture, predicted, 0.9, BOX, 0.05, 0.01,
                 {("gradcam", "predicted"): MapPoint((0, 0), hit, inside), ("gradcam", "true"): MapPoint((0, 0), True, 1.0)})
        for hit in hits
    ]


def test_the_aggregation_per_class_and_overall_with_wilson_intervals():
    pictures = (_measured(0, 0, [True, False, False, False], 0.2) + _measured(3, 3, [False] * 10, 0.1)
                + _measured(3, 1, [True], 0.4))
    measurement = Measurement(CLASSES, ["gradcam"], pictures, {"headcam": "no head"}, [("x.jpg", "broken")],
                              15 / 512, 1.0, [])
    summary = summarise(measurement, "gradcam")
    table = summary["methods"]["gradcam"]["predicted"]
    assert summary["pictures"] == 15 and summary["pictures_per_class"] == {"glioma": 4, "pituitary": 11}
    assert table["per_class"]["glioma"] == {"pictures": 4, "hits": 1, "pointing": 0.25,
                                             "pointing_ci95": [0.0456, 0.6994], "heat_inside": 0.2}
    assert table["per_class"]["pituitary"]["hits"] == 1 and table["per_class"]["pituitary"]["pointing"] == 0.0909
    assert table["overall"]["pictures"] == 15 and table["overall"]["hits"] == 2
    assert table["overall"]["heat_inside"] == pytest.approx((0.8 + 1.0 + 0.4) / 15, abs=1e-4)
    assert table["classified_wrong"]["pictures"] == 1 and table["classified_wrong"]["hits"] == 1
    assert table["classified_right"]["pointing_ci95"] == [0.0127, 0.3147]  # 1 of 14, by hand
    assert summary["methods"]["gradcam"]["true"]["overall"]["pointing"] == 1.0
    zero_of_ten = summarise(Measurement(CLASSES, ["gradcam"], _measured(3, 3, [False] * 10, 0.1), {}, [], 15 / 512,
                                        1.0, []))["methods"]["gradcam"]["predicted"]["overall"]
    assert zero_of_ten["pointing_ci95"] == [0.0, 0.2775]
    assert summary["accuracy"] == pytest.approx(14 / 15, abs=1e-4)
    assert summary["skipped_methods"] == {"headcam": "no head"} and len(summary["failed_pictures"]) == 1
    markdown = pointing.pointing_markdown(summary)
    assert "| **gradcam** | predicted class | 25.0 % [4.6–69.9] · 0.20 | 9.1 % [1.6–37.7] · 0.13 |" in markdown
    assert "`headcam` not measured" in markdown


def test_macro_f1_leaves_out_classes_neither_present_nor_predicted():
    report = classification_report(np.array([0, 0, 3]), np.array([0, 0, 3]), CLASSES)
    assert report["macro_f1"] == 1.0 and report["per_class"]["notumor"]["support"] == 0


def test_the_measurement_on_real_pictures_is_what_screen_writes(figshare, shipped, tmp_path):
    pictures = [p for name in ("glioma", "meningioma", "pituitary")
                for p in boxed_pictures(figshare, shipped.classes, only={"1841", "1", "1000"}) if p.path.parent.name == name]
    assert [p.id for p in pictures] == ["1841", "1", "1000"]
    measurement = measure(shipped, pictures)
    assert len(measurement.pictures) == 3 and not measurement.failed and not measurement.box_labels_disagree
    assert set(measurement.methods) | set(measurement.skipped_methods) == set(METHODS)
    assert {"gradcam", "gradcam++", "layercam", "eigencam"} <= set(measurement.methods)
    default = pointing.screen_default_method(shipped)
    screened = list(screen([FrameRef(p.path) for p in pictures], shipped, cam_method=default))
    for result, measured in zip(screened, measurement.pictures, strict=True):
        point = measured.maps[(default, "predicted")]
        assert point.peak == result.cam_peak  # exactly the cam_peak_row/col of results.csv
        assert measured.predicted == shipped.classes.index(result.label)
        assert point.hit == pointing_hit(point.peak, measured.box)
        assert 0.0 <= point.inside <= 1.0 and measured.box.width == measured.box.height == 512
    summary, markdown = pointing.write_pointing(shipped, measurement, tmp_path, gallery_per_class=1, log=lambda _: None)
    written = json.loads((tmp_path / "pointing.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert written["pictures"] == 3 and written["tolerance"]["pixels_at_512"] == 15.0
    assert set(written["methods"]) == set(measurement.methods)
    rows = (tmp_path / "pointing_pictures.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2 * len(measurement.methods)
    assert (tmp_path / "pointing_gallery.png").stat().st_size > 1000 and "pointing_gallery.png" in markdown


@pytest.mark.slow
def test_evaluate_reports_the_pointing_game_of_boxed_pictures(figshare, tmp_path):
    from trainer.evaluate import evaluate

    data, boxes = tmp_path / "data", tmp_path / "boxes"
    for name in ("glioma/1841", "glioma/1842", "meningioma/1", "pituitary/1000"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / f"{name}.jpg").symlink_to(figshare / f"{name}.jpg")
        if name != "meningioma/1":  # a picture without a box is scored but not pointed
            (boxes / name).parent.mkdir(parents=True, exist_ok=True)
            (boxes / f"{name}.txt").write_text((figshare / f"{name}.txt").read_text())
    (tmp_path / "exclude.txt").write_text("1842\n")
    metrics = evaluate(onnx=default_model_path(), data=[str(data)], boxes=boxes, exclude_ids=tmp_path / "exclude.txt",
                       out=tmp_path / "report", gallery=0, examples=0, pointing_gallery=1, log=lambda _: None)
    assert metrics["images"] == 3  # 1842 excluded
    from brainscan.engine.model.inference import Classifier

    assert metrics["pointing"]["method"] == pointing.screen_default_method(Classifier(default_model_path()))
    assert metrics["pointing"]["overall"]["pictures"] == 2
    written = json.loads((tmp_path / "report" / "pointing.json").read_text())
    assert written["pictures_per_class"] == {"glioma": 1, "pituitary": 1}
    assert "Where the heat maps point" in (tmp_path / "report" / "report.md").read_text()
