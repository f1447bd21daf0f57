"""Where the slow occlusion check points, beside the default Head CAM, on boxed figshare slices (run by hand).

The occlusion map (``brainscan explain --method occlusion``: the drop of the predicted class's logit
under a black 32 px square at 14 x 14 places) is model-agnostic: it shows what the network uses,
whatever a heat-map method says. Both maps of the predicted class are laid over the 512 px original as
screening lays them; the pointing game is the peak within the tumour box grown by 15 px at 512 px.
About 2.5 s a slice on 2 cores, so ``--per-class`` slices of each class, spread over the ids.

    .venv/bin/python bench/occlusion_pointing.py --per-class 20 \\
        --exclude-ids runs/graft/brainscan-4class-lite0-0.4.0.trained-figshare-ids.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "desktop"), str(ROOT)]

from brainscan.engine.input.loading import load_picture  # noqa: E402
from brainscan.engine.model.cam import default_method  # noqa: E402
from brainscan.engine.model.inference import Classifier  # noqa: E402
from brainscan.engine.model.occlusion import occlusion_map, occlusion_on_picture  # noqa: E402
from brainscan.engine.resources import default_model_path  # noqa: E402
from brainscan.engine.run.screening import heat_map_for, heat_peak  # noqa: E402
from trainer.boxes import pointing_hit, read_yolo_box  # noqa: E402
from trainer.pointing import boxed_pictures, read_ids  # noqa: E402

FIGSHARE = ROOT.parent / "shared" / "data" / "figshare-boxes"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--exclude-ids", type=Path, default=None, help="figshare ids to leave out (one per line)")
    args = parser.parse_args()
    classifier = Classifier(args.model, device="cpu")
    exclude = read_ids(args.exclude_ids) if args.exclude_ids else None
    pictures = boxed_pictures(FIGSHARE, classifier.classes, limit=args.per_class, exclude=exclude)
    method = default_method(classifier.contract)
    hits: dict[str, dict[str, list[bool]]] = {}
    started = time.perf_counter()
    for item in pictures:
        picture = load_picture(item.path)
        shape = picture.shape[:2]
        box = read_yolo_box(item.box_file, shape[1], shape[0])
        (prediction,) = classifier.predict([picture])
        target = prediction.label_index
        fast = heat_peak(heat_map_for(prediction, classifier, method, target, shape))
        occlusion = occlusion_on_picture(occlusion_map(classifier, picture, target), shape, classifier.contract)
        slow = heat_peak(occlusion) if occlusion.max() > 0 else None
        name = classifier.classes[item.label]
        record = hits.setdefault(name, {method: [], "occlusion": []})
        record[method].append(pointing_hit(fast, box))
        record["occlusion"].append(slow is not None and pointing_hit(slow, box))
    seconds = time.perf_counter() - started
    print(f"{classifier.contract.name} {classifier.contract.version}: {len(pictures)} figshare slices "
          f"({args.per_class} per class{', trained ids left out' if exclude else ''}), map of the predicted class")
    for label in (method, "occlusion"):
        cells = [f"{name} {100 * np.mean(r[label]):.0f} %" for name, r in sorted(hits.items())]
        every = [hit for r in hits.values() for hit in r[label]]
        print(f"{label:10s}: {100 * np.mean(every):5.1f} % on the tumour ({', '.join(cells)})")
    print(f"{seconds:.0f} s ({seconds / max(1, len(pictures)):.1f} s a slice, the occlusion map nearly all of it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
