"""The viewer's results table as plain data: rows, the filter, the per-series summary and CSV export.

The table view and its sort/filter proxy in :mod:`brainscan.gui` only display :class:`ResultRow`
objects and ask :class:`RowFilter` which to show; the series summary and the exported CSV come
from :mod:`brainscan.engine.results`, the same code the ``brainscan`` command writes with.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainscan import RESEARCH_USE_NOTICE, __version__
from brainscan.engine.results.record import FrameResult
from brainscan.engine.results.series import summarize_series
from brainscan.engine.results.store import RESULTS_CSV, SERIES_CSV, ResultsStore
from brainscan.engine.viewer.state import FrameKey, frame_key


@dataclass(frozen=True)
class ResultRow:
    """One line of the results table."""

    key: FrameKey
    name: str
    path: str
    frame: int
    series_uid: str
    series_index: int | None
    series_length: int | None
    status: str
    label: str
    confidence: float
    tumour_probability: float
    probabilities: tuple[float, ...]
    error: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def position(self) -> str:
        """``"5/16"`` within a series, the frame number of a multi-frame file, else empty."""
        if self.series_uid and self.series_index is not None and self.series_length:
            return f"{self.series_index + 1}/{self.series_length}"
        return str(self.frame) if self.frame else ""


def row_from_result(result: FrameResult, classes: tuple[str, ...]) -> ResultRow:
    ref = result.ref
    probabilities = tuple(float(p) for p in result.probabilities) if result.probabilities is not None else ()
    return ResultRow(
        key=frame_key(ref),
        name=Path(ref.path).name,
        path=str(ref.path),
        frame=int(ref.frame),
        series_uid=ref.series_uid,
        series_index=ref.series_index if ref.series_uid else None,
        series_length=ref.series_length if ref.series_uid else None,
        status=result.status,
        label=result.label,
        confidence=float(result.confidence),
        tumour_probability=float(result.tumour_probability),
        probabilities=probabilities if len(probabilities) == len(classes) else (),
        error=result.error,
    )


@dataclass(frozen=True)
class RowFilter:
    """Which rows the table shows.

    Attributes
    ----------
    label:
        Only rows classified as this class ("" for any).
    min_confidence:
        Only rows at least this confident (errors have no confidence and are hidden by it when > 0).
    errors_only:
        Only rows that failed.
    text:
        Only rows whose file name or message contains it (case-insensitive).
    """

    label: str = ""
    min_confidence: float = 0.0
    errors_only: bool = False
    text: str = ""

    def accepts(self, row: ResultRow) -> bool:
        if self.errors_only:
            if row.ok:
                return False
        else:
            if self.label and row.label != self.label:
                return False
            if self.min_confidence > 0 and (not row.ok or not row.confidence >= self.min_confidence):
                return False
        if self.text:
            needle = self.text.lower()
            return needle in row.name.lower() or needle in row.error.lower() or needle in row.label.lower()
        return True


def _summary_row(row: ResultRow) -> dict[str, str]:
    """The fields :func:`~brainscan.engine.results.summarize_series` reads, as the CSV has them."""
    return {
        "path": row.path,
        "frame": str(row.frame),
        "status": row.status,
        "label": row.label,
        "tumour_probability": "" if math.isnan(row.tumour_probability) else repr(row.tumour_probability),
        "series_uid": row.series_uid,
        "series_index": "" if row.series_index is None else str(row.series_index),
    }


def series_summary(rows: Iterable[ResultRow], classes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per DICOM series, the counts and the most suspicious slice (highest tumour probability)."""
    return summarize_series((_summary_row(r) for r in rows if r.series_uid), classes)


def most_suspicious_keys(summary: Iterable[Mapping[str, Any]]) -> set[FrameKey]:
    return {
        (str(entry["most_suspicious_path"]), int(entry["most_suspicious_frame"]))
        for entry in summary
        if entry.get("most_suspicious_path") is not None
    }


def export_results(
    path: str | Path,
    results: Iterable[FrameResult],
    classes: tuple[str, ...],
    cam_method: str | None,
    run_info: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write the results as the ``brainscan`` command does, to ``path`` and a series summary beside it.

    The rows and columns are those of :class:`~brainscan.engine.results.ResultsStore`; the first
    line of each file is a ``#`` comment holding the research-use notice (``pandas.read_csv(...,
    comment="#")`` skips it). Returns the two files written: ``path`` and ``<stem>-series.csv``.
    """
    target = Path(path)
    series_target = target.with_name(f"{target.stem}-series.csv")
    notice = f"# brainscan {__version__} viewer export. {RESEARCH_USE_NOTICE}\r\n".encode()
    with tempfile.TemporaryDirectory(prefix="brainscan-export-") as scratch:
        with ResultsStore(Path(scratch), tuple(classes)) as store:
            for result in results:
                store.append(result, cam_method if result.ok else None)
            store.finalize(dict(run_info or {}))
        for source, destination in ((Path(scratch) / RESULTS_CSV, target), (Path(scratch) / SERIES_CSV, series_target)):
            partial = destination.with_name(destination.name + ".partial")
            with open(partial, "wb") as out, open(source, "rb") as src:
                out.write(notice)
                shutil.copyfileobj(src, out)
            os.replace(partial, destination)
    return target, series_target
