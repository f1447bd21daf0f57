"""The report's figures as PNG: confusion matrix, ROC curves, reliability diagram, training curves,
and picture grids (mistakes and per-class examples with their Grad-CAMs).

matplotlib runs on its non-interactive Agg backend; the picture grids are drawn in numpy with the
engine's own overlay functions, so a CAM here looks exactly as it does in the application.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from brainscan.engine.model.overlay import blend, caption
from trainer.metrics import roc_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def confusion_png(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> Path:
    """Counts, coloured by the share of each true class (row)."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(counts[i, j])}\n{shares[i, j]:.1%}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix (share of each true class)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def roc_png(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], aucs: dict[str, float],
            path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, name in enumerate(classes):
        fpr, tpr = roc_curve(labels == i, probabilities[:, i])
        ax.plot(fpr, tpr, label=f"{name} (AUC {aucs.get(name, float('nan')):.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one class against the rest")
    ax.legend(loc="lower right")
    ax.set_xlim(-0.01, 1)
    ax.set_ylim(0, 1.01)
    return _save(fig, path)


def reliability_png(before: dict[str, list[float]], after: dict[str, list[float]], temperature: float,
                    scores: dict[str, dict[str, float]], path: Path) -> Path:
    """Accuracy against confidence per bin, before and after temperature scaling."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for ax, table, label in ((axes[0], before, "before"), (axes[1], after, f"after (T = {temperature:.3f})")):
        edges = np.asarray(table["edges"])
        centres = (edges[:-1] + edges[1:]) / 2
        accuracy = np.nan_to_num(np.asarray(table["accuracy"], dtype=float))
        confidence = np.asarray(table["confidence"], dtype=float)
        counts = np.asarray(table["count"])
        ax.bar(centres, accuracy, width=edges[1] - edges[0], edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot(centres[counts > 0], confidence[counts > 0], "o", color="crimson", label="mean confidence")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        s = scores["before" if label == "before" else "after"]
        ax.set_title(f"{label}: ECE {s['ece']:.4f}, NLL {s['nll']:.4f}, Brier {s['brier']:.4f}", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left")
    return _save(fig, path)


def curves_png(history: list[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in (("train_loss", "-o"), ("val_loss", "-s")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            axes[0].plot(epochs, values, style, label=key.replace("_", " "))
    for key, style in (("train_accuracy", "-o"), ("val_accuracy", "-s")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            axes[1].plot(epochs, values, style, label=key.replace("_", " "))
    axes[0].set_title("loss (training with label smoothing and augmentation)", fontsize=9)
    axes[1].set_title("accuracy", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch (stage 2)")
        ax.legend()
        ax.grid(alpha=0.3)
    return _save(fig, path)


# -- picture grids -----------------------------------------------------------------------------
def tile(picture: np.ndarray, heat: np.ndarray | None, text: str, size: int) -> np.ndarray:
    """One picture (optionally with its heat map laid over it), resized to ``size`` and captioned."""
    shown = blend(picture, heat, opacity=0.45) if heat is not None else picture
    if shown.shape[:2] != (size, size):
        shown = cv2.resize(shown, (size, size), interpolation=cv2.INTER_AREA)
    return caption(shown, text)


def grid(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Tiles (all the same size) in rows, on a dark background."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(r) for r in rows)
    canvas = np.full(
        (len(rows) * (height + gap) + gap, columns * (width + gap) + gap, 3), 24, dtype=np.uint8
    )
    for r, row in enumerate(rows):
        for c, item in enumerate(row):
            top, left = gap + r * (height + gap), gap + c * (width + gap)
            canvas[top : top + height, left : left + width] = item
    return canvas


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"{path}: could not encode PNG")
    path.write_bytes(encoded.tobytes())
    return path
