"""The domain guard: how far a picture's pooled features lie from the training pictures'.

A class-conditional Mahalanobis distance (Lee et al. 2018, "A simple unified framework for
detecting out-of-distribution samples") with one covariance shared by the classes, made compact
the way probabilistic PCA is (Tipping and Bishop 1999): the ``rank`` leading directions of the
within-class covariance keep their own variances, the rest share their mean variance. For a
picture's pooled features ``x`` and class means ``mu_c``:

    d_c(x)^2 = sum_i (u_i . (x - mu_c))^2 / lambda_i + (|x - mu_c|^2 - sum_i (u_i . (x - mu_c))^2) / sigma^2

and the guard's raw distance is ``min_c d_c / sqrt(dims)``. The exported graph computes it
(:mod:`trainer.graft`); the threshold is chosen on pictures the guard was not fitted on, for a
stated false-flag rate, and the graph returns ``domain_score = distance / threshold``: a picture
is in domain when its score is at most 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DomainGuard:
    """The fitted statistics (float32) and the chosen threshold on the raw distance."""

    means: np.ndarray  # K x D class means
    directions: np.ndarray  # D x r, orthonormal columns
    variances: np.ndarray  # r leading within-class variances
    residual_variance: float  # the mean of the other variances
    threshold: float = 1.0

    @property
    def dims(self) -> int:
        return int(self.means.shape[1])

    def distance(self, pooled: np.ndarray) -> np.ndarray:
        """The raw distance (N) of pooled features (N x D) to the nearest class."""
        x = pooled.astype(np.float64)
        best = np.full(len(x), np.inf)
        for mean in self.means.astype(np.float64):
            centred = x - mean
            projected = centred @ self.directions
            inside = (projected**2 / self.variances).sum(axis=1)
            outside = np.maximum((centred**2).sum(axis=1) - (projected**2).sum(axis=1), 0.0)
            best = np.minimum(best, inside + outside / self.residual_variance)
        return np.sqrt(best / self.dims)

    def score(self, pooled: np.ndarray) -> np.ndarray:
        """``distance / threshold``: at most 1 in domain."""
        return self.distance(pooled) / self.threshold


def fit_guard(pooled: np.ndarray, labels: np.ndarray, classes: int, rank: int = 128,
              shrinkage: float = 0.05) -> DomainGuard:
    """Fit means and the compact shared covariance on training features (threshold left at 1)."""
    x = pooled.astype(np.float64)
    means = np.stack([x[labels == c].mean(axis=0) for c in range(classes)])
    centred = x - means[labels]
    covariance = centred.T @ centred / max(1, len(x) - classes)
    average = float(np.trace(covariance)) / covariance.shape[0]
    covariance = (1 - shrinkage) * covariance + shrinkage * average * np.eye(covariance.shape[0])
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    rank = min(rank, len(eigenvalues) - 1)
    return DomainGuard(
        means=means.astype(np.float32),
        directions=eigenvectors[:, :rank].astype(np.float32),
        variances=eigenvalues[:rank].astype(np.float32),
        residual_variance=float(eigenvalues[rank:].mean()),
    )


def threshold_for(distances: np.ndarray, false_flag_rate: float) -> float:
    """The distance that flags ``false_flag_rate`` of in-domain pictures (their upper quantile)."""
    if not 0 < false_flag_rate < 1:
        raise ValueError(f"false_flag_rate must lie in (0, 1), got {false_flag_rate}")
    return float(np.quantile(distances, 1.0 - false_flag_rate, method="higher"))  # flags at most the rate
