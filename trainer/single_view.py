"""One view out of a model that averages the mirror inside its graph: what the mirror costs and is worth (issue 14).

A model exported with ``views_in_graph: ["hflip"]`` runs its backbone on a batch of twice the pictures (the
input ``Concat`` with its flipped copy) and averages the two halves wherever they meet: the last feature maps
(``features``, then pooled into ``logits``) and the stage maps the explanation head and the domain guard tap.
Each such average is ``Mul(Add(Slice(T, first half), Slice(Slice(T, second half), flipped)), 0.5)``.

:func:`single_view` rewires every such average to ``T`` itself, feeds the backbone the input alone, prunes what
no output needs any longer and records ``views_in_graph: []`` with a fresh weights checksum. The weights, the
outputs and the rest of the contract are those of the model it came from, so the two can be compared exactly:
the mirror model's ``logits`` are the mean of the one-view logits of the picture and of its mirror (checked by
:func:`check_single_view` and the tests). The explanation head's own mirror (it averages its maps with those of
the mirrored taps) is part of the head and is kept.

    python -m trainer single-view resources/models/brainscan-4class-lite0.onnx --out one-view.onnx
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from brainscan.engine.model.contract import METADATA_KEY
from brainscan.engine.model.integrity import stamp_contract

from .errors import TrainerError


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in graph.node for output in node.output}


def _constant_value(graph: onnx.GraphProto, producers: dict[str, onnx.NodeProto], name: str) -> np.ndarray | None:
    for initializer in graph.initializer:
        if initializer.name == name:
            return numpy_helper.to_array(initializer)
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _view_average_source(graph: onnx.GraphProto, producers: dict[str, onnx.NodeProto],
                         mul: onnx.NodeProto) -> str | None:
    """``T`` when ``mul`` is ``0.5 * (Slice(T) + Slice(Slice(T)))`` (the average of a tensor's two views)."""
    if mul.op_type != "Mul":
        return None
    for add_name, half_name in (mul.input, mul.input[::-1]):
        half = _constant_value(graph, producers, half_name)
        add = producers.get(add_name)
        if half is None or half.size != 1 or float(half.reshape(-1)[0]) != 0.5 or add is None or add.op_type != "Add":
            continue
        first, flipped = producers.get(add.input[0]), producers.get(add.input[1])
        if first is None or flipped is None or first.op_type != "Slice" or flipped.op_type != "Slice":
            continue
        second = producers.get(flipped.input[0])
        if second is not None and second.op_type == "Slice" and second.input[0] == first.input[0]:
            return first.input[0]
    return None


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initializers no graph output depends on."""
    producers = _producers(graph)
    needed: set[str] = set()
    stack = [output.name for output in graph.output]
    kept: set[int] = set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producers.get(name)
        if node is not None and id(node) not in kept:
            kept.add(id(node))
            stack.extend(i for i in node.input if i)
    nodes = [node for node in graph.node if id(node) in kept]
    del graph.node[:]
    graph.node.extend(nodes)
    initializers = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def single_view(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The one-view twin of a ``views_in_graph: ["hflip"]`` model, and how many view averages were rewired."""
    contract = next((json.loads(p.value) for p in model.metadata_props if p.key == METADATA_KEY), None)
    if contract is None:
        raise TrainerError("the model has no brainscan contract; export it with `python -m trainer export`")
    if list(contract.get("views_in_graph") or []) != ["hflip"]:
        raise TrainerError(f"the model averages no mirror in its graph (views_in_graph: "
                           f"{contract.get('views_in_graph') or []}); it is one view already")
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    graph = twin.graph
    producers = _producers(graph)
    input_name = graph.input[0].name
    rewired = 0
    for index, node in enumerate(list(graph.node)):
        if node.op_type == "Concat" and node.input and node.input[0] == input_name:
            mirror = producers.get(node.input[1])
            if mirror is not None and mirror.op_type == "Slice" and mirror.input[0] == input_name:
                graph.node[index].CopyFrom(helper.make_node("Identity", [input_name], list(node.output), name=node.name))
                continue
        source = _view_average_source(graph, producers, node)
        if source is not None:
            graph.node[index].CopyFrom(helper.make_node("Identity", [source], list(node.output), name=node.name))
            rewired += 1
    if rewired == 0:
        raise TrainerError("no average of two views found in the graph; it was not exported by this trainer")
    _prune(graph)
    contract["views_in_graph"] = []
    for prop in twin.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps(contract, indent=None, sort_keys=True)
    stamp_contract(twin)
    onnx.checker.check_model(twin)
    return twin, rewired


def check_single_view(mirrored: Path, one_view: Path, pictures: np.ndarray) -> float:
    """The largest difference between the mirror model's logits and the mean of the one-view logits of each
    picture and of its mirror (float32 arithmetic: about 1e-5)."""
    import onnxruntime as ort

    def logits(path: Path, batch: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {session.get_inputs()[0].name: batch})[0]

    both = logits(mirrored, pictures)
    single = (logits(one_view, pictures) + logits(one_view, np.ascontiguousarray(pictures[..., ::-1]))) / 2
    return float(np.max(np.abs(both - single)))


def write_single_view(source: Path, out: Path) -> int:
    """Write the one-view twin of ``source`` to ``out``; the number of view averages rewired."""
    twin, rewired = single_view(onnx.load(str(source)))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(twin, str(out))
    return rewired
