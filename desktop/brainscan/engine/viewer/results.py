"""The viewer's results table as plain data: the filter, the position text, the per-series summary and CSV export.

The table view and its sort/filter proxy in :mod:`brainscan.gui` show the
:class:`~brainscan.engine.results.record.FrameRecord` objects the
:class:`~brainscan.engine.viewer.state.ViewerSession` keeps, and ask :class:`RowFilter` which to
show; the series summary and the exported CSV come from :mod:`brainscan.engine.results`, the same
code the ``brainscan`` command writes with.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainscan import RESEARCH_USE_NOTICE, __version__
from brainscan.engine.results.names import display_name
from brainscan.engine.results.record import FrameKey, FrameRecord, frame_key
from brainscan.engine.results.series import SeriesSummary, summarize_series
from brainscan.engine.results.store import RESULTS_CSV, SERIES_CSV, ResultsStore
from brainscan.engine.results.verdict import OUT_OF_DOMAIN, VerdictRule


def position(record: FrameRecord) -> str:
    """``"5/16"`` within a series, the frame number of a multi-frame file, else empty."""
    if record.series_uid and record.series_index is not None and record.series_length:
        return f"{record.series_index + 1}/{record.series_length}"
    return str(record.frame) if record.frame else ""


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
    domain:
        ``"in"``: only rows judged in domain; ``"out"``: only rows judged out of domain (rows not
        judged, such as errors, are hidden by either); ``""`` for any.
    """

    label: str = ""
    min_confidence: float = 0.0
    errors_only: bool = False
    text: str = ""
    domain: str = ""

    def accepts(self, record: FrameRecord) -> bool:
        if self.errors_only:
            if record.ok:
                return False
        else:
            if self.label and record.label != self.label:
                return False
            if self.min_confidence > 0 and (not record.ok or not record.confidence >= self.min_confidence):
                return False
            if self.domain and record.in_domain is not (self.domain == "in"):
                return False
        if self.text:
            needle = self.text.lower()
            return (needle in record.name.lower() or needle in record.error.lower() or needle in record.label.lower()
                    or needle in display_name(record.label).lower())
        return True


def series_summary(records: Iterable[FrameRecord], classes: tuple[str, ...],
                   rule: VerdictRule | None = None) -> list[SeriesSummary]:
    """Per DICOM series, the counts, the most suspicious slice and the verdict by ``rule`` (the model
    contract's, :meth:`VerdictRule.from_contract`): the summary ``brainscan screen`` writes."""
    return summarize_series(records, classes, rule)


def verdict_cell(entry: SeriesSummary) -> tuple[str, str, bool]:
    """A series' verdict as the summary table shows it: the label and the full text (a tooltip), by the
    classes' display names, and whether it is a warning (out of domain)."""
    verdict = entry.verdict
    if verdict is None:
        return "", "", False
    return verdict.display_label or "no verdict", verdict.display_text, verdict.label == OUT_OF_DOMAIN


def most_suspicious_keys(summary: Iterable[SeriesSummary]) -> set[FrameKey]:
    return {
        frame_key(entry.most_suspicious.path, entry.most_suspicious.frame)
        for entry in summary
        if entry.most_suspicious is not None
    }


def export_results(
    path: str | Path,
    records: Iterable[FrameRecord],
    classes: tuple[str, ...],
    run_info: Mapping[str, Any] | None = None,
    rule: VerdictRule | None = None,
) -> tuple[Path, Path]:
    """Write the results as the ``brainscan`` command does, to ``path`` and a series summary beside it.

    The rows and columns are those of :class:`~brainscan.engine.results.ResultsStore`; the first
    line of each file is a ``#`` comment holding the research-use notice (``pandas.read_csv(...,
    comment="#")`` skips it). ``rule`` calls each series (the defaults when None). Returns the two files
    written: ``path`` and ``<stem>-series.csv``.
    """
    target = Path(path)
    series_target = target.with_name(f"{target.stem}-series.csv")
    notice = f"# brainscan {__version__} viewer export. {RESEARCH_USE_NOTICE}\r\n".encode()
    with tempfile.TemporaryDirectory(prefix="brainscan-export-") as scratch:
        with ResultsStore(Path(scratch), tuple(classes), verdict_rule=rule or VerdictRule()) as store:
            for record in records:
                store.append_record(record)
            store.finalize(dict(run_info or {}))
        for source, destination in ((Path(scratch) / RESULTS_CSV, target), (Path(scratch) / SERIES_CSV, series_target)):
            partial = destination.with_name(destination.name + ".partial")
            with open(partial, "wb") as out, open(source, "rb") as src:
                out.write(notice)
                shutil.copyfileobj(src, out)
            os.replace(partial, destination)
    return target, series_target
