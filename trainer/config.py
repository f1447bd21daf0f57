"""The training configuration: one dataclass, YAML defaults, flag overrides, saved beside every run.

Precedence, lowest first: the dataclass defaults, a YAML file (``--config``), then command-line
flags (``--batch-size 16`` or ``--set augment.rotate_deg=10``). :func:`resolve_config` merges
them and fills the values that depend on others (classes from the task, weights and
normalisation from the architecture); :func:`save_resolved` writes the result as
``config.yaml`` (and ``config.json``) into the run folder, so every run states exactly what it
ran with.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from brainscan.engine.model.contract import ModelContract
from trainer.augment import AugmentConfig
from trainer.data import DEFAULT_DATA, TASK_CLASSES
from trainer.dedup import DEFAULT_THRESHOLD
from trainer.errors import TrainerError
from trainer.model import SMALL_CNN

CONFIG_YAML = "config.yaml"
CONFIG_JSON = "config.json"
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
DEVICES = ("auto", "cpu", "cuda", "mps")
AMP_MODES = ("auto", "bf16", "off")
MONITORS = ("val_loss", "val_accuracy")
# Modules of every timm EfficientNet fine-tuned in stage 2 (the deepest two stages and the head).
TOP_BLOCKS = ("blocks.5", "blocks.6", "conv_head", "bn2")
ALL_MODULES = ("*",)


@dataclass
class FitConfig:
    """Everything that decides a training run; saved beside the checkpoint.

    ``None`` (and ``"auto"``) values are filled by :meth:`resolved` from the others.
    """

    name: str = "lite0-224"
    # One or more roots: class folders, or Training/Testing folders holding class folders.
    data: tuple[str, ...] = (str(DEFAULT_DATA),)
    # Which parts of split layouts feed training and validation ("unsplit": roots without one).
    splits: tuple[str, ...] = ("training", "unsplit")
    label_aliases: dict[str, str] = field(default_factory=dict)  # extra folder name -> class
    runs_dir: str = "runs"
    model_name: str = "brainscan-4class"
    version: str = "0.1.0"
    task: str = "4class"
    classes: tuple[str, ...] | None = None  # default: the task's classes
    architecture: str = "tf_efficientnet_lite0"
    weights: str = "auto"  # offline | timm | none; auto: offline for Lite0, none for smallcnn, else timm
    input_size: int = 224
    interpolation: str = "area"
    resize_mode: str = "pad-square"
    mean: tuple[float, float, float] | None = None  # default: the weights' normalisation
    std: tuple[float, float, float] | None = None
    seed: int = 0
    limit: int | None = None  # use only this many pictures (class-balanced), for smoke runs
    # Share of the pictures held out (by near-duplicate group) for validation. 0: a refit on every
    # picture, no validation and no early stopping (the last epoch is kept); give ``refit_of``.
    val_fraction: float = 0.15
    # A refit's validated twin: the run folder of a fit with the same recipe and a held-out split,
    # whose validation metrics and temperature the refit's contract carries (labelled as such).
    refit_of: str | None = None
    dedup_threshold: int = DEFAULT_THRESHOLD
    dedup_mirrors: bool = False  # also group a picture with the near duplicates of its mirror image
    batch_size: int = 32
    eval_batch_size: int = 64
    # Stage 1: linear head on the frozen backbone's cached features (0 epochs: skip).
    head_epochs: int = 40
    head_lr: float = 1e-3
    # Stage 2: fine-tune these modules and the head ("*": everything).
    finetune_epochs: float = 4.0
    finetune_lr: float = 3e-4
    finetune_modules: tuple[str, ...] = TOP_BLOCKS
    warmup_fraction: float = 0.05
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    drop_rate: float = 0.2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Box-supervised fine-tuning (trainer/cam_box_loss.py): the true class's CAM asked to lie in the tumour box
    # (grown by box_margin of the side) on pictures with a box in ``boxes`` (match-boxes' training-boxes.csv).
    box_loss_weight: float = 0.0  # 0: off
    boxes: str | None = None
    box_loss: str = "softmax"  # softmax (spatial softmax mass in the box) or relu-share (positive CAM outside)
    box_margin: float = 0.03
    # and: a black 32 px square on the box must lower the true class's logit box_occlusion_margin more than one
    # elsewhere on the head (the occlusion check's question, asked in training; 0: off)
    box_occlusion_weight: float = 0.0
    box_occlusion_margin: float = 1.0
    # Early stopping on the validation split after every epoch (0: never stop early).
    patience: int = 3
    monitor: str = "val_loss"
    # Speed.
    device: str = "auto"
    amp: str = "auto"  # bf16 autocast: auto = on for CUDA, off on the CPU
    channels_last: bool = True
    compile: bool = False  # torch.compile the training model
    threads: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, Path)):
            self.data = (str(self.data),)

    # -- derived -------------------------------------------------------------------------------
    def resolved(self) -> FitConfig:
        """A copy with every ``None``/``"auto"`` filled; raises :class:`TrainerError` on bad values."""
        values = asdict(self)
        values["augment"] = self.augment
        task = values["task"]
        if task not in TASK_CLASSES:
            raise TrainerError(f"task {task!r} is not one of {', '.join(TASK_CLASSES)}")
        if not values["classes"]:
            values["classes"] = TASK_CLASSES[task]
        if values["weights"] == "auto":
            values["weights"] = default_weights(values["architecture"])
        if values["mean"] is None or values["std"] is None:
            mean, std = default_normalisation(values["architecture"], values["weights"])
            values["mean"] = values["mean"] or mean
            values["std"] = values["std"] or std
        if values["architecture"] == SMALL_CNN and tuple(values["finetune_modules"]) == TOP_BLOCKS:
            values["finetune_modules"] = ALL_MODULES
        config = FitConfig.from_dict(values)
        config.validate()
        return config

    def validate(self) -> None:
        problems = []
        if self.device not in DEVICES:
            problems.append(f"device {self.device!r} is not one of {', '.join(DEVICES)}")
        if self.amp not in AMP_MODES:
            problems.append(f"amp {self.amp!r} is not one of {', '.join(AMP_MODES)}")
        if self.monitor not in MONITORS:
            problems.append(f"monitor {self.monitor!r} is not one of {', '.join(MONITORS)}")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction must lie in [0, 1), not {self.val_fraction}")
        if self.refit_of and self.val_fraction != 0.0:
            problems.append("refit_of is for a refit on every picture: set val_fraction to 0 too")
        if self.batch_size < 2:
            problems.append(f"batch_size must be at least 2 (batch norm), not {self.batch_size}")
        if self.head_epochs < 0 or self.finetune_epochs < 0:
            problems.append("epochs cannot be negative")
        boxed = max(self.box_loss_weight, self.box_occlusion_weight)
        if min(self.box_loss_weight, self.box_occlusion_weight) < 0 or (boxed > 0 and not self.boxes):
            problems.append("box weights must be >= 0, and > 0 needs boxes (runs/boxes/training-boxes.csv)")
        if self.box_loss not in ("softmax", "relu-share"):
            problems.append(f"box_loss {self.box_loss!r} is not one of softmax, relu-share")
        if self.weights not in ("offline", "timm", "none"):
            problems.append(f"weights {self.weights!r} is not one of offline, timm, none, auto")
        if problems:
            raise TrainerError("invalid training configuration: " + "; ".join(problems))

    def contract(self) -> ModelContract:
        """The contract of the model this config trains (metrics and provenance still empty)."""
        config = self if self.classes and self.mean and self.std else self.resolved()
        return ModelContract(
            name=config.model_name,
            version=config.version,
            task=config.task,
            classes=tuple(config.classes),
            architecture=config.architecture,
            input_size=(config.input_size, config.input_size),
            interpolation=config.interpolation,
            resize_mode=config.resize_mode,
            mean=tuple(config.mean),
            std=tuple(config.std),
        )

    # -- serialisation -------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FitConfig:
        """Build from a (possibly partial) mapping, as saved by :meth:`as_dict` or read from YAML."""
        values = dict(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainerError(
                f"unknown configuration key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            )
        augment = values.get("augment")
        if isinstance(augment, Mapping):
            allowed = {f.name for f in fields(AugmentConfig)}
            bad = sorted(set(augment) - allowed)
            if bad:
                raise TrainerError(f"unknown augment key(s) {', '.join(bad)}; known: {', '.join(sorted(allowed))}")
            values["augment"] = AugmentConfig(**augment)
        if isinstance(values.get("data"), (str, Path)):
            values["data"] = (str(values["data"]),)
        for key in ("data", "splits", "classes", "mean", "std", "finetune_modules"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if values.get("label_aliases") is not None:
            values["label_aliases"] = {str(k): str(v) for k, v in dict(values["label_aliases"]).items()}
        return cls(**values)


def default_weights(architecture: str) -> str:
    from trainer.weights import OFFLINE_ARCHITECTURES

    if architecture in OFFLINE_ARCHITECTURES:
        return "offline"
    if architecture == SMALL_CNN:
        return "none"
    return "timm"


def default_normalisation(architecture: str, weights: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std the pretrained weights were trained with (0.5 for offline Lite0 and scratch)."""
    half = (0.5, 0.5, 0.5)
    if weights != "timm":
        return half, half
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(architecture)
    if cfg is None:
        return half, half
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


