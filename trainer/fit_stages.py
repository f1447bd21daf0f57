"""The two training stages of a fit, on the data and model a :class:`FitSession` holds.

- Stage 1 (:func:`fit_head_stage`): the head on the frozen backbone's pooled features, computed
  once as is and mirrored.
- Stage 2 (:class:`Stage2` and :func:`run_epochs`): ``finetune_modules`` and the head, epoch by
  epoch; after each epoch the validation split is scored, the best epoch's weights are kept,
  ``patience`` epochs without improvement stop the fit, and the whole state is saved to
  ``last.pt`` (:func:`save_resume_state`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainscan.engine.model.contract import ModelContract
from trainer.config import FitConfig
from trainer.device import Runtime
from trainer.inference import pooled_features, predict_logits
from trainer.metrics import classification_report
from trainer.prepared_data import Log, Prepared
from trainer.resume_state import BestEpoch, Progress, RandomStreams, ResumeState
from trainer.run_folder import LAST, cpu_state
from trainer.training_loop import fit_head, set_trainable, train_epoch, warmup_cosine

Stop = Callable[[int, list[dict[str, Any]]], bool]


@dataclass
class FitSession:
    """What the stages of one fit share: the run, its data on the training device and the model."""

    config: FitConfig
    contract: ModelContract
    rt: Runtime
    run_dir: Path
    data: Prepared
    model: nn.Module
    pictures: torch.Tensor  # N x H x W x 3 uint8 on rt.device
    labels: torch.Tensor  # N, long, on rt.device
    generator: torch.Generator
    timings: dict[str, float]
    log: Log
    started_wall: float  # perf_counter() when this process started the fit
    prior_wall: float = 0.0  # wall seconds spent before a resume
    boxes: torch.Tensor | None = None  # N x 4 tumour boxes in input pixels (NaN: none), for the CAM box loss

    @property
    def train_idx(self) -> torch.Tensor:
        return torch.as_tensor(self.data.train, dtype=torch.long)

    @property
    def has_val(self) -> bool:
        return len(self.data.val) > 0


def fit_head_stage(s: FitSession) -> dict[str, Any]:
    """Stage 1; returns its validation accuracy and macro F1 (empty without validation or stage 1)."""
    config = s.config
    if config.head_epochs <= 0:
        s.log("stage 1 skipped (head_epochs 0)")
        return {}
    tic = time.perf_counter()
    feats = [
        pooled_features(s.model, s.pictures, s.contract, indices=s.data.train, rt=s.rt, desc="features"),
        pooled_features(s.model, s.pictures, s.contract, indices=s.data.train, mirror=True, rt=s.rt,
                        desc="features (mirrored)"),
    ]
    head_labels = torch.cat([s.labels[s.train_idx.to(s.rt.device)]] * 2)
    head_loss = fit_head(s.model.get_classifier(), torch.cat(feats), head_labels, config, s.generator)
    s.timings["stage1_s"] = time.perf_counter() - tic
    s.log(f"stage 1 (head on cached features): loss {head_loss:.4f}, {s.timings['stage1_s']:.0f}s")
    if not s.has_val:
        return {}
    logits = predict_logits(s.model, s.pictures, s.contract, indices=s.data.val, rt=s.rt, desc="val")
    report = classification_report(s.data.labels[s.data.val], logits.argmax(1), config.classes)
    stage1 = {k: report[k] for k in ("accuracy", "macro_f1")}
    s.log(f"stage 1 validation: accuracy {stage1['accuracy']:.4f}, macro F1 {stage1['macro_f1']:.4f}")
    return stage1


@dataclass
class Stage2:
    """Stage 2's optimiser and schedule: ``epochs`` epochs of ``steps_per_epoch``, ``total_steps`` in all."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    steps_per_epoch: int
    total_steps: int
    epochs: int

    @classmethod
    def plan(cls, model: nn.Module, config: FitConfig, train_images: int) -> Stage2:
        """Make ``finetune_modules`` and the head trainable; AdamW with warm-up and cosine over the epochs."""
        trainable = set_trainable(model, config.finetune_modules)
        optimizer = torch.optim.AdamW(trainable, lr=config.finetune_lr, weight_decay=config.weight_decay)
        steps_per_epoch = max(1, math.ceil(train_images / config.batch_size))
        total_steps = round(config.finetune_epochs * steps_per_epoch)
        epochs = math.ceil(total_steps / steps_per_epoch) if total_steps else 0
        scheduler = warmup_cosine(optimizer, max(1, total_steps), config.warmup_fraction)
        return cls(optimizer, scheduler, steps_per_epoch, total_steps, epochs)

    def steps_in(self, done: int) -> int:
        """The steps of the epoch after ``done`` epochs (the last one may be partial)."""
        return min(self.steps_per_epoch, self.total_steps - done * self.steps_per_epoch)


