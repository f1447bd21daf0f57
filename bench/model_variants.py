"""Variants of the shipped model: the mirror averaged in the graph or not, fp32, INT8 or fp16 (issue 14).

    .venv/bin/python bench/model_variants.py [--images 400] [--rounds 3] [--out bench/results/model_variants.md]

Made in a temporary folder from the shipped file alone:

- *two views, fp32*: the shipped model (its graph averages the picture and its mirror);
- *one view, fp32*: ``python -m trainer single-view`` of it (same weights, the mirror dropped; its logits are
  exactly those of the picture alone, see ``trainer/single_view.py``);
- *INT8* of each: onnxruntime ``quantize_static`` (QDQ, per-channel weights, unsigned 8-bit activations,
  MinMax on ``--calibration`` Kaggle Training pictures that are not among the timed ones);
- *fp16* of the one-view model (``onnxruntime.transformers.float16``, inputs and outputs kept float32), when
  the conversion works.

For each: whole ``brainscan screen FOLDER --cam gradcam`` commands over the same ``--images`` Kaggle Training
JPGs, interleaved with each other and with the plain loop on the shipped model (``bench/plain_loop.py``, the
issue's yardstick), in ``--rounds`` rounds (medians; ratios from the same run); the labels' agreement with the
shipped model on those pictures; and on the external ``brain-mri-yes-no`` set (never trained on; tumour vs
no tumour over every picture) sensitivity, specificity, balanced accuracy and the share flagged out of domain.
The Kaggle pictures were all seen in training by the shipped refit, so agreement is what they can tell; the
external set is where accuracy is measured.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime as ort

from brainscan.engine.model.integrity import stamp_contract
from brainscan.engine.resources import default_model_path
from trainer.single_view import write_single_view

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EXTERNAL = ROOT.parent / "shared" / "data" / "brain-mri-yes-no"
sys.path.insert(0, str(BENCH))
from cpu_variants import quantize  # noqa: E402  (the bench's own INT8 recipe)
from screening_throughput import BRAINSCAN, _files, plain_command  # noqa: E402


def stamped(path: Path) -> Path:
    """Record the variant's own weights checksum in its contract (copied from the fp32 model), as an export does."""
    model = onnx.load(str(path))
    stamp_contract(model)
    onnx.save(model, str(path))
    return path


def fp16(source: Path, out: Path) -> Path | None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        stamp_contract(model)
        onnx.save(model, str(out))
        ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    except Exception as exc:  # reported in the table, not fatal
        print(f"fp16: not made ({type(exc).__name__}: {str(exc)[:160]})")
        return None
    return out


