"""Export to ONNX with the model contract inside, and prove the file reproduces torch.

The graph has one input ``input`` (N x 3 x H x W, dynamic batch) and three outputs named by
:mod:`brainscan.engine.model.contract`: ``logits``, ``features`` and ``cam_weight``. The contract is
written as JSON into the ONNX ``metadata_props`` under :data:`METADATA_KEY`. The check runs the
file in onnxruntime on pictures prepared by the engine's own preprocessing, compares its logits
and probabilities with torch's, and applies the engine's :func:`check_graph`.
:func:`export_run` is ``python -m trainer export``: a run folder's checkpoint to a checked file.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from brainscan.engine.errors import BrainscanError
from brainscan.engine.model.contract import (
    CAM_WEIGHT,
    FEATURES,
    LOGITS,
    METADATA_KEY,
    ModelContract,
    TensorSpec,
    check_graph,
)
from brainscan.engine.model.integrity import stamp_contract
from brainscan.engine.model.preprocess import to_model_input
from trainer.config import FitConfig
from trainer.data import list_samples, read_picture
from trainer.errors import ExportCheckError
from trainer.graph_metrics import metrics_for_graph, read_metrics
from trainer.model import ExportWrapper, with_fixed_padding
from trainer.run_folder import load_checkpoint

INPUT = "input"
OUTPUTS = (LOGITS, FEATURES, CAM_WEIGHT)
DEFAULT_OPSET = 17
LOGIT_TOLERANCE = 1e-3


def export_onnx(model: nn.Module, contract: ModelContract, path: str | Path, *, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` to ``path`` as ONNX with ``contract`` in its metadata.

    The model is copied in eval mode with its 'SAME' padding fixed for ``contract.input_size``,
    so only the batch axis is dynamic. The contract's ``views_in_graph`` (``hflip``) are built
    into the graph (:class:`~trainer.model.ExportWrapper`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(with_fixed_padding(model, tuple(contract.input_size)), contract.views_in_graph).eval()
    example = torch.zeros(2, 3, *contract.input_size)
    batch = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_axes={INPUT: batch, LOGITS: batch, FEATURES: batch},
            do_constant_folding=True,
        )
    graph_model = onnx.load(str(path))
    _name_outputs(graph_model.graph)
    _set_contract(graph_model, contract)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
    return path


def _name_outputs(graph: onnx.GraphProto) -> None:
    """Give the outputs their contract names (the exporter renames a constant-folded output)."""
    for output, wanted in zip(graph.output, OUTPUTS, strict=True):
        if output.name != wanted:
            graph.node.append(onnx.helper.make_node("Identity", [output.name], [wanted], name=f"name_{wanted}"))
            output.name = wanted


def _set_contract(graph_model: onnx.ModelProto, contract: ModelContract) -> None:
    """Store ``contract`` with the checksum of the graph's weights (the engine verifies it on open)."""
    kept = [(p.key, p.value) for p in graph_model.metadata_props if p.key != METADATA_KEY]
    del graph_model.metadata_props[:]
    for key, value in [*kept, (METADATA_KEY, contract.to_json())]:
        graph_model.metadata_props.add(key=key, value=value)
    stamp_contract(graph_model)


def write_contract(path: str | Path, contract: ModelContract) -> None:
    """Replace the contract stored in an existing ONNX file (with the checksum of its weights)."""
    graph_model = onnx.load(str(path))
    _set_contract(graph_model, contract)
    onnx.save(graph_model, str(path))


def open_session(path: str | Path, threads: int = 2) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_specs(session: ort.InferenceSession) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs as the engine's :class:`TensorSpec`."""
    return (
        [TensorSpec(i.name, list(i.shape)) for i in session.get_inputs()],
        [TensorSpec(o.name, list(o.shape)) for o in session.get_outputs()],
    )


