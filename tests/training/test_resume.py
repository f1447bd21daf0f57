"""Epochs with validation: an interrupted fit resumes to the same weights; best epoch kept; early stopping."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

import torch
from conftest import tiny_config

from trainer.__main__ import main
from trainer.fit import run_fit
from trainer.run_folder import CHECKPOINT, HISTORY, LAST

pytestmark = pytest.mark.trainer


def _state(run_dir):
    return torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]


def test_an_interrupted_fit_resumes_to_the_weights_of_an_uninterrupted_one(tiny_root, tmp_path):
    reference = run_fit(tiny_config(tiny_root, tmp_path, "whole"))
    interrupted = run_fit(tiny_config(tiny_root, tmp_path, "cut"), stop=lambda epoch, history: epoch < 1)
    assert (interrupted / LAST).is_file() and not (interrupted / CHECKPOINT).exists()
    assert main(["fit", "--resume", str(interrupted)]) == 0
    assert not (interrupted / LAST).exists()
    ours, theirs = _state(interrupted), _state(reference)
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6, msg=key)
    history = json.loads((interrupted / HISTORY).read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    untimed = [{k: v for k, v in row.items() if k != "images_per_s"} for row in history]
    assert untimed == [{k: v for k, v in row.items() if k != "images_per_s"}
                       for row in json.loads((reference / HISTORY).read_text())]
    contract = json.loads((interrupted / "contract.json").read_text())
    assert contract["training"]["stages"]["stage2"]["resumed"] is True


def test_resume_refuses_other_flags_and_finished_runs(tiny_run):
    assert main(["fit", "--resume", str(tiny_run), "--batch-size", "4"]) == 1
    assert main(["fit", "--resume", str(tiny_run)]) == 1  # finished: nothing to resume


def test_early_stopping_and_the_best_epoch_is_the_one_kept(tiny_root, tmp_path):
    # Only the head trains, at rate 0, with every batch norm frozen: the validation loss never
    # improves after epoch 1, so patience 1 stops the fit after epoch 2 of 4.
    config = tiny_config(tiny_root, tmp_path, "stop", head_epochs=0, finetune_epochs=4.0, finetune_lr=0.0,
                         weight_decay=0.0, finetune_modules=("classifier",), patience=1)
    run_dir = run_fit(config)
    history = json.loads((run_dir / HISTORY).read_text())
    stage2 = json.loads((run_dir / "contract.json").read_text())["training"]["stages"]["stage2"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert stage2["stopped_early"] is True and stage2["best_epoch"] == 1 and stage2["epochs_planned"] == 4


def test_the_saved_weights_are_those_of_the_best_validation_epoch(tiny_run):
    history = json.loads((tiny_run / HISTORY).read_text())
    contract = json.loads((tiny_run / "contract.json").read_text())
    best = min(history, key=lambda row: row["val_loss"])
    assert contract["training"]["stages"]["stage2"]["best_epoch"] == best["epoch"]
    assert contract["metrics"]["validation"]["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-4)
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_s"} <= set(history[0])
