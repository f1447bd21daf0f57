"""brainscan side by side with a peer: the PyPI package ``detect-tumor`` (VGG16, ONNX Runtime).

    python3 -m venv bench/.venv-peer
    bench/.venv-peer/bin/pip install -e . detect-tumor==0.1.1
    bench/.venv-peer/bin/python bench/peer_detect_tumor.py [--images 160] [--rounds 3]

This script installs nothing; without ``detect_tumor`` importable it says so and exits 2. The peer
ships its model inside the wheel (``detect_tumor/models/Tumor_classification_vgg16.onnx``, 65 MB,
read with ``importlib.resources``), so nothing is downloaded at run time. It classifies one image
per call (Pillow decode, resize to 240 x 240, scale to [0, 1], one ``session.run``), with no heat map.

Timed on the same Kaggle JPGs, interleaved rounds, medians, ratios from one run:

- ``detect-tumor``: ``TumorDetector().predict(path)`` for each file;
- ``brainscan, one image per call``: ``load_frame`` + ``Classifier.predict([picture])``, no heat map
  (the same work as the peer's API);
- ``brainscan screen``: the engine's ``screen()`` as ``brainscan screen`` runs it (batch 8,
  decode-ahead threads, exact Grad-CAM of the predicted class and its peak).

Both use onnxruntime on the CPU with its default threads. Also reported: accuracy against the folder
labels. These are Kaggle *training* images: brainscan saw most of them in training, and the peer
was probably trained on the same public set, so accuracy here says nothing about either model's
real accuracy; it only shows that both run the images sensibly. Writes ``bench/results/peer_detect_tumor.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import onnxruntime as ort

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame
from brainscan.engine.model.inference import Classifier
from brainscan.engine.resources import default_model_path
from brainscan.engine.run.screening import screen

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"


def kaggle_files(count: int) -> list[Path]:
    every = sorted(DATA.glob("*/*.jpg"))
    step = max(1, len(every) // count)
    return every[3::step][:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peer_detect_tumor.md")
    args = parser.parse_args()
    try:
        import detect_tumor
        from detect_tumor import TumorDetector
    except ImportError:
        print("peer_detect_tumor: detect-tumor is not installed here; install it in a separate environment: "
              "python3 -m venv bench/.venv-peer && bench/.venv-peer/bin/pip install -e . detect-tumor==0.1.1",
              file=sys.stderr)
        return 2
    from importlib.resources import files as package_files

    peer_model = package_files("detect_tumor.models") / "Tumor_classification_vgg16.onnx"
    files = kaggle_files(args.images)
    truth = [p.parent.name for p in files]
    detector = TumorDetector()
    classifier = Classifier(default_model_path(), device="cpu")
    refs = discover(files)

    def peer() -> list[str]:
        return [detector.predict(str(path)).predicted_class for path in files]

    def brainscan_single() -> list[str]:
        labels = []
        for ref in refs:
            prediction = classifier.predict([load_frame(ref).picture])[0]
            labels.append(classifier.classes[prediction.label_index])
        return labels

    def brainscan_screen() -> list[str]:
        return [r.label for r in screen(refs, classifier, cam_method="gradcam", batch_size=8)]

    runs = {"detect-tumor 0.1.1 (VGG16, 240 px)": peer,
            "brainscan, one image per call (Lite0, 224 px)": brainscan_single,
            "brainscan screen, batch 8, Grad-CAM": brainscan_screen}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    labels: dict[str, list[str]] = {}
    for function in runs.values():  # warm-up: sessions, file cache
        function()
    for round_index in range(args.rounds):
        for name, function in runs.items():
            started = time.perf_counter()
            labels[name] = function()
            rates[name].append(len(files) / (time.perf_counter() - started))
        print(f"round {round_index + 1}: " + ", ".join(f"{n.split(' (')[0]}: {rates[n][-1]:.1f}/s" for n in runs))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    peer_name = next(iter(runs))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}"
    lines = [
        "# brainscan and detect-tumor side by side (CPU)",
        "",
        f"Machine: {machine}. {len(files)} Kaggle training JPGs, {args.rounds} interleaved rounds, medians. "
        f"detect-tumor {getattr(detect_tumor, '__version__', '?')} (wheel 0.1.1) ships its model in the package "
        f"({peer_model.stat().st_size / 2**20:.0f} MiB); brainscan's is {default_model_path().stat().st_size / 2**20:.1f} MiB.",
        "",
        "| what | images/s | vs detect-tumor | accuracy on these training images (not a validation figure) |",
        "| --- | --- | --- | --- |",
    ]
    for name, rate in medians.items():
        accuracy = sum(a == b for a, b in zip(labels[name], truth, strict=True)) / len(truth)
        lines.append(f"| {name} | {rate:.1f} | {rate / medians[peer_name]:.2f} | {accuracy:.3f} |")
    lines += ["", f"Command: `bench/.venv-peer/bin/python bench/peer_detect_tumor.py --images {args.images} "
              f"--rounds {args.rounds}`"]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
