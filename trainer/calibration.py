"""Calibration: temperature scaling fitted on validation, and ECE, NLL and Brier before and after.

Temperature scaling divides the logits by one number ``T`` fitted to minimise the negative
log-likelihood of held-out labels (Guo et al. 2017). It changes confidences, never the predicted
class. The fit here is a bounded golden-section search over ``log T``: deterministic, pure numpy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true class."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_norm - shifted[np.arange(len(labels)), labels]))


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over pictures of the squared distance to the one-hot label."""
    onehot = np.eye(probabilities.shape[1])[labels]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Per confidence bin (equal width on [0, 1]): count, mean confidence and accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    acc_sum = np.bincount(index, weights=correct.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "edges": edges.tolist(),
            "count": counts.tolist(),
            "confidence": np.where(counts > 0, conf_sum / np.maximum(counts, 1), np.nan).tolist(),
            "accuracy": np.where(counts > 0, acc_sum / np.maximum(counts, 1), np.nan).tolist(),
        }


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the count-weighted gap between confidence and accuracy per bin."""
    table = reliability(probabilities, labels, bins)
    counts = np.asarray(table["count"], dtype=float)
    gaps = np.abs(np.nan_to_num(np.asarray(table["confidence"])) - np.nan_to_num(np.asarray(table["accuracy"])))
    return float((counts * gaps).sum() / max(1.0, counts.sum()))


def calibration_scores(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> dict[str, float]:
    probabilities = softmax(logits, temperature)
    return {
        "ece": round(ece(probabilities, labels), 4),
        "nll": round(nll(logits, labels, temperature), 4),
        "brier": round(brier(probabilities, labels), 4),
        "mean_confidence": round(float(probabilities.max(axis=1).mean()), 4),
        "accuracy": round(float((probabilities.argmax(axis=1) == labels).mean()), 4),
    }


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, *, low: float = 0.05, high: float = 20.0, tolerance: float = 1e-4
) -> float:
    """The temperature minimising the NLL of ``labels`` (golden-section search over ``log T``)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    while b - a > tolerance:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return float(math.exp((a + b) / 2))


def cross_fitted(logits: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Calibration measured honestly: T fitted on one half of the groups, scored on the other, both ways.

    Fitting and scoring ``T`` on the same pictures flatters the "after" figures slightly; this
    two-fold estimate does not (near-duplicate groups stay on one side).
    """
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    fold_of_group = dict(zip(rng.permutation(unique).tolist(), np.arange(len(unique)) % 2, strict=True))
    fold = np.array([fold_of_group[g] for g in groups.tolist()])
    probabilities = np.zeros(logits.shape, dtype=np.float64)
    temperatures = []
    for k in (0, 1):
        fit_on, score_on = fold != k, fold == k
        if fit_on.sum() == 0 or score_on.sum() == 0:
            return {}
        t = fit_temperature(logits[fit_on], labels[fit_on])
        temperatures.append(round(t, 4))
        probabilities[score_on] = softmax(logits[score_on], t)
    per_picture_t = np.where(fold == 0, temperatures[0], temperatures[1])
    scaled = logits / per_picture_t[:, None]
    return {
        "temperatures": temperatures,
        "ece": round(ece(probabilities, labels), 4),
        "nll": round(nll(scaled, labels), 4),
        "brier": round(brier(probabilities, labels), 4),
        "method": "two folds of near-duplicate groups: T fitted on one, scored on the other",
    }


def calibrate(logits: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> dict[str, Any]:
    """Fit ``T`` on these (validation) logits; the scores before and after, and a cross-fitted check."""
    temperature = fit_temperature(logits, labels)
    result: dict[str, Any] = {
        "temperature": round(temperature, 4),
        "method": "temperature scaling (one scalar dividing the logits), NLL minimised on the validation split",
        "ece_bins": ECE_BINS,
        "before": calibration_scores(logits, labels, 1.0),
        "after": calibration_scores(logits, labels, temperature),
    }
    if groups is not None:
        check = cross_fitted(logits, labels, groups)
        if check:
            result["after_cross_fitted"] = check
    return result
