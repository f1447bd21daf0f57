"""The per-series summary of a run (:class:`SeriesSummary`): slice counts, labels, the most suspicious
slice and the series' verdict (:mod:`~brainscan.engine.results.verdict`), and its forms in ``results.json``
and ``series.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainscan.engine.model.inference import negative_class_index
from brainscan.engine.results.cells import neutralise, path_text, plain_text
from brainscan.engine.results.files import atomic_write_text
from brainscan.engine.results.record import FrameRecord
from brainscan.engine.results.verdict import Verdict, VerdictRule, VerdictTally

SERIES_COLUMNS = ("series_uid", "slices", "ok", "errors", "out_of_domain", "labels", "most_suspicious_index", "most_suspicious_path",
                  "most_suspicious_frame", "most_suspicious_label", "max_tumour_probability", "in_domain_slices", "verdict",
                  "verdict_support")


@dataclass
class SeriesSummary:
    """One DICOM series of a run.

    Attributes
    ----------
    slices, ok, errors:
        Its frames: all, classified, failed.
    out_of_domain:
        Classified frames the picture checks judged out of domain (counted in ``ok`` too).
    labels:
        Classified frames per label, in the order first seen.
    most_suspicious:
        The classified in-domain slice with the highest tumour probability (the first of equals), None when none.
    tumour_probability_of:
        How the tumour probability is computed (``"1 - p(notumor)"``, or ``"top class"``).
    verdict:
        The series' verdict (:func:`~brainscan.engine.results.verdict.series_verdict`).
    most_suspicious_source:
        The archive URL the most suspicious slice's file was retrieved from, written as its path in
        ``results.json`` and ``series.csv`` ("" for a local file; set by the store).
    """

    series_uid: str
    slices: int = 0
    ok: int = 0
    errors: int = 0
    out_of_domain: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    most_suspicious: FrameRecord | None = None
    tumour_probability_of: str = ""
    verdict: Verdict | None = None
    most_suspicious_source: str = ""

    @property
    def max_tumour_probability(self) -> float | None:
        return None if self.most_suspicious is None else self.most_suspicious.tumour_probability

    @property
    def in_domain_slices(self) -> int:
        """Classified slices the picture checks did not judge out of domain."""
        return self.ok - self.out_of_domain

    def to_dict(self) -> dict[str, Any]:
        """The summary as ``results.json`` holds it (the path as :func:`path_text` writes it)."""
        best = self.most_suspicious
        return {
            "series_uid": plain_text(self.series_uid),
            "slices": self.slices,
            "ok": self.ok,
            "errors": self.errors,
            "out_of_domain": self.out_of_domain,
            "labels": dict(self.labels),
            "most_suspicious_path": None if best is None else (self.most_suspicious_source or path_text(best.path)),
            "most_suspicious_frame": None if best is None else best.frame,
            "most_suspicious_index": None if best is None else best.series_index,
            "most_suspicious_label": None if best is None else best.label,
            "max_tumour_probability": self.max_tumour_probability,
            "tumour_probability_of": self.tumour_probability_of,
            "in_domain_slices": self.in_domain_slices,
            "verdict": None if self.verdict is None else self.verdict.label,
            "verdict_support": None if self.verdict is None else self.verdict.support,
            "verdict_text": None if self.verdict is None else self.verdict.text,
        }


def summarize_series(records: Iterable[FrameRecord], classes: tuple[str, ...],
                     rule: VerdictRule | None = None) -> list[SeriesSummary]:
    """Per DICOM series, in the order first seen: slice counts, labels, the most suspicious slice
    (highest tumour probability among in-domain slices) and the verdict by ``rule`` (the defaults when
    None). Frames outside a series are left out."""
    negative = negative_class_index(classes)
    probability_of = "1 - p(" + classes[negative] + ")" if negative is not None else "top class"
    rule = rule or VerdictRule()
    summary: dict[str, SeriesSummary] = {}
    tallies: dict[str, VerdictTally] = {}
    for record in records:
        if not record.series_uid:
            continue
        entry = summary.get(record.series_uid)
        if entry is None:
            entry = summary[record.series_uid] = SeriesSummary(record.series_uid, tumour_probability_of=probability_of)
            tallies[record.series_uid] = VerdictTally(tuple(classes), rule)
        tallies[record.series_uid].add(record)
        entry.slices += 1
        if not record.ok:
            entry.errors += 1
            continue
        entry.ok += 1
        entry.labels[record.label] = entry.labels.get(record.label, 0) + 1
        if record.in_domain is False:
            entry.out_of_domain += 1
            continue
        probability = record.tumour_probability
        best = entry.max_tumour_probability
        if not math.isnan(probability) and (best is None or probability > best):
            entry.most_suspicious = record
    for uid, entry in summary.items():
        entry.verdict = tallies[uid].verdict()
    return list(summary.values())


def write_series_csv(path: Path, series: list[SeriesSummary]) -> None:
    lines = [",".join(SERIES_COLUMNS)]
    for entry in series:
        values = entry.to_dict()
        values["labels"] = ";".join(f"{k}:{v}" for k, v in sorted(entry.labels.items()))
        lines.append(",".join(_csv_cell(values.get(c)) for c in SERIES_COLUMNS))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    text = neutralise(plain_text(str(value)))
    if any(ch in text for ch in ',"\n\r'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def verdict_lines(series: list[SeriesSummary], max_lines: int = 10) -> list[str]:
    """The series' verdicts in a few lines for the end of a run: one per series, or a count per verdict when
    there are more than ``max_lines`` series; none when no series has more than one frame."""
    judged = [(entry, entry.verdict) for entry in series if entry.verdict is not None]
    if not any(entry.slices > 1 for entry, _ in judged):
        return []
    if len(judged) > max_lines:
        counts: dict[str, int] = {}
        for _, verdict in judged:
            counts[verdict.label or "no verdict"] = counts.get(verdict.label or "no verdict", 0) + 1
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return [f"series verdicts ({len(judged)} series): " + ", ".join(f"{n} {label}" for label, n in ranked)
                + "; each in series.csv"]
    return [f"series {plain_text(entry.series_uid)}: {verdict.label or 'no verdict'} ({verdict.detail})"
            for entry, verdict in judged]
