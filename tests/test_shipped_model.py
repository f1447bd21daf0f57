"""The shipped default model: it opens, carries a complete contract, and the demo works end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from brainscan.cli import main
from brainscan.engine.model.inference import Classifier
from brainscan.engine.resources import default_model_path, samples_dir


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    return Classifier(default_model_path(), device="cpu")


def test_shipped_model_is_small_and_its_contract_is_complete(shipped):
    assert default_model_path().stat().st_size < 20 * 1024 * 1024
    contract = shipped.contract
    assert contract.classes == ("glioma", "meningioma", "notumor", "pituitary")
    assert contract.task == "4class" and contract.input_size == (224, 224)
    training = contract.training
    for key in ("command", "seed", "data_fingerprint", "machine"):
        assert key in training, f"the contract's training record lacks {key}"
    assert 0.5 < contract.metrics["validation"]["accuracy"] <= 1.0
    assert "Research use only" in contract.intended_use


def test_shipped_model_weights_match_their_checksum_and_it_is_calibrated(shipped):
    assert shipped.integrity == "verified"
    assert shipped.contract.metrics["calibration"]["temperature"] == shipped.temperature
    assert 0.2 < shipped.temperature < 5.0


def test_demo_samples_are_screened_with_their_folder_class(tmp_path):
    """A smoke test of the whole path, not an accuracy claim: the samples were training images."""
    out = tmp_path / "demo"
    assert main(["screen", str(samples_dir()), "--out", str(out), "--save-overlays", "--progress", "never"]) == 0
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list(samples_dir().glob("*.jpg"))) == 8
    for row in rows:
        expected = Path(row["path"]).name.split("-")[0]
        assert row["label"] == expected, row
    assert len(list((out / "overlays").glob("*.png"))) == 8
