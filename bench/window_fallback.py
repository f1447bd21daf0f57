"""Which fallback window keeps DICOM pictures closest to what the model was trained on.

When a DICOM file has no sane Window Center/Width, the engine chooses the window from the values
themselves. The training pictures are 8-bit exports; this measures, on the grouped validation split
of a trainer run, how the shipped model's accuracy changes when each picture is wrapped as 12-bit
MR-like values (``grey * 4`` + noise 0-3, as ``tests/dicom_factory.py`` does) and brought back to
8 bits by percentile windows. It needs the trainer environment (the split comes from the run).

    .venv/bin/python bench/window_fallback.py [--run runs/lite0-224-full-v0.2.0] [--model FILE]

Result of 2026-11-23 (shipped model 0.2.0, 860 pictures, the same noise for every window): as
stored 0.9872; full range (0-100) 0.9802; 0-99.9 0.9767; 0.1-99.9 0.9767; 0.5-99.5 0.9674 (two
earlier runs with other noise: 0.981-0.984 for the full range, 0.965-0.969 for 0.5-99.5). The
engine uses the full range
(:data:`brainscan.engine.input.dicom_pixels.PERCENTILES`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from brainscan.engine.input.dicom_pixels import apply_window, grey_to_rgb, percentile_window
from brainscan.engine.model.inference import Classifier
from brainscan.engine.resources import default_model_path
from trainer.config import FitConfig
from trainer.prepared_data import prepare_data

PAIRS = ((0.0, 100.0), (0.0, 99.9), (0.1, 99.9), (0.5, 99.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/lite0-224-full-v0.2.0"))
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    saved = json.loads((args.run / "config.json").read_text())
    config = FitConfig(**{k: v for k, v in saved.items() if k in FitConfig.__dataclass_fields__})
    data = prepare_data(config, lambda *_: None)
    classifier = Classifier(args.model or default_model_path(), device="cpu")
    refit_of = (classifier.contract.metrics.get("refit") or {}).get("of")
    if refit_of == args.run.name:
        raise SystemExit(
            f"{classifier.model_path} is the refit of {args.run} on every picture, its validation ones included; "
            f"pass --model with the validated run's export (python -m trainer export {args.run} --out FILE)"
        )
    indices, labels = data.val, data.labels[data.val]

    def accuracy(make) -> float:
        predicted = []
        for start in range(0, len(indices), 32):
            pictures = [make(data.pictures[i], int(i)) for i in indices[start : start + 32]]
            predicted += [p.label_index for p in classifier.predict(pictures)]
        return float((np.array(predicted) == labels).mean())

    def wrapped(picture: np.ndarray, seed: int, pair: tuple[float, float]) -> np.ndarray:
        noise = np.random.default_rng(seed).integers(0, 4, picture.shape[:2])  # the same for every pair
        values = picture[..., 0].astype(np.float64) * 4 + noise
        window = percentile_window(values, pair)
        return grey_to_rgb(apply_window(values, window.center, window.width))

    print(f"model {classifier.contract.name} {classifier.contract.version}, {len(indices)} validation pictures")
    print(f"as stored (8-bit)        : {accuracy(lambda p, _seed: p):.4f}")
    for pair in PAIRS:
        score = accuracy(lambda p, seed, pair=pair: wrapped(p, seed, pair))
        print(f"12-bit, window {pair[0]:>4}-{pair[1]:<5}: {score:.4f}")


if __name__ == "__main__":
    main()
