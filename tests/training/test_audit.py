"""The data audit finds planted duplicates (exact, near, across splits and classes), sizes and modes."""

from __future__ import annotations

import json
import shutil

import cv2
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from conftest import copy_real

from trainer.__main__ import main
from trainer.audit import audit_data

pytestmark = pytest.mark.trainer


@pytest.fixture(scope="module")
def planted(training_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("audit") / "data"
    train = copy_real(training_dir, root / "Training", 4)
    copy_real(training_dir, root / "Testing", 2, start=40)
    first = train[0]  # a glioma
    # An exact copy in the same folder, a re-encoded copy in Testing, a copy filed under another class.
    shutil.copy(first, first.with_name("copy-exact.jpg"))
    picture = cv2.imread(str(first))
    cv2.imwrite(str(root / "Testing" / "glioma" / "copy-reencoded.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 40])
    cv2.imwrite(str(root / "Training" / "meningioma" / "copy-wrong-class.jpg"), picture,
                [cv2.IMWRITE_JPEG_QUALITY, 70])
    # A grey PNG of another size behind a .jpg name, and a broken file.
    grey = cv2.resize(cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY), (300, 260))
    cv2.imwrite(str(root / "Training" / "notumor" / "grey.png"), grey)
    (root / "Training" / "notumor" / "grey.png").rename(root / "Training" / "notumor" / "png-inside.jpg")
    (root / "Training" / "pituitary" / "broken.jpg").write_bytes(first.read_bytes()[:200])
    return root, first


def test_audit_finds_the_planted_duplicates(planted):
    root, _ = planted
    report = audit_data(root)
    assert report["files"] == 4 * 4 + 4 * 2 + 5 and report["readable"] == report["files"] - 1
    exact = report["exact_duplicates"]
    assert exact["groups"] == 1 and exact["redundant_copies"] == 1 and exact["across_splits"] == 0
    near = report["near_duplicates"]
    assert near["across_splits"] >= 1 and near["across_classes"] >= 1
    biggest = near["examples"][0]
    assert biggest["size"] >= 4  # original, exact copy, re-encoded, wrong class
    same = report["near_identical"]
    assert same["pictures_involved"] == 4 and same["pairs"] == 6  # the four planted copies, pairwise
    assert same["across_classes"] == 3 and same["across_splits"] == 3
    assert all("copy-wrong-class.jpg" in e for e in same["examples_across_classes"])
    leak = report["test_leakage"]
    assert leak["testing_pictures"] == 9 and leak["with_a_near_identical_training_picture"] == 1
    assert leak["with_a_near_duplicate_in_training"] >= 1
    assert any("copy-reencoded.jpg" in e for e in leak["examples"])


def test_audit_reports_balance_sizes_modes_and_broken_files(planted):
    root, _ = planted
    report = audit_data(root)
    assert report["class_balance"]["training"] == {"glioma": 5, "meningioma": 5, "notumor": 5, "pituitary": 5}
    assert report["class_balance"]["testing"]["glioma"] == 3
    assert "300x260" in report["sizes"]["most_common"] and report["sizes"]["not_square"] == 1
    assert any("grey" in mode for mode in report["modes"])
    assert report["suffix_mismatch"]["count"] == 1 and "png-inside.jpg" in report["suffix_mismatch"]["examples"][0]
    assert [u["file"] for u in report["unreadable"]] == ["Training/pituitary/broken.jpg"]


def test_audit_command_writes_json_and_markdown(planted, tmp_path, capsys):
    root, _ = planted
    assert main(["audit", "--data", str(root), "--out", str(tmp_path / "audit")]) == 0
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    markdown = (tmp_path / "audit" / "audit.md").read_text()
    assert report["near_duplicates"]["across_classes"] >= 1
    assert "Test leakage" in markdown and "Label conflicts" in markdown and "copy-wrong-class.jpg" in markdown
    out = capsys.readouterr().out
    assert "near-identical pairs" in out and "unreadable: Training/pituitary/broken.jpg" in out
