"""External validation: a 4-class model judged as a tumour screen on yes/no folders (issue 13, item 5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from tiny_models import build_tiny_model, tiny_contract
from trainer.__main__ import main
from trainer.config import FitConfig
from trainer.data import is_tumour_yes_no
from trainer.errors import TrainerError
from trainer.metrics import binary_screening_metrics, wilson_interval

pytestmark = pytest.mark.trainer


def test_screening_metrics_on_hand_made_predictions():
    tumour = np.array([1] * 10 + [0] * 5, dtype=bool)
    called = np.array([1] * 8 + [0] * 2 + [0] * 4 + [1], dtype=bool)
    scores = np.array([0.9] * 8 + [0.3, 0.1] + [0.2] * 4 + [0.95])
    result = binary_screening_metrics(tumour, called, scores)
    assert result["counts"] == {"tp": 8, "fn": 2, "tn": 4, "fp": 1}
    assert result["images"] == 15
    assert result["sensitivity"] == 0.8 and result["specificity"] == 0.8 and result["balanced_accuracy"] == 0.8
    assert result["sensitivity_ci95"] == pytest.approx([0.4902, 0.9433], abs=1e-4)  # 8 of 10, Wilson
    assert result["specificity_ci95"] == pytest.approx([0.3755, 0.9638], abs=1e-4)  # 4 of 5, Wilson
    # AUC by hand: 8 tumours at 0.9 beat 4 negatives and lose to the one at 0.95; 0.3 beats 4; 0.1 beats none.
    assert result["roc_auc"] == pytest.approx((8 * 4 + 4) / 50)


def test_wilson_interval_edges():
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert all(np.isnan(wilson_interval(0, 0)))
    low, high = wilson_interval(90, 155)
    assert low < 90 / 155 < high and high - low == pytest.approx(0.153, abs=2e-3)


def _folders(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "a.jpg").write_bytes(b"")
    return root


def test_yes_no_folders_are_a_tumour_set_through_the_aliases(tmp_path):
    assert is_tumour_yes_no(_folders(tmp_path / "a", ("yes", "no")))
    assert is_tumour_yes_no(_folders(tmp_path / "b", ("yes", "no")), {"yes": "tumour", "no": "notumor"})
    renamed = _folders(tmp_path / "c", ("lesion", "healthy"))
    assert not is_tumour_yes_no(renamed)
    assert is_tumour_yes_no(renamed, {"lesion": "tumour", "healthy": "notumor"})
    assert not is_tumour_yes_no(_folders(tmp_path / "d", ("glioma", "notumor", "pituitary")))
    assert not is_tumour_yes_no(_folders(tmp_path / "e", ("yes",)))
    assert is_tumour_yes_no(_folders(tmp_path / "f" / "Testing", ("yes", "no")).parent)


def test_a_malformed_alias_is_refused(tmp_path, capsys):
    assert main(["evaluate", "--onnx", str(tmp_path / "x.onnx"), "--data", str(tmp_path), "--alias", "yes"]) == 1
    assert "FOLDER=CLASS" in capsys.readouterr().err


@pytest.fixture(scope="module")
def yes_no_root(training_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real Kaggle Training JPGs arranged as a yes/no set: 3 of each tumour type under tumour, 6 no tumour."""
    root = tmp_path_factory.mktemp("yes-no")
    for name, folder, count in (("glioma", "tumour", 3), ("meningioma", "tumour", 3), ("pituitary", "tumour", 3),
                                ("notumor", "healthy", 6)):
        (root / folder).mkdir(exist_ok=True)
        for path in sorted((training_dir / name).glob("*.jpg"))[::211][:count]:
            shutil.copy(path, root / folder / path.name)
    return root


def test_evaluate_an_onnx_file_alone_on_a_yes_no_set(yes_no_root, tmp_path, capsys):
    config = FitConfig(name="tiny", input_size=64, threads=1).resolved()
    model = build_tiny_model(tmp_path / "tiny.onnx", tiny_contract(training={"config": config.as_dict()}))
    out = tmp_path / "report"
    code = main(["evaluate", "--onnx", str(model), "--data", str(yes_no_root), "--alias", "tumour=yes",
                 "--alias", "healthy=notumor", "--out", str(out), "--threads", "1"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    binary = metrics["binary"]
    counts = binary["counts"]
    assert counts["tp"] + counts["fn"] == 9 and counts["tn"] + counts["fp"] == 6 and binary["images"] == 15
    assert binary["sensitivity"] == pytest.approx(round(counts["tp"] / 9, 4))
    assert binary["specificity"] == pytest.approx(round(counts["tn"] / 6, 4))
    assert binary["balanced_accuracy"] == pytest.approx((counts["tp"] / 9 + counts["tn"] / 6) / 2, abs=1e-4)
    assert 0.0 <= binary["roc_auc"] <= 1.0 and len(binary["sensitivity_ci95"]) == 2
    assert sum(binary["predicted_classes"]["tumour"].values()) == 9
    assert binary["predicted_classes"]["tumour"]["notumor"] == counts["fn"]
    assert metrics["split"] == "external" and "yes/no" in metrics["split_description"]
    markdown = (out / "report.md").read_text()
    assert "## Tumour against no tumour" in markdown and "balanced accuracy" in markdown
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["counts"] == counts


def test_an_onnx_file_without_a_training_config_asks_for_the_run(yes_no_root, tmp_path):
    model = build_tiny_model(tmp_path / "bare.onnx")
    from trainer.evaluate import evaluate

    with pytest.raises(TrainerError, match="pass the run folder"):
        evaluate(onnx=model, data=[str(yes_no_root)], aliases={"tumour": "yes"}, out=tmp_path / "r",
                 log=lambda message: None)
