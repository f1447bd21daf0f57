"""A refit: the validated recipe trained once more on every picture, its held-out scores carried.

Choosing a recipe needs a held-out split; the model then shipped need not leave those pictures
out. ``python -m trainer fit --val-fraction 0 --refit-of runs/<validated run>`` repeats the
validated run's recipe on all pictures (no validation, no early stopping: the last epoch is
kept, as the validated run's own best epoch was its last one when this is worth doing) and its
contract carries the validated run's metrics and temperature, each marked with where it was
measured, because the refit has no held-out score of its own.

The recipe must be the same: every setting but the run's name, version, output folder, split
and speed settings (device, threads, precision, compile) has to match, and so does the data
fingerprint, or the refit is refused before any training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import CONFIG_JSON, FitConfig, to_plain
from trainer.errors import TrainerError
from trainer.run_folder import CONTRACT

# Settings a refit may change without changing the recipe. The data is compared by its
# fingerprint (the files' names and contents), not by where its folders lie.
FREE_SETTINGS = frozenset({
    "data", "name", "version", "runs_dir", "val_fraction", "refit_of", "patience", "monitor",
    "device", "amp", "channels_last", "compile", "threads", "eval_batch_size",
})


@dataclass(frozen=True)
class ValidatedTwin:
    """The validated run a refit repeats: its folder, resolved config and contract."""

    run_dir: Path
    config: FitConfig
    contract: dict[str, Any]

    @property
    def fingerprint(self) -> str | None:
        return (self.contract.get("training") or {}).get("data_fingerprint")


def load_twin(config: FitConfig) -> ValidatedTwin:
    """The run named by ``config.refit_of``, checked to hold the same recipe and validation metrics."""
    if not config.refit_of:
        raise TrainerError("a refit (val_fraction 0) needs refit_of: the validated run of the same recipe")
    run_dir = Path(config.refit_of)
    config_path, contract_path = run_dir / CONFIG_JSON, run_dir / CONTRACT
    for path in (config_path, contract_path):
        if not path.is_file():
            raise TrainerError(f"{path}: missing; refit_of must name a finished run folder of `python -m trainer fit`")
    twin_config = FitConfig.from_dict(json.loads(config_path.read_text())).resolved()
    contract = json.loads(contract_path.read_text())
    metrics = contract.get("metrics") or {}
    if not metrics.get("validation") or not metrics.get("calibration"):
        raise TrainerError(f"{run_dir}: that run has no validation metrics and temperature to carry; "
                           "name a run fitted with a held-out split (val_fraction > 0)")
    differences = recipe_differences(config, twin_config)
    if differences:
        raise TrainerError(
            f"{run_dir} used another recipe, so its validation says nothing about this refit: "
            + "; ".join(differences) + ". Refit with the same settings (change only name, version, val_fraction, "
            "refit_of and speed settings)"
        )
    stage2 = ((contract.get("training") or {}).get("stages") or {}).get("stage2") or {}
    planned, best = stage2.get("epochs_planned"), stage2.get("best_epoch")
    if planned and best != planned:
        raise TrainerError(
            f"{run_dir}: its best epoch was {best} of {planned}, so the validated model is not the end of the "
            "schedule that a refit repeats; refit a recipe whose last epoch was its best (e.g. fewer epochs)"
        )
    return ValidatedTwin(run_dir, twin_config, contract)


def recipe_differences(config: FitConfig, twin: FitConfig) -> list[str]:
    """``"key: ours vs theirs"`` for every recipe setting that differs."""
    ours, theirs = config.as_dict(), twin.as_dict()
    return [
        f"{key}: {ours[key]!r} vs {theirs.get(key)!r}"
        for key in sorted(ours)
        if key not in FREE_SETTINGS and to_plain(ours[key]) != to_plain(theirs.get(key))
    ]


def check_same_data(twin: ValidatedTwin, fingerprint: str) -> None:
    if twin.fingerprint and twin.fingerprint != fingerprint:
        raise TrainerError(
            f"{twin.run_dir} was fitted on other data (fingerprint {twin.fingerprint}, here {fingerprint}); "
            "a refit must see the same pictures its twin split"
        )


def carried_metrics(twin: ValidatedTwin, images: int) -> dict[str, Any]:
    """The twin's validation metrics and calibration, each saying where it was measured."""
    metrics = twin.contract["metrics"]
    trained = (twin.contract.get("training") or {}).get("train_images")
    where = (
        f"measured on the validated run {twin.run_dir.name} (same recipe and data; trained on {trained} pictures, "
        f"{metrics['validation'].get('images')} held out by near-duplicate group). This model is its refit on "
        f"all {images} pictures, those held-out ones included, so it has no held-out score of its own"
    )
    validation = {"scope": where, **metrics["validation"]}
    calibration = {
        **metrics["calibration"],
        "method": f"{metrics['calibration'].get('method', 'temperature scaling')}; fitted on the validated run "
                  f"{twin.run_dir.name} and carried over unchanged",
    }
    carried = {"validation": validation, "calibration": calibration}
    if "stage1_validation" in metrics:
        carried["stage1_validation"] = metrics["stage1_validation"]
    carried["refit"] = {
        "of": twin.run_dir.name,
        "of_version": twin.contract.get("version"),
        "images": images,
        "note": "recipe validated with a held-out split, then refit on every picture for the same epochs",
    }
    return carried


def refuse_refit_on_held_out(contract_metrics: Mapping[str, Any], source: str) -> None:
    """A refit trained on its twin's held-out pictures: scoring it there would be leakage."""
    refit = contract_metrics.get("refit")
    if refit:
        raise TrainerError(
            f"{source} is a refit on every picture ({refit.get('images')} of them, those of {refit.get('of')}'s "
            "validation split included): scoring it on a validation split would count trained-on pictures. "
            "Score the validated run's own export instead"
        )
