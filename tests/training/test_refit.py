"""A refit: the validated recipe on every picture, carrying its twin's held-out metrics, and nothing else."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from conftest import tiny_config

from brainscan.engine.model.inference import calibration_temperature
from trainer.__main__ import main
from trainer.errors import TrainerError
from trainer.evaluate import select_data
from trainer.fit import run_fit
from trainer.run_folder import CHECKPOINT, load_checkpoint

pytestmark = pytest.mark.trainer


@pytest.fixture(scope="module")
def twin(tiny_root, tmp_path_factory):
    """A validated tiny run whose single fine-tuning epoch is, trivially, its best."""
    return run_fit(tiny_config(tiny_root, tmp_path_factory.mktemp("runs"), "twin", finetune_epochs=1.0))


def _refit_config(tiny_root, runs, twin, **changes):
    return tiny_config(tiny_root, runs, "refit", finetune_epochs=1.0, val_fraction=0.0, refit_of=str(twin), **changes)


def test_a_refit_trains_on_every_picture_and_carries_its_twins_validation(tiny_root, tmp_path, twin):
    run_dir = run_fit(_refit_config(tiny_root, tmp_path, twin))
    contract = json.loads((run_dir / "contract.json").read_text())
    theirs = json.loads((twin / "contract.json").read_text())
    training = contract["training"]
    assert training["val_images"] == 0
    assert training["train_images"] == training["images"] == theirs["training"]["images"]
    assert training["train_images"] > theirs["training"]["train_images"]
    assert training["stages"]["stage2"]["kept_epoch"] == 1
    validation = contract["metrics"]["validation"]
    assert validation["accuracy"] == theirs["metrics"]["validation"]["accuracy"]
    assert "twin" in validation["scope"] and "no held-out score of its own" in validation["scope"]
    assert contract["metrics"]["refit"]["of"] == "twin"
    assert calibration_temperature(contract["metrics"]) == theirs["metrics"]["calibration"]["temperature"]
    assert "carried over" in contract["metrics"]["calibration"]["method"]
    _, loaded, _ = load_checkpoint(run_dir / CHECKPOINT)
    assert loaded.metrics["refit"]["of"] == "twin"


def test_a_refit_with_another_recipe_is_refused_before_training(tiny_root, tmp_path, twin):
    with pytest.raises(TrainerError, match="finetune_lr"):
        run_fit(_refit_config(tiny_root, tmp_path, twin, finetune_lr=0.1))
    assert not (tmp_path / "refit" / CHECKPOINT).exists()


def test_a_refit_needs_a_validated_twin_whose_last_epoch_was_its_best(tiny_root, tmp_path, twin):
    with pytest.raises(TrainerError, match="refit_of"):
        run_fit(tiny_config(tiny_root, tmp_path, "lonely", val_fraction=0.0))
    early = tmp_path / "early"
    shutil.copytree(twin, early)
    contract = json.loads((early / "contract.json").read_text())
    contract["training"]["stages"]["stage2"].update(best_epoch=1, epochs_planned=3)
    (early / "contract.json").write_text(json.dumps(contract))
    with pytest.raises(TrainerError, match="best epoch was 1 of 3"):
        run_fit(_refit_config(tiny_root, tmp_path, early))


def test_a_refit_on_other_data_is_refused(tiny_root, tmp_path, twin):
    other = tmp_path / "other-data"
    shutil.copytree(tiny_root, other)
    next(other.glob("glioma/*.jpg")).unlink()
    with pytest.raises(TrainerError, match="fingerprint"):
        run_fit(tiny_config(other, tmp_path, "refit", finetune_epochs=1.0, val_fraction=0.0, refit_of=str(twin)))


def test_a_refit_has_no_validation_split_to_evaluate_or_quantize_on(tiny_root, tmp_path, twin, capsys):
    run_dir = run_fit(_refit_config(tiny_root, tmp_path, twin))
    _, _, config = load_checkpoint(run_dir)
    with pytest.raises(TrainerError, match="no validation split"):
        select_data(config, "validation", None)
    assert main(["quantize", str(run_dir)]) == 1
    assert "quantize its validated twin" in capsys.readouterr().err


def test_a_refit_exported_with_mirrored_views_carries_its_twins_scores_of_that_graph(tiny_root, tmp_path, twin):
    refit = run_fit(_refit_config(tiny_root, tmp_path, twin))
    twin_graph, report = tmp_path / "twin-hflip.onnx", tmp_path / "report"
    assert main(["export", str(twin), "--out", str(twin_graph), "--views-in-graph", "hflip", "--check-images", "4"]) == 0
    assert main(["evaluate", str(twin), "--onnx", str(twin_graph), "--out", str(report), "--gallery", "2",
                 "--examples", "1"]) == 0
    scored = json.loads((report / "metrics.json").read_text())
    assert scored["views_in_graph"] == ["hflip"] and scored["split"] == "validation"
    shipped = tmp_path / "refit-hflip.onnx"
    assert main(["export", str(refit), "--out", str(shipped), "--views-in-graph", "hflip",
                 "--metrics", str(report / "metrics.json"), "--check-images", "4"]) == 0
    from trainer.export import open_session, read_contract

    contract = read_contract(open_session(shipped))
    assert contract.views_in_graph == ("hflip",)
    assert contract.metrics["validation"]["accuracy"] == scored["accuracy"]
    assert contract.metrics["calibration"]["temperature"] == scored["calibration"]["temperature"]
    assert "refit" in contract.metrics["validation"]["scope"] and contract.metrics["refit"]["of"] == "twin"
    # single-view scores of a refit's own graph cannot stand in for the mirrored graph's
    assert main(["export", str(refit), "--out", str(tmp_path / "x.onnx"), "--metrics", str(report / "metrics.json"),
                 "--check-images", "4"]) == 1


def test_a_refits_export_is_not_scored_on_its_twins_validation_split(tiny_root, tmp_path, twin, capsys):
    refit = run_fit(_refit_config(tiny_root, tmp_path, twin))
    graph = tmp_path / "refit.onnx"
    assert main(["export", str(refit), "--out", str(graph), "--check-images", "4"]) == 0
    assert main(["evaluate", str(twin), "--onnx", str(graph), "--out", str(tmp_path / "r")]) == 1
    assert main(["quantize", str(twin), "--onnx", str(graph)]) == 1
    assert capsys.readouterr().err.count("is a refit on every picture") == 2
