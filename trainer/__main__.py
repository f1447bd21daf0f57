"""``python -m trainer``: fit a model, export it to ONNX with its contract, check an export."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from brainscan.engine.errors import BrainscanError
from trainer.data import list_samples, read_picture
from trainer.fit import FitConfig, load_checkpoint, run_fit
from trainer.weights import OFFLINE_ARCHITECTURES, WEIGHT_SOURCES


def _fit_parser(sub: argparse._SubParsersAction) -> None:
    d = FitConfig()
    p = sub.add_parser("fit", help="train a model and save it under runs/<name>/")
    p.add_argument("--name", default=d.name, help="run name: the checkpoint goes to <runs-dir>/<name>/")
    p.add_argument("--data", default=d.data, help="folder with one sub-folder of pictures per class")
    p.add_argument("--runs-dir", default=d.runs_dir)
    p.add_argument("--architecture", default=d.architecture, help="a timm model name")
    p.add_argument(
        "--weights", choices=WEIGHT_SOURCES, default=None,
        help="offline: ImageNet from the pip package (Lite0, the default); timm: download (internet); "
        "none: from scratch (the default for other architectures)",
    )
    p.add_argument("--input-size", type=int, default=d.input_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--limit", type=int, default=None, help="use only this many pictures (a smoke run)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--dedup-threshold", type=int, default=d.dedup_threshold, help="pHash Hamming distance")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--head-epochs", type=int, default=d.head_epochs)
    p.add_argument("--head-lr", type=float, default=d.head_lr)
    p.add_argument("--finetune-epochs", type=float, default=d.finetune_epochs)
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--model-name", default=d.model_name)
    p.add_argument("--version", default=d.version)
    p.add_argument("--export", type=Path, default=None, help="also export the trained model to this ONNX file")


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained run to ONNX with its contract, then check it")
    p.add_argument("run", type=Path, help="the run folder (or its checkpoint.pt)")
    p.add_argument("--out", type=Path, required=True, help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--check-images", type=int, default=16, help="real pictures to compare onnxruntime with torch on")
    p.add_argument("--data", default=None, help="pictures for the check (default: the run's data)")


def _config_from(args: argparse.Namespace) -> FitConfig:
    weights = args.weights or ("offline" if args.architecture in OFFLINE_ARCHITECTURES else "none")
    return FitConfig(
        name=args.name, data=args.data, runs_dir=args.runs_dir, architecture=args.architecture, weights=weights,
        input_size=args.input_size, seed=args.seed, limit=args.limit, val_fraction=args.val_fraction,
        dedup_threshold=args.dedup_threshold, batch_size=args.batch_size, head_epochs=args.head_epochs,
        head_lr=args.head_lr, finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
        threads=args.threads, channels_last=not args.no_channels_last, model_name=args.model_name,
        version=args.version,
    )


def check_pictures(data: str | Path, classes: Sequence[str], count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` real pictures spread over the classes, decoded but not resized."""
    samples = list_samples(data, classes)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(samples), size=min(count, len(samples)), replace=False)
    return [read_picture(samples[i].path) for i in sorted(chosen)]


def export_run(run: Path, out: Path, *, opset: int = 17, check_images: int = 16, data: str | None = None) -> dict:
    """Export a run's checkpoint and check the file; returns the check's numbers."""
    from trainer.export import check_export, export_onnx

    model, contract, config = load_checkpoint(run)
    export_onnx(model, contract, out, opset=opset)
    pictures = check_pictures(data or config.data, config.classes, check_images, config.seed)
    result = check_export(out, model, pictures).as_dict()
    result["size_mb"] = round(out.stat().st_size / 1e6, 2)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _fit_parser(sub)
    _export_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "fit":
            config = _config_from(args)
            torch.set_num_threads(config.threads)
            run_dir = run_fit(config, argv)
            if args.export:
                result = export_run(run_dir, args.export)
                print(f"exported {args.export}: {json.dumps(result)}")
        elif args.command == "export":
            torch.set_num_threads(2)
            result = export_run(args.run, args.out, opset=args.opset, check_images=args.check_images, data=args.data)
            print(f"exported {args.out}: {json.dumps(result)}")
    except BrainscanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