def run_screen(folder: Path, model: Path, out: Path, cam: str = "gradcam") -> float:
    """Seconds of one whole ``brainscan screen`` command (its own process); results in ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    command = [str(BRAINSCAN), "screen", str(folder), "--out", str(out), "--model", str(model), "--device", "cpu",
               "--cam", cam, "--progress", "never"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return {Path(r["path"]).name: r for r in csv.DictReader(handle)}


def external_scores(results: dict[str, dict[str, str]]) -> dict[str, float]:
    """Tumour (any tumour class) vs no tumour over every picture of the yes/no set; out-of-domain share."""
    tp = fn = tn = fp = flagged = 0
    for name, row in results.items():
        truth = name.split("__", 1)[0] == "yes"
        said = row["label"] not in ("notumor", "")
        flagged += row.get("in_domain") == "false"
        tp += truth and said
        fn += truth and not said
        tn += (not truth) and not said
        fp += (not truth) and said
    sensitivity, specificity = tp / max(tp + fn, 1), tn / max(tn + fp, 1)
    return {"sensitivity": sensitivity, "specificity": specificity, "balanced": (sensitivity + specificity) / 2,
            "flagged": flagged / max(len(results), 1), "n": len(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "model_variants.md")
    args = parser.parse_args()
    shipped = default_model_path()
    files = _files(args.images)
    calibration = [p for p in _files(args.images + args.calibration * 3) if p not in set(files)][: args.calibration]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}"
    print(f"machine: {machine}; {len(files)} Kaggle JPGs; {len(calibration)} others for INT8 calibration")

    with tempfile.TemporaryDirectory(prefix="brainscan-variants-") as scratch_name:
        scratch = Path(scratch_name)
        folder, yesno = scratch / "pictures", scratch / "yes-no"
        folder.mkdir()
        yesno.mkdir()
        for index, source in enumerate(files):
            os.link(source, folder / f"{index:04d}-{source.name}")
        for source in sorted(EXTERNAL.glob("*/*")):  # one flat folder, the answer in the name
            if source.is_file():
                shutil.copy(source, yesno / f"{source.parent.name}__{source.name}")
        one_view = scratch / "one-view.onnx"
        write_single_view(shipped, one_view)
        variants: dict[str, Path] = {"two views, fp32 (shipped)": shipped, "one view, fp32": one_view}
        for name, source in (("two views, INT8", shipped), ("one view, INT8", one_view)):
            started = time.perf_counter()
            target = scratch / name.replace(", ", "-").replace(" ", "-")
            target.mkdir()
            variants[name] = stamped(quantize(source, calibration, target))
            print(f"{name}: made in {time.perf_counter() - started:.0f} s")
        half = fp16(one_view, scratch / "one-view-fp16.onnx")
        if half is not None:
            variants["one view, fp16"] = half

        seconds: dict[str, list[float]] = {name: [] for name in variants}
        plain: list[float] = []
        run_screen(folder, shipped, scratch / "warm")  # file cache warm, plan measured for the shipped model
        for model in variants.values():  # each variant's plan measured once before the timed rounds
            run_screen(folder, model, scratch / "warm")
        for round_index in range(args.rounds):
            plain.append(plain_command(folder, shipped, "logits"))
            for name, model in variants.items():
                seconds[name].append(run_screen(folder, model, scratch / f"timed-{len(seconds[name])}"))
            print(f"round {round_index + 1}: plain {plain[-1]:.2f} s, " +
                  ", ".join(f"{n}: {s[-1]:.2f} s" for n, s in seconds.items()))
        labels: dict[str, dict[str, str]] = {}
        external: dict[str, dict[str, float]] = {}
        for name, model in variants.items():
            out = scratch / f"labels-{abs(hash(name))}"
            run_screen(folder, model, out)
            labels[name] = {k: r["label"] for k, r in rows(out).items()}
            out = scratch / f"external-{abs(hash(name))}"
            run_screen(yesno, model, out)
            external[name] = external_scores(rows(out))
        sizes = {name: model.stat().st_size / 2**20 for name, model in variants.items()}

    base = "two views, fp32 (shipped)"
    plain_median = statistics.median(plain)
    lines = [
        "# Variants of the shipped model: views in the graph, fp32, INT8, fp16",
        "",
        f"Machine: {machine}, load average after the rounds {os.getloadavg()[0]:.2f}. {len(files)} Kaggle Training "
        f"JPGs, whole `brainscan screen --cam gradcam` commands, {args.rounds} interleaved rounds, medians. The plain "
        f"loop (shipped model, batch 1, logits only): median {plain_median:.2f} s.",
        "",
        "| variant | MiB | screen (s) | images/s | vs shipped | plain loop / screen | labels as shipped "
        "| yes/no sensitivity | specificity | balanced accuracy | out of domain |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in variants:
        s = statistics.median(seconds[name])
        agree = sum(labels[name][k] == labels[base][k] for k in labels[base]) / len(labels[base])
        e = external[name]
        lines.append(
            f"| {name} | {sizes[name]:.1f} | {s:.2f} | {len(files) / s:.0f} | "
            f"{statistics.median(seconds[base]) / s:.2f}x | {plain_median / s:.2f} | {agree:.3f} | "
            f"{e['sensitivity']:.3f} | {e['specificity']:.3f} | {e['balanced']:.3f} | {e['flagged']:.3f} |")
    lines += [
        "",
        f"External set: `brain-mri-yes-no`, {external[base]['n']:.0f} pictures (tumour = any tumour class). Rounds: " +
        "; ".join(f"{n}: {', '.join(f'{x:.2f}' for x in s)}" for n, s in seconds.items()) +
        f"; plain: {', '.join(f'{x:.2f}' for x in plain)}.",
        "",
        f"Command: `.venv/bin/python bench/model_variants.py --images {args.images} --rounds {args.rounds}`",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
