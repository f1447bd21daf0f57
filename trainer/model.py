"""The networks: a timm EfficientNet or a small CNN baseline, and the export wrapper for Grad-CAM.

The exported graph has three outputs (names from :mod:`brainscan.engine.model.contract`):
``logits`` (N x K), ``features`` (N x C x h x w, the last feature maps before global average
pooling) and ``cam_weight`` (K x C, the linear classifier's weight). Because the head is
GAP + linear, the engine computes Grad-CAM and its variants exactly from these in numpy.
"""

from __future__ import annotations

import copy

import timm
import torch
import torch.nn.functional as F
from timm.layers.conv2d_same import Conv2dSame
from timm.layers.padding import pad_same_arg
from torch import nn

from brainscan.engine.model.contract import TEST_TIME_AUGMENTATIONS
from trainer.errors import TrainerError, WeightsError
from trainer.weights import OFFLINE_ARCHITECTURES, WEIGHT_SOURCES, load_offline_imagenet

SMALL_CNN = "smallcnn"


class SmallCNN(nn.Module):
    """The from-scratch baseline: five stride-2 stages of two 3 x 3 conv + BN + ReLU, GAP, linear.

    It has the interface the trainer and the export use on timm models (``forward_features``,
    ``forward_head``, ``get_classifier``, ``num_features``), so the same fit, export and exact
    Grad-CAM apply. About 1.9 M parameters (7.5 MB as ONNX); the maps before pooling are 1/32 of the input side.
    """

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (32, 64, 128, 192, 256), drop_rate: float = 0.2):
        super().__init__()
        stages = []
        channels = 3
        for width in widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
            )
            channels = width
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop_rate = drop_rate
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def create_model(architecture: str, num_classes: int, weights: str = "none", drop_rate: float = 0.2) -> nn.Module:
    """Build a classifier with ``num_classes`` outputs: a timm model, or :class:`SmallCNN`.

    Parameters
    ----------
    architecture:
        A timm model name (any EfficientNet: ``efficientnet_b0``, ``tf_efficientnet_lite0``, ...)
        or ``"smallcnn"``.
    weights:
        ``"offline"`` (ImageNet from the pip package, Lite0 only), ``"timm"`` (timm's download,
        needs internet) or ``"none"`` (random initialisation).
    """
    if weights not in WEIGHT_SOURCES:
        raise WeightsError(f"weights {weights!r} is not one of {WEIGHT_SOURCES}")
    if architecture == SMALL_CNN:
        if weights != "none":
            raise WeightsError(f"the {SMALL_CNN} baseline trains from scratch: use --weights none, not {weights!r}")
        return SmallCNN(num_classes, drop_rate=drop_rate)
    if weights == "offline" and architecture not in OFFLINE_ARCHITECTURES:
        raise WeightsError(
            f"offline weights exist only for {', '.join(OFFLINE_ARCHITECTURES)}, not {architecture!r}; "
            "use --weights timm (internet) or --weights none"
        )
    try:
        model = timm.create_model(
            architecture, pretrained=weights == "timm", num_classes=num_classes, drop_rate=drop_rate
        )
    except Exception as exc:  # timm's download failing (no internet), an unknown name
        hint = " (no internet? use --weights none, or offline for tf_efficientnet_lite0)" if weights == "timm" else ""
        raise WeightsError(
            f"cannot create {architecture!r} with weights={weights!r}: {type(exc).__name__}: {exc}{hint}"
        ) from exc
    if weights == "offline":
        load_offline_imagenet(model)
    if weights != "none":
        # A new head on a pretrained backbone starts at zero (uniform predictions): timm's default
        # initialisation of a 4-output layer gives logits of tens on ImageNet features.
        nn.init.zeros_(model.get_classifier().weight)
        nn.init.zeros_(model.get_classifier().bias)
    return model


def classifier_of(model: nn.Module) -> nn.Linear:
    """The final linear layer, refusing heads for which the engine's CAMs would not be exact."""
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise TrainerError(f"the model's classifier is {type(head).__name__}, not a linear layer after GAP")
    pool = getattr(model, "global_pool", None)
    if pool is not None and getattr(pool, "pool_type", "avg") != "avg":
        raise TrainerError(f"the model's pooling is {pool.pool_type!r}; exact CAMs need average pooling")
    return head


class ExportWrapper(nn.Module):
    """Forward returns ``(logits, features, cam_weight)`` for the ONNX export.

    With ``views=("hflip",)`` the picture and its mirror run as one batch; the mirror's feature
    maps are mirrored back and the two are averaged before the head. The head is global average
    pooling and a linear layer, so the logits are exactly the mean of the two views' logits, and
    the CAM of the averaged maps explains that averaged decision.
    """

    def __init__(self, model: nn.Module, views: tuple[str, ...] = ()) -> None:
        super().__init__()
        unknown = set(views) - set(TEST_TIME_AUGMENTATIONS)
        if unknown:
            raise ValueError(f"unknown views {sorted(unknown)}; known: {', '.join(TEST_TIME_AUGMENTATIONS)}")
        self.model = model
        self.mirrored = "hflip" in views
        classifier_of(model)

    def forward_views(self, x: torch.Tensor) -> torch.Tensor:
        if not self.mirrored:
            return self.model.forward_features(x)
        both = self.model.forward_features(torch.cat([x, torch.flip(x, dims=[3])]))
        plain, mirror = both[: x.shape[0]], both[x.shape[0] :]
        return (plain + torch.flip(mirror, dims=[3])) * 0.5

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.forward_views(x)
        logits = self.model.forward_head(features)
        # An identity op so the weight is a computed output, not a bare initializer.
        cam_weight = classifier_of(self.model).weight * 1.0
        return logits, features, cam_weight


class FixedPadConv2d(nn.Conv2d):
    """A TensorFlow 'SAME' convolution with its padding fixed for one input size.

    timm's ``tf_`` models compute 'SAME' padding from the input's shape at every call, which
    makes the exported graph's spatial sizes symbolic. For a model with a fixed input size the
    padding is a constant; this layer holds it, so the ONNX graph is static apart from the batch.
    """

    def __init__(self, conv: nn.Conv2d, pad: list[int]) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        self.load_state_dict(conv.state_dict())
        self.pad = tuple(int(p) for p in pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self.pad), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def with_fixed_padding(model: nn.Module, input_size: tuple[int, int]) -> nn.Module:
    """An eval-mode copy of ``model`` whose dynamic 'SAME' convolutions have fixed padding."""
    fixed = copy.deepcopy(model).eval()
    sizes: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, module in fixed.named_modules():
        if isinstance(module, Conv2dSame):

            def remember(mod: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
                sizes[name] = tuple(args[0].shape[-2:])

            hooks.append(module.register_forward_pre_hook(remember))
    with torch.no_grad():
        fixed(torch.zeros(1, 3, *input_size))
    for hook in hooks:
        hook.remove()
    for name, size in sizes.items():
        conv = fixed.get_submodule(name)
        pad = pad_same_arg(list(size), list(conv.weight.shape[-2:]), list(conv.stride), list(conv.dilation))
        parent_name, _, child = name.rpartition(".")
        parent = fixed.get_submodule(parent_name) if parent_name else fixed
        setattr(parent, child, FixedPadConv2d(conv, pad))
    return fixed
