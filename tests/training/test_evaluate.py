"""The evaluation report: figures, metrics, calibration written into the contract and carried by the export."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("matplotlib")

from trainer.__main__ import main
from trainer.evaluate import evaluate
from trainer.export import open_session, read_contract

pytestmark = pytest.mark.trainer


@pytest.fixture(scope="module")
def evaluated(tiny_run):
    return evaluate(tiny_run, gallery=4, examples=2, log=lambda message: None)


def test_the_report_holds_every_figure_and_metric(evaluated, tiny_run):
    report = tiny_run / "report"
    for name in ("report.md", "metrics.json", "confusion_matrix.png", "roc.png", "reliability.png",
                 "training_curves.png", "gradcam_per_class.png"):
        assert (report / name).stat().st_size > 0, name
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["images"] == evaluated["images"] > 0
    assert set(metrics["roc_auc"]["per_class"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    for key in ("ece", "nll", "brier"):
        assert key in metrics["calibration"]["before"] and key in metrics["calibration"]["after"]
    assert metrics["calibration"]["after"]["nll"] <= metrics["calibration"]["before"]["nll"] + 1e-9
    markdown = (report / "report.md").read_text()
    for heading in ("## Per class", "## Confusion matrix", "## Calibration", "## Training curves",
                    "## Most confident mistakes", "## Grad-CAM examples per class"):
        assert heading in markdown
    assert "(confusion_matrix.png)" in markdown and "(reliability.png)" in markdown
    if metrics["most_confident_mistakes"]:
        assert (report / "mistakes_gradcam.png").is_file()
        confidences = [m["confidence"] for m in metrics["most_confident_mistakes"]]
        assert confidences == sorted(confidences, reverse=True)


def test_the_temperature_travels_into_the_contract_and_the_export(evaluated, tiny_run, tmp_path):
    contract = json.loads((tiny_run / "contract.json").read_text())
    temperature = contract["metrics"]["calibration"]["temperature"]
    assert temperature == pytest.approx(evaluated["calibration"]["temperature"])
    assert "roc_auc" in contract["metrics"]["validation"]
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(tiny_run), "--out", str(out), "--check-images", "4"]) == 0
    exported = read_contract(open_session(out))
    assert exported.metrics["calibration"]["temperature"] == temperature


def test_onnxruntime_scores_the_split_as_torch_does(evaluated, tiny_run, tmp_path):
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(tiny_run), "--out", str(out), "--check-images", "2"]) == 0
    onnx_metrics = evaluate(tiny_run, onnx=out, out=tmp_path / "onnx-report", gallery=0, examples=1,
                            log=lambda message: None)
    assert onnx_metrics["accuracy"] == evaluated["accuracy"]
    assert onnx_metrics["confusion_matrix"] == evaluated["confusion_matrix"]
    assert onnx_metrics["roc_auc"]["macro"] == pytest.approx(evaluated["roc_auc"]["macro"], abs=1e-3)
