"""The optimisation steps of a fit: what trains, the head on cached features, and epochs on pictures.

- :func:`set_trainable` and :func:`train_mode`: freeze all but the fine-tuned modules and the head
  (frozen batch-norm layers keep their statistics);
- :func:`fit_head`: stage 1, the linear head on the frozen backbone's cached features;
- :func:`warmup_cosine` and :func:`train_epoch`: stage 2's schedule and one epoch of augmented
  pictures already on the training device;
- :func:`finetune`: stage 2 without validation, for a fixed number of epochs or steps.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from trainer.augment import augment_batch, normalize_tensor, plain_tensor
from trainer.cam_box_loss import batch_inputs, logits_and_box_loss
from trainer.config import FitConfig
from trainer.device import Runtime
from trainer.errors import TrainerError
from trainer.inference import index_batches, pictures_tensor


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
    """A linear warm-up over ``warmup_fraction`` of the steps, then a cosine decay to zero."""
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
    boxes: torch.Tensor | None = None,
) -> dict[str, Any]:
    """``steps`` optimisation steps over a fresh permutation of ``indices`` (pictures on ``rt.device``).

    With ``boxes`` (N x 4 in input pixels, NaN: none) and ``config.box_loss_weight`` > 0 the CAM box loss
    (:mod:`trainer.cam_box_loss`) is added. Returns the per-step losses, the training accuracy, images and
    seconds (and the mean box loss).
    """
    use_boxes = boxes is not None and (config.box_loss_weight > 0 or config.box_occlusion_weight > 0)
    occlusion = None
    if use_boxes and config.box_occlusion_weight > 0:
        fill = normalize_tensor(torch.zeros(1, 3, 1, 1), config.contract()).flatten()
        occlusion = (config.box_occlusion_weight, config.box_occlusion_margin, fill, generator)
    box_losses: list[torch.Tensor] = []
    contract = config.contract()
    train_mode(model)
    order = indices[torch.randperm(len(indices), generator=generator)]
    losses: list[torch.Tensor] = []
    correct = torch.zeros((), dtype=torch.long, device=rt.device)
    seen = 0
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, unit="step", mininterval=5, file=sys.stdout)
    for step, idx in enumerate(index_batches(order, config.batch_size)):
        if step >= steps:
            break
        if len(idx) < 2:  # batch norm needs two pictures
            continue
        idx = idx.to(rt.device, non_blocking=True)
        batch, target = pictures[idx], labels[idx]
        box_loss = None
        if use_boxes:
            x, masks = batch_inputs(batch, boxes[idx], contract, config.augment if augment else None, generator,
                                    config.box_margin)
            with rt.autocast():
                logits, box_loss = logits_and_box_loss(model, rt.prepare(x), target, masks, config.box_loss,
                                                       occlusion, config.box_loss_weight)
        else:
            x = augment_batch(batch, contract, config.augment, generator) if augment else plain_tensor(batch, contract)
            with rt.autocast():
                logits = model(rt.prepare(x))
        loss = F.cross_entropy(logits.float(), target, label_smoothing=config.label_smoothing)
        if box_loss is not None:
            loss = loss + box_loss
            box_losses.append(box_loss.detach())
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
        **({"box_loss": float(torch.stack(box_losses).mean())} if box_losses else {}),
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
    pictures_t = pictures_tensor(pictures, rt)
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
