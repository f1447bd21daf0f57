"""The model contract: one frozen description that travels inside the ONNX file.

The trainer writes it into the ONNX metadata (key :data:`METADATA_KEY`, JSON); the engine reads
it back, checks it against the graph and refuses a model that does not match, saying why. It
states everything needed to use the model correctly: the classes, how a picture becomes the
input tensor, which outputs feed Grad-CAM, where the model came from and how well it did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from brainscan.engine.errors import ModelError

METADATA_KEY = "brainscan.contract"
CONTRACT_FORMAT = 1

TASKS = ("4class", "binary")
INTERPOLATIONS = ("area", "bilinear", "bicubic")
RESIZE_MODES = ("pad-square", "stretch")
TEST_TIME_AUGMENTATIONS = ("hflip",)

# How any source becomes the 8-bit picture the model sees. The training images are 8-bit exports,
# so every source is brought to the same kind of picture first (see brainscan.engine.input.loading).
PICTURE_RULE = (
    "8-bit RGB, grey sources replicated to 3 channels. Raster images: 8-bit as stored; 16-bit "
    "scaled linearly from the minimum to the maximum; alpha composited on black. DICOM: "
    "modality LUT (rescale slope/intercept), then the VOI window from the tags when sane, else "
    "the full range (minimum to maximum), MONOCHROME1 inverted, linear to 0-255; RGB kept."
)

TUPLE_FIELDS = ("classes", "input_size", "mean", "std", "test_time_augmentation", "views_in_graph")

# Names of the graph's outputs: the class scores, and what makes Grad-CAM exact without torch.
LOGITS = "logits"
FEATURES = "features"  # last feature maps before global average pooling, N x C x h x w
CAM_WEIGHT = "cam_weight"  # linear classifier weight, K x C (the head is GAP + linear)

# Optional outputs, present when the contract describes them (``explanation``, ``domain_guard``):
HEAD_MAPS = "head_maps"  # N x K x h x w class maps of the explanation head (finer than FEATURES)
DOMAIN_SCORE = "domain_score"  # N: distance from the training pictures over its threshold (<= 1 in domain)

# The series verdict rule's parameters (brainscan.engine.results.verdict.VerdictRule): key, what it must be.
SERIES_RULE_KEYS = {
    "min_agreeing_slices": "an integer of at least 1",
    "min_probability": "a number in [0, 1]",
    "min_in_domain_share": "a number in [0, 1]",
    "false_call_rate": "a number in [0, 1]",
    "false_series_rate": "a number in [0, 1]",
}


def series_rule_problems(rule: Any) -> list[str]:
    """What is wrong with a ``series_rule`` (a mapping of some of :data:`SERIES_RULE_KEYS`), [] when nothing."""
    if not isinstance(rule, Mapping):
        return [f"series_rule must be a JSON object, not {type(rule).__name__}"]
    problems = [f"series_rule has an unknown key {key!r} (known: {', '.join(SERIES_RULE_KEYS)})"
                for key in rule if key not in SERIES_RULE_KEYS]
    for key, value in rule.items():
        if key not in SERIES_RULE_KEYS:
            continue
        if key == "min_agreeing_slices":
            good = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        else:
            good = (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and 0.0 <= value <= 1.0)
        if not good:
            problems.append(f"series_rule {key} is {value!r}, it must be {SERIES_RULE_KEYS[key]}")
    return problems


@dataclass(frozen=True)
class ModelContract:
    """What a model is, and how to feed it.

    Attributes
    ----------
    name, version:
        Human name and version of this model file.
    task:
        ``"4class"`` or ``"binary"``.
    classes:
        Class names in output order.
    architecture:
        The network (a timm model name, or ``"smallcnn"``).
    input_size:
        ``(height, width)`` of the input tensor.
    interpolation, resize_mode:
        How the 8-bit picture is resized to ``input_size``.
    mean, std:
        Per-channel normalisation of ``pixel / 255``.
    picture:
        The rule that turns any source into the 8-bit picture (:data:`PICTURE_RULE`).
    test_time_augmentation:
        Views the engine averages at inference (``"hflip"``: the mirrored picture too).
    views_in_graph:
        Views the graph itself averages (``"hflip"``): its ``logits`` are the mean of the views'
        and its ``features`` the mean of their maps (mirrored ones mirrored back), so Grad-CAM
        explains the averaged decision; the engine adds nothing.
    training, metrics:
        Provenance (command, config, data fingerprint, seed, machine, time) and measured metrics.
    intended_use:
        The model card's statement of use.
    explanation:
        Empty, or the explanation head the graph carries (output :data:`HEAD_MAPS`): ``method``
        (the heat-map method name it serves), ``description``, ``trained_on``, and ``pointing``
        (its measured pointing game, per class), so a reader knows how far to trust the map.
    domain_guard:
        Empty, or the domain guard the graph carries (output :data:`DOMAIN_SCORE`): ``method``,
        ``fitted_on``, ``threshold_chosen_on``, ``false_flag_rate`` and what was measured with it.
        A frame is in domain when its score is at most 1.
    """

    name: str
    version: str
    task: str
    classes: tuple[str, ...]
    architecture: str
    input_size: tuple[int, int]
    interpolation: str = "area"
    resize_mode: str = "pad-square"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    picture: str = PICTURE_RULE
    test_time_augmentation: tuple[str, ...] = ()
    views_in_graph: tuple[str, ...] = ()
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    intended_use: str = (
        "Research use only: screening 2-D brain MRI slices for glioma, meningioma and pituitary "
        "tumours in studies of the kind it was trained on. Not for diagnosis or any clinical decision."
    )
    explanation: Mapping[str, Any] = field(default_factory=dict)
    domain_guard: Mapping[str, Any] = field(default_factory=dict)
    series_rule: Mapping[str, Any] | None = None
    created: str = ""
    format: int = CONTRACT_FORMAT

    def __post_init__(self) -> None:
        problems = []
        if self.task not in TASKS:
            problems.append(f"task {self.task!r} is not one of {TASKS}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            problems.append(f"classes {list(self.classes)!r} must be at least two distinct names")
        if self.task == "binary" and len(self.classes) != 2:
            problems.append(f"a binary model has two classes, not {len(self.classes)}")
        if len(self.input_size) != 2 or min(self.input_size) < 16 or max(self.input_size) > 2048:
            problems.append(f"input_size {self.input_size!r} must be (height, width) between 16 and 2048")
        if self.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation {self.interpolation!r} is not one of {INTERPOLATIONS}")
        if self.resize_mode not in RESIZE_MODES:
            problems.append(f"resize_mode {self.resize_mode!r} is not one of {RESIZE_MODES}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append("mean and std need three values each, std positive")
        unknown_tta = set(self.test_time_augmentation) - set(TEST_TIME_AUGMENTATIONS)
        if unknown_tta:
            problems.append(f"unknown test-time augmentation {sorted(unknown_tta)}")
        unknown_views = set(self.views_in_graph) - set(TEST_TIME_AUGMENTATIONS)
        if unknown_views:
            problems.append(f"unknown views in the graph {sorted(unknown_views)}")
        twice = set(self.views_in_graph) & set(self.test_time_augmentation)
        if twice:
            problems.append(f"{sorted(twice)} is averaged inside the graph already; the engine must not add it")
        if self.explanation and not isinstance(self.explanation.get("method"), str):
            problems.append("explanation must name its heat-map method ('method')")
        if self.series_rule is not None:
            problems += series_rule_problems(self.series_rule)
        if self.format > CONTRACT_FORMAT:
            problems.append(
                f"contract format {self.format} is newer than this brainscan understands ({CONTRACT_FORMAT}): "
                "update brainscan"
            )
        if problems:
            raise ModelError("invalid model contract: " + "; ".join(problems))

    # -- serialisation -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=None, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "model") -> ModelContract:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: the model contract is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ModelError(f"{source}: the model contract must be a JSON object")
        known = {f.name for f in fields(cls)}
        missing = [n for n in ("name", "version", "task", "classes", "architecture", "input_size") if n not in raw]
        if missing:
            raise ModelError(f"{source}: the model contract lacks {', '.join(missing)}")
        kwargs = {k: v for k, v in raw.items() if k in known}
        for key in TUPLE_FIELDS:
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        try:
            return cls(**kwargs)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from exc
        except TypeError as exc:
            raise ModelError(f"{source}: malformed model contract ({exc})") from exc

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], *, source: str = "model") -> ModelContract:
        """Read the contract from an ONNX model's ``metadata_props`` mapping."""
        if METADATA_KEY not in metadata:
            raise ModelError(
                f"{source}: this ONNX file has no brainscan contract (metadata key {METADATA_KEY!r}); "
                "export it with `python -m trainer export`, which writes one"
            )
        return cls.from_json(metadata[METADATA_KEY], source=source)

    def with_updates(self, **changes: Any) -> ModelContract:
        values = asdict(self)
        values.update(changes)
        for key in TUPLE_FIELDS:
            values[key] = tuple(values[key])
        return ModelContract(**values)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output as onnxruntime reports it (symbolic dimensions as strings or None)."""

    name: str
    shape: Sequence[int | str | None]


def check_graph(
    contract: ModelContract,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    source: str = "model",
) -> None:
    """Refuse a graph that does not match its contract.

    Raises
    ------
    ModelError
        Naming every mismatch found: the input shape against ``input_size``, the presence and
        shapes of :data:`LOGITS`, :data:`FEATURES` and :data:`CAM_WEIGHT`.
    """
    problems: list[str] = []
    if len(inputs) != 1:
        problems.append(f"expected one input, found {len(inputs)}")
    else:
        shape = list(inputs[0].shape)
        height, width = contract.input_size
        if len(shape) != 4:
            problems.append(f"input {inputs[0].name!r} has rank {len(shape)}, expected N x 3 x H x W")
        else:
            for axis, expected, label in ((1, 3, "channels"), (2, height, "height"), (3, width, "width")):
                if isinstance(shape[axis], int) and shape[axis] != expected:
                    problems.append(f"input {label} is {shape[axis]} but the contract says {expected}")
    by_name = {o.name: list(o.shape) for o in outputs}
    for required in (LOGITS, FEATURES, CAM_WEIGHT):
        if required not in by_name:
            problems.append(f"output {required!r} is missing (found {sorted(by_name)})")
    k = contract.num_classes
    logits = by_name.get(LOGITS)
    if logits is not None and (len(logits) != 2 or (isinstance(logits[1], int) and logits[1] != k)):
        problems.append(f"output {LOGITS!r} has shape {logits}, expected N x {k} for classes {list(contract.classes)}")
    weight = by_name.get(CAM_WEIGHT)
    features = by_name.get(FEATURES)
    if weight is not None and (len(weight) != 2 or (isinstance(weight[0], int) and weight[0] != k)):
        problems.append(f"output {CAM_WEIGHT!r} has shape {weight}, expected {k} x C")
    if features is not None and len(features) != 4:
        problems.append(f"output {FEATURES!r} has shape {features}, expected N x C x h x w")
    if (
        weight is not None
        and features is not None
        and len(weight) == 2
        and len(features) == 4
        and isinstance(weight[1], int)
        and isinstance(features[1], int)
        and weight[1] != features[1]
    ):
        problems.append(f"{CAM_WEIGHT!r} has {weight[1]} channels but {FEATURES!r} has {features[1]}")
    problems += _optional_output_problems(contract, by_name)
    if problems:
        raise ModelError(f"{source}: the graph does not match its contract: " + "; ".join(problems))


def _optional_output_problems(contract: ModelContract, by_name: Mapping[str, list[Any]]) -> list[str]:
    """The explanation head's and the domain guard's outputs, when the contract describes them."""
    problems = []
    for described, name, rank in ((contract.explanation, HEAD_MAPS, 4), (contract.domain_guard, DOMAIN_SCORE, 1)):
        if not described:
            continue
        shape = by_name.get(name)
        if shape is None:
            problems.append(f"the contract describes output {name!r} but the graph has none")
        elif len(shape) != rank:
            problems.append(f"output {name!r} has shape {shape}, expected rank {rank}")
        elif rank == 4 and isinstance(shape[1], int) and shape[1] != contract.num_classes:
            problems.append(f"output {name!r} has {shape[1]} maps, expected one per class ({contract.num_classes})")
    return problems
