"""``python -m trainer``: audit data, fit, evaluate, export and quantize brain-MRI classifiers.

Subcommands
-----------
audit     duplicates (exact and near), class balance, sizes and modes, broken files; before any split
fit       two-stage fit (YAML config via --config, any field as a flag, --set key=value; --resume)
evaluate  metrics, ROC AUC, calibration, confusion matrix, mistakes and Grad-CAMs; report per run
export    ONNX with the contract and CAM outputs, checked against torch in onnxruntime
quantize  static INT8 (QDQ, per-channel), compared with fp32 for accuracy and speed
graft     fit the explanation head (tumour boxes) and the domain guard, graft them onto an ONNX model
match-boxes  carry the figshare tumour boxes over to the Kaggle Training pictures cut from them
single-view  the one-view twin of a model that averages the mirror in its graph (same weights)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import torch

from brainscan.engine.errors import BrainscanError
from trainer.config import FitConfig, flag_specs, load_yaml, resolve_config, save_resolved
from trainer.data import DEFAULT_DATA, TASK_CLASSES
from trainer.dedup import DEFAULT_THRESHOLD
from trainer.errors import TrainerError
from trainer.fit import FitInterrupted, run_fit
from trainer.run_folder import CHECKPOINT, saved_config

DEFAULT_SHIP_INT8 = Path("resources/models/brainscan-4class-lite0-int8.onnx")


# -- parsers -----------------------------------------------------------------------------------
def _fit_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit", help="train a model and save it under runs/<name>/",
        description="Defaults < --config YAML < flags. The resolved config is saved as runs/<name>/config.yaml.",
    )
    p.add_argument("--config", type=Path, help="a YAML file of settings (bundled: trainer/configs/*.yaml)")
    for flag, kwargs in flag_specs():
        p.add_argument(flag, **kwargs)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, nested ones too: --set augment.rotate_deg=10 --set label_aliases.tumour=tumor")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue the interrupted fit in this run folder")
    p.add_argument("--overwrite", action="store_true", help="start over in a run folder that already holds a run")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--export", type=Path, default=None, help="also export the trained model to this ONNX file")


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained run to ONNX with its contract, then check it")
    p.add_argument("run", type=Path, help="the run folder (or its checkpoint.pt)")
    p.add_argument("--out", type=Path, required=True, help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--check-images", type=int, default=16, help="real pictures to compare onnxruntime with torch on")
    p.add_argument("--data", nargs="+", default=None, help="pictures for the check (default: the run's data)")
    p.add_argument("--views-in-graph", nargs="+", default=[], choices=("hflip",),
                   help="views the graph averages itself (hflip: the picture and its mirror)")
    p.add_argument("--metrics", type=Path, default=None,
                   help="metrics.json of `evaluate --onnx` on a graph with the same views (validation split): "
                        "the contract carries those scores and that temperature instead of the single-view ones")


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a run (or an ONNX file) and write its report")
    p.add_argument("run", type=Path, nargs="?", help="the run folder")
    p.add_argument("--onnx", type=Path, help="score this exported file in onnxruntime instead of the checkpoint")
    p.add_argument("--split", default="validation", choices=("validation", "train", "test", "all"),
                   help="validation: the run's grouped split (fits the temperature); test: Testing folders")
    p.add_argument("--data", nargs="+", help="score every picture under these roots instead (an external set)")
    p.add_argument("--alias", action="append", default=[], metavar="FOLDER=CLASS",
                   help="map a folder of --data to a class (repeatable): yes=tumour, no=notumor; a tumour yes/no "
                        "set is scored as a screen (sensitivity, specificity, balanced accuracy)")
    p.add_argument("--out", type=Path, help="report folder (default: <run>/report)")
    p.add_argument("--no-update-contract", action="store_true",
                   help="do not write the fitted temperature and ROC AUC into the run's contract")
    p.add_argument("--gallery", type=int, default=12, help="most confident mistakes to show")
    p.add_argument("--examples", type=int, default=4, help="Grad-CAM examples per class")
    p.add_argument("--cam-method", default="gradcam", choices=("gradcam", "gradcam++", "layercam", "eigencam"))
    p.add_argument("--boxes", type=Path, metavar="DIR",
                   help="tumour boxes (ID.txt, YOLO style) beside the pictures or in a tree mirroring them: the pointing "
                        "game of every CAM method on the boxed pictures (pointing.json, needs --onnx)")
    p.add_argument("--ids-file", type=Path, metavar="FILE", help="evaluate only the pictures whose ids are listed")
    p.add_argument("--exclude-ids", type=Path, metavar="FILE", help="leave out the pictures whose ids are listed")
    p.add_argument("--pointing-gallery", type=int, default=3, help="hits and misses per class in the pointing gallery")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)


def _quantize_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="static INT8 (QDQ, per-channel) beside fp32: accuracy, size, speed")
    p.add_argument("run", type=Path, help="the run folder (or an exported .onnx whose contract names its data)")
    p.add_argument("--onnx", type=Path, help="the fp32 file to quantize (default: export the run's checkpoint)")
    p.add_argument("--out", type=Path, help="the INT8 file (default: <run>/quantize/model-int8.onnx)")
    p.add_argument("--calibration-images", type=int, default=200, help="training pictures to calibrate on")
    p.add_argument("--max-drop", type=float, default=0.3, help="largest accuracy loss, in points, to keep INT8")
    p.add_argument("--activation-type", choices=("int8", "uint8"), default="int8")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weights")
    p.add_argument(
        "--scope", default="auto",
        help="auto: the whole graph, else keep ever more early blocks in fp32 until the drop on held-out training "
        "pictures is within --max-drop; all: the whole graph; N: quantize from block N on",
    )
    p.add_argument("--int8-head", action="store_true",
                   help="quantize the head too (the last conv, whose maps feed the CAMs, pooling and classifier)")
    p.add_argument("--probe-images", type=int, default=400,
                   help="training pictures (not calibration ones) that judge the scope in --scope auto")
    p.add_argument("--ship", type=Path, nargs="?", const=DEFAULT_SHIP_INT8, default=None,
                   help=f"copy a kept INT8 model (under 6 MB) here (default path: {DEFAULT_SHIP_INT8})")
    p.add_argument("--speed-seconds", type=float, default=6.0, help="timing window per model and batch size")
    p.add_argument("--threads", type=int, default=2)


def _audit_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit data before any split: duplicates, balance, sizes, modes, broken files")
    p.add_argument("--config", type=Path, help="take data, task and aliases from this YAML config")
    p.add_argument("--data", nargs="+", help=f"data roots (default: {DEFAULT_DATA})")
    p.add_argument("--task", choices=tuple(TASK_CLASSES), default=None)
    p.add_argument("--alias", action="append", default=[], metavar="FOLDER=CLASS", help="extra label alias")
    p.add_argument("--threshold", type=int, default=None, help=f"pHash Hamming distance (default {DEFAULT_THRESHOLD})")
    p.add_argument("--out", type=Path, default=Path("runs/audit"), help="folder for audit.json and audit.md")
    p.add_argument("--threads", type=int, default=2)


def _graft_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graft", help="fit the explanation head and the domain guard, graft them onto an ONNX model")
    p.add_argument("--onnx", type=Path, required=True, help="the exported model to graft onto")
    p.add_argument("--config", type=Path, required=True,
                   help="the validated run's YAML (its data and grouped split: the guard's threshold and the "
                        "head's pointing game are measured on its validation pictures)")
    p.add_argument("--boxes", type=Path, required=True, help="training-boxes.csv of `python -m trainer match-boxes`")
    p.add_argument("--out", type=Path, required=True, help="the grafted ONNX file to write")
    p.add_argument("--version", required=True, help="the grafted model's version")
    p.add_argument("--variants", type=int, default=2, help="real-world variants per training picture")
    p.add_argument("--false-flag-rate", type=float, default=0.01, help="validation pictures the guard may flag")
    p.add_argument("--cache", type=Path, default=Path("runs/graft-cache"), help="where extracted features are kept")
    p.add_argument("--pointing-boxes", type=Path, default=None,
                   help="boxed originals (figshare-boxes) to measure every map's pointing game on, for the contract; "
                        "ids whose Kaggle twins trained the head are left out")
    p.add_argument("--threads", type=int, default=2)


def _match_boxes_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("match-boxes", help="carry the figshare tumour boxes over to the Kaggle Training pictures "
                       "cut from them (training-boxes.csv, matching.md, gallery.png)")
    p.add_argument("--kaggle", type=Path, default=DEFAULT_DATA,
                   help=f"the Kaggle Training root (default: {DEFAULT_DATA})")
    p.add_argument("--boxes", type=Path, default=DEFAULT_DATA.parents[1] / "figshare-boxes",
                   help="the figshare originals and their YOLO boxes: <class>/ID.jpg + ID.txt")
    p.add_argument("--out", type=Path, default=Path("runs/boxes"), help="folder for the outputs")
    p.add_argument("--threads", type=int, default=2)


def _single_view_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("single-view", help="the one-view twin of a model that averages the mirror in its graph "
                       "(same weights; for measuring what the mirror costs and is worth)")
    p.add_argument("onnx", type=Path, help="a model exported with --views-in-graph hflip")
    p.add_argument("--out", type=Path, required=True, help="the one-view ONNX file to write")


# -- commands ----------------------------------------------------------------------------------
def _single_view(args: argparse.Namespace) -> int:
    from trainer.single_view import write_single_view

    rewired = write_single_view(args.onnx, args.out)
    print(f"{args.out}: one view ({rewired} view averages rewired to the picture itself), weights checksum restamped")
    return 0


def _graft(args: argparse.Namespace) -> int:
    from trainer.graft_run import GraftSettings, run_graft

    # mirrored copies grouped too: a mirror pair split across the fit and the threshold would hide false flags
    config = resolve_config(load_yaml(args.config), {"dedup_mirrors": True}, [])
    settings = GraftSettings(variants=args.variants, false_flag_rate=args.false_flag_rate)
    out = run_graft(args.onnx, config, args.boxes, args.out, settings, args.version, args.cache,
                    pointing_boxes=args.pointing_boxes)
    print(f"wrote {out} (what was measured: {out.with_suffix('.graft.json')})")
    return 0


def config_from_args(args: argparse.Namespace) -> FitConfig:
    """Defaults < ``--config`` YAML < flags given (only those present in the namespace)."""
    names = {kwargs["dest"] for _, kwargs in flag_specs()}
    overrides = {name: getattr(args, name) for name in names if hasattr(args, name)}
    yaml_values = load_yaml(args.config) if args.config else {}
    return resolve_config(yaml_values, overrides, args.set)


def _fit(args: argparse.Namespace, argv: list[str]) -> int:
    if args.resume:
        given = [a for a in argv[1:] if a.startswith("--") and a.split("=")[0] not in ("--resume", "--export")]
        if given:
            raise TrainerError(f"a resumed fit uses the config saved in {args.resume}; drop {', '.join(given)}")
        run_dir = run_fit(saved_config(args.resume), argv, resume=True)
    else:
        config = config_from_args(args)
        if args.print_config:
            import yaml

            from trainer.config import to_plain

            print(yaml.safe_dump(to_plain(config.as_dict()), sort_keys=False), end="")
            return 0
        run_dir = run_fit(config, argv, overwrite=args.overwrite)
    if args.export and (run_dir / CHECKPOINT).is_file():
        from trainer.export import export_run

        result = export_run(run_dir, args.export)
        print(f"exported {args.export}: {json.dumps(result)}")
    return 0


def _aliases(texts: list[str]) -> dict[str, str]:
    """``--alias FOLDER=CLASS`` flags as a mapping."""
    aliases = {}
    for text in texts:
        folder, sep, label = text.partition("=")
        if not sep or not folder.strip() or not label.strip():
            raise TrainerError(f"--alias {text!r}: write it as FOLDER=CLASS (for example yes=tumour)")
        aliases[folder.strip()] = label.strip()
    return aliases


def _evaluate(args: argparse.Namespace) -> int:
    from trainer.evaluate import evaluate

    metrics = evaluate(
        args.run, onnx=args.onnx, split=args.split, data=args.data, aliases=_aliases(args.alias), out=args.out,
        update=not args.no_update_contract, gallery=args.gallery, examples=args.examples,
        cam_method=args.cam_method, device=args.device, threads=args.threads, boxes=args.boxes,
        ids_file=args.ids_file, exclude_ids=args.exclude_ids, pointing_gallery=args.pointing_gallery,
    )
    if "binary" in metrics:
        print(json.dumps({k: metrics["binary"][k] for k in (
            "images", "counts", "sensitivity", "specificity", "balanced_accuracy", "roc_auc")}))
        return 0
    summary = {k: metrics[k] for k in ("images", "accuracy", "macro_f1", "weighted_f1")}
    summary["roc_auc_macro"] = metrics["roc_auc"]["macro"]
    summary["temperature"] = metrics["calibration"]["temperature"]
    summary["ece"] = [metrics["calibration"]["before"]["ece"], metrics["calibration"]["after"]["ece"]]
    if "pointing" in metrics:
        summary["pointing"] = {k: metrics["pointing"][k] for k in ("method", "overall")}
    print(json.dumps(summary))
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from trainer.quantize_run import QuantizeOptions, quantize_run

    options = QuantizeOptions(**{f.name: getattr(args, f.name) for f in fields(QuantizeOptions)})
    result, out_dir = quantize_run(args.run, options)
    print(json.dumps({k: result[k] for k in ("fp32_accuracy", "int8_accuracy", "drop_points", "agreement", "fp32_mb",
                                              "int8_mb", "images_per_s", "kept", "decision")}))
    if "ship" in result:
        print(result["ship"])
    print(f"report: {out_dir / 'quantize.md'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from trainer.export import export_run

    result = export_run(args.run, args.out, opset=args.opset, check_images=args.check_images, data=args.data,
                        views_in_graph=args.views_in_graph, metrics=args.metrics)
    print(f"exported {args.out}: {json.dumps(result)}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from trainer.audit import audit_data, audit_summary, write_audit

    values = load_yaml(args.config) if args.config else {}
    if args.alias:
        values["label_aliases"] = {**values.get("label_aliases", {}), **_aliases(args.alias)}
    if args.data:
        values["data"] = args.data
    if args.task:
        values["task"] = args.task
    if args.threshold is not None:
        values["dedup_threshold"] = args.threshold
    config = resolve_config(values)
    report = audit_data(config.data, classes=config.classes, task=config.task, aliases=config.label_aliases,
                        threshold=config.dedup_threshold, input_size=config.input_size, workers=args.threads)
    json_path, md_path = write_audit(report, args.out)
    print(audit_summary(report))
    print(f"report: {md_path} ({json_path.name} beside it)")
    return 0


def _match_boxes(args: argparse.Namespace) -> int:
    from collections import Counter

    from trainer.box_matching import match_boxes, write_outputs

    report = match_boxes(args.kaggle, args.boxes, workers=args.threads)
    paths = write_outputs(report, args.kaggle, args.boxes, args.out)
    boxed = ", ".join(f"{k} {v}" for k, v in sorted(Counter(m.kaggle_class for m in report.matches).items()))
    print(f"{len(report.matches)} Kaggle pictures given a box ({boxed}); {sum(report.no_twin.values())} originals "
          f"without a twin; {len(report.disagreements)} class disagreements; {report.seconds:.0f} s")
    print(f"report: {paths['markdown']} ({paths['csv'].name} and {paths['gallery'].name} beside it)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _audit_parser(sub)
    _fit_parser(sub)
    _evaluate_parser(sub)
    _export_parser(sub)
    _quantize_parser(sub)
    _graft_parser(sub)
    _match_boxes_parser(sub)
    _single_view_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    torch.set_num_threads(getattr(args, "threads", None) or 2)
    try:
        if args.command == "fit":
            return _fit(args, argv)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "export":
            return _export(args)
        if args.command == "quantize":
            return _quantize(args)
        if args.command == "audit":
            return _audit(args)
        if args.command == "graft":
            return _graft(args)
        if args.command == "match-boxes":
            return _match_boxes(args)
        if args.command == "single-view":
            return _single_view(args)
    except FitInterrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 130
    except BrainscanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["build_parser", "config_from_args", "main", "save_resolved"]

if __name__ == "__main__":
    sys.exit(main())
