"""Grad-CAM of a graph that averages the picture and its mirror, against the same weights with one view.

    .venv/bin/python bench/cam_views.py --single-view refit-single.onnx [--model FILE] [--per-class 15]

``--single-view``: the same run exported without views (``python -m trainer export RUN --out FILE``);
``--model``: the graph with ``views_in_graph: hflip`` (default: the shipped model). On Kaggle
Training slices of the three tumour classes (every 7th file, ``--per-class`` of each; pictures the
models trained on, so this is about the maps, not accuracy) it reports, for the Grad-CAM of the
predicted class at picture size (Pearson correlations of the maps):

- how alike the two models' maps are;
- how left-right symmetric each is (a map against its own mirror);
- whether the single view's map follows the content when the picture is mirrored: the map of the
  mirrored picture, mirrored back, against the map of the picture (*follows*), and not mirrored
  back (*stays put*). A map that stays put reflects where in the frame, not what, the network
  responds to; averaging the two views cancels that part.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame
from brainscan.engine.model.cam import compute_cam
from brainscan.engine.model.inference import Classifier
from brainscan.engine.resources import default_model_path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-tumor-mri" / "Training"


def cam(classifier: Classifier, picture: np.ndarray, target: int | None = None) -> tuple[np.ndarray, int]:
    prediction = classifier.predict([picture])[0]
    index = prediction.label_index if target is None else target
    return compute_cam("gradcam", prediction.features, classifier.cam_weight, index, picture.shape[:2]), index


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single-view", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--per-class", type=int, default=15)
    args = parser.parse_args()
    two = Classifier(args.model, device="cpu")
    one = Classifier(args.single_view, device="cpu")
    if list(two.contract.views_in_graph) != ["hflip"] or one.contract.views_in_graph:
        raise SystemExit(f"{args.model} must average hflip in its graph and {args.single_view} must not")
    files = [f for c in ("glioma", "meningioma", "pituitary") for f in sorted((DATA / c).glob("*.jpg"))[::7][: args.per_class]]
    alike, sym_one, sym_two, follows, stays = [], [], [], [], []
    for ref in discover(files):
        picture = load_frame(ref).picture
        map_one, index = cam(one, picture)
        map_two, _ = cam(two, picture, index)
        mirrored, _ = cam(one, np.ascontiguousarray(picture[:, ::-1]), index)
        alike.append(corr(map_one, map_two))
        sym_one.append(corr(map_one, map_one[:, ::-1]))
        sym_two.append(corr(map_two, map_two[:, ::-1]))
        follows.append(corr(map_one, mirrored[:, ::-1]))
        stays.append(corr(map_one, mirrored))
    med = statistics.median
    print(f"{len(alike)} Kaggle Training slices (glioma, meningioma, pituitary); Grad-CAM of the predicted class; "
          f"{args.model.name} ({two.contract.version}, hflip in the graph) vs {args.single_view.name} (one view)")
    print(f"maps alike (two views vs one)           : median {med(alike):.3f}, min {min(alike):.3f}")
    print(f"left-right symmetry, one view / two     : median {med(sym_one):.3f} / {med(sym_two):.3f}")
    print(f"one view, picture mirrored: map follows : median {med(follows):.3f}; stays put: {med(stays):.3f}; "
          f"stays put more often than it follows in {sum(s > f for s, f in zip(stays, follows, strict=True))} "
          f"of {len(stays)}")


if __name__ == "__main__":
    main()
