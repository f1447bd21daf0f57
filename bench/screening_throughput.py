"""Screening throughput: `brainscan` screening with Grad-CAM vs a bare onnxruntime loop.

Both sides decode the same files with the engine's loader, resize and normalise them the same way
and run the same model with the same batch size; the bare loop asks only for the logits and does
nothing else. The screening side runs the loop of ``brainscan screen`` itself
(:class:`~brainscan.engine.run.folder_run.FolderRun`: decode-ahead threads, probabilities, exact
Grad-CAM of the predicted class at picture size, its peak, each CSV row flushed, results.json at
the end). The two are interleaved (A B A B ...) and the ratio of medians is
reported, because this machine is noisy.

    .venv/bin/python bench/screening_throughput.py [--images 400] [--rounds 3] [--model FILE] [--single-view FILE]

``--single-view FILE``: the same network exported without views in its graph (``python -m
trainer export RUN --out FILE``); its screening is timed in the same rounds, so the cost of a
model that averages the picture and its mirror inside its graph comes out as a ratio too.

Also measures peak memory (RSS) while screening a long list of files (``--memory-images``),
sampling every 500 frames to show whether it stays flat.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.preprocess import to_model_input
from brainscan.engine.resources import default_model_path
from brainscan.engine.run.folder_run import FolderRun, RunSettings

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain-tumor-mri" / "Training"


def _files(count: int) -> list[Path]:
    every = sorted(DATA.glob("*/*.jpg"))
    step = max(1, len(every) // count)
    return every[::step][:count]


def bare_loop(files: list[Path], model: Path, batch_size: int) -> float:
    classifier = Classifier(model, device="cpu")  # only for its contract; the loop uses its own session
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    refs = discover(files)
    start = time.perf_counter()
    for first in range(0, len(refs), batch_size):
        pictures = [load_frame(ref).picture for ref in refs[first : first + batch_size]]
        session.run(["logits"], {name: to_model_input(pictures, classifier.contract)})
    return len(refs) / (time.perf_counter() - start)


def screening(files: list[Path], model: Path, batch_size: int, cam: str | None) -> float:
    classifier = Classifier(model, device="cpu")
    refs = discover(files)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        with FolderRun(classifier, refs, RunSettings(out=Path(out), cam_method=cam, batch_size=batch_size)) as run:
            for _ in run.results():
                pass
            run.finish()
        elapsed = time.perf_counter() - start
    return len(refs) / elapsed


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_profile(count: int, model: Path, batch_size: int) -> list[tuple[int, float]]:
    every = sorted(DATA.glob("*/*.jpg"))
    files = [every[i % len(every)] for i in range(count)]
    # distinct files so nothing is skipped: hard links in a temp folder (discovery drops symlinked repeats)
    with tempfile.TemporaryDirectory() as folder:
        links = []
        for i, source in enumerate(files):
            link = Path(folder) / f"{i:06d}.jpg"
            os.link(source, link)
            links.append(link)
        classifier = Classifier(model, device="cpu")
        samples = []
        with tempfile.TemporaryDirectory() as out:
            settings = RunSettings(out=Path(out), cam_method="gradcam", batch_size=batch_size)
            with FolderRun(classifier, discover(links), settings) as run:
                for index, _ in enumerate(run.results(), 1):
                    if index % 500 == 0:
                        samples.append((index, rss_mib()))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--memory-images", type=int, default=0, help="also screen this many files and sample RSS")
    parser.add_argument("--single-view", type=Path, default=None,
                        help="the same network without views in its graph, screened in the same rounds")
    args = parser.parse_args()
    files = _files(args.images)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"onnxruntime {ort.__version__}, model {args.model.name}, {len(files)} Kaggle JPGs, batch {args.batch_size}")
    bare, cam, single = [], [], []
    screening(files[:32], args.model, args.batch_size, "gradcam")  # warm the file cache and the session code
    for _ in range(args.rounds):
        bare.append(bare_loop(files, args.model, args.batch_size))
        cam.append(screening(files, args.model, args.batch_size, "gradcam"))
        if args.single_view:
            single.append(screening(files, args.single_view, args.batch_size, "gradcam"))
    b, c = statistics.median(bare), statistics.median(cam)
    print(f"bare onnxruntime loop : {b:7.1f} images/s  (rounds: {', '.join(f'{x:.1f}' for x in bare)})")
    print(f"screen with Grad-CAM  : {c:7.1f} images/s  (rounds: {', '.join(f'{x:.1f}' for x in cam)})")
    print(f"ratio screen/bare     : {c / b:.2f}")
    if single:
        s = statistics.median(single)
        print(f"screen, single view   : {s:7.1f} images/s  (rounds: {', '.join(f'{x:.1f}' for x in single)}; "
              f"{args.single_view.name})")
        print(f"ratio {args.model.name} / single view, screening: {c / s:.2f}")
    if args.memory_images:
        samples = memory_profile(args.memory_images, args.model, args.batch_size)
        print("RSS while screening   : " + ", ".join(f"{n}: {m:.0f} MiB" for n, m in samples))
        if len(samples) >= 2:
            print(f"RSS growth from {samples[0][0]} to {samples[-1][0]} frames: {samples[-1][1] - samples[0][1]:+.0f} MiB")
    print(f"peak RSS of the whole benchmark: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
