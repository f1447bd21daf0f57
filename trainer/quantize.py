"""Static INT8 quantization of an exported model, measured beside fp32 and kept only when it holds up.

onnxruntime's ``quantize_static`` in QDQ format with per-channel weights, calibrated (MinMax) on
pictures of the run's *training* split, after onnxruntime's pre-processing (shape inference and
graph optimisation). The INT8 file keeps the graph's three outputs (``logits``, ``features``,
``cam_weight``) and gets the run's contract with a ``metrics["quantization"]`` entry; the
engine's :class:`~brainscan.engine.model.inference.Classifier` must open it (so ``check_graph``
passes). Accuracy and onnxruntime CPU speed (batch 8 and 1) are measured for both files on the
run's validation split; the INT8 model is kept only if it loses at most ``max_drop`` points.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from brainscan.engine.model.cam import compute_cam
from brainscan.engine.model.contract import CAM_WEIGHT, FEATURES, LOGITS, ModelContract
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.preprocess import normalize
from trainer.device import machine_info
from trainer.errors import ExportCheckError
from trainer.export import open_session, read_contract, write_contract

MAX_DROP_POINTS = 0.3
SHIP_LIMIT_BYTES = 6_000_000
ACTIVATION_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}


class _Pictures(CalibrationDataReader):
    """Feeds normalised calibration batches to onnxruntime's calibrator."""

    def __init__(self, pictures: np.ndarray, contract: ModelContract, input_name: str, batch_size: int = 16) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: normalize(pictures[start : start + batch_size], contract)}
            for start in range(0, len(pictures), batch_size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


_UNIT = re.compile(r"/(?:blocks|stages)\.(\d+)/")
STEM, ALL = -1, "all"


def node_units(model: onnx.ModelProto) -> list[tuple[str, int]]:
    """Each node's name and its unit: -1 the stem, k for ``blocks.k`` (or ``stages.k``), K + 1 the head.

    Nodes outside any block belong to the stem before the first block, to the head after the last.
    """
    found = [_UNIT.search(n.name) for n in model.graph.node]
    last = max((int(m.group(1)) for m in found if m), default=-1)
    units, seen_block = [], False
    for node, match in zip(model.graph.node, found, strict=True):
        if match:
            seen_block = True
            units.append((node.name, int(match.group(1))))
        else:
            units.append((node.name, last + 1 if seen_block else STEM))
    return units


def describe_scope(start: int, last_unit: int, fp32_head: bool = False) -> str:
    """Which parts of the graph are INT8 and which stay fp32, in words."""
    head = " and the head" if not fp32_head else ""
    if start <= STEM:
        int8, fp32 = f"the stem, blocks 0-{last_unit - 1}{head}", ""
    else:
        int8 = f"blocks {start}-{last_unit - 1}{head}" if start < last_unit else ("the head" if head else "nothing")
        fp32 = "the stem" + (f" and blocks 0-{start - 1}" if start > 1 else " and block 0" if start == 1 else "")
    if fp32_head:
        fp32 = f"{fp32 + ' and ' if fp32 else ''}the head (last conv to classifier: the CAM features stay fp32)"
    if not fp32:
        return "the whole graph in INT8"
    return f"{int8} in INT8; {fp32} in fp32"


def prepare_for_quantization(fp32_path: str | Path, out_path: str | Path) -> Path:
    """onnxruntime's pre-processing (shape inference, graph optimisation) before quantization."""
    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
    return Path(out_path)


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration: np.ndarray,
    *,
    contract: ModelContract | None = None,
    per_channel: bool = True,
    activation_type: str = "int8",
    start: int = STEM,
    fp32_head: bool = True,
    prepared: str | Path | None = None,
) -> Path:
    """Write the static INT8 (QDQ) model of ``fp32_path`` calibrated on ``calibration`` pictures.

    Parameters
    ----------
    calibration:
        uint8 pictures at the input size (N x H x W x 3), from the training split.
    contract:
        Written into the INT8 file (default: the fp32 file's own).
    start:
        Quantize from this unit on (:func:`node_units`): -1, the default, quantizes from the stem;
        ``k`` keeps the stem and blocks ``0 .. k-1`` in fp32 (mixed precision).
    fp32_head:
        Keep the head (the last convolution, which makes the ``features`` the CAMs are computed
        from, pooling and classifier) in fp32. Quantizing those maps to 8 bits over the ReLU6 range
        leaves the CAMs coarse, and the head holds few operations.
    prepared:
        The output of :func:`prepare_for_quantization`, when already made.
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    session = open_session(fp32_path)
    contract = contract or read_contract(session, source=str(fp32_path))
    input_name = session.get_inputs()[0].name
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(prepared) if prepared else prepare_for_quantization(fp32_path, Path(tmp) / "prepared.onnx")
        units = node_units(onnx.load(str(source)))
        last_unit = max(unit for _, unit in units)
        nodes = None
        if start > STEM or fp32_head:
            nodes = [name for name, unit in units if unit >= start and not (fp32_head and unit == last_unit)]
        quantize_static(
            str(source),
            str(int8_path),
            _Pictures(calibration, contract, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=ACTIVATION_TYPES[activation_type],
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_quantize=nodes,
        )
    model = onnx.load(str(int8_path))
    names = [o.name for o in model.graph.output]
    missing = [n for n in (LOGITS, FEATURES, CAM_WEIGHT) if n not in names]
    if missing:
        raise ExportCheckError(f"{int8_path}: quantization lost the output(s) {', '.join(missing)} (has {names})")
    write_contract(int8_path, contract)
    return int8_path


def search_scope(
    fp32_path: str | Path,
    work_dir: str | Path,
    calibration: np.ndarray,
    probe: np.ndarray,
    probe_labels: np.ndarray,
    *,
    contract: ModelContract | None = None,
    max_drop: float = MAX_DROP_POINTS,
    per_channel: bool = True,
    activation_type: str = "int8",
    fp32_head: bool = True,
    log: Any = print,
) -> tuple[int | None, list[dict[str, Any]]]:
    """The largest quantized scope whose accuracy drop on ``probe`` pictures stays within ``max_drop``.

    Tries the whole graph first (the head aside with ``fp32_head``), then keeps ever more of the
    early layers in fp32 (stem, block 0, block 1, ...), the layers where post-training INT8 of
    EfficientNet loses most. ``probe`` are
    training pictures not used for calibration, so the choice never looks at the validation split.
    Returns the chosen start unit (``None`` when none qualifies) and every trial.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    prepared = prepare_for_quantization(fp32_path, work_dir / "prepared.onnx")
    last_unit = max(unit for _, unit in node_units(onnx.load(str(prepared))))
    base = score_onnx(fp32_path, probe, probe_labels)
    trials = []
    try:
        for start in range(STEM, last_unit + 1):
            path = work_dir / f"trial-from{start}.onnx"
            quantize_onnx(fp32_path, path, calibration, contract=contract, per_channel=per_channel,
                          activation_type=activation_type, start=start, fp32_head=fp32_head, prepared=prepared)
            measured = score_onnx(path, probe, probe_labels)
            drop = round(100 * (base.accuracy - measured.accuracy), 2)
            trial = {
                "start": start, "scope": describe_scope(start, last_unit, fp32_head), "probe_drop_points": drop,
                "probe_agreement": round(float((measured.predictions == base.predictions).mean()), 4),
                "mb": round(path.stat().st_size / 1e6, 2),
            }
            trials.append(trial)
            path.unlink()
            log(f"quantization scope from unit {start} ({trial['scope']}): drop {drop} points on "
                f"{len(probe_labels)} training pictures, agreement {trial['probe_agreement']:.2%}")
            if drop <= max_drop:
                return start, trials
    finally:
        prepared.unlink(missing_ok=True)
    return None, trials


