"""Issue 11's hostile study folder, screened twice into one output folder: time and peak memory per run.

Run from the repository root (needs ``../shared/data``)::

    .venv/bin/python bench/hostile_corpus.py [--work /tmp/hostile-bench]

The folder holds what a user's study folder may hold and what crafted files do: a DICOM declaring
1,000,000 and 2^31-1 frames, a JPEG cut in half with an end marker appended, a JPEG header claiming
9999 x 9999, 1 x 1 and 12 x 12 pictures, eight 9990 x 9990 PNGs and a 16-bit one (2-3 MB of files),
file names with a byte that is not UTF-8, a newline, a carriage return and spreadsheet formulas,
a LICENSE, a README and notes, pydicom's own test corpus, real Kaggle JPGs and the real sagittal
series, and the output folder inside it. Each run is ``brainscan screen FOLDER --out FOLDER/out
--save-overlays --report html,pdf,dicom`` in a child process, measured by ``/usr/bin/time``-style
``resource.getrusage`` of the child (peak RSS) and the wall clock.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def build(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    jpgs = sorted((SHARED / "brain-tumor-mri" / "Training" / "glioma").glob("*.jpg"))[:40]
    for jpg in jpgs:
        shutil.copy(jpg, folder / jpg.name)
    shutil.copytree(SHARED / "dicom" / "sagittal-t1-brain", folder / "sagittal")
    source = sorted((SHARED / "dicom" / "sagittal-t1-brain").iterdir())[0]
    for frames in (1_000_000, 2**31 - 1):
        ds = pydicom.dcmread(source)
        ds.NumberOfFrames = frames
        ds.save_as(folder / f"lying-{frames}.dcm")
    data = jpgs[0].read_bytes()
    (folder / "cut-half.jpg").write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    sof = bytearray(data)
    at = next(i for i in range(2, len(sof) - 1) if sof[i] == 0xFF and sof[i + 1] in (0xC0, 0xC1, 0xC2))
    sof[at + 5:at + 9] = struct.pack(">HH", 9999, 9999)
    (folder / "claims-9999.jpg").write_bytes(bytes(sof))
    for side in (1, 12):
        cv2.imwrite(str(folder / f"tiny-{side}.png"), np.full((side, side), 90, np.uint8))
        cv2.imwrite(str(folder / f"tiny-{side}.jpg"), np.full((side, side), 90, np.uint8))
    for index in range(8):
        cv2.imwrite(str(folder / f"huge-{index}.png"), np.zeros((9990, 9990), np.uint8))
    cv2.imwrite(str(folder / "huge-16bit.png"), np.zeros((9990, 9990), np.uint16))
    for name in (os.fsdecode(b"bad\xffname.jpg"), "new\nline.jpg", "carriage\rreturn.jpg", "=HYPERLINK(1).jpg",
                 "-2.jpg", "@SUM(A1).jpg"):
        shutil.copy(jpgs[1], folder / name)
    (folder / "LICENSE").write_text("MIT License\n")
    (folder / "README.md").write_text("# study\n")
    (folder / "notes.txt").write_text("scanned on a Tuesday\n")
    shutil.copytree(Path(pydicom.__file__).parent / "data" / "test_files", folder / "pydicom-test-files")
    return folder


def run(folder: Path) -> tuple[float, float, int, str]:
    """One screening in a child process under GNU time: (seconds, peak RSS in MiB, exit status, stderr)."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "peak-kb %M", str(REPO / ".venv" / "bin" / "brainscan"), "screen", str(folder),
         "--out", str(folder / "out"), "--save-overlays", "--report", "html,pdf,dicom", "--progress", "never"],
        capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    peak = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("peak-kb "))
    return seconds, peak / 1024, done.returncode, done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/brainscan-hostile-bench"))
    args = parser.parse_args()
    folder = build(args.work / "study")
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    print(f"{files} files, {sum(p.stat().st_size for p in folder.rglob('*') if p.is_file()) / 1e6:.1f} MB")
    for attempt in ("first run", "second run (resume)"):
        seconds, peak_mb, status, stderr = run(folder)
        print(f"{attempt}: {seconds:.1f} s, peak RSS {peak_mb:.0f} MiB, exit {status}, "
              f"traceback: {'Traceback' in stderr}")
        for line in stderr.splitlines():
            if line.startswith("brainscan:"):
                print("   ", line[:160])
    rows = (folder / "out" / "results.csv").read_text(encoding="utf-8").splitlines()[1:]
    keys = [tuple(r.split(",")[:2]) for r in rows]
    print(f"rows {len(rows)}, duplicates {len(keys) - len(set(keys))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
