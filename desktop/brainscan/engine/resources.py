"""Where the shipped resources (default model, sample images, icons) are found."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_MODEL_NAME = "brainscan-4class-lite0.onnx"


def resources_dir() -> Path:
    """The ``resources/`` folder: ``$BRAINSCAN_RESOURCES``, the frozen bundle's, or the repository's."""
    override = os.environ.get("BRAINSCAN_RESOURCES")
    if override:
        return Path(override)
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parents[3] / "resources"


def default_model_path() -> Path:
    return resources_dir() / "models" / DEFAULT_MODEL_NAME


def samples_dir() -> Path:
    return resources_dir() / "samples"
