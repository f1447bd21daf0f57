"""Training speed: images/s of stage-2 steps for a device and a config, and the machine it ran on.

    .venv/bin/python bench/train_speed.py                                   # the shipped recipe, CPU or GPU
    .venv/bin/python bench/train_speed.py --config gpu-b0-full.yaml --steps 50
    .venv/bin/python bench/train_speed.py --device cpu --modules all --batch-size 16

What is timed is what ``python -m trainer fit`` runs in stage 2: uint8 pictures already on the
device, batched augmentation there, the forward pass (bf16 autocast on CUDA), the loss, the
backward pass and the AdamW step, after ``--warmup`` untimed steps. Decoding is not timed
(``fit`` decodes once per run). Pictures are real when the data folder is there, else random.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

import trainer  # noqa: F401  (the torchvision workaround before timm)
from trainer.config import load_yaml, resolve_config
from trainer.data import list_samples, load_pictures
from trainer.device import Runtime, machine_info
from trainer.model import create_model
from trainer.training_loop import set_trainable, train_epoch, warmup_cosine


def pictures_for(config, count: int) -> tuple[np.ndarray, np.ndarray, str]:
    contract = config.contract()
    try:
        samples = list_samples(config.data, config.classes, task=config.task, aliases=config.label_aliases)
    except Exception as exc:  # no data here: random pictures time the same
        size = config.input_size
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
                rng.integers(0, len(config.classes), count), f"random ({exc})")
    step = max(1, len(samples) // count)
    chosen = samples[::step][:count]
    return (load_pictures([s.path for s in chosen], contract, workers=config.threads),
            np.array([s.label for s in chosen]), f"{len(chosen)} real pictures")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a YAML config (bundled ones by name)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--architecture", default=None)
    parser.add_argument("--modules", default=None, help="'all', or comma-separated modules to train (default: config)")
    parser.add_argument("--amp", default=None, choices=("auto", "bf16", "off"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--pictures", type=int, default=256, help="distinct pictures held on the device")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()

    values = load_yaml(args.config) if args.config else {}
    overrides = {k: v for k, v in {
        "device": args.device, "batch_size": args.batch_size, "architecture": args.architecture, "amp": args.amp,
        "threads": args.threads,
    }.items() if v is not None}
    if args.architecture and "weights" not in values:
        overrides["weights"] = "auto"
    if args.modules:
        overrides["finetune_modules"] = ["*"] if args.modules == "all" else args.modules.split(",")
    if args.compile:
        overrides["compile"] = True
    if args.no_channels_last:
        overrides["channels_last"] = False
    config = resolve_config(values, overrides)
    if config.weights == "timm":  # speed does not depend on the weights; no download needed
        config = resolve_config(values, {**overrides, "weights": "none", "mean": list(config.mean),
                                         "std": list(config.std)})
    torch.set_num_threads(config.threads)
    rt = Runtime.from_config(config.device, config.amp, config.channels_last)

    pictures, labels, source = pictures_for(config, args.pictures)
    model = create_model(config.architecture, len(config.classes), config.weights, config.drop_rate).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trainable = set_trainable(model, config.finetune_modules)
    optimizer = torch.optim.AdamW(trainable, lr=config.finetune_lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine(optimizer, args.warmup + args.steps, config.warmup_fraction)
    train_model = torch.compile(model) if config.compile else model
    pictures_t = torch.from_numpy(pictures).to(rt.device)
    labels_t = torch.as_tensor(labels, dtype=torch.long, device=rt.device)
    indices = torch.arange(len(pictures))
    generator = torch.Generator().manual_seed(0)

    def run(steps: int, desc: str) -> tuple[int, float]:
        images, seconds = 0, 0.0
        per_pass = math.ceil(len(pictures) / config.batch_size)
        while steps > 0:
            chunk = min(steps, per_pass)
            stats = train_epoch(train_model, optimizer, scheduler, pictures_t, labels_t, indices, chunk, config,
                                rt, generator, desc=desc)
            images += stats["images"]
            seconds += stats["seconds"]
            steps -= chunk
        return images, seconds

    tic = time.perf_counter()
    run(args.warmup, "warm-up")
    warmup_s = time.perf_counter() - tic
    images, seconds = run(args.steps, "timed")
    result = {
        "images_per_s": round(images / seconds, 1),
        "steps": args.steps,
        "batch_size": config.batch_size,
        "seconds": round(seconds, 1),
        "warmup_s": round(warmup_s, 1),
        "architecture": config.architecture,
        "input_size": config.input_size,
        "trained_modules": list(config.finetune_modules),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "runtime": rt.describe(),
        "compile": config.compile,
        "pictures": source,
        "machine": machine_info(rt.device),
    }
    print(json.dumps(result, indent=2))
    print(
        f"{result['images_per_s']} training images/s: {config.architecture} {config.input_size}px, batch "
        f"{config.batch_size}, training {', '.join(config.finetune_modules)}, on {rt.describe()} "
        f"({result['machine'].get('gpu', result['machine']['processor'])}, {result['machine']['torch_threads']} threads)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
