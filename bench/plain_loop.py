"""The yardstick of issue 14: the fastest plain way to classify pictures with the same model.

``cv2.imread(file, IMREAD_GRAYSCALE)``, ``cv2.resize(..., INTER_AREA)`` to the model's input, grey
replicated to three channels, normalised with the model's mean and std, ``session.run`` at batch 1
with onnxruntime's default session (its own threads); nothing written. Run as its own process (start-up
included), so that it is timed exactly like ``brainscan screen``:

    .venv/bin/python bench/plain_loop.py [--outputs logits|all] MODEL.onnx FILE... | FOLDER

``--outputs logits`` (the default) asks for the logits only, so onnxruntime skips what only the other
outputs need; ``all`` passes None (every output: the CAM features, the explanation head's maps, the
domain guard's score), as ``brainscan screen`` computes them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort


def main(argv: list[str]) -> int:
    outputs: list[str] | None = ["logits"]
    if argv[:1] == ["--outputs"]:
        outputs = None if argv[1] == "all" else ["logits"]
        argv = argv[2:]
    model, inputs = Path(argv[0]), [Path(a) for a in argv[1:]]
    files = [f for i in inputs for f in (sorted(i.rglob("*.jpg")) if i.is_dir() else [i])]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    contract = json.loads(session.get_modelmeta().custom_metadata_map["brainscan.contract"])
    height, width = contract["input_size"]
    mean = np.asarray(contract["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(contract["std"], np.float32).reshape(1, 3, 1, 1)
    name = session.get_inputs()[0].name
    labels = []
    for file in files:
        grey = cv2.resize(cv2.imread(str(file), cv2.IMREAD_GRAYSCALE), (width, height), interpolation=cv2.INTER_AREA)
        tensor = (np.repeat(grey[None, None].astype(np.float32) / 255.0, 3, axis=1) - mean) / std
        logits = session.run(outputs, {name: tensor})[0]
        labels.append(int(logits.argmax()))
    print(f"{len(labels)} pictures classified", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
