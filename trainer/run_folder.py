"""What a run folder ``runs/<name>/`` holds, and reading and writing it.

A fit writes, in this order:

- ``config.yaml`` and ``config.json``: the resolved config (:func:`trainer.config.save_resolved`);
- ``fit.log``: the fit's log lines;
- ``skipped.json``: the files that could not be decoded (only when there are some);
- ``last.pt``: the state of an unfinished fit (:class:`trainer.resume_state.ResumeState`),
  rewritten after every epoch and removed when the fit ends;
- ``checkpoint.pt``: the kept weights, the resolved config and the model contract;
- ``contract.json``: that contract, readable;
- ``history.json``: one row per stage-2 epoch.

``evaluate`` adds ``report/`` (and updates the contract), ``quantize`` adds ``quantize/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brainscan.engine.model.contract import ModelContract
from trainer.config import CONFIG_JSON, FitConfig
from trainer.errors import TrainerError
from trainer.model import create_model

CHECKPOINT = "checkpoint.pt"
LAST = "last.pt"
CONTRACT = "contract.json"
HISTORY = "history.json"
SKIPPED = "skipped.json"
FIT_LOG = "fit.log"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state dict on the CPU (contiguous tensors), safe to keep or save."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def write_contract_json(run_dir: Path, contract: ModelContract) -> None:
    """Write ``contract.json`` (indented) into the run folder."""
    (run_dir / CONTRACT).write_text(json.dumps(json.loads(contract.to_json()), indent=2) + "\n")


def save_checkpoint(run_dir: Path, model: nn.Module, config: FitConfig, contract: ModelContract) -> Path:
    """Write ``checkpoint.pt`` (weights, config, contract) and ``contract.json``; returns the checkpoint."""
    path = run_dir / CHECKPOINT
    atomic_save({"state_dict": model.state_dict(), "config": config.as_dict(), "contract": contract.to_json()}, path)
    write_contract_json(run_dir, contract)
    return path


def load_checkpoint(run_dir: str | Path) -> tuple[nn.Module, ModelContract, FitConfig]:
    """The trained model (eval mode, CPU), its contract and its config from a run folder."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise TrainerError(f"{path}: no checkpoint here; train one with `python -m trainer fit`")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = FitConfig.from_dict(saved["config"]).resolved()
    model = create_model(config.architecture, len(config.classes), "none", config.drop_rate)
    model.load_state_dict(saved["state_dict"])
    return model.eval(), ModelContract.from_json(saved["contract"], source=str(path)), config


def update_contract(run_dir: str | Path, contract: ModelContract) -> None:
    """Replace the contract stored in a run's checkpoint and ``contract.json`` (e.g. with calibration)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    saved = torch.load(path, map_location="cpu", weights_only=True)
    saved["contract"] = contract.to_json()
    atomic_save(saved, path)
    write_contract_json(run_dir, contract)


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Write ``history.json``: one row per stage-2 epoch."""
    (run_dir / HISTORY).write_text(json.dumps(history, indent=2) + "\n")


def read_history(run_dir: Path) -> list[dict[str, Any]] | None:
    """The rows of ``history.json``, or None when the run has none (it predates the file)."""
    path = run_dir / HISTORY
    return json.loads(path.read_text()) if path.is_file() else None


def write_skipped(run_dir: Path, skipped: list[tuple[str, str]]) -> None:
    """Write ``skipped.json``: the path of each unreadable file and why."""
    (run_dir / SKIPPED).write_text(json.dumps([{"path": p, "why": w} for p, w in skipped], indent=2) + "\n")


def saved_config(run_dir: Path) -> FitConfig:
    """The config saved in a run folder's ``config.json``, placed at the folder where the run now lies.

    Raises
    ------
    TrainerError
        When the folder holds no ``config.json``.
    """
    path = run_dir / CONFIG_JSON
    if not path.is_file():
        raise TrainerError(f"{run_dir}: no config.json here; is it a run folder?")
    saved = FitConfig.from_dict(json.loads(path.read_text()))
    return FitConfig.from_dict({**saved.as_dict(), "runs_dir": str(run_dir.parent), "name": run_dir.name})
