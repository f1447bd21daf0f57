"""Graft the explanation head and the domain guard onto an exported graph, as plain ONNX nodes.

The result is one ONNX file whose extra outputs the engine reads like the others:

- ``head_maps`` (N x K x 14 x 14): :class:`trainer.explain_head.ExplainHead` on the stage-3 and
  stage-4 maps (views averaged like the last maps when the graph averages the mirror);
- ``domain_score`` (N): the guard's distance to the nearest class, divided by its threshold
  (:mod:`trainer.domain_guard`): at most 1 is in domain. The guard reads the spatial means of the
  stage-3 and stage-4 maps and the pooled last maps (:func:`guard_features`): the stage means see
  texture and contrast that the last maps, made for the classes, ignore (a phantom, smooth noise).

The classifier's nodes and weights are untouched, so its logits (and accuracy) are those of the
model grafted on; the weights checksum is stamped again with the contract.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from brainscan.engine.model.contract import DOMAIN_SCORE, HEAD_MAPS
from trainer.domain_guard import DomainGuard
from trainer.explain_head import ExplainHead
from trainer.graph_taps import STAGE_TAPS

POOLED = "/global_pool/flatten/Flatten_output_0"
_BIG = np.iinfo(np.int64).max


class _Builder:
    """Appends named nodes and initializers to a graph."""

    def __init__(self, model: onnx.ModelProto, prefix: str) -> None:
        self.graph = model.graph
        self.prefix = prefix

    def constant(self, name: str, value: np.ndarray) -> str:
        full = f"{self.prefix}/{name}"
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), full))
        return full

    def node(self, op: str, inputs: list[str], name: str, **attributes: object) -> str:
        output = f"{self.prefix}/{name}"
        self.graph.node.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _views_averaged(b: _Builder, tensor: str, tag: str, mirrored: bool) -> str:
    """The picture's half of a 2N batch plus its mirror's half flipped back, halved (as the graph does)."""
    if not mirrored:
        return tensor
    shape = b.node("Shape", ["input"], f"{tag}_shape")
    count = b.node("Gather", [shape, b.constant(f"{tag}_zero", np.array([0], np.int64))], f"{tag}_count", axis=0)
    axis0 = b.constant(f"{tag}_axis0", np.array([0], np.int64))
    first = b.node("Slice", [tensor, b.constant(f"{tag}_start", np.array([0], np.int64)), count, axis0], f"{tag}_first")
    second = b.node("Slice", [tensor, count, b.constant(f"{tag}_end", np.array([_BIG], np.int64)), axis0],
                    f"{tag}_second")
    flipped = b.node("Slice", [second, b.constant(f"{tag}_fstart", np.array([-1], np.int64)),
                               b.constant(f"{tag}_fend", np.array([-_BIG], np.int64)),
                               b.constant(f"{tag}_faxis", np.array([3], np.int64)),
                               b.constant(f"{tag}_fstep", np.array([-1], np.int64))], f"{tag}_flipped")
    total = b.node("Add", [first, flipped], f"{tag}_sum")
    return b.node("Mul", [total, b.constant(f"{tag}_half", np.array(0.5, np.float32))], f"{tag}_mean")


def guard_features(batch: dict[str, np.ndarray]) -> np.ndarray:
    """What the guard reads, from :func:`trainer.graph_taps.extract`'s batch: N x (80 + 112 + 1280)."""
    means = [batch[tap].astype(np.float32).mean(axis=(2, 3)) for tap in STAGE_TAPS]
    return np.concatenate([*means, batch["pooled"].astype(np.float32)], axis=1)


def _stage_maps(model: onnx.ModelProto, mirrored: bool) -> list[str]:
    """The stage maps with the views averaged, built once and shared by the head and the guard."""
    b = _Builder(model, "/stages")
    return [_views_averaged(b, tap, f"tap{i}", mirrored) for i, tap in enumerate(STAGE_TAPS)]


_GRAFTED = ("/stages/", "/explain_head/", "/domain_guard/", f"name_{HEAD_MAPS}", f"name_{DOMAIN_SCORE}")


def strip_graft(model: onnx.ModelProto) -> None:
    """Remove an earlier graft (its nodes, weights and outputs), in place: the classifier's graph is left."""
    graph = model.graph
    kept_nodes = [n for n in graph.node if not n.name.startswith(_GRAFTED)]
    kept_weights = [t for t in graph.initializer if not t.name.startswith(_GRAFTED)]
    kept_outputs = [o for o in graph.output if o.name not in (HEAD_MAPS, DOMAIN_SCORE)]
    for field, kept in ((graph.node, kept_nodes), (graph.initializer, kept_weights), (graph.output, kept_outputs)):
        del field[:]
        field.extend(kept)


