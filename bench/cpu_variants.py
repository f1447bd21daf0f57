"""CPU variants of the shipped model: fp32 vs INT8, and onnxruntime intra-op threads 1 vs 2.

    .venv/bin/python bench/cpu_variants.py [--images 160] [--rounds 3] [--out bench/results/cpu_variants.md]

The INT8 model is ``resources/models/brainscan-4class-lite0-int8.onnx`` or the newest ``runs/**/*int8*.onnx``
when one exists; otherwise one is made for this benchmark only, in a temporary folder, with
onnxruntime's ``quantize_static`` (QDQ, per-channel weights, unsigned 8-bit activations, MinMax
calibration on ``--calibration`` training images that are not among the timed ones).

Two throughputs per variant, in images/s:

- *model*: ``session.run`` on ready tensors (batch 8), the network alone;
- *screen*: the engine's ``screen()`` with Grad-CAM (decode-ahead threads, probabilities, exact CAM,
  peak) as ``brainscan screen`` runs it, with ``Classifier(threads=N)``.

Variants are interleaved (each round runs all of them), medians are reported, and the ratios come
from the same run, because the machine is shared and noisy. Also reported: top-1 agreement of INT8
with fp32, the largest probability difference, and accuracy against the folder labels (these are
Kaggle *training* images, most seen in training: a sanity check, not a validation figure).
Writes a Markdown table (``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.preprocess import to_model_input
from brainscan.engine.resources import default_model_path, resources_dir
from brainscan.engine.run.screening import screen

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
BATCH = 8


def kaggle_files(count: int, exclude: frozenset[Path] = frozenset()) -> list[Path]:
    every = [p for p in sorted(DATA.glob("*/*.jpg")) if p not in exclude]
    step = max(1, len(every) // count)
    return every[::step][:count]


def existing_int8() -> Path | None:
    shipped = resources_dir() / "models" / "brainscan-4class-lite0-int8.onnx"
    if shipped.is_file():
        return shipped
    found = sorted((ROOT / "runs").glob("**/*int8*.onnx"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def quantize(fp32: Path, calibration: list[Path], folder: Path) -> Path:
    """INT8 (QDQ, per-channel) copy of ``fp32`` calibrated on ``calibration``, contract kept."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    contract = Classifier(fp32, device="cpu").contract
    tensors = [to_model_input([load_frame(ref).picture], contract) for ref in discover(calibration)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            tensor = next(self.items, None)
            return None if tensor is None else {"input": tensor}

    prepared = folder / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    int8 = folder / "int8.onnx"
    quantize_static(
        str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )
    model = onnx.load(str(int8))
    source = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
    onnx.helper.set_model_props(model, source)  # the contract travels with the weights
    onnx.save(model, str(int8))
    return int8


def model_throughput(path: Path, tensors: list[np.ndarray], threads: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(["logits"], {name: tensors[0]})  # warm-up
    start = time.perf_counter()
    for tensor in tensors:
        session.run(["logits"], {name: tensor})
    return sum(len(t) for t in tensors) / (time.perf_counter() - start)


def screen_throughput(path: Path, files: list[Path], threads: int) -> tuple[float, list]:
    classifier = Classifier(path, device="cpu", threads=threads)
    refs = discover(files)
    start = time.perf_counter()
    results = list(screen(refs, classifier, cam_method="gradcam", batch_size=BATCH))
    return len(refs) / (time.perf_counter() - start), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--int8", type=Path, default=None, help="an INT8 model (default: found or made, see above)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_variants.md")
    args = parser.parse_args()
    files = kaggle_files(args.images)
    calibration = kaggle_files(args.calibration, exclude=frozenset(files))  # never timed
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}"
    print(f"machine: {machine}; {len(files)} Kaggle JPGs, batch {BATCH}")

    with tempfile.TemporaryDirectory(prefix="brainscan-int8-") as scratch:
        int8 = args.int8 or existing_int8()
        shown = int8.relative_to(ROOT) if int8 and int8.is_relative_to(ROOT) else int8
        origin = f"`{shown}`" if int8 else f"quantize_static on {len(calibration)} training images (temporary)"
        if int8 is None:
            started = time.perf_counter()
            int8 = quantize(args.model, calibration, Path(scratch))
            origin += f", made in {time.perf_counter() - started:.0f} s"
        print(f"INT8 model: {origin}")
        contract = Classifier(args.model, device="cpu").contract
        pictures = [load_frame(ref).picture for ref in discover(files)]
        tensors = [to_model_input(pictures[i : i + BATCH], contract) for i in range(0, len(pictures), BATCH)]
        variants = {f"{kind} · {t} thread{'s' * (t > 1)}": (path, t)
                    for kind, path in (("fp32", args.model), ("INT8", int8)) for t in (1, 2)}
        model_rates: dict[str, list[float]] = {v: [] for v in variants}
        screen_rates: dict[str, list[float]] = {v: [] for v in variants}
        outputs: dict[str, list] = {}
        screen_throughput(args.model, files[:16], 2)  # warm the file cache
        for round_index in range(args.rounds):
            for variant, (path, threads) in variants.items():
                model_rates[variant].append(model_throughput(path, tensors, threads))
                rate, results = screen_throughput(path, files, threads)
                screen_rates[variant].append(rate)
                outputs.setdefault(variant.split(" ")[0], results)
            print(f"round {round_index + 1}: " + ", ".join(
                f"{v}: {model_rates[v][-1]:.0f}/{screen_rates[v][-1]:.0f}" for v in variants))
        int8_size = int8.stat().st_size

    median = {v: (statistics.median(model_rates[v]), statistics.median(screen_rates[v])) for v in variants}
    fp32_out, int8_out = outputs["fp32"], outputs["INT8"]
    agree = sum(a.label == b.label for a, b in zip(fp32_out, int8_out, strict=True)) / len(fp32_out)
    worst = max(float(np.max(np.abs(a.probabilities - b.probabilities))) for a, b in zip(fp32_out, int8_out, strict=True))
    truth = [r.ref.path.parent.name for r in fp32_out]
    accuracy = {k: sum(r.label == t for r, t in zip(v, truth, strict=True)) / len(v) for k, v in outputs.items()}
    base = "fp32 · 2 threads"
    lines = [
        "# CPU variants of the shipped model",
        "",
        f"Machine: {machine}. {len(files)} Kaggle JPGs, batch {BATCH}, {args.rounds} interleaved rounds, medians.",
        f"INT8: {origin}; {int8_size / 2**20:.1f} MiB vs {args.model.stat().st_size / 2**20:.1f} MiB fp32.",
        "",
        "| variant | model alone (images/s) | screen with Grad-CAM (images/s) | model vs fp32 · 2 threads | screen vs fp32 · 2 threads |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variant, (m, s) in median.items():
        lines.append(f"| {variant} | {m:.1f} | {s:.1f} | {m / median[base][0]:.2f} | {s / median[base][1]:.2f} |")
    lines += [
        "",
        f"- INT8 vs fp32, model alone, 2 threads: **{median['INT8 · 2 threads'][0] / median[base][0]:.2f}x**; "
        f"screening: **{median['INT8 · 2 threads'][1] / median[base][1]:.2f}x**.",
        f"- 2 threads vs 1, fp32 model alone: **{median[base][0] / median['fp32 · 1 thread'][0]:.2f}x**; "
        f"screening: **{median[base][1] / median['fp32 · 1 thread'][1]:.2f}x**.",
        f"- INT8 top-1 agreement with fp32: {agree:.3f}; largest probability difference {worst:.3f}; accuracy on "
        f"these training images fp32 {accuracy['fp32']:.3f}, INT8 {accuracy['INT8']:.3f} (not a validation figure).",
        "",
        f"Command: `.venv/bin/python bench/cpu_variants.py --images {args.images} --rounds {args.rounds}`",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
