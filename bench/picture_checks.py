"""The figures behind the picture checks' bounds (``engine/input/picture_checks.py``).

    .venv/bin/python bench/picture_checks.py [--data ../shared/data] [--heat-every 10]

For every picture of the Kaggle training set, the external yes/no set, the 512 px figshare originals and
the real DICOM folders (decoded by brainscan's own loader), it reports the grey standard deviation, the
foreground fraction and the noise share (minimum, 1st percentile, median, maximum), and how many pictures
the checks flag with the reasons. Then the same for made-up frames that must be flagged (constant, noise,
a tiny blob on black), the cost of the checks per 224 px and 512 px frame, and, with the shipped model,
the distribution of the heat map's share outside the head on every ``--heat-every``-th Kaggle picture.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from brainscan.engine.input.discovery import find_inputs
from brainscan.engine.input.loading import load_frame
from brainscan.engine.input.picture_checks import (
    check_picture,
    check_statistics,
    head_mask,
    heat_outside,
    picture_statistics,
)

SETS = {
    "kaggle-training": "brain-tumor-mri/Training",
    "brain-mri-yes-no": "brain-mri-yes-no",
    "figshare-boxes": "figshare-boxes",
    "sagittal-t1-brain": "dicom/sagittal-t1-brain",
    "sagittal-t1-lateral": "dicom/sagittal-t1-lateral",
    "epi-mosaics": "dicom/transfer-syntaxes",
}


def _summary(values: list[float]) -> str:
    array = np.asarray(values)
    return f"min {array.min():.3f}  p1 {np.percentile(array, 1):.3f}  median {np.median(array):.3f}"


def measure_set(name: str, folder: Path) -> None:
    refs = find_inputs([str(folder)]).refs
    figures: dict[str, list[float]] = {"grey_std": [], "foreground": [], "noise": []}
    reasons: Counter[str] = Counter()
    for ref in refs:
        frame = load_frame(ref)
        for key, value in picture_statistics(frame.picture).items():
            figures[key].append(value)
        in_domain, reason = check_picture(frame)
        if not in_domain:
            reasons[reason.split(" (")[0]] += 1
            if sum(reasons.values()) <= 5:
                print(f"    flagged {ref.path.name}: {reason}")
    print(f"{name}: {len(refs)} frames, {sum(reasons.values())} flagged {dict(reasons)}")
    for key, values in figures.items():
        print(f"    {key:<11} {_summary(values)}  max {max(values):.3f}")


def made_up_frames(rng: np.random.Generator) -> dict[str, np.ndarray]:
    blob = np.zeros((224, 224), np.uint8)
    blob[100:110, 100:110] = 200
    return {
        "constant": np.full((224, 224), 128, np.uint8),
        "faint noise": rng.integers(120, 124, (224, 224), dtype=np.uint8),
        "uniform noise": rng.integers(0, 256, (224, 224), dtype=np.uint8),
        "uniform noise 512": rng.integers(0, 256, (512, 512), dtype=np.uint8),
        "gaussian noise": np.clip(rng.normal(128, 40, (224, 224)), 0, 255).astype(np.uint8),
        "tiny blob": blob,
    }


def cost(picture: np.ndarray, rounds: int = 200) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        check_statistics(picture_statistics(picture))
        head_mask(picture)
    return (time.perf_counter() - start) / rounds * 1000


def measure_heat(folder: Path, every: int) -> None:
    from brainscan.engine.model.cam import cam_on_picture
    from brainscan.engine.model.inference import Classifier
    from brainscan.engine.resources import default_model_path

    classifier = Classifier(default_model_path(), device="cpu")
    refs = find_inputs([str(folder)]).refs[::every]
    shares = []
    for ref in refs:
        frame = load_frame(ref)
        prediction = classifier.predict([frame.picture])[0]
        heat = cam_on_picture("gradcam", prediction.features, classifier.cam_weight, prediction.label_index,
                              frame.picture.shape[:2], classifier.contract)
        shares.append(heat_outside(heat, head_mask(frame.picture)))
    array = np.asarray([s for s in shares if np.isfinite(s)])
    print(f"heat outside the head (Grad-CAM, {len(array)} Kaggle pictures): median {np.median(array):.3f}  "
          f"p90 {np.percentile(array, 90):.3f}  p99 {np.percentile(array, 99):.3f}  max {array.max():.3f}  "
          f"> 0.5: {int((array > 0.5).sum())}  > 0.6: {int((array > 0.6).sum())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--heat-every", type=int, default=10, help="0: skip the heat-map measurement")
    parser.add_argument("--only", nargs="*", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    for name in args.only:
        measure_set(name, args.data / SETS[name])
    rng = np.random.default_rng(0)
    for name, picture in made_up_frames(rng).items():
        rgb = np.repeat(picture[..., None], 3, axis=2)
        figures = picture_statistics(rgb)
        print(f"{name}: {check_statistics(figures)}  {({k: round(v, 3) for k, v in figures.items()})}")
    for side in (224, 512):
        picture = np.repeat(rng.integers(0, 256, (side, side), dtype=np.uint8)[..., None], 3, axis=2)
        print(f"cost per {side} px frame: {cost(picture):.2f} ms (statistics, verdict and mask)")
    if args.heat_every:
        measure_heat(args.data / SETS["kaggle-training"], args.heat_every)


if __name__ == "__main__":
    main()
