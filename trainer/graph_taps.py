"""Reading an exported model's inner tensors with onnxruntime (no torch, no checkpoint needed).

The explanation head and the domain guard are fitted on what the *exported* graph computes, so
that what is fitted is exactly what the application will run. :func:`tapped_session` opens a copy of
the graph that also returns chosen inner tensors; :func:`extract` runs pictures through it.

With the mirror averaged inside the graph (``views_in_graph: hflip``), the backbone runs on a batch
of ``2N`` (the pictures, then their mirrors); a tapped map is returned as the graph treats its last
feature maps: the picture's map and the mirror's map flipped back, averaged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from brainscan.engine.model.contract import FEATURES, LOGITS, ModelContract
from brainscan.engine.model.preprocess import to_model_input

# The outputs of EfficientNet's stages 3 and 4 (timm names), 80 and 112 channels at 1/16 of the
# input (14 x 14 at 224): the finest maps that still carry the classifier's semantics.
STAGE_TAPS = ("/blocks/blocks.3/blocks.3.2/Add_output_0", "/blocks/blocks.4/blocks.4.2/Add_output_0")


def tapped_session(model_path: Path, taps: Sequence[str] = STAGE_TAPS, threads: int = 2) -> ort.InferenceSession:
    """An onnxruntime session of the model that also outputs the tensors named in ``taps``."""
    model = onnx.load(str(model_path))
    known = {output for node in model.graph.node for output in node.output}
    missing = [tap for tap in taps if tap not in known]
    if missing:
        raise ValueError(f"{model_path}: the graph has no tensor {missing[0]!r} (an EfficientNet-Lite0 export?)")
    outputs = {o.name for o in model.graph.output}
    for tap in taps:
        if tap not in outputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(tap, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def _views_averaged(maps: np.ndarray, count: int) -> np.ndarray:
    """(2N x C x h x w) -> N x C x h x w: the picture's map and its mirror's, flipped back, averaged."""
    if maps.shape[0] == count:
        return maps
    return (maps[:count] + maps[count:, ..., ::-1]) / 2


def extract(
    session: ort.InferenceSession,
    contract: ModelContract,
    pictures: Sequence[np.ndarray],
    taps: Sequence[str] = STAGE_TAPS,
    batch_size: int = 16,
) -> Iterator[dict[str, np.ndarray]]:
    """Per batch of 8-bit RGB pictures: ``logits``, ``pooled`` (N x C of the last maps) and each tap."""
    input_name = session.get_inputs()[0].name
    names = [LOGITS, FEATURES, *taps]
    for start in range(0, len(pictures), batch_size):
        chunk = list(pictures[start : start + batch_size])
        tensor = to_model_input(chunk, contract)
        logits, features, *tapped = session.run(names, {input_name: tensor})
        batch = {"logits": logits, "pooled": features.mean(axis=(2, 3))}
        for tap, maps in zip(taps, tapped, strict=True):
            batch[tap] = _views_averaged(maps, len(chunk))
        yield batch
