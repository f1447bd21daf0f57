"""The brainscan trainer: fit an EfficientNet on brain-MRI slices and export it to ONNX.

Runs headless (no Qt) and is the only part of the project that imports torch and timm. It
writes the :class:`brainscan.engine.model.contract.ModelContract` into every model it exports.
"""

from __future__ import annotations

from trainer.torch_compat import ensure_torchvision

# Before anything imports timm (which imports torchvision).
TORCHVISION_MODE = ensure_torchvision()
