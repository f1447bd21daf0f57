"""Metrics of an exported graph that averages views: scored on that graph, then carried into its contract.

A run's checkpoint holds metrics measured on single pictures. A graph exported with
``views_in_graph`` (``hflip``) decides from the mean of two views, so those metrics, and above
all the temperature, are not its own. ``python -m trainer evaluate --onnx GRAPH --split
validation`` scores such a graph on the validation split and fits its temperature;
``python -m trainer export --views-in-graph hflip --metrics report/metrics.json`` then writes
those figures into the contract, after checking they were measured on the same data and with
the same views. For a refit, the graph scored is the validated twin's, exported with the same
views; the scope says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from brainscan.engine.model.contract import ModelContract
from trainer.errors import TrainerError

KEPT = ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "confusion_matrix_axes", "images",
        "roc_auc")


def read_metrics(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"{path}: no such metrics file; write one with `python -m trainer evaluate --onnx GRAPH`")
    return json.loads(path.read_text())


def metrics_for_graph(contract: ModelContract, metrics: dict[str, Any], source: str) -> dict[str, Any]:
    """The contract's new ``metrics``: the graph's scores from an ``evaluate`` metrics.json.

    Raises
    ------
    TrainerError
        When the scores were not taken on the validation split, with other views than the
        contract's, or on other data than the model was trained on.
    """
    if metrics.get("split") != "validation":
        raise TrainerError(f"{source}: scored on the {metrics.get('split')!r} split; the contract carries validation "
                           "scores (evaluate --split validation)")
    views = list(metrics.get("views_in_graph") or []) + list(metrics.get("test_time_augmentation") or [])
    wanted = list(contract.views_in_graph) + list(contract.test_time_augmentation)
    if sorted(views) != sorted(wanted):
        raise TrainerError(f"{source}: scored with views {views or 'none'}, but this graph averages "
                           f"{wanted or 'none'}; score a graph exported with the same views")
    trained_on = contract.training.get("data_fingerprint")
    if trained_on and metrics.get("data_fingerprint") != trained_on:
        raise TrainerError(f"{source}: scored on data {metrics.get('data_fingerprint')}, but the model was trained "
                           f"on {trained_on}")
    previous = dict(contract.metrics)
    refit = previous.get("refit")
    scored = metrics.get("run") or metrics.get("model")
    scope = (
        f"measured on the graph as exported (views averaged inside it: {', '.join(wanted) or 'none'}) by "
        f"`python -m trainer evaluate --onnx` on the validation split of run {scored}"
    )
    if refit:
        scope += (
            f"; this model is that run's refit on all {refit.get('images')} pictures, those held-out ones included, "
            "so it has no held-out score of its own"
        )
    validation = {"scope": scope, **{k: metrics[k] for k in KEPT if k in metrics},
                  "split": metrics.get("split_description", "")}
    caveat = (previous.get("validation") or {}).get("caveat")
    if caveat:
        validation["caveat"] = caveat
    single = previous.get("validation") or {}
    out = {
        "validation": validation,
        "calibration": {**metrics["calibration"], "fitted_on": f"the validation split of run {scored}, on this graph's "
                        "averaged logits"},
        "single_view_validation": {k: single[k] for k in ("accuracy", "macro_f1") if k in single},
    }
    for key in ("stage1_validation", "refit", "quantization"):
        if key in previous:
            out[key] = previous[key]
    return out