def read_contract(session: ort.InferenceSession, source: str = "model") -> ModelContract:
    return ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map, source=source)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class ExportCheck:
    """How closely the ONNX file reproduces torch on real pictures."""

    images: int
    max_logit_diff: float
    max_probability_diff: float
    same_prediction: float  # fraction of pictures with the same top class
    max_feature_diff: float
    max_cam_weight_diff: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def check_export(
    path: str | Path,
    model: nn.Module,
    pictures: Sequence[np.ndarray],
    *,
    tolerance: float = LOGIT_TOLERANCE,
    batch_size: int = 8,
) -> ExportCheck:
    """Run the ONNX file and ``model`` on ``pictures`` through the engine's preprocessing.

    The contract is read back from the file and checked against the graph (the engine's
    :func:`check_graph`); the input tensor comes from :func:`to_model_input`, so what is
    compared is what the application will compute.

    Raises
    ------
    ModelError
        When the contract does not match the graph.
    ExportCheckError
        When any logit differs from torch's by ``tolerance`` or more.
    """
    session = open_session(path)
    contract = read_contract(session, source=str(path))
    inputs, outputs = session_specs(session)
    check_graph(contract, inputs, outputs, source=str(path))
    model = model.eval()
    reference = ExportWrapper(model, contract.views_in_graph).eval()
    logit_diff = prob_diff = feature_diff = weight_diff = 0.0
    agree = 0
    for start in range(0, len(pictures), batch_size):
        tensor = to_model_input(list(pictures[start : start + batch_size]), contract)
        logits, features, weight = session.run(list(OUTPUTS), {INPUT: tensor})
        with torch.no_grad():
            ref_features = reference.forward_views(torch.from_numpy(tensor))
            ref_logits = model.forward_head(ref_features).numpy()
        ref_weight = model.get_classifier().weight.detach().numpy()
        logit_diff = max(logit_diff, float(np.abs(logits - ref_logits).max()))
        prob_diff = max(prob_diff, float(np.abs(_softmax(logits) - _softmax(ref_logits)).max()))
        feature_diff = max(feature_diff, float(np.abs(features - ref_features.numpy()).max()))
        weight_diff = max(weight_diff, float(np.abs(weight - ref_weight).max()))
        agree += int((logits.argmax(1) == ref_logits.argmax(1)).sum())
    result = ExportCheck(len(pictures), logit_diff, prob_diff, agree / max(1, len(pictures)), feature_diff, weight_diff)
    if not logit_diff < tolerance:
        raise ExportCheckError(
            f"{path}: onnxruntime's logits differ from torch's by {logit_diff:.3g} (tolerance {tolerance}); "
            "the export is not faithful, do not ship it"
        )
    return result


def check_pictures(config: FitConfig, count: int, seed: int = 0, data: Sequence[str] | None = None) -> list[np.ndarray]:
    """``count`` real pictures spread over the classes, decoded but not resized (broken ones left out)."""
    samples = list_samples(data or config.data, config.classes, task=config.task, aliases=config.label_aliases)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(samples), size=min(count, len(samples)), replace=False))
    pictures = []
    for i in chosen:
        try:
            pictures.append(read_picture(samples[i].path))
        except BrainscanError:
            continue
    return pictures


def export_run(
    run: Path, out: Path, *, opset: int = 17, check_images: int = 16, data: Sequence[str] | None = None,
    views_in_graph: Sequence[str] = (), metrics: Path | None = None,
) -> dict:
    """Export a run's checkpoint and check the file; returns the check's numbers.

    ``views_in_graph`` builds test-time views into the graph; ``metrics`` (an ``evaluate``
    metrics.json of such a graph) replaces the contract's single-view metrics and temperature.
    """
    model, contract, config = load_checkpoint(run)
    contract = contract.with_updates(views_in_graph=tuple(views_in_graph))
    if metrics is not None:
        contract = contract.with_updates(metrics=metrics_for_graph(contract, read_metrics(metrics), str(metrics)))
    elif views_in_graph:
        validation = dict(contract.metrics.get("validation") or {})
        if validation:
            validation["views"] = (
                "these scores and the temperature are of single pictures; this graph averages "
                f"{', '.join(views_in_graph)} (score it with evaluate --onnx and export again with --metrics)"
            )
            contract = contract.with_updates(metrics={**contract.metrics, "validation": validation})
    export_onnx(model, contract, out, opset=opset)
    pictures = check_pictures(config, check_images, config.seed, data)
    result = check_export(out, model, pictures).as_dict()
    result["size_mb"] = round(out.stat().st_size / 1e6, 2)
    return result
