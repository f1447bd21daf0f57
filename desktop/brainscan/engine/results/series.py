"""The per-series summary of a run: slice counts, labels and the most suspicious slice, and ``series.csv``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from brainscan.engine.model.inference import negative_class_index
from brainscan.engine.results.cells import neutralise, plain_text
from brainscan.engine.results.files import atomic_write_text


def summarize_series(rows: Iterable[Mapping[str, str]], classes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per DICOM series: slice counts, labels, and the most suspicious slice (highest tumour probability)."""
    negative = negative_class_index(classes)
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        uid = row.get("series_uid") or ""
        if not uid:
            continue
        entry = summary.setdefault(
            uid,
            {"series_uid": uid, "slices": 0, "ok": 0, "errors": 0, "labels": {}, "most_suspicious_path": None,
             "most_suspicious_frame": None, "most_suspicious_index": None, "most_suspicious_label": None,
             "max_tumour_probability": None},
        )
        entry["slices"] += 1
        if row["status"] != "ok":
            entry["errors"] += 1
            continue
        entry["ok"] += 1
        entry["labels"][row["label"]] = entry["labels"].get(row["label"], 0) + 1
        probability = float(row["tumour_probability"])
        if entry["max_tumour_probability"] is None or probability > entry["max_tumour_probability"]:
            entry.update(
                most_suspicious_path=row["path"],
                most_suspicious_frame=int(row["frame"]),
                most_suspicious_index=int(row["series_index"]) if row.get("series_index") else None,
                most_suspicious_label=row["label"],
                max_tumour_probability=probability,
            )
    result = list(summary.values())
    for entry in result:
        entry["tumour_probability_of"] = "1 - p(" + classes[negative] + ")" if negative is not None else "top class"
    return result


def write_series_csv(path: Path, series: list[dict[str, Any]]) -> None:
    columns = ["series_uid", "slices", "ok", "errors", "labels", "most_suspicious_index", "most_suspicious_path",
               "most_suspicious_frame", "most_suspicious_label", "max_tumour_probability"]
    lines = [",".join(columns)]
    for entry in series:
        values = dict(entry)
        values["labels"] = ";".join(f"{k}:{v}" for k, v in sorted(entry["labels"].items()))
        lines.append(",".join(_csv_cell(values.get(c)) for c in columns))
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