def save_resume_state(s: FitSession, stage2: Stage2, progress: Progress, stage1: dict[str, Any]) -> None:
    """Write ``last.pt`` after ``progress.epoch`` epochs (with the wall time spent so far)."""
    s.timings["wall_s"] = s.prior_wall + time.perf_counter() - s.started_wall
    begun = bool(progress.epoch)
    ResumeState(
        config=s.config.as_dict(), fingerprint=s.data.fingerprint, model=cpu_state(s.model),
        optimizer=stage2.optimizer.state_dict() if begun else None,
        scheduler=stage2.scheduler.state_dict() if begun else None,
        rng=RandomStreams.capture(s.generator, s.rt.device), progress=progress, stage1=stage1, timings=s.timings,
    ).save(s.run_dir / LAST)


def _better(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


def _validate_epoch(s: FitSession, row: dict[str, Any], progress: Progress) -> None:
    """Score the validation split into ``row``; keep the best epoch; count epochs without improvement."""
    config = s.config
    logits = predict_logits(s.model, s.pictures, s.contract, indices=s.data.val, rt=s.rt,
                            batch_size=config.eval_batch_size, desc="val")
    target = torch.as_tensor(s.data.labels[s.data.val])
    row["val_loss"] = round(float(F.cross_entropy(torch.from_numpy(logits), target)), 4)
    row["val_accuracy"] = round(float((logits.argmax(1) == s.data.labels[s.data.val]).mean()), 4)
    value = row[config.monitor]
    if _better(value, None if progress.best is None else progress.best.value, config.monitor):
        progress.best = BestEpoch(progress.epoch, value, cpu_state(s.model))
        progress.bad_epochs = 0
    else:
        progress.bad_epochs += 1
    progress.stopped_early = bool(config.patience) and progress.bad_epochs >= config.patience


def _epoch_row(epoch: int, steps: int, stats: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "steps": steps,
        "train_loss": round(float(np.mean(stats["losses"])), 4) if stats["losses"] else None,
        "train_accuracy": round(stats["train_accuracy"], 4),
        "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": round(stats["images"] / max(stats["seconds"], 1e-9), 1),
        **({"box_loss": round(stats["box_loss"], 4)} if "box_loss" in stats else {}),
    }


def _epoch_line(row: dict[str, Any], progress: Progress, epochs: int, has_val: bool) -> str:
    return (
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']}, acc {row['train_accuracy']:.4f}, "
        f"{row['images_per_s']} img/s" + (f", box loss {row['box_loss']}" if "box_loss" in row else "")
        + (f"; val loss {row['val_loss']}, acc {row['val_accuracy']:.4f}" if has_val else "")
        + (f"; no improvement for {progress.bad_epochs}, stopping early" if progress.stopped_early else "")
    )


def run_epochs(
    s: FitSession, stage2: Stage2, progress: Progress, train_model: nn.Module, stage1: dict[str, Any],
    stop: Stop | None = None,
) -> bool:
    """Stage 2's remaining epochs, each scored, logged and saved to ``last.pt``.

    ``train_model`` is the model that trains (``s.model``, compiled or not). Returns false when
    ``stop`` ended the fit before its end (its state is saved for a resume), else true.
    """
    while progress.epoch < stage2.epochs and not progress.stopped_early:
        steps = stage2.steps_in(progress.epoch)
        stats = train_epoch(
            train_model, stage2.optimizer, stage2.scheduler, s.pictures, s.labels, s.train_idx, steps, s.config,
            s.rt, s.generator, desc=f"epoch {progress.epoch + 1}/{stage2.epochs}", boxes=s.boxes,
        )
        progress.epoch += 1
        row = _epoch_row(progress.epoch, steps, stats, stage2.optimizer)
        if s.has_val:
            _validate_epoch(s, row, progress)
        progress.history.append(row)
        s.log(_epoch_line(row, progress, stage2.epochs, s.has_val))
        s.timings["stage2_s"] = s.timings.get("stage2_s", 0.0) + stats["seconds"]
        save_resume_state(s, stage2, progress, stage1)
        if (stop is not None and not stop(progress.epoch, progress.history) and progress.epoch < stage2.epochs
                and not progress.stopped_early):
            s.log(f"stopped after epoch {progress.epoch}; resume with: python -m trainer fit --resume {s.run_dir}")
            return False
    return True
