"""What the shipped model's domain guard flags, on every kind of picture we have (run by hand).

Screens, with the engine's own path (picture checks, then the model's ``domain_score``), each set and
prints how many frames are out of domain, by which judge, and how many in-domain frames are called a
tumour. Sets: the Kaggle Training pictures (every ``--step``-th), the 512 px figshare originals, the
external brain-mri-yes-no pictures, the real sagittal series (midline and lateral edge), the EPI
mosaics, and pictures that are not brain MRI drawn by ``trainer/ood_pictures.py`` (another seed than
the trainer's).

    .venv/bin/python bench/domain_guard.py [--model FILE] [--step 1] [--drawn 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "desktop"), str(ROOT)]

from brainscan.engine.input.discovery import discover  # noqa: E402
from brainscan.engine.model.inference import Classifier  # noqa: E402
from brainscan.engine.resources import default_model_path  # noqa: E402
from brainscan.engine.run.screening import screen  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def judge(classifier: Classifier, paths: list[Path]) -> dict[str, int]:
    counts = {"frames": 0, "failed": 0, "out (picture checks)": 0, "out (guard)": 0, "in domain, called tumour": 0}
    for result in screen(discover(paths), classifier, cam_method=None):
        counts["frames"] += 1
        if not result.ok:
            counts["failed"] += 1
        elif result.in_domain is False:
            counts["out (guard)" if "domain score" in result.domain_reason else "out (picture checks)"] += 1
        elif result.label != "notumor":
            counts["in domain, called tumour"] += 1
    return counts


def drawn_sets(folder: Path, count: int) -> dict[str, list[Path]]:
    from trainer.ood_pictures import ood_pictures

    sets = {}
    for kind, pictures in ood_pictures(count=count, seed=2024).items():
        sets[f"drawn {kind}"] = []
        for index, picture in enumerate(pictures):
            path = folder / f"{kind}-{index:03d}.png"
            cv2.imwrite(str(path), picture[..., ::-1])
            sets[f"drawn {kind}"].append(path)
    return sets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--step", type=int, default=1, help="every n-th Kaggle Training picture")
    parser.add_argument("--drawn", type=int, default=100, help="drawn pictures of each kind")
    args = parser.parse_args()
    classifier = Classifier(args.model, device="cpu")
    if not classifier.contract.domain_guard:
        print(f"{args.model}: this model carries no domain guard; only the picture checks judge", file=sys.stderr)
    kaggle = sorted((DATA / "brain-tumor-mri" / "Training").rglob("*.jpg"))[:: args.step]
    sets = {
        f"Kaggle Training (every {args.step})": kaggle,
        "figshare originals, 512 px": sorted((DATA / "figshare-boxes").rglob("*.jpg")),
        "brain-mri-yes-no (external)": [DATA / "brain-mri-yes-no"],
        "sagittal T1, midline slices": [DATA / "dicom" / "sagittal-t1-brain"],
        "sagittal T1, lateral edge slices": [DATA / "dicom" / "sagittal-t1-lateral"],
        "EPI mosaics": [DATA / "dicom" / "transfer-syntaxes"],
    }
    with tempfile.TemporaryDirectory() as folder:
        sets.update(drawn_sets(Path(folder), args.drawn))
        print(f"{classifier.contract.name} {classifier.contract.version}: frames out of domain, by judge")
        print(f"{'set':36} {'frames':>7} {'checks':>7} {'guard':>7} {'out %':>7} {'in-domain tumour':>17}")
        for name, paths in sets.items():
            started = time.perf_counter()
            c = judge(classifier, [p for p in paths if p.exists()])
            out = c["out (picture checks)"] + c["out (guard)"]
            share = 100 * out / max(1, c["frames"] - c["failed"])
            print(f"{name:36} {c['frames']:7d} {c['out (picture checks)']:7d} {c['out (guard)']:7d} {share:6.1f}% "
                  f"{c['in domain, called tumour']:17d}   ({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