@dataclass
class Measured:
    accuracy: float
    predictions: np.ndarray
    logits: np.ndarray
    features_sample: np.ndarray
    cam_weight: np.ndarray


def score_onnx(path: str | Path, pictures: np.ndarray, labels: np.ndarray, threads: int = 2) -> Measured:
    """Accuracy of an ONNX file on uint8 pictures at the input size."""
    session = open_session(path, threads)
    contract = read_contract(session, source=str(path))
    name = session.get_inputs()[0].name
    logits, first_features, weight = [], None, None
    for start in range(0, len(pictures), 16):
        out = session.run([LOGITS, FEATURES, CAM_WEIGHT], {name: normalize(pictures[start : start + 16], contract)})
        logits.append(out[0])
        if first_features is None:
            first_features, weight = out[1], out[2]
    logits_all = np.concatenate(logits)
    predictions = logits_all.argmax(1)
    return Measured(float((predictions == labels).mean()), predictions, logits_all, first_features, weight)


def throughput(
    paths: dict[str, str | Path], pictures: np.ndarray, batch: int, *, threads: int = 2, seconds: float = 6.0,
    windows: int = 5,
) -> dict[str, float]:
    """onnxruntime images/s of several models at one batch size (inference only, no decoding).

    The models take turns in short timed windows (round robin), so load from other work on a shared
    machine hits them alike; each gets the median of its ``windows`` windows, ``seconds`` in all.
    """
    runs = {}
    for label, path in paths.items():
        session = open_session(path, threads)
        contract = read_contract(session, source=str(path))
        tensor = normalize(pictures[: max(batch, 1)], contract)
        if len(tensor) < batch:
            tensor = np.concatenate([tensor] * (batch // len(tensor) + 1))[:batch]
        name = session.get_inputs()[0].name
        for _ in range(3):
            session.run([LOGITS], {name: tensor})
        runs[label] = (session, name, tensor)
    rates: dict[str, list[float]] = {label: [] for label in paths}
    window = seconds / windows
    for _ in range(windows):
        for label, (session, name, tensor) in runs.items():
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < window:
                session.run([LOGITS], {name: tensor})
                count += batch
            rates[label].append(count / (time.perf_counter() - started))
    return {label: round(statistics.median(values), 1) for label, values in rates.items()}


def compare(
    fp32_path: str | Path, int8_path: str | Path, pictures: np.ndarray, labels: np.ndarray, *,
    max_drop: float = MAX_DROP_POINTS, threads: int = 2, speed_seconds: float = 6.0, speed: bool = True,
) -> dict[str, Any]:
    """fp32 against INT8: accuracy, agreement, CAM inputs, file size, speed; and whether INT8 is kept."""
    fp32 = score_onnx(fp32_path, pictures, labels, threads)
    int8 = score_onnx(int8_path, pictures, labels, threads)
    drop = round(100 * (fp32.accuracy - int8.accuracy), 2)
    cams = [
        (compute_cam("gradcam", a, fp32.cam_weight, int(t)), compute_cam("gradcam", b, int8.cam_weight, int(t)))
        for a, b, t in zip(fp32.features_sample, int8.features_sample, fp32.predictions, strict=False)
    ]
    result: dict[str, Any] = {
        "images": len(labels),
        "fp32_accuracy": round(fp32.accuracy, 4),
        "int8_accuracy": round(int8.accuracy, 4),
        "drop_points": drop,
        "max_drop_points": max_drop,
        "agreement": round(float((fp32.predictions == int8.predictions).mean()), 4),
        "max_logit_diff": round(float(np.abs(fp32.logits - int8.logits).max()), 4),
        "cam_mean_abs_diff": round(float(np.mean([np.abs(a - b).mean() for a, b in cams])), 4),
        "cam_max_abs_diff": round(float(max(np.abs(a - b).max() for a, b in cams)), 4),
        "cam_pictures": len(cams),
        "cam_weight_max_diff": round(float(np.abs(fp32.cam_weight - int8.cam_weight).max()), 5),
        "fp32_mb": round(Path(fp32_path).stat().st_size / 1e6, 2),
        "int8_mb": round(Path(int8_path).stat().st_size / 1e6, 2),
    }
    if speed:
        speeds: dict[str, dict[str, float]] = {"fp32": {}, "int8": {}}
        load_before = os.getloadavg()[0]
        for batch in (8, 1):
            measured = throughput({"fp32": fp32_path, "int8": int8_path}, pictures, batch, threads=threads,
                                  seconds=2 * speed_seconds)
            for label, rate in measured.items():
                speeds[label][f"batch{batch}"] = rate
        result["images_per_s"] = speeds
        result["speed_note"] = (
            f"onnxruntime CPUExecutionProvider, {threads} intra-op threads, inference only (no decoding), "
            f"median of 5 timed windows taken in turn by fp32 and INT8; load average {load_before:.1f} -> "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores while measuring"
        )
    result["kept"] = drop <= max_drop
    return result


def engine_check(path: str | Path) -> dict[str, Any]:
    """The engine opens the file (contract read, check_graph passed) and its outputs are there."""
    classifier = Classifier(path, device="cpu", threads=2)
    outputs = [o.name for o in classifier.session.get_outputs()]
    return {"engine_opens": True, "outputs": outputs, "cam_weight_shape": list(classifier.cam_weight.shape)}


def quantization_markdown(result: dict[str, Any]) -> str:
    speeds = result.get("images_per_s", {})
    lines = [
        f"# INT8 quantization of {result['model']}",
        "",
        f"Static INT8 (onnxruntime `quantize_static`), QDQ format, per-channel weights ({result['per_channel']}), "
        f"{result['activation_type']} activations, MinMax calibration on {result['calibration_images']} training "
        f"pictures; measured on {result['images']} validation pictures ({result['split']}).",
        "",
        f"Scope: {result.get('scope', 'the whole graph in INT8')}.",
        "",
        "| | accuracy | file MB | images/s, batch 8 | images/s, batch 1 |",
        "|---|---|---|---|---|",
        f"| fp32 | {result['fp32_accuracy']:.4f} | {result['fp32_mb']} | {speeds.get('fp32', {}).get('batch8', '')} | "
        f"{speeds.get('fp32', {}).get('batch1', '')} |",
        f"| INT8 | {result['int8_accuracy']:.4f} | {result['int8_mb']} | {speeds.get('int8', {}).get('batch8', '')} | "
        f"{speeds.get('int8', {}).get('batch1', '')} |",
        "",
        f"Drop: {result['drop_points']} points (limit {result['max_drop_points']}); the two agree on "
        f"{result['agreement']:.2%} of pictures; largest logit difference {result['max_logit_diff']}; "
        f"Grad-CAM maps (scaled to [0, 1], on the feature grid) of the first {result['cam_pictures']} pictures differ by "
        f"{result['cam_mean_abs_diff']} on average, {result['cam_max_abs_diff']} at most.",
        "",
        f"**{'Kept' if result['kept'] else 'Rejected'}**: {result['decision']}",
        "",
        *_trials_markdown(result.get("trials", [])),
        *_reference_markdown(result.get("whole_graph_reference")),
        f"Engine check: {result.get('engine', {})}",
        "",
        f"Speed: {result.get('speed_note', '')}; {result['machine']['processor']}, "
        f"{result['machine']['cpu_count']} cores (shared with other work, so figures vary by about 10%).",
        "",
    ]
    return "\n".join(lines)


def _reference_markdown(reference: dict[str, Any] | None) -> list[str]:
    if not reference:
        return []
    speeds = reference.get("images_per_s", {}).get("int8", {})
    speed = f", {speeds['batch8']} / {speeds['batch1']} images/s at batch 8 / 1" if speeds else ""
    return [
        f"For reference, the whole graph in INT8 reaches {reference['int8_accuracy']:.4f} on the same validation "
        f"pictures ({reference['drop_points']} points below fp32, agreement {reference['agreement']:.2%}, "
        f"Grad-CAM difference {reference['cam_mean_abs_diff']} on average, {reference['int8_mb']} MB{speed}).",
        "",
    ]


def _trials_markdown(trials: list[dict[str, Any]]) -> list[str]:
    if not trials:
        return []
    lines = [
        "Scope search (on training pictures not used for calibration; the validation split is not looked at):",
        "",
        "| quantized from | scope | drop, points | agreement with fp32 | MB |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t['start']} | {t['scope']} | {t['probe_drop_points']} | {t['probe_agreement']:.2%} | {t['mb']} |"
        for t in trials
    ]
    return [*lines, ""]


def finish(result: dict[str, Any], int8_path: Path, contract: ModelContract, out_dir: Path,
           ship: Path | None = None) -> dict[str, Any]:
    """Record the decision, write the INT8 contract, the JSON and Markdown; ship when it qualifies."""
    size = int8_path.stat().st_size
    if result["kept"]:
        result["decision"] = f"loses {result['drop_points']} points, within {result['max_drop_points']}"
    else:
        result["decision"] = f"loses {result['drop_points']} points, more than {result['max_drop_points']}"
    quant = {k: result[k] for k in ("fp32_accuracy", "int8_accuracy", "drop_points", "agreement", "images",
                                    "calibration_images", "per_channel", "activation_type")}
    quant.update(scope=result.get("scope", "the whole graph in INT8"), format="QDQ", weights="int8 per-channel" if result["per_channel"] else "int8 per-tensor",
                 calibration="MinMax on training pictures", images_per_s=result.get("images_per_s", {}))
    validation = dict(contract.metrics.get("validation", {}))
    validation["accuracy"] = result["int8_accuracy"]
    validation["note"] = "accuracy of this INT8 file; the other figures are the fp32 model's"
    write_contract(int8_path, contract.with_updates(
        metrics={**contract.metrics, "validation": validation, "quantization": quant},
        version=contract.version,
    ))
    result["engine"] = engine_check(int8_path)
    shipped = None
    if ship is not None:
        if not result["kept"]:
            result["ship"] = f"not shipped to {ship}: {result['decision']}"
        elif size >= SHIP_LIMIT_BYTES:
            result["ship"] = f"not shipped to {ship}: {size / 1e6:.2f} MB, over {SHIP_LIMIT_BYTES / 1e6:.0f} MB"
        else:
            ship.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(int8_path, ship)
            shipped = str(ship)
            result["ship"] = f"shipped to {ship}"
    result["shipped"] = shipped
    result["machine"] = machine_info()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quantize.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "quantize.md").write_text(quantization_markdown(result))
    return result
