"""Data roots: Kaggle layouts, several roots, label aliases, the binary task, broken files skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from conftest import copy_real

from trainer.config import FitConfig
from trainer.data import CLASSES_4, CLASSES_BINARY, canonical_label, decode_pictures, scan_data
from trainer.errors import TrainerError

pytestmark = pytest.mark.trainer

OLD_NAMES = {"glioma": "glioma_tumor", "meningioma": "meningioma_tumor", "notumor": "no_tumor",
             "pituitary": "pituitary_tumor"}


@pytest.fixture(scope="module")
def layouts(training_dir, tmp_path_factory) -> dict[str, Path]:
    """A Training/Testing root with the old folder names, and a plain root."""
    base = tmp_path_factory.mktemp("layouts")
    split_root, plain_root = base / "kaggle-old", base / "plain"
    copy_real(training_dir, split_root / "Training", 3, folders=OLD_NAMES)
    copy_real(training_dir, split_root / "Testing", 2, start=50, folders=OLD_NAMES)
    copy_real(training_dir, plain_root, 2, start=20)
    (split_root / "README").mkdir()  # neither a split nor a class: reported
    (plain_root / "glioma" / "notes.txt").write_text("not a picture")
    return {"split": split_root, "plain": plain_root}


def test_folder_names_map_through_the_aliases():
    assert [canonical_label(n) for n in OLD_NAMES.values()] == list(CLASSES_4)
    assert canonical_label("Glioma_Tumor") == "glioma"
    assert canonical_label("tumour-yes", aliases={"tumour-yes": "glioma"}) == "glioma"
    assert [canonical_label(n, "binary") for n in ("glioma", "no_tumor", "yes", "no", "pituitary_tumor")] == [
        "tumor", "notumor", "tumor", "notumor", "tumor"
    ]


def test_split_layout_with_old_names_and_a_plain_root_combine(layouts):
    listing = scan_data([layouts["split"], layouts["plain"]], CLASSES_4)
    samples = listing.samples
    assert len(samples) == 4 * (3 + 2 + 2)
    by_split = {s: sum(x.split == s for x in samples) for s in ("training", "testing", "unsplit")}
    assert by_split == {"training": 12, "testing": 8, "unsplit": 8}
    assert {(x.folder, CLASSES_4[x.label]) for x in samples if x.root == 0} == {
        (old, new) for new, old in OLD_NAMES.items()
    }
    assert [x.label for x in samples] == sorted(x.label for x in samples)  # class order
    assert any("README" in f for f in listing.ignored_folders) and listing.ignored_files == 1
    training_only = scan_data([layouts["split"], layouts["plain"]], CLASSES_4, splits=("training", "unsplit"))
    assert len(training_only.samples) == 20 and all(x.split != "testing" for x in training_only.samples)


def test_binary_task_maps_four_classes_and_a_yes_no_set(layouts, training_dir, tmp_path):
    yes_no = tmp_path / "yes-no"
    copy_real(training_dir, yes_no, 2, start=30, folders={"glioma": "yes", "notumor": "no", "meningioma": "yes",
                                                          "pituitary": "no-used"})
    listing = scan_data([layouts["plain"], yes_no], CLASSES_BINARY, task="binary")
    labels = [CLASSES_BINARY[s.label] for s in listing.samples]
    assert labels.count("tumor") == 3 * 2 + 4 and labels.count("notumor") == 2 + 2
    assert any("no-used" in f for f in listing.ignored_folders)
    config = FitConfig(task="binary").resolved()
    assert config.classes == CLASSES_BINARY and config.contract().task == "binary"


def test_a_missing_class_or_root_is_refused_with_the_reason(layouts, tmp_path):
    with pytest.raises(TrainerError, match="no pictures for class"):
        scan_data(layouts["split"], CLASSES_4, splits=("validation",))
    with pytest.raises(TrainerError, match="data folder not found"):
        scan_data(tmp_path / "absent")


def test_broken_files_are_reported_and_skipped(tiny_root):
    files = sorted(tiny_root.rglob("*.jpg"))
    decoded = decode_pictures(files, FitConfig(input_size=64).contract())
    broken = {Path(p).name for p, _ in decoded.problems}
    assert broken == {"zz-truncated.jpg", "zz-not-a-picture.jpg"}
    assert len(decoded.kept) == len(files) - 2 == len(decoded.pictures)
    assert decoded.pictures.shape[1:] == (64, 64, 3) and decoded.pictures.dtype == np.uint8
    assert all(why for _, why in decoded.problems)
    assert decoded.formats[0].startswith("JPEG") and min(decoded.sizes[0]) > 0


def test_a_fit_skips_the_broken_files_and_says_so(tiny_run):
    import json

    skipped = json.loads((tiny_run / "skipped.json").read_text())
    assert sorted(Path(s["path"]).name for s in skipped) == ["zz-not-a-picture.jpg", "zz-truncated.jpg"]
    contract = json.loads((tiny_run / "contract.json").read_text())
    assert contract["training"]["skipped_files"] == 2 and contract["training"]["images"] == 48
    assert "skipped unreadable file" in (tiny_run / "fit.log").read_text()
