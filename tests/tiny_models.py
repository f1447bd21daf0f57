"""Tiny ONNX models with a brainscan contract, built with onnx.helper (no torch needed).

The graph mirrors what the trainer exports: ``features = relu(conv(input))`` (N x C x h x w),
``logits = W @ mean_hw(features) + b`` and ``cam_weight = W``, so the exact-CAM algebra holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from brainscan.engine.model.contract import METADATA_KEY, ModelContract
from brainscan.engine.model.integrity import stamp_contract

FOUR_CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def tiny_contract(**overrides) -> ModelContract:
    values = dict(
        name="tiny-test-model",
        version="0.0.1",
        task="4class",
        classes=FOUR_CLASSES,
        architecture="tiny-conv",
        input_size=(64, 64),
    )
    values.update(overrides)
    return ModelContract(**values)


def build_tiny_model(
    path: Path,
    contract: ModelContract | None = None,
    *,
    channels: int = 8,
    graph_classes: int | None = None,
    graph_input_size: tuple[int, int] | None = None,
    seed: int = 0,
    with_contract: bool = True,
    stamp: bool = True,
) -> Path:
    """Write a small random model to ``path``; ``graph_*`` let a test make the graph disagree.

    With a contract, its ``weights_sha256`` is recorded as the trainer's export does, unless
    ``stamp`` is false (an unverified model, refused unless explicitly allowed).
    """
    contract = contract or tiny_contract()
    rng = np.random.default_rng(seed)
    classes = graph_classes or contract.num_classes
    height, width = graph_input_size or contract.input_size
    conv_w = rng.normal(0, 0.5, (channels, 3, 8, 8)).astype(np.float32)
    conv_b = rng.normal(0, 0.1, (channels,)).astype(np.float32)
    fc_w = rng.normal(0, 1.0, (classes, channels)).astype(np.float32)
    fc_b = rng.normal(0, 0.1, (classes,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], strides=[8, 8]),
        helper.make_node("Relu", ["conv"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Identity", ["fc_w"], ["cam_weight"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, width])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", channels, height // 8, width // 8]),
            helper.make_tensor_value_info("cam_weight", TensorProto.FLOAT, [classes, channels]),
        ],
        [numpy_helper.from_array(a, n) for a, n in ((conv_w, "conv_w"), (conv_b, "conv_b"), (fc_w, "fc_w"), (fc_b, "fc_b"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_contract:
        helper.set_model_props(model, {METADATA_KEY: contract.to_json()})
        if stamp:
            stamp_contract(model)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