def graft(model: onnx.ModelProto, head: ExplainHead | None, guard: DomainGuard | None, *, mirrored: bool) -> None:
    """Append the head and the guard (either may be None) to an exported graph, in place (an earlier graft
    is replaced).

    ``mirrored``: the graph averages the picture and its mirror (its contract's ``views_in_graph``).
    """
    strip_graft(model)
    stages = _stage_maps(model, mirrored)
    if head is not None:
        add_explain_head(model, head, stages)
    if guard is not None:
        add_domain_guard(model, guard, stages)


def add_explain_head(model: onnx.ModelProto, head: ExplainHead, stages: list[str]) -> None:
    """Append the head (:class:`~trainer.explain_head.ExplainHead`: standardise, conv, ReLU, conv, mirror-averaged).

    The standardisation stays a node of its own (folding it into the padded convolution would change
    the border cells, where the padding is zeros of the standardised maps).
    """
    b = _Builder(model, "/explain_head")
    joined = b.node("Concat", stages, "stages", axis=1)
    with torch.no_grad():
        shift = head.shift.numpy().reshape(1, -1, 1, 1).astype(np.float32)
        scale = head.scale.numpy().reshape(1, -1, 1, 1).astype(np.float32)
        weights = [t.numpy().astype(np.float32) for t in (head.conv.weight, head.conv.bias, head.maps.weight,
                                                          head.maps.bias)]
    standard = b.node("Mul", [b.node("Sub", [joined, b.constant("shift", shift)], "centred"),
                              b.constant("scale", scale)], "standard")
    conv_w, conv_b, maps_w, maps_b = (b.constant(name, value)
                                      for name, value in zip(("conv_w", "conv_b", "maps_w", "maps_b"), weights, strict=True))
    flip = [b.constant(name, np.array([value], np.int64))
            for name, value in (("fstart", -1), ("fend", -_BIG), ("faxis", 3), ("fstep", -1))]

    def one_view(x: str, tag: str) -> str:
        hidden = b.node("Relu", [b.node("Conv", [x, conv_w, conv_b], f"conv_{tag}", pads=[1, 1, 1, 1])], f"relu_{tag}")
        return b.node("Conv", [hidden, maps_w, maps_b], f"maps_{tag}")

    direct = one_view(standard, "direct")
    mirrored = b.node("Slice", [one_view(b.node("Slice", [standard, *flip], "mirror"), "mirror"), *flip], "back")
    maps = b.node("Mul", [b.node("Add", [direct, mirrored], "sum"), b.constant("half", np.array(0.5, np.float32))],
                  "maps")
    model.graph.node.append(helper.make_node("Identity", [maps], [HEAD_MAPS], name=f"name_{HEAD_MAPS}"))
    model.graph.output.append(helper.make_tensor_value_info(HEAD_MAPS, onnx.TensorProto.FLOAT,
                                                            ["batch", head.maps.out_channels, None, None]))


def add_domain_guard(model: onnx.ModelProto, guard: DomainGuard, stages: list[str]) -> None:
    """Append the guard's distance (see :mod:`trainer.domain_guard`) on :func:`guard_features`."""
    b = _Builder(model, "/domain_guard")
    means = [b.node("Flatten", [b.node("GlobalAveragePool", [stage], f"mean{i}")], f"flat{i}", axis=1)
             for i, stage in enumerate(stages)]
    features = b.node("Concat", [*means, POOLED], "features", axis=1)
    centred = b.node("Sub", [b.node("Unsqueeze", [features, b.constant("axis1", np.array([1], np.int64))], "x"),
                             b.constant("means", guard.means[None].astype(np.float32))], "centred")  # N x K x D
    projected = b.node("MatMul", [centred, b.constant("directions", guard.directions.astype(np.float32))], "proj")
    squared = b.node("Mul", [projected, projected], "proj_sq")
    last = b.constant("axis2", np.array([2], np.int64))
    inside = b.node("ReduceSum", [b.node("Div", [squared, b.constant("variances", guard.variances.astype(np.float32))],
                                         "whitened"), last], "inside", keepdims=0)
    total = b.node("ReduceSum", [b.node("Mul", [centred, centred], "centred_sq"), last], "total", keepdims=0)
    outside = b.node("Relu", [b.node("Sub", [total, b.node("ReduceSum", [squared, last], "proj_total", keepdims=0)],
                                     "residual")], "residual_pos")
    distance = b.node("Add", [inside, b.node("Div", [outside, b.constant(
        "residual_variance", np.array(guard.residual_variance, np.float32))], "outside")], "d2")
    nearest = b.node("ReduceMin", [distance], "nearest", axes=[1], keepdims=0)
    scale = np.array(1.0 / (guard.dims * guard.threshold**2), np.float32)
    score = b.node("Sqrt", [b.node("Mul", [nearest, b.constant("scale", scale)], "scaled")], "score")
    model.graph.node.append(helper.make_node("Identity", [score], [DOMAIN_SCORE], name=f"name_{DOMAIN_SCORE}"))
    model.graph.output.append(helper.make_tensor_value_info(DOMAIN_SCORE, onnx.TensorProto.FLOAT, ["batch"]))
