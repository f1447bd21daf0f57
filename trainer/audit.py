"""An audit of the data before any split: duplicates, class balance, sizes and modes, broken files.

``python -m trainer audit`` lists every picture under the data roots (all splits of a
Training/Testing layout), then reports

- exact duplicates (byte-identical files);
- look-alike groups: 64-bit pHash within the Hamming threshold, joined by union-find, the units
  the validation split keeps together. On brain MRI a coarse 8 x 8 DCT hash also joins distinct
  pictures that share the head's outline, so the groups overstate duplication (harmless for a
  split, which only gets more cautious);
- near-identical pairs: pHash within the threshold *and* 32 x 32 grey thumbnails within
  :data:`PIXEL_TOLERANCE` grey levels on average: copies, re-encodings and resizes. Those across
  classes are real label conflicts; those across splits are leakage;
- how many pictures of the test split have a near-identical picture (and a look-alike) in training;
- class balance per split; image sizes and modes (format, bit depth, grey or colour); files whose
  content does not match their suffix (PNG data behind ``.jpg``);
- files that cannot be decoded (reported and skipped), folders that are not classes of the task.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from brainscan.engine.model.contract import ModelContract
from trainer.data import CLASSES_4, Decoded, decode_pictures, scan_data
from trainer.dedup import DEFAULT_THRESHOLD, file_sha256, group_near_duplicates, phash

EXAMPLES = 20
PIXEL_TOLERANCE = 4.0  # mean absolute difference of 32 x 32 grey thumbnails, in grey levels (0-255)
_SUFFIX_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def _relative(path: Path, roots: Sequence[Path], root: int) -> str:
    try:
        return path.relative_to(roots[root]).as_posix() if len(roots) == 1 else f"{roots[root].name}/{path.relative_to(roots[root]).as_posix()}"
    except ValueError:
        return str(path)


def _describe_groups(
    members: dict[int, list[int]], splits: list[str], labels: list[str], names: list[str]
) -> dict[str, Any]:
    """Counts of multi-member groups by where their members lie, and a few examples."""
    multi = {g: m for g, m in members.items() if len(m) > 1}
    across_splits = [g for g, m in multi.items() if len({splits[i] for i in m}) > 1]
    across_classes = [g for g, m in multi.items() if len({labels[i] for i in m}) > 1]
    ordered = sorted(multi, key=lambda g: (-len({labels[i] for i in multi[g]}), -len(multi[g]), g))

    def example(g: int) -> dict[str, Any]:
        return {"files": [f"{names[i]} ({labels[i]}, {splits[i]})" for i in multi[g][:6]], "size": len(multi[g])}

    return {
        "groups": len(multi),
        "pictures_in_groups": int(sum(len(m) for m in multi.values())),
        "redundant_copies": int(sum(len(m) - 1 for m in multi.values())),
        "largest_group": max((len(m) for m in multi.values()), default=0),
        "within_one_split": len(multi) - len(across_splits),
        "across_splits": len(across_splits),
        "across_classes": len(across_classes),
        "examples_across_classes": [example(g) for g in across_classes[:EXAMPLES]],
        "examples": [example(g) for g in ordered[:EXAMPLES]],
    }


def close_pairs(hashes: Sequence[int], threshold: int, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``threshold`` bits."""
    values = np.asarray([int(h) for h in hashes], dtype=np.uint64)
    first, second = [], []
    for start in range(0, len(values), chunk):
        block = values[start : start + chunk]
        rows, cols = np.nonzero(np.bitwise_count(block[:, None] ^ values[None, :]) <= threshold)
        rows = rows + start
        keep = cols > rows
        first.append(rows[keep])
        second.append(cols[keep])
    if not first:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(first), np.concatenate(second)