# -- YAML and flags ----------------------------------------------------------------------------
def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file (``{}`` for an empty file)."""
    path = Path(path)
    if not path.is_file():
        bundled = CONFIGS_DIR / path.name
        if bundled.is_file():
            path = bundled
        else:
            choices = ", ".join(sorted(p.name for p in CONFIGS_DIR.glob("*.yaml")))
            raise TrainerError(f"{path}: config file not found (bundled configs: {choices})")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TrainerError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(values, dict):
        raise TrainerError(f"{path}: a config file holds a mapping of keys to values, not {type(values).__name__}")
    return values


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``"augment.rotate_deg=10"`` -> ``(["augment", "rotate_deg"], 10)`` (the value read as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise TrainerError(f"--set {text!r}: write it as key=value, e.g. --set augment.rotate_deg=10")
    return key.strip().replace("-", "_").split("."), yaml.safe_load(value)


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def resolve_config(
    yaml_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    assignments: list[str] | None = None,
) -> FitConfig:
    """Defaults, then the YAML values, then flag overrides and ``--set`` assignments; resolved."""
    values = asdict(FitConfig())
    values = _merge(values, yaml_values or {})
    values = _merge(values, overrides or {})
    for text in assignments or []:
        keys, value = parse_assignment(text)
        target = values
        for key in keys[:-1]:
            if not isinstance(target.get(key), dict):
                raise TrainerError(f"--set {text!r}: {key!r} is not a group of settings")
            target = target[key]
        target[keys[-1]] = value
    return FitConfig.from_dict(values).resolved()


def save_resolved(config: FitConfig, run_dir: str | Path, command: str = "") -> Path:
    """Write ``config.yaml`` (with the command as a comment) and ``config.json`` into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    values = to_plain(config.as_dict())
    header = "# The resolved configuration of this run (defaults < --config YAML < flags).\n"
    if command:
        header += f"# {command}\n"
    (run_dir / CONFIG_YAML).write_text(header + yaml.safe_dump(values, sort_keys=False))
    (run_dir / CONFIG_JSON).write_text(json.dumps(values, indent=2) + "\n")
    return run_dir / CONFIG_YAML


