"""Run the frozen one-folder application and check it, printing its size and start-up times.

    python installer/check_bundle.py [installer/dist/brainscan] [--rounds 5]

Checks (each failure is printed; exit status 1 if any):

- both executables are there, with the default model and the samples; nothing of torch, timm,
  triton, nvidia or the trainer, and no GPL ``libjpeg`` module (pylibjpeg-libjpeg);
- ``brainscan --version``, ``brainscan self-test`` (samples and four compressed DICOM syntaxes) and
  ``brainscan-viewer --self-test`` (Qt offscreen) pass;
- ``brainscan self-test --device cuda`` on a machine without CUDA says so and runs on the CPU;
- ``brainscan screen`` of the samples, a DICOM file and a broken file, with PDF, HTML and DICOM
  reports, exits 1 with an ``error`` row for the broken file only and no traceback.

Runs the bundle with a minimal environment (no PYTHONPATH, no virtual environment), from a
temporary working folder. Needs only the standard library, plus pydicom to write the DICOM input
(the check is skipped without it).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "timm", "triton", "nvidia", "trainer", "libjpeg", "pytorch_grad_cam")
EXE = ".exe" if os.name == "nt" else ""


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def clean_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "USERPROFILE", "SYSTEMROOT", "TEMP", "TMP", "TMPDIR", "LANG", "LC_ALL")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def run(command: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=clean_env(), timeout=300)
    return done, time.perf_counter() - started


def timed(command: list[str], cwd: Path, rounds: int, problems: list[str]) -> tuple[float, str]:
    """Median wall time over ``rounds`` runs (after one warm-up run) and the last output."""
    times, output = [], ""
    for index in range(rounds + 1):
        done, seconds = run(command, cwd)
        output = done.stdout.strip()
        if done.returncode != 0:
            problems.append(f"{Path(command[0]).name} {' '.join(command[1:])}: exit {done.returncode}: "
                            f"{done.stderr.strip()[-800:]}")
            return float("nan"), output
        if index:
            times.append(seconds)
    return statistics.median(times), output


def write_dicom(path: Path) -> bool:
    try:
        import cv2
        import numpy as np
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
    except ImportError:
        return False
    grey = cv2.imread(str(ROOT / "resources" / "samples" / "glioma-Tr-gl_0100.jpg"), cv2.IMREAD_GRAYSCALE)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "MR"
    ds.PatientName, ds.PatientID = "Bundle^Check", "BUNDLE-1"
    ds.set_pixel_data((grey.astype(np.uint16) * 4), "MONOCHROME2", 12)
    ds.save_as(path, enforce_file_format=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=ROOT / "installer" / "dist" / "brainscan")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs per command (median)")
    args = parser.parse_args(argv)
    bundle = args.bundle.resolve()
    cli, viewer = bundle / f"brainscan{EXE}", bundle / f"brainscan-viewer{EXE}"
    problems: list[str] = []
    for executable in (cli, viewer):
        if not executable.is_file():
            problems.append(f"{executable} is missing: build it with installer/build.sh")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    internal = bundle / "_internal" if (bundle / "_internal").is_dir() else bundle
    for name in FORBIDDEN:
        if (internal / name).exists():
            problems.append(f"{internal / name} must not be in the bundle")
    if list(internal.glob("_libjpeg*")):
        problems.append("the GPL pylibjpeg-libjpeg extension is in the bundle")
    if not (internal / "resources" / "models" / "brainscan-4class-lite0.onnx").is_file():
        problems.append("the default model is not in the bundle")
    for font in ("DejaVuSans.ttf", "DroidSansFallback.ttf", "NotoEmoji-Variable.ttf"):
        if not (internal / "resources" / "fonts" / font).is_file():
            problems.append(f"the PDF report font {font} is not in the bundle (CJK and emoji would print as boxes)")

    with tempfile.TemporaryDirectory(prefix="brainscan-bundle-check-") as scratch:
        work = Path(scratch)
        version_s, version = timed([str(cli), "--version"], work, args.rounds, problems)
        selftest_s, selftest = timed([str(cli), "self-test", "--device", "cpu"], work, args.rounds, problems)
        viewer_s, viewer_out = timed([str(viewer), "--self-test", "--device", "cpu"], work, args.rounds, problems)
        cuda, _ = run([str(cli), "self-test", "--device", "cuda"], work)
        if cuda.returncode != 0:
            problems.append(f"self-test --device cuda failed: {cuda.stderr.strip()[-800:]}")
        elif "CUDAExecutionProvider" not in cuda.stdout and "Running on the CPU" not in cuda.stderr:
            problems.append(f"self-test --device cuda fell back without saying why: {cuda.stderr!r}")

        inputs = work / "inputs"
        inputs.mkdir()
        for sample in sorted((ROOT / "resources" / "samples").glob("*.jpg"))[:4]:
            (inputs / sample.name).write_bytes(sample.read_bytes())
        (inputs / "broken.jpg").write_bytes((ROOT / "resources" / "samples" / "glioma-Tr-gl_0100.jpg").read_bytes()[:3000])
        formats = "pdf,html,dicom" if write_dicom(inputs / "slice.dcm") else "pdf,html"
        screen, screen_s = run([str(cli), "screen", str(inputs), "--out", str(work / "out"), "--report", formats,
                                "--save-overlays", "--progress", "never"], work)
        if screen.returncode != 1 or "Traceback" in screen.stderr:
            problems.append(f"screen with a broken file: exit {screen.returncode} (expected 1): {screen.stderr[-800:]}")
        else:
            with open(work / "out" / "results.csv", newline="", encoding="utf-8") as handle:
                rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
            bad = sorted(n for n, r in rows.items() if (r["status"] == "error") != (n == "broken.jpg"))
            if bad or "broken.jpg" not in rows["broken.jpg"]["error"]:
                problems.append(f"screen: unexpected rows {bad}")
            for report in ("report.pdf", "report.html"):
                if not (work / "out" / report).is_file():
                    problems.append(f"screen --report: {report} was not written")

    size = folder_size(bundle)
    print(f"bundle: {bundle} ({size / 2**20:.0f} MiB, {sum(1 for _ in bundle.rglob('*'))} files)")
    print(f"| `brainscan --version` | {version_s:.2f} s | {version} |")
    print(f"| `brainscan self-test` | {selftest_s:.2f} s | {selftest} |")
    print(f"| `brainscan-viewer --self-test` | {viewer_s:.2f} s | {viewer_out} |")
    print(f"| `brainscan screen` (4 samples, 1 broken JPG, 1 DICOM; reports {formats}, overlays) | {screen_s:.2f} s | exit {screen.returncode} |")
    for problem in problems:
        print(f"check_bundle: {problem}", file=sys.stderr)
    print("check_bundle: " + ("all checks passed" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
