"""Near-duplicate grouping, a grouped train/validation split, and a data fingerprint.

The Kaggle brain-MRI set holds many exact and near duplicates (re-encoded, resized copies). A
random split puts copies of one picture on both sides and inflates validation accuracy, so
pictures are grouped first: a 64-bit DCT perceptual hash (pHash) per picture, and pictures whose
hashes differ in at most ``threshold`` bits are joined (union-find, so groups are the connected
components). The split then keeps every group on one side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from brainscan.engine.model.integrity import file_sha256

HASH_SIZE = 8  # 8 x 8 low frequencies = 64 bits
_DCT_SIZE = 32
DEFAULT_THRESHOLD = 6


def phash(picture: np.ndarray) -> int:
    """The 64-bit DCT perceptual hash of a picture (H x W or H x W x 3, uint8).

    The picture is turned grey and shrunk to 32 x 32 (area interpolation); the 8 x 8 lowest DCT
    frequencies are compared with their median (DC term excluded), one bit each.
    """
    grey = picture if picture.ndim == 2 else cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey.astype(np.float32), (_DCT_SIZE, _DCT_SIZE), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:HASH_SIZE, :HASH_SIZE].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = np.arange(size)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_near_duplicates(hashes: Sequence[int], threshold: int = DEFAULT_THRESHOLD, chunk: int = 512,
                          mirrored: Sequence[int] | None = None) -> np.ndarray:
    """Group ids (0..G-1, numbered by first member) joining hashes within ``threshold`` bits.

    ``mirrored``: the hashes of the mirrored pictures; a picture then also joins the pictures its
    mirror image nearly duplicates (the Kaggle set holds left-right mirrored copies of figshare slices).
    """
    values = np.asarray([int(h) for h in hashes], dtype=np.uint64)
    mirrors = None if mirrored is None else np.asarray([int(h) for h in mirrored], dtype=np.uint64)
    n = len(values)
    sets = _UnionFind(n)
    for start in range(0, n, chunk):
        block = values[start : start + chunk]
        distances = np.bitwise_count(block[:, None] ^ values[None, :])
        if mirrors is not None:
            distances = np.minimum(distances, np.bitwise_count(block[:, None] ^ mirrors[None, :]))
        rows, cols = np.nonzero(distances <= threshold)
        for r, c in zip(rows + start, cols, strict=True):
            if c != r:
                sets.union(int(r), int(c))
    roots = np.array([sets.find(i) for i in range(n)])
    _, first_index, inverse = np.unique(roots, return_index=True, return_inverse=True)
    # Renumber groups in order of their first member, so ids do not depend on the roots chosen.
    order = np.argsort(np.argsort(first_index))
    return order[inverse].astype(np.int64)


def grouped_split(
    groups: np.ndarray, labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)`` with every group wholly on one side.

    Groups are shuffled (``seed``) and taken into validation, per class of their most common
    label, until each class has about ``val_fraction`` of its pictures there; so the split is
    stratified as far as the groups allow.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, not {val_fraction}")
    groups = np.asarray(groups)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    group_ids = np.unique(groups)
    rng.shuffle(group_ids)
    members = {g: np.flatnonzero(groups == g) for g in group_ids}
    class_sizes = np.bincount(labels)
    targets = val_fraction * class_sizes
    taken = np.zeros_like(targets)
    in_val = np.zeros(len(groups), dtype=bool)
    for g in group_ids:
        idx = members[g]
        majority = np.bincount(labels[idx]).argmax()
        if taken[majority] + len(idx) / 2 <= targets[majority]:
            in_val[idx] = True
            taken[majority] += len(idx)
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def data_fingerprint(paths: Sequence[str | Path], root: str | Path) -> str:
    """sha256 over the sorted ``(path relative to root, file sha256)`` pairs: names and contents."""
    root = Path(root)
    entries = sorted((Path(p).relative_to(root).as_posix(), file_sha256(p)) for p in paths)
    digest = hashlib.sha256()
    for relative, content in entries:
        digest.update(f"{relative}\t{content}\n".encode())
    return "sha256:" + digest.hexdigest()


def fingerprint_files(paths: Sequence[str | Path], roots: Sequence[str | Path], root_of: Sequence[int]) -> str:
    """:func:`data_fingerprint` over several roots (one root gives exactly :func:`data_fingerprint`)."""
    roots = [Path(r) for r in roots]
    if len(roots) == 1:
        return data_fingerprint(paths, roots[0])
    entries = sorted(
        (f"{index}:{Path(p).relative_to(roots[index]).as_posix()}", file_sha256(p))
        for p, index in zip(paths, root_of, strict=True)
    )
    digest = hashlib.sha256()
    for relative, content in entries:
        digest.update(f"{relative}\t{content}\n".encode())
    return "sha256:" + digest.hexdigest()
