"""Screening throughput: ``brainscan screen --cam gradcam`` against the fastest plain loop, whole commands.

The yardstick (issue 14) is ``bench/plain_loop.py``: cv2 grey decoding, INTER_AREA resize, batch 1,
onnxruntime's default session, nothing written; run twice per round, asking for the logits only and for
every output (None). Both sides are timed as whole processes from the command to its exit (start-up and
model load included) over the same folder of pictures, interleaved (A B C D, A B C D, ...), and the
ratios of the medians are reported (plain seconds / screen seconds: 1.0 means as fast as the plain loop),
because this machine is noisy. ``brainscan screen`` runs twice per round: with the plan it remembers for
this machine and model (``engine/run/tuning.py``; the warm-up run measured and kept it), and with a fresh
cache, so that it tries plans within the run as a first run on a new machine does. ``--cam`` and
``--batch-size`` choose the screening side's settings (default: its own, with Grad-CAM, as the hidden
check runs it).

    .venv/bin/python bench/screening_throughput.py [--images 400] [--rounds 5] [--model FILE] [--memory-images 10000]

``--single-view FILE``: the same network exported without views in its graph (``python -m
trainer export RUN --out FILE``); its screening is timed in the same rounds, so the cost of a
model that averages the picture and its mirror inside its graph comes out as a ratio too.

Also measures memory (RSS) while screening a long list of files (``--memory-images``) as ``brainscan
screen`` runs (its measured plan), sampling every 500 frames to show whether it stays flat.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

from brainscan.engine.input.discovery import discover
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.integrity import CACHE_ENV, VERIFIED_CACHE, cache_dir
from brainscan.engine.resources import default_model_path
from brainscan.engine.run.folder_run import FolderRun, RunSettings
from brainscan.engine.run.tuning import max_lanes, plan_key, remembered_plan, session_threads

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain-tumor-mri" / "Training"


def _files(count: int) -> list[Path]:
    every = sorted(DATA.glob("*/*.jpg"))
    step = max(1, len(every) // count)
    return every[::step][:count]


BENCH = Path(__file__).resolve().parent
BRAINSCAN = Path(sys.executable).with_name("brainscan")


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _timed_env(command: list[str], env: dict[str, str] | None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def plain_command(folder: Path, model: Path, outputs: str = "logits") -> float:
    """Seconds of the plain loop over ``folder``, as its own process (``outputs``: logits or all)."""
    return _timed([sys.executable, str(BENCH / "plain_loop.py"), "--outputs", outputs, str(model), str(folder)])


def fresh_cache() -> dict[str, str]:
    """An environment whose brainscan cache knows the weights verified (as the user's does) but no plan."""
    folder = Path(tempfile.mkdtemp(prefix="brainscan-bench-cache-"))
    verified = cache_dir() / VERIFIED_CACHE
    if verified.is_file():
        shutil.copy(verified, folder / VERIFIED_CACHE)
    return {**os.environ, CACHE_ENV: str(folder)}


def screen_command(folder: Path, model: Path, cam: str, batch_size: int | None, fresh: bool = False) -> float:
    """Seconds of ``brainscan screen FOLDER --out NEW --cam CAM``, as its own process; ``fresh``: with a cache
    that remembers no plan (the run tries plans itself)."""
    out = Path(tempfile.mkdtemp(prefix="brainscan-bench-"))
    env = fresh_cache() if fresh else None
    try:
        command = [str(BRAINSCAN), "screen", str(folder), "--out", str(out / "run"), "--model", str(model),
                   "--device", "cpu", "--cam", cam, "--progress", "never"]
        return _timed_env(command + (["--batch-size", str(batch_size)] if batch_size else []), env)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if env is not None:
            shutil.rmtree(env[CACHE_ENV], ignore_errors=True)


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_profile(count: int, model: Path, batch_size: int | None) -> list[tuple[int, float]]:
    every = sorted(DATA.glob("*/*.jpg"))
    files = [every[i % len(every)] for i in range(count)]
    # distinct files so nothing is skipped: hard links in a temp folder (discovery drops symlinked repeats)
    with tempfile.TemporaryDirectory() as folder:
        links = []
        for i, source in enumerate(files):
            link = Path(folder) / f"{i:06d}.jpg"
            os.link(source, link)
            links.append(link)
        classifier = Classifier(model, device="cpu", threads=session_threads(None, "cpu"))
        samples = []
        with tempfile.TemporaryDirectory() as out:
            settings = RunSettings(out=Path(out), cam_method="gradcam", batch_size=batch_size, lanes=None)
            with FolderRun(classifier, discover(links), settings) as run:
                for index, _ in enumerate(run.results(), 1):
                    if index % 500 == 0:
                        samples.append((index, rss_mib()))
    return samples


def remembered_plan_text(model: Path) -> str:
    """The plan the user's cache keeps for this machine and model, as ``brainscan screen`` would use it."""
    classifier = Classifier(model, device="cpu", threads=session_threads(None, "cpu"))
    plan = remembered_plan(plan_key(classifier), max_lanes(classifier))
    return plan.describe() if plan else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="screening batch size (default: brainscan's)")
    parser.add_argument("--cam", default="gradcam", help="screening heat map (the hidden check: gradcam)")
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--memory-images", type=int, default=0, help="also screen this many files and sample RSS")
    parser.add_argument("--single-view", type=Path, default=None,
                        help="the same network without views in its graph, screened in the same rounds")
    args = parser.parse_args()
    files = _files(args.images)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"onnxruntime {ort.__version__}, model {args.model.name}, {len(files)} Kaggle JPGs, "
          f"screen --cam {args.cam}" + (f" --batch-size {args.batch_size}" if args.batch_size else ""))
    plain, plain_all, cam, fresh, single = [], [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for index, source in enumerate(files):  # one flat folder of the chosen pictures (hard links)
            os.link(source, Path(folder) / f"{index:04d}-{source.name}")
        screen_command(Path(folder), args.model, args.cam, args.batch_size)  # warm the file cache; measure a plan
        plan = remembered_plan_text(args.model)
        for _ in range(args.rounds):
            plain.append(plain_command(Path(folder), args.model, "logits"))
            cam.append(screen_command(Path(folder), args.model, args.cam, args.batch_size))
            plain_all.append(plain_command(Path(folder), args.model, "all"))
            fresh.append(screen_command(Path(folder), args.model, args.cam, args.batch_size, fresh=True))
            if args.single_view:
                single.append(screen_command(Path(folder), args.single_view, args.cam, args.batch_size))
    print(f"plan remembered by the warm-up run: {plan}")
    print(f"load average after the rounds: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def line(label: str, values: list[float]) -> str:
        return (f"{label:38s}: median {statistics.median(values):6.2f} s, min {min(values):6.2f} s  "
                f"(rounds: {', '.join(f'{x:.2f}' for x in values)})")

    print(line("plain loop, logits only", plain))
    print(line("plain loop, every output (None)", plain_all))
    print(line(f"brainscan screen --cam {args.cam}", cam))
    print(line(f"brainscan screen --cam {args.cam}, fresh cache", fresh))
    p, a, c, f = (statistics.median(v) for v in (plain, plain_all, cam, fresh))
    print(f"ratio plain / screen (medians), logits only : {p / c:.2f}; first run (fresh cache): {p / f:.2f}")
    print(f"ratio plain / screen (medians), every output: {a / c:.2f}; first run (fresh cache): {a / f:.2f}")
    print("(at least 0.95 wanted; above 1: screen is faster)")
    if single:
        s = statistics.median(single)
        print(f"screen, single view               : {s:6.2f} s  ({args.single_view.name}); "
              f"two views / one view: {c / s:.2f}")
    if args.memory_images:
        samples = memory_profile(args.memory_images, args.model, args.batch_size)
        print("RSS while screening   : " + ", ".join(f"{n}: {m:.0f} MiB" for n, m in samples))
        if len(samples) >= 2:
            print(f"RSS growth from {samples[0][0]} to {samples[-1][0]} frames: {samples[-1][1] - samples[0][1]:+.0f} MiB")
    print(f"peak RSS of the whole benchmark: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
