"""The data set a fit or an evaluation works on: decoded once, near-duplicates grouped, split by group.

:func:`prepare_data` lists the pictures under the config's roots, fingerprints the files, decodes
and resizes them with the engine's preprocessing into one uint8 array (unreadable files are
reported and skipped), groups near-duplicates by pHash and splits train/validation by group, so
no copy of a validation picture is trained on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from trainer.config import FitConfig
from trainer.data import decode_pictures, scan_data
from trainer.dedup import fingerprint_files, group_near_duplicates, grouped_split, phash
from trainer.errors import TrainerError

Log = Callable[[str], None]


@dataclass
class Prepared:
    """The decoded data set and its grouped split."""

    paths: list[Path]
    labels: np.ndarray
    pictures: np.ndarray  # N x H x W x 3 uint8 at the input size
    groups: np.ndarray
    train: np.ndarray
    val: np.ndarray
    fingerprint: str
    splits: list[str] = field(default_factory=list)  # the layout split of each picture
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of unreadable files
    roots: tuple[Path, ...] = ()


def _balanced_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(chosen))


def prepare_data(
    config: FitConfig, log: Log = print, *, splits: Sequence[str] | None = None, split: bool = True,
    every_class: bool = True,
) -> Prepared:
    """List, fingerprint, decode, hash, group and (when ``split``) split the data set.

    ``splits`` picks layout splits other than the config's (``("testing",)`` for a test set); without
    ``every_class`` the roots may lack some classes (an external set).
    """
    config = config.resolved()
    listing = scan_data(
        config.data, config.classes, task=config.task, aliases=config.label_aliases,
        splits=tuple(splits) if splits is not None else config.splits, every_class=every_class,
    )
    samples = listing.samples
    labels = np.array([s.label for s in samples])
    if config.limit:
        keep = _balanced_subset(labels, config.limit, config.seed)
        samples, labels = [samples[i] for i in keep], labels[keep]
    paths = [s.path for s in samples]
    fingerprint = fingerprint_files(paths, listing.roots, [s.root for s in samples])
    contract = config.contract()
    with tqdm(total=len(paths), desc="decode", unit="img", mininterval=2, file=sys.stdout) as bar:
        decoded = decode_pictures(paths, contract, workers=config.threads, progress=bar.update)
    for path, why in decoded.problems:
        log(f"skipped unreadable file {path}: {why}")
    kept = decoded.kept
    paths, labels = [paths[i] for i in kept], labels[kept]
    layout_splits = [samples[i].split for i in kept]
    if len(paths) == 0:
        raise TrainerError(f"none of the {len(samples)} files under {', '.join(map(str, listing.roots))} could be decoded")
    mirrored = [phash(p[:, ::-1]) for p in decoded.pictures] if config.dedup_mirrors else None
    groups = group_near_duplicates([phash(p) for p in decoded.pictures], config.dedup_threshold, mirrored=mirrored)
    if split and config.val_fraction == 0.0:
        train, val = np.arange(len(paths)), np.array([], dtype=np.int64)
        log(f"{len(paths)} pictures, {groups.max() + 1} near-duplicate groups; a refit: all of them train, "
            "none validate" + (f"; {len(decoded.problems)} unreadable file(s) skipped" if decoded.problems else ""))
    elif split:
        train, val = grouped_split(groups, labels, config.val_fraction, config.seed)
        log(
            f"{len(paths)} pictures, {groups.max() + 1} near-duplicate groups; "
            f"train {len(train)}, validation {len(val)} ({len(np.unique(groups[val]))} groups)"
            + (f"; {len(decoded.problems)} unreadable file(s) skipped" if decoded.problems else "")
        )
    else:
        train, val = np.array([], dtype=np.int64), np.arange(len(paths))
    return Prepared(
        paths, labels, decoded.pictures, groups, train, val, fingerprint, layout_splits, decoded.problems,
        listing.roots,
    )


def split_description(data: Prepared, config: FitConfig) -> str:
    """How the validation split was drawn, in a sentence for the contract and the reports."""
    val_groups = len(np.unique(data.groups[data.val]))
    return (
        f"held-out {len(data.val)} of {len(data.paths)} pictures in {val_groups} near-duplicate groups "
        f"(of {int(data.groups.max()) + 1} groups in all); grouped by a 64-bit DCT perceptual hash, "
        f"Hamming distance <= {config.dedup_threshold}, union-find, so no group is on both sides; "
        f"stratified by class as far as the groups allow; seed {config.seed}"
    )
