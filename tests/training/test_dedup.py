"""Near-duplicate grouping, the grouped split and the data fingerprint, on real pictures."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from trainer.data import read_picture
from trainer.dedup import (
    DEFAULT_THRESHOLD,
    data_fingerprint,
    group_near_duplicates,
    grouped_split,
    hamming,
    phash,
)

pytestmark = pytest.mark.trainer


def _reencoded(picture: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _resized(picture: np.ndarray, factor: float) -> np.ndarray:
    height, width = picture.shape[:2]
    return cv2.resize(picture, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def planted(real_paths: list[Path]) -> tuple[list[np.ndarray], list[int]]:
    """Real pictures with planted copies of the first: returns pictures and which are copies."""
    original = read_picture(real_paths[0])
    copies = [_reencoded(original, 35), _resized(original, 0.9), _resized(_reencoded(original, 60), 1.25)]
    others = [read_picture(p) for p in real_paths[1:]]
    return [original, *copies, *others], [0, 1, 2, 3]


def test_hash_ignores_grey_versus_rgb(real_pictures):
    picture = real_pictures[5]
    grey = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
    assert phash(grey) == phash(picture)
    assert 0 <= phash(picture) < 2**64


def test_reencoded_and_resized_copies_are_grouped_and_others_are_not(planted):
    pictures, copies = planted
    hashes = [phash(p) for p in pictures]
    groups = group_near_duplicates(hashes, DEFAULT_THRESHOLD)
    assert len({groups[i] for i in copies}) == 1
    copy_group = groups[copies[0]]
    others = [i for i in range(len(pictures)) if i not in copies]
    assert all(groups[i] != copy_group for i in others)
    assert all(hamming(hashes[0], hashes[i]) <= 2 for i in copies)


def test_grouping_is_transitive_and_numbered_by_first_member():
    # a~b and b~c are within the threshold, a and c are not: one group all the same.
    a, b, c, far = 0, 0b111, 0b111111, 2**64 - 1
    groups = group_near_duplicates([far, a, b, c], threshold=3)
    assert groups.tolist() == [0, 1, 1, 1]


def test_grouped_split_keeps_every_group_on_one_side():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(300), rng.integers(1, 6, size=300))
    labels = (groups % 4).astype(int)
    train, val = grouped_split(groups, labels, val_fraction=0.15, seed=0)
    assert not set(groups[train]) & set(groups[val])
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(groups)))
    for label in range(4):
        share = (labels[val] == label).sum() / (labels == label).sum()
        assert 0.10 < share < 0.20
    again = grouped_split(groups, labels, val_fraction=0.15, seed=0)
    assert np.array_equal(again[1], val)


def test_grouped_split_of_planted_copies(planted):
    pictures, copies = planted
    groups = group_near_duplicates([phash(p) for p in pictures])
    labels = np.arange(len(pictures)) % 4
    for seed in range(5):
        _, val = grouped_split(groups, labels, 0.3, seed)
        side = {int(i in set(val.tolist())) for i in copies}
        assert len(side) == 1


def test_fingerprint_changes_with_content_and_names_not_order(real_paths, tmp_path):
    root = tmp_path / "data"
    for path in real_paths[:3]:
        (root / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / path.parent.name / path.name)
    files = sorted(root.rglob("*.jpg"))
    before = data_fingerprint(files, root)
    assert before.startswith("sha256:")
    assert data_fingerprint(list(reversed(files)), root) == before
    data = bytearray(files[1].read_bytes())
    data[-3] ^= 0xFF
    files[1].write_bytes(bytes(data))
    changed = data_fingerprint(files, root)
    assert changed != before
    renamed = files[0].with_name("renamed.jpg")
    files[0].rename(renamed)
    assert data_fingerprint([renamed, *files[1:]], root) != changed


def test_mirrored_copies_are_grouped_only_when_asked(real_paths):
    """The Kaggle set holds left-right mirrored copies of figshare slices (``match-boxes`` found 1,972)."""
    pictures = [read_picture(p) for p in real_paths[:6]]
    pictures.append(_reencoded(pictures[2][:, ::-1], 60))  # a mirrored, re-encoded copy of the third
    hashes = [phash(p) for p in pictures]
    plain = group_near_duplicates(hashes)
    assert plain[6] != plain[2]  # a mirror image is not a near duplicate by hash
    mirrored = group_near_duplicates(hashes, mirrored=[phash(p[:, ::-1]) for p in pictures])
    assert mirrored[6] == mirrored[2]
    assert len(set(mirrored[:6])) == len(set(plain[:6]))  # the others stay apart
