"""Classification metrics for the model card: accuracy, per-class P/R/F1, confusion matrix, ROC AUC.

Pure numpy, so the same numbers come out whether the scores are torch's or onnxruntime's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with true classes in rows and predicted classes in columns."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def classification_report(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """A JSON-ready summary: accuracy, macro and weighted F1, per-class precision/recall/F1/support, matrix."""
    matrix = confusion_matrix(labels, predictions, len(classes))
    true_positive = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    weights = actual / max(1.0, actual.sum())
    seen = (actual > 0) | (predicted > 0)  # as scikit-learn: classes neither present nor predicted do not count
    return {
        "images": int(matrix.sum()),
        "accuracy": round(float(true_positive.sum() / max(1, matrix.sum())), 4),
        "macro_f1": round(float(f1[seen].mean()) if seen.any() else 0.0, 4),
        "weighted_f1": round(float((f1 * weights).sum()), 4),
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(actual[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_axes": "rows: true class, columns: predicted class, in the order of classes",
    }


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=float)
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic; ties count one half); NaN without both kinds."""
    positive = np.asarray(positive, dtype=bool)
    count_pos, count_neg = int(positive.sum()), int((~positive).sum())
    if count_pos == 0 or count_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, dtype=float))
    return float((ranks[positive].sum() - count_pos * (count_pos + 1) / 2) / (count_pos * count_neg))


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="mergesort")
    sorted_scores = np.asarray(scores, dtype=float)[order]
    hits = positive[order]
    last_of_run = np.concatenate([np.flatnonzero(np.diff(sorted_scores)), [len(hits) - 1]])
    tp = np.cumsum(hits)[last_of_run]
    fp = (last_of_run + 1) - tp
    tpr = np.concatenate([[0.0], tp / max(1, positive.sum())])
    fpr = np.concatenate([[0.0], fp / max(1, (~positive).sum())])
    return fpr, tpr


def roc_auc_per_class(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """One-vs-rest ROC AUC of every class, their macro mean, and for 'any tumour' when it applies."""
    labels = np.asarray(labels)
    per_class = {name: round(binary_auc(labels == i, probabilities[:, i]), 4) for i, name in enumerate(classes)}
    finite = [v for v in per_class.values() if np.isfinite(v)]
    result: dict[str, Any] = {
        "per_class": per_class,
        "macro": round(float(np.mean(finite)), 4) if finite else float("nan"),
        "method": "one-vs-rest on the softmax probability of each class",
    }
    if "notumor" in classes and len(classes) > 2:
        negative = list(classes).index("notumor")
        result["tumour_vs_notumor"] = round(binary_auc(labels != negative, 1.0 - probabilities[:, negative]), 4)
    return result


WILSON_Z = 1.959963984540054  # the two-sided 95 % normal quantile


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default); (NaN, NaN) without trials."""
    if trials <= 0:
        return float("nan"), float("nan")
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def binary_screening_metrics(tumour: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Tumour against no tumour: counts, sensitivity and specificity (with 95 % Wilson intervals), balanced
    accuracy at the given decisions, and the ROC AUC of ``scores`` (the tumour probability)."""
    tumour, predicted = np.asarray(tumour, dtype=bool), np.asarray(predicted, dtype=bool)
    tp, fn = int((tumour & predicted).sum()), int((tumour & ~predicted).sum())
    tn, fp = int((~tumour & ~predicted).sum()), int((~tumour & predicted).sum())
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "images": len(tumour),
        "counts": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
        "sensitivity": round(sensitivity, 4),
        "sensitivity_ci95": [round(v, 4) for v in wilson_interval(tp, tp + fn)],
        "specificity": round(specificity, 4),
        "specificity_ci95": [round(v, 4) for v in wilson_interval(tn, tn + fp)],
        "balanced_accuracy": round((sensitivity + specificity) / 2, 4),
        "accuracy": round(_ratio(tp + tn, len(tumour)), 4),
        "roc_auc": round(binary_auc(tumour, scores), 4),
        "interval": "95 % Wilson score interval",
    }
