"""``python -m trainer quantize``: a run (or an exported fp32 file) to a judged INT8 file beside it.

The fp32 file is the one given, or the run's checkpoint exported into ``<run>/quantize/``. INT8 is
calibrated on the run's training pictures; in ``--scope auto`` the scope is chosen on other
training pictures (:func:`trainer.quantize.search_scope`); both files are then compared on the
validation split and the INT8 one is kept, reported and perhaps shipped
(:func:`trainer.quantize.finish`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from brainscan.engine.model.contract import ModelContract
from trainer.config import FitConfig
from trainer.errors import TrainerError
from trainer.evaluate import Selection, select_data
from trainer.export import export_run, open_session, read_contract
from trainer.prepared_data import Log, Prepared
from trainer.quantize import STEM, compare, describe_scope, finish, node_units, quantize_onnx, search_scope
from trainer.refit import refuse_refit_on_held_out
from trainer.run_folder import load_checkpoint

REFERENCE_KEYS = ("int8_accuracy", "drop_points", "agreement", "cam_mean_abs_diff", "int8_mb", "images_per_s")


@dataclass(frozen=True)
class QuantizeOptions:
    """The settings of ``python -m trainer quantize`` (its flags, same names and defaults)."""

    onnx: Path | None = None
    out: Path | None = None
    calibration_images: int = 200
    max_drop: float = 0.3
    activation_type: str = "int8"
    per_tensor: bool = False
    scope: str = "auto"
    int8_head: bool = False
    probe_images: int = 400
    ship: Path | None = None
    speed_seconds: float = 6.0
    threads: int = 2


def _fp32_model(target: Path, options: QuantizeOptions, log: Log) -> tuple[Path, ModelContract, FitConfig, Path]:
    """The fp32 file, its contract, the run's config and the output folder."""
    if target.suffix == ".onnx":
        fp32 = target
        contract = read_contract(open_session(fp32), source=str(fp32))
        raw = contract.training.get("config")
        if not raw:
            raise TrainerError(f"{fp32}: its contract names no training config; pass the run folder")
        return fp32, contract, FitConfig.from_dict(raw).resolved(), fp32.parent / f"{fp32.stem}-quantize"
    _, contract, config = load_checkpoint(target)
    out_dir = target / "quantize"
    if options.onnx:
        fp32 = options.onnx
        given = read_contract(open_session(fp32), source=str(fp32))
        refuse_refit_on_held_out(given.metrics, str(fp32))
        theirs = given.training.get("data_fingerprint")
        if theirs != contract.training.get("data_fingerprint"):
            raise TrainerError(f"{fp32} was not trained on this run's data; export the run instead (omit --onnx)")
    else:
        fp32 = out_dir / "model-fp32.onnx"
        out_dir.mkdir(parents=True, exist_ok=True)
        log(f"exported {fp32}: {json.dumps(export_run(target, fp32))}")
    return fp32, contract, config, out_dir


def _choose_scope(
    fp32: Path, out_dir: Path, data: Prepared, calibration: np.ndarray, rng: np.random.Generator,
    contract: ModelContract, options: QuantizeOptions,
) -> tuple[int, list[dict[str, Any]]]:
    """The first quantized block and the trials of the scope search (``--scope auto``) that chose it."""
    if options.scope == "auto":
        rest = np.setdiff1d(data.train, calibration)
        probe = np.sort(rng.choice(rest, size=min(options.probe_images, len(rest)), replace=False))
        start, trials = search_scope(
            fp32, out_dir / "scope-search", data.pictures[calibration], data.pictures[probe], data.labels[probe],
            contract=contract, max_drop=options.max_drop, per_channel=not options.per_tensor,
            activation_type=options.activation_type, fp32_head=not options.int8_head,
        )
        return (STEM if start is None else start), trials
    if options.scope == "all":
        return STEM, []
    try:
        return int(options.scope), []
    except ValueError as exc:
        raise TrainerError(f"--scope {options.scope!r}: give auto, all or a block number") from exc


def _whole_graph_reference(
    fp32: Path, out_dir: Path, data: Prepared, calibration: np.ndarray, contract: ModelContract,
    options: QuantizeOptions,
) -> dict[str, Any]:
    """The whole graph in INT8 too, scored on validation, for reference."""
    whole = out_dir / "model-int8-whole-graph.onnx"
    quantize_onnx(fp32, whole, data.pictures[calibration], contract=contract, per_channel=not options.per_tensor,
                  activation_type=options.activation_type, fp32_head=False)
    reference = compare(fp32, whole, data.pictures[data.val], data.labels[data.val], max_drop=options.max_drop,
                        threads=options.threads, speed_seconds=options.speed_seconds)
    return {k: reference[k] for k in REFERENCE_KEYS}


def _refuse_refit(config: FitConfig) -> None:
    if config.val_fraction == 0.0:
        raise TrainerError(
            f"run {config.name} is a refit on every picture: no held-out pictures remain to judge INT8 on; "
            f"quantize its validated twin ({config.refit_of}) to see what INT8 costs this recipe"
        )


def quantize_run(target: Path, options: QuantizeOptions, log: Log = print) -> tuple[dict[str, Any], Path]:
    """Quantize a run folder (or an exported ``.onnx`` whose contract names its data), judge and report.

    Returns the result (also in ``quantize.json``) and the folder holding ``quantize.md``.
    """
    fp32, contract, config, out_dir = _fp32_model(target, options, log)
    int8 = options.out or out_dir / "model-int8.onnx"
    config = FitConfig.from_dict({**config.as_dict(), "threads": options.threads})
    _refuse_refit(config)
    selection: Selection = select_data(config, "validation", None)
    data = selection.data
    rng = np.random.default_rng(config.seed)
    calibration = np.sort(rng.choice(data.train, size=min(options.calibration_images, len(data.train)),
                                     replace=False))
    log(f"calibrating on {len(calibration)} training pictures; validating on {len(data.val)}")
    last_unit = max(unit for _, unit in node_units(onnx.load(str(fp32))))
    start, trials = _choose_scope(fp32, out_dir, data, calibration, rng, contract, options)
    quantize_onnx(fp32, int8, data.pictures[calibration], contract=contract, per_channel=not options.per_tensor,
                  activation_type=options.activation_type, start=start, fp32_head=not options.int8_head)
    result: dict[str, Any] = {
        "model": f"{contract.name} {contract.version} ({contract.architecture})",
        "fp32": str(fp32),
        "int8": str(int8),
        "calibration_images": len(calibration),
        "per_channel": not options.per_tensor,
        "activation_type": options.activation_type,
        "split": selection.description,
        "scope": describe_scope(start, last_unit, not options.int8_head),
        "trials": trials,
    }
    if start != STEM or not options.int8_head:
        result["whole_graph_reference"] = _whole_graph_reference(fp32, out_dir, data, calibration, contract, options)
    result.update(compare(fp32, int8, data.pictures[data.val], data.labels[data.val], max_drop=options.max_drop,
                          threads=options.threads, speed_seconds=options.speed_seconds))
    return finish(result, Path(int8), contract, out_dir, options.ship), out_dir
