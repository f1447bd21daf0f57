"""ROC AUC, weighted F1 and calibration (temperature scaling, ECE, NLL, Brier) on known cases."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from trainer.calibration import brier, calibrate, ece, fit_temperature, nll, softmax
from trainer.metrics import binary_auc, classification_report, roc_auc_per_class, roc_curve

pytestmark = pytest.mark.trainer


def test_auc_counts_ties_as_half_and_matches_scikit_learn():
    assert binary_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert binary_auc([1, 0], [0.5, 0.5]) == 0.5
    assert np.isnan(binary_auc([1, 1], [0.2, 0.3]))
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(labels * 0.3 + rng.random(300), 1)  # many ties
    assert binary_auc(labels, scores) == pytest.approx(sklearn.roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr = roc_curve(labels, scores)
    ref_fpr, ref_tpr, _ = sklearn.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)


def test_per_class_auc_and_the_tumour_summary():
    probabilities = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])
    result = roc_auc_per_class(np.arange(4), probabilities, ("glioma", "meningioma", "notumor", "pituitary"))
    assert result["per_class"] == {"glioma": 1.0, "meningioma": 1.0, "notumor": 1.0, "pituitary": 1.0}
    assert result["macro"] == 1.0 and result["tumour_vs_notumor"] == 1.0


def test_weighted_f1_weights_classes_by_support():
    labels = np.array([0, 0, 0, 0, 1])
    predictions = np.array([0, 0, 0, 0, 0])
    report = classification_report(labels, predictions, ("a", "b"))
    f1_a = 2 * 0.8 * 1.0 / 1.8
    assert report["macro_f1"] == pytest.approx(f1_a / 2, abs=1e-4)
    assert report["weighted_f1"] == pytest.approx(0.8 * f1_a, abs=1e-4)


def _sampled(temperature: float, n: int = 4000, seed: int = 0):
    """Logits whose calibrated temperature is known: labels drawn from softmax(z), logits z * temperature."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, 4))
    p = softmax(z)
    labels = np.array([rng.choice(4, p=row) for row in p])
    return z * temperature, labels


def test_temperature_scaling_recovers_a_known_temperature_and_improves_the_scores():
    logits, labels = _sampled(2.5)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.5, rel=0.08)
    groups = np.arange(len(labels)) // 3
    result = calibrate(logits, labels, groups)
    before, after = result["before"], result["after"]
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] and after["brier"] < before["brier"]
    assert after["accuracy"] == before["accuracy"]  # a temperature never changes the top class
    cross = result["after_cross_fitted"]
    assert len(cross["temperatures"]) == 2 and cross["ece"] < before["ece"]


def test_scores_on_hand_made_cases():
    calibrated, labels = _sampled(1.0, seed=1)
    assert ece(softmax(calibrated), labels) < 0.03
    one_hot = np.eye(3)[[0, 1, 2]]
    assert brier(one_hot, np.array([0, 1, 2])) == 0.0
    assert brier(one_hot, np.array([1, 2, 0])) == 2.0
    assert nll(np.zeros((2, 4)), np.array([0, 3])) == pytest.approx(np.log(4))
