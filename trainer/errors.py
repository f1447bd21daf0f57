"""The trainer's user-facing errors (they derive from brainscan's one base class)."""

from __future__ import annotations

from brainscan.engine.errors import BrainscanError


class TrainerError(BrainscanError):
    """Something a person running the trainer can fix: data, weights, a checkpoint, an export."""


class WeightsError(TrainerError):
    """Pretrained weights that are missing or do not fit the architecture."""


class ExportCheckError(TrainerError):
    """An exported ONNX model that does not reproduce the torch model."""