def to_plain(value: Any) -> Any:
    """Tuples to lists, recursively, so YAML writes plain sequences."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


# -- command-line flags generated from the dataclass ------------------------------------------
FLAG_HELP = {
    "name": "run name: everything goes to <runs-dir>/<name>/",
    "data": "one or more data roots (class folders, or Training/Testing folders of class folders)",
    "splits": "which parts of a Training/Testing layout to train and validate on",
    "task": "4class (glioma, meningioma, notumor, pituitary) or binary (notumor, tumor)",
    "classes": "class names in output order (default: the task's)",
    "architecture": "a timm EfficientNet name (efficientnet_b0, tf_efficientnet_lite0, ...) or smallcnn",
    "weights": "offline (Lite0 ImageNet from the pip package), timm (download), none (scratch), auto",
    "limit": "use only this many pictures, class-balanced (a smoke run)",
    "dedup_threshold": "pHash Hamming distance that makes two pictures near duplicates",
    "dedup_mirrors": "also group a picture with the near duplicates of its mirror image",
    "head_epochs": "stage 1: epochs of the linear head on frozen features (0 skips it)",
    "finetune_epochs": "stage 2: epochs (may be fractional) of fine-tuning finetune_modules",
    "finetune_modules": "modules fine-tuned in stage 2 with the head ('*' for all)",
    "val_fraction": "share held out for validation, by near-duplicate group (0: refit on every picture)",
    "refit_of": "with --val-fraction 0: the validated run of the same recipe whose metrics and temperature "
                "the refit carries",
    "patience": "stop stage 2 after this many epochs without improvement (0: never)",
    "device": "auto (CUDA when available), cpu, cuda or mps",
    "amp": "bf16 autocast: auto (on CUDA only), bf16, off",
    "compile": "torch.compile the model for training",
    "threads": "CPU threads for torch and decoding",
    "box_loss_weight": "weight of the CAM box loss (0: off; needs --boxes)",
    "boxes": "training-boxes.csv of `python -m trainer match-boxes` (tumour boxes of Training pictures)",
    "box_occlusion_weight": "weight of the occlusion term: a black square on the box must cost the true class "
                            "more than one elsewhere (0: off; needs --boxes)",
}


def flag_specs() -> list[tuple[str, dict[str, Any]]]:
    """``(flag, argparse keyword arguments)`` for every simple field of :class:`FitConfig`.

    Defaults are suppressed, so only flags actually given appear in the parsed namespace and
    override the YAML values.
    """
    import argparse

    hints = typing.get_type_hints(FitConfig)
    specs = []
    for f in fields(FitConfig):
        hint = hints[f.name]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": f.name, "help": FLAG_HELP.get(f.name)}
        optional = origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args
        if optional:
            hint = next(a for a in args if a is not type(None))
            origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif hint in (str, int, float):
            kwargs["type"] = hint
        elif origin is tuple:
            element = args[0]
            kwargs["type"] = element
            kwargs["nargs"] = "+" if len(args) == 2 and args[1] is Ellipsis else len(args)
        else:
            continue  # mappings and nested groups: --set key.sub=value
        specs.append((f"--{f.name.replace('_', '-')}", kwargs))
    return specs


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(FitConfig)]
