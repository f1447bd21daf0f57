"""The configuration: defaults < YAML < flags, nested --set, refusals that name the known keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

import yaml

from trainer.__main__ import build_parser, config_from_args, main
from trainer.config import CONFIGS_DIR, FitConfig, load_yaml, resolve_config
from trainer.errors import TrainerError

pytestmark = pytest.mark.trainer


def _parse(*argv: str):
    return config_from_args(build_parser().parse_args(["fit", *argv]))


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("batch_size: 16\nhead_epochs: 5\naugment:\n  rotate_deg: 7\n")
    config = _parse("--config", str(config_file), "--batch-size", "8", "--set", "augment.zoom=0.2")
    assert config.batch_size == 8  # the flag wins over the YAML
    assert config.head_epochs == 5  # the YAML wins over the default
    assert config.augment.rotate_deg == 7 and config.augment.zoom == 0.2  # nested values merge
    assert config.augment.hflip == FitConfig().augment.hflip
    assert config.finetune_lr == FitConfig().finetune_lr


def test_tuple_and_boolean_flags():
    config = _parse("--data", "a", "b", "--finetune-modules", "blocks.6", "--no-channels-last", "--compile")
    assert config.data == ("a", "b") and config.finetune_modules == ("blocks.6",)
    assert config.channels_last is False and config.compile is True


def test_unknown_keys_are_refused_with_the_known_ones(tmp_path):
    with pytest.raises(TrainerError, match="unknown configuration key.*batch_sise.*known keys:.*batch_size"):
        resolve_config({"batch_sise": 3})
    with pytest.raises(TrainerError, match="unknown augment key"):
        resolve_config({"augment": {"rotation": 3}})
    with pytest.raises(TrainerError, match="key=value"):
        _parse("--set", "nothing")
    with pytest.raises(TrainerError, match="device"):
        resolve_config({"device": "tpu"})


def test_weights_normalisation_and_classes_follow_the_architecture_and_task():
    lite0 = resolve_config({})
    assert (lite0.weights, lite0.mean, lite0.classes) == ("offline", (0.5, 0.5, 0.5), lite0.classes)
    b0 = resolve_config({"architecture": "efficientnet_b0"})
    assert b0.weights == "timm" and b0.mean == pytest.approx((0.485, 0.456, 0.406))
    scratch = resolve_config({"architecture": "smallcnn", "task": "binary"})
    assert scratch.weights == "none" and scratch.finetune_modules == ("*",)
    assert scratch.classes == ("notumor", "tumor")


@pytest.mark.parametrize("path", sorted(CONFIGS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_configs_resolve(path: Path):
    config = resolve_config(load_yaml(path))
    assert config.name and config.classes
    assert load_yaml(path.name) == load_yaml(path)  # bundled configs are found by name too


def test_the_resolved_config_is_saved_beside_the_run(tiny_root, tmp_path):
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(
        yaml.safe_dump({"data": [str(tiny_root)], "runs_dir": str(tmp_path / "runs"), "name": "cli",
                        "input_size": 128, "head_epochs": 1, "finetune_epochs": 0.5, "batch_size": 16,
                        "val_fraction": 0.25})
    )
    assert main(["fit", "--config", str(config_file), "--batch-size", "8", "--set", "augment.rotate_deg=5"]) == 0
    run = tmp_path / "runs" / "cli"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["batch_size"] == 8 and saved["input_size"] == 128 and saved["augment"]["rotate_deg"] == 5
    assert saved["weights"] == "offline" and saved["classes"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert json.loads((run / "config.json").read_text()) == saved
    assert "--batch-size 8" in (run / "config.yaml").read_text().splitlines()[1]
    assert FitConfig.from_dict(saved).resolved() == FitConfig.from_dict(saved)
    # A second fit into the same folder is refused unless asked.
    assert main(["fit", "--config", str(config_file)]) == 1
