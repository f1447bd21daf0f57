"""Carrying the figshare boxes over to the Kaggle Training pictures cut from them (trainer/box_matching.py).

Small real roots are built in a temporary folder: a few Kaggle pictures whose twins were found by
``python -m trainer match-boxes`` on the whole set (upright and mirrored resizes of the whole
original), one twin filed under another class, a neighbouring slice of the same patient, pictures
from other sources, and synthetic twins cut from an original around its head.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

import numpy as np  # noqa: E402
from conftest import DATA, TRAINING  # noqa: E402

from trainer.__main__ import main  # noqa: E402
from trainer.box_matching import (  # noqa: E402
    CSV_COLUMNS,
    MAX_ERROR,
    MAX_OUTLIERS,
    align,
    match_boxes,
    read_grey,
)
from trainer.boxes import Box, read_yolo_box  # noqa: E402

BOXES = DATA / "figshare-boxes"
# Kaggle picture -> (figshare class, id, mirrored): twins measured on the whole set.
TWINS = {
    "glioma/Tr-glTr_0000.jpg": ("glioma", "2546", False),
    "glioma/Tr-gl_0692.jpg": ("glioma", "2546", True),
    "meningioma/Tr-me_0408.jpg": ("meningioma", "350", False),
    "meningioma/Tr-me_1311.jpg": ("meningioma", "16", True),
    "pituitary/Tr-pi_0556.jpg": ("pituitary", "1298", False),
}
ACROSS_CLASSES = "pituitary/Tr-pi_0043.jpg"  # the twin of meningioma 16, filed under pituitary
NEIGHBOUR = "glioma/Tr-gl_0209.jpg"  # the twin of glioma 2001 (not given), a neighbouring slice of 2000
OTHER_SOURCES = ("glioma/Tr-gl_0903.jpg", "notumor/Tr-noTr_0000.jpg", "notumor/Tr-no_0500.jpg")
ORIGINALS = (("glioma", "2546"), ("glioma", "2000"), ("meningioma", "350"), ("meningioma", "16"),
             ("pituitary", "1298"), ("pituitary", "1299"))
SYNTHETIC = "glioma/synthetic-crop.jpg", "glioma/synthetic-crop-mirrored.jpg"  # cut from glioma 2000


def head_crop(original: np.ndarray, box: Box, *, mirrored: bool) -> tuple[np.ndarray, Box]:
    """A Kaggle-style twin made here: the head's extreme points (blur, threshold 45) plus a margin,
    cut, resized to 224 x 224, optionally mirrored, saved as JPEG; and the box it must carry."""
    ys, xs = np.nonzero(cv2.GaussianBlur(original, (5, 5), 0) > 45)
    x0, y0 = max(int(xs.min()) - 6, 0), max(int(ys.min()) - 4, 0)
    x1, y1 = min(int(xs.max()) + 7, original.shape[1]), min(int(ys.max()) + 5, original.shape[0])
    picture = cv2.resize(original[y0:y1, x0:x1], (224, 224), interpolation=cv2.INTER_AREA)
    expected = box.cropped(x0, y0, 224 / (x1 - x0), 224 / (y1 - y0), 224, 224)
    if mirrored:
        picture, expected = np.ascontiguousarray(picture[:, ::-1]), expected.mirrored()
    _, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE), expected.clipped()


def original_and_box(name: str, figshare_id: str) -> tuple[np.ndarray, Box]:
    picture = read_grey(BOXES / name / f"{figshare_id}.jpg")
    return picture, read_yolo_box(BOXES / name / f"{figshare_id}.txt", picture.shape[1], picture.shape[0])


def assert_close(got: Box, expected: Box, tolerance: float) -> None:
    differences = [abs(a - b) for a, b in zip((got.x0, got.y0, got.x1, got.y1),
                                                (expected.x0, expected.y0, expected.x1, expected.y1), strict=True)]
    assert max(differences) <= tolerance, (got, expected)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Box]]:
    """A small Kaggle root and a small originals root (copies of real files), and the synthetic twins' boxes."""
    if not (TRAINING.is_dir() and BOXES.is_dir()):
        pytest.skip(f"real data not found under {DATA}")
    base = tmp_path_factory.mktemp("box-matching")
    kaggle, boxes = base / "kaggle", base / "boxes"
    for relative in (*TWINS, ACROSS_CLASSES, NEIGHBOUR, *OTHER_SOURCES):
        (kaggle / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(TRAINING / relative, kaggle / relative)
    for name, figshare_id in ORIGINALS:
        (boxes / name).mkdir(parents=True, exist_ok=True)
        for suffix in (".jpg", ".txt"):
            shutil.copy(BOXES / name / f"{figshare_id}{suffix}", boxes / name / f"{figshare_id}{suffix}")
    original, box = original_and_box("glioma", "2000")
    expected = {}
    for relative, mirrored in zip(SYNTHETIC, (False, True), strict=True):
        picture, expected[relative] = head_crop(original, box, mirrored=mirrored)
        cv2.imwrite(str(kaggle / relative), picture)
    return kaggle, boxes, expected


@pytest.fixture(scope="module")
def matched(roots):
    kaggle, boxes, _ = roots
    return match_boxes(kaggle, boxes, workers=1)


@pytest.mark.parametrize("mirrored", [False, True])
def test_alignment_recovers_a_synthetic_crop(mirrored: bool) -> None:
    if not BOXES.is_dir():
        pytest.skip(f"real data not found at {BOXES}")
    original, box = original_and_box("pituitary", "1298")
    picture, expected = head_crop(original, box, mirrored=mirrored)
    alignment = align(original, picture, mirrored=mirrored, found_by="head")
    assert alignment is not None and alignment.is_twin
    assert not alignment.is_whole_resize((512, 512), (224, 224))
    assert_close(alignment.carry(box, 224, 224), expected, 2.0)


def test_synthetic_crops_are_found_and_their_boxes_recovered(roots, matched) -> None:
    _, _, expected = roots
    found = {m.path: m for m in matched.matches}
    for relative, box in expected.items():
        assert found[relative].figshare_id == "2000"
        assert found[relative].alignment.found_by == "head"
        assert_close(found[relative].box, box, 2.0)


def test_real_twins_get_their_boxes_inside_the_picture(matched) -> None:
    found = {m.path: m for m in matched.matches}
    for relative, (name, figshare_id, mirrored) in TWINS.items():
        match = found[relative]
        assert (match.figshare_class, match.figshare_id, match.alignment.mirrored) == (name, figshare_id, mirrored)
        assert match.alignment.error <= MAX_ERROR and match.alignment.outliers <= MAX_OUTLIERS
        assert match.alignment.is_whole_resize((512, 512), (224, 224))
        box = match.box
        assert 0 <= box.x0 < box.x1 <= box.width and 0 <= box.y0 < box.y1 <= box.height
        # a resize of the whole original: the box scales by 224 / 512 (mirrored where the twin is)
        _, source = original_and_box(name, figshare_id)
        assert_close(box, (source.mirrored() if mirrored else source).scaled_to(224, 224), 1.0)


def test_pictures_without_a_twin_are_not_matched(matched) -> None:
    given = {m.path for m in matched.matches}
    assert given.isdisjoint(OTHER_SOURCES)
    assert NEIGHBOUR not in given  # a neighbouring slice of glioma 2000 is not its twin
    assert [m.path for m in matched.disagreements] == [ACROSS_CLASSES]  # counted, no box carried
    assert ACROSS_CLASSES not in given
    assert matched.no_twin == {"pituitary": 1}  # 1299's twins are not in the small root
    assert matched.pairs[:, 1].max() > MAX_OUTLIERS  # the neighbour was aligned, and rejected


def test_command_writes_csv_report_and_gallery(roots, tmp_path: Path) -> None:
    kaggle, boxes, _ = roots
    out = tmp_path / "boxes"
    assert main(["match-boxes", "--kaggle", str(kaggle), "--boxes", str(boxes), "--out", str(out),
                 "--threads", "1"]) == 0
    with open(out / "training-boxes.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {row["path"] for row in rows} == {*TWINS, *SYNTHETIC}
    for row in rows:
        assert 0 <= float(row["x0"]) < float(row["x1"]) <= int(row["width"])
        assert float(row["match_error"]) <= MAX_ERROR
    report = (out / "matching.md").read_text(encoding="utf-8")
    assert "| glioma | 2 | 2 | 0 |" in report and ACROSS_CLASSES in report
    assert cv2.imread(str(out / "gallery.png")) is not None