def thumbnails(pictures: np.ndarray) -> np.ndarray:
    """32 x 32 grey float thumbnails (area interpolation) for the pixel check of close pairs."""
    return np.stack(
        [cv2.resize(cv2.cvtColor(p, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA) for p in pictures]
    ).astype(np.float32) if len(pictures) else np.zeros((0, 32, 32), np.float32)


def _decode_and_digest(paths: list[Path], contract: ModelContract, workers: int) -> tuple[Decoded, list[str]]:
    """The readable pictures at the input size, and the SHA-256 of every file."""
    with tqdm(total=len(paths), desc="audit: decode", unit="img", mininterval=2, file=sys.stdout) as bar:
        decoded = decode_pictures(paths, contract, workers=workers, progress=bar.update)
    with tqdm(total=len(paths), desc="audit: sha256", unit="file", mininterval=2, file=sys.stdout) as bar:
        digests = []
        for path in paths:
            digests.append(file_sha256(path))
            bar.update(1)
    return decoded, digests


def _exact_members(digests: list[str]) -> dict[int, list[int]]:
    """Byte-identical files (readable or not), by the first file of each digest."""
    members: dict[int, list[int]] = defaultdict(list)
    first_of_digest: dict[str, int] = {}
    for i, digest in enumerate(digests):
        members[first_of_digest.setdefault(digest, i)].append(i)
    return members


def _identical_pairs(
    hashes: list[int], threshold: int, pictures: np.ndarray, kept: list[int]
) -> tuple[list[tuple[int, int, float]], int]:
    """Near-identical pairs ``(i, j, grey levels)``: close hashes and close pixels; and the look-alike pairs checked."""
    first, second = close_pairs(hashes, threshold)
    thumbs = thumbnails(pictures)
    difference = np.abs(thumbs[first] - thumbs[second]).mean(axis=(1, 2)) if len(first) else np.zeros(0)
    identical = difference <= PIXEL_TOLERANCE
    pairs = [(kept[a], kept[b], float(m)) for a, b, m in zip(first[identical], second[identical],
                                                              difference[identical], strict=True)]
    return pairs, len(first)


def _near_identical(
    pairs: list[tuple[int, int, float]], checked: int, names: list[str], labels: list[str], splits: list[str]
) -> dict[str, Any]:
    cross_class = [(a, b, m) for a, b, m in pairs if labels[a] != labels[b]]
    cross_split = [(a, b, m) for a, b, m in pairs if splits[a] != splits[b]]

    def pair_text(a: int, b: int, m: float) -> str:
        return f"{names[a]} ({labels[a]}, {splits[a]}) ~ {names[b]} ({labels[b]}, {splits[b]}), {m:.1f} grey levels"

    return {
        "pairs": len(pairs),
        "pixel_tolerance": PIXEL_TOLERANCE,
        "pictures_involved": len({i for a, b, _ in pairs for i in (a, b)}),
        "within_one_class": len(pairs) - len(cross_class),
        "across_classes": len(cross_class),
        "across_splits": len(cross_split),
        "examples_across_classes": [pair_text(*p) for p in cross_class[:EXAMPLES]],
        "examples_across_splits": [pair_text(*p) for p in cross_split[:EXAMPLES]],
        "lookalike_pairs_checked": checked,
    }


def _leakage(
    kept: list[int], groups: np.ndarray, splits: list[str], digests: list[str],
    pairs: list[tuple[int, int, float]], names: list[str],
) -> dict[str, Any]:
    """Leakage of a published split: test pictures with a near duplicate in training (empty without both)."""
    if not ("testing" in splits and "training" in splits):
        return {}
    group_of = {index: int(g) for index, g in zip(kept, groups.tolist(), strict=True)}
    training_groups = {group_of[i] for i in kept if splits[i] == "training"}
    testing = [i for i in kept if splits[i] == "testing"]
    leaked = [i for i in testing if group_of[i] in training_groups]
    exact_training = {digests[i] for i in range(len(splits)) if splits[i] == "training"}
    identical_to_training = {
        t for a, b, _ in pairs for t, other in ((a, b), (b, a))
        if splits[t] == "testing" and splits[other] == "training"
    }
    return {
        "testing_pictures": len(testing),
        "with_a_near_identical_training_picture": len(identical_to_training),
        "with_a_near_duplicate_in_training": len(leaked),
        "byte_identical_to_a_training_file": sum(digests[i] in exact_training for i in testing),
        "examples": [names[i] for i in leaked[:EXAMPLES]],
    }


def _balance(labels: list[str], splits: list[str], classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Pictures per class, per split and overall (``all``)."""
    balance: dict[str, dict[str, int]] = {}
    for split in [*sorted(set(splits)), "all"]:
        counts = Counter(labels[i] for i in range(len(labels)) if split == "all" or splits[i] == split)
        balance[split] = {c: int(counts.get(c, 0)) for c in classes}
    return balance


def _sizes_and_modes(decoded: Decoded, kept: list[int], paths: list[Path], names: list[str]) -> dict[str, Any]:
    """Sizes and modes of the readable pictures, and files whose content does not match their suffix."""
    sizes = Counter(f"{w}x{h}" for h, w in decoded.sizes)
    sides = np.array(decoded.sizes, dtype=float).reshape(-1, 2)
    mismatched = []
    for position, index in enumerate(kept):
        expected = _SUFFIX_FORMAT.get(paths[index].suffix.lower())
        actual = decoded.formats[position].split(",")[0]
        if expected and actual and actual != expected:
            mismatched.append(f"{names[index]}: {actual} data behind a {paths[index].suffix} name")
    return {
        "sizes": {
            "distinct": len(sizes),
            "most_common": dict(sizes.most_common(10)),
            "min_side": int(sides.min()) if len(sides) else None,
            "max_side": int(sides.max()) if len(sides) else None,
            "not_square": int((sides[:, 0] != sides[:, 1]).sum()) if len(sides) else 0,
        },
        "modes": dict(Counter(decoded.formats).most_common()),
        "suffix_mismatch": {"count": len(mismatched), "examples": mismatched[:EXAMPLES]},
    }


def audit_data(
    roots: str | Path | Sequence[str | Path],
    *,
    classes: Sequence[str] = CLASSES_4,
    task: str = "4class",
    aliases: dict[str, str] | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    input_size: int = 224,
    workers: int = 2,
) -> dict[str, Any]:
    """Audit every picture under ``roots`` (all splits); returns a JSON-ready report."""
    listing = scan_data(roots, classes, task=task, aliases=aliases, splits=None)
    samples = listing.samples
    roots = listing.roots
    contract = ModelContract(
        name="audit", version="0", task=task, classes=tuple(classes), architecture="none",
        input_size=(input_size, input_size),
    )
    paths = [s.path for s in samples]
    decoded, digests = _decode_and_digest(paths, contract, workers)
    names = [_relative(s.path, roots, s.root) for s in samples]
    labels = [classes[s.label] for s in samples]
    splits = [s.split for s in samples]
    kept = decoded.kept.tolist()
    hashes = [phash(p) for p in decoded.pictures]
    groups = group_near_duplicates(hashes, threshold)
    near_members: dict[int, list[int]] = defaultdict(list)
    for position, group in enumerate(groups.tolist()):
        near_members[group].append(kept[position])
    pairs, checked = _identical_pairs(hashes, threshold, decoded.pictures, kept)
    balance = _balance(labels, splits, classes)
    overall = np.array(list(balance["all"].values()), dtype=float)
    return {
        "roots": [str(r) for r in roots],
        "task": task,
        "classes": list(classes),
        "threshold": threshold,
        "hash": f"64-bit DCT perceptual hash of the picture resized to {input_size} x {input_size} (pad-square, area)",
        "files": len(samples),
        "readable": len(kept),
        "unreadable": [{"file": _relative(Path(p), roots, samples[paths.index(Path(p))].root), "why": why}
                       for p, why in decoded.problems],
        "ignored_folders": listing.ignored_folders,
        "ignored_files": listing.ignored_files,
        "class_balance": balance,
        "imbalance_ratio": round(float(overall.max() / max(1.0, overall.min())), 3) if len(overall) else None,
        **_sizes_and_modes(decoded, kept, paths, names),
        "exact_duplicates": _describe_groups(_exact_members(digests), splits, labels, names),
        "near_duplicates": {
            "groups_in_all": int(groups.max()) + 1 if len(groups) else 0,
            **_describe_groups(near_members, splits, labels, names),
        },
        "near_identical": _near_identical(pairs, checked, names, labels, splits),
        "test_leakage": _leakage(kept, groups, splits, digests, pairs, names),
    }


def _table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _duplicates_markdown(report: dict[str, Any]) -> list[str]:
    """The duplicates section: exact and look-alike groups, near-identical pairs, test leakage."""
    near, exact, same = report["near_duplicates"], report["exact_duplicates"], report["near_identical"]
    out = [
        "## Duplicates",
        "",
        f"Look-alike groups: pHash within {report['threshold']} bits ({report['hash']}), joined by union-find; "
        "the units a grouped validation split keeps together. A coarse hash also joins distinct pictures that "
        "share the head's outline or are neighbouring slices, so these groups overstate duplication.",
        "",
        _table(
            [
                ["exact (byte-identical files)", exact["groups"], exact["redundant_copies"], exact["across_splits"],
                 exact["across_classes"]],
                ["look-alike (pHash)", near["groups"], near["redundant_copies"], near["across_splits"],
                 near["across_classes"]],
            ],
            ["kind", "groups of 2+", "redundant copies", "groups across splits", "groups across classes"],
        ),
        "",
        f"{near['groups_in_all']} look-alike groups in all; largest group {near['largest_group']} pictures.",
        "",
        f"Near-identical pairs (pHash within {report['threshold']} bits and 32 x 32 grey thumbnails within "
        f"{same['pixel_tolerance']:g} grey levels on average; of {same['lookalike_pairs_checked']} look-alike pairs): "
        f"**{same['pairs']}** pairs over {same['pictures_involved']} pictures; {same['within_one_class']} within one "
        f"class, **{same['across_classes']} across classes** (label conflicts), {same['across_splits']} across splits.",
        "",
    ]
    if same["examples_across_classes"]:
        out += ["Label conflicts (the same picture under two classes):", ""]
        out += [f"- {e}" for e in same["examples_across_classes"][:10]] + [""]
    leakage = report["test_leakage"]
    if leakage:
        out += [
            f"**Test leakage:** {leakage['with_a_near_identical_training_picture']} of {leakage['testing_pictures']} "
            f"testing pictures have a near-identical picture in training "
            f"({leakage['byte_identical_to_a_training_file']} byte-identical; "
            f"{leakage['with_a_near_duplicate_in_training']} share a look-alike group with a training picture).",
            "",
        ]
    if near["examples_across_classes"]:
        out += ["Look-alike groups spanning classes (check by eye; most are distinct pictures with a similar "
                "outline unless listed as label conflicts above):", ""]
        out += [f"- {', '.join(e['files'])}" for e in near["examples_across_classes"][:5]]
        out += [""]
    if near["examples"]:
        out += ["Largest look-alike groups:", ""]
        out += [f"- {e['size']} pictures: {', '.join(e['files'])}" for e in near["examples"][:10]]
        out += [""]
    return out


def audit_markdown(report: dict[str, Any]) -> str:
    """The audit as a Markdown page."""
    classes = report["classes"]
    sizes = report["sizes"]
    out = [
        "# Data audit",
        "",
        f"Roots: {', '.join(f'`{r}`' for r in report['roots'])}; task {report['task']}; "
        f"{report['files']} files, {report['readable']} readable.",
        "",
        "## Class balance",
        "",
        _table([[split, *counts.values(), sum(counts.values())] for split, counts in report["class_balance"].items()],
               ["split", *classes, "total"]),
        "",
        f"Largest over smallest class: {report['imbalance_ratio']}.",
        "",
        *_duplicates_markdown(report),
        "## Sizes and modes",
        "",
        f"{sizes['distinct']} distinct sizes, sides {sizes['min_side']} to {sizes['max_side']} px, "
        f"{sizes['not_square']} not square. Most common: "
        + ", ".join(f"{k} ({v})" for k, v in sizes["most_common"].items()),
        "",
        "Modes: " + ", ".join(f"{k} ({v})" for k, v in report["modes"].items()),
        "",
        f"Content not matching the suffix: {report['suffix_mismatch']['count']}"
        + "".join(f"\n- {e}" for e in report["suffix_mismatch"]["examples"][:10]),
        "",
        "## Unreadable files and ignored folders",
        "",
        f"{len(report['unreadable'])} unreadable (skipped by fit and evaluate):"
        + "".join(f"\n- {u['file']}: {u['why']}" for u in report["unreadable"][:EXAMPLES]),
        "",
        f"{len(report['ignored_folders'])} folders ignored:" + "".join(f"\n- {f}" for f in report["ignored_folders"]),
        "",
        f"{report['ignored_files']} files without a picture suffix ignored.",
        "",
    ]
    return "\n".join(out)


def write_audit(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "audit.json", out_dir / "audit.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(audit_markdown(report))
    return json_path, md_path


def audit_summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    near, exact, same = report["near_duplicates"], report["exact_duplicates"], report["near_identical"]
    lines = [
        f"{report['files']} files ({report['readable']} readable, {len(report['unreadable'])} unreadable) "
        f"under {', '.join(report['roots'])}",
        "classes: " + ", ".join(f"{c} {n}" for c, n in report["class_balance"]["all"].items())
        + f" (ratio {report['imbalance_ratio']})",
        f"exact duplicates: {exact['groups']} groups, {exact['redundant_copies']} redundant copies, "
        f"{exact['across_splits']} across splits, {exact['across_classes']} across classes",
        f"look-alike groups (pHash <= {report['threshold']}): {near['groups']} groups of 2+, "
        f"{near['redundant_copies']} redundant copies, {near['across_splits']} across splits, "
        f"{near['across_classes']} across classes",
        f"near-identical pairs (pHash and pixels): {same['pairs']} over {same['pictures_involved']} pictures, "
        f"{same['across_classes']} across classes (label conflicts), {same['across_splits']} across splits",
        f"sizes: {report['sizes']['distinct']} distinct, sides {report['sizes']['min_side']}-{report['sizes']['max_side']}; "
        "modes: " + ", ".join(f"{k} ({v})" for k, v in list(report["modes"].items())[:4]),
    ]
    if report["test_leakage"]:
        leak = report["test_leakage"]
        lines.append(
            f"test leakage: {leak['with_a_near_identical_training_picture']} of {leak['testing_pictures']} "
            f"testing pictures have a near-identical training picture ({leak['with_a_near_duplicate_in_training']} "
            "a look-alike)"
        )
    for item in report["unreadable"]:
        lines.append(f"unreadable: {item['file']}: {item['why']}")
    return "\n".join(lines)
