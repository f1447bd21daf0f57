"""Reports of a screening run: PDF, HTML and DICOM (Secondary Capture and Structured Report).

Qt-free and torch-free. While screening, :class:`ReportSession` writes a small overlay thumbnail per
classified frame (``DIR/thumbnails``) and a DICOM Secondary Capture per classified DICOM slice
(``DIR/dicom``); at the end it builds the PDF and HTML reports and one DICOM Structured Report per
study from ``results.csv``, the thumbnails and the run info, so reports survive resume and memory
stays flat. Every page of every report carries :data:`brainscan.RESEARCH_USE_NOTICE`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brainscan.engine.reports.common import FORMATS, REPORT_HTML, REPORT_PDF, ReportError, parse_formats
from brainscan.engine.reports.flags import ReviewRule

if TYPE_CHECKING:  # pragma: no cover
    from brainscan.engine.reports.session import ReportOptions, ReportOutcome, ReportSession

_SESSION_NAMES = ("ReportOptions", "ReportOutcome", "ReportSession")


def __getattr__(name: str) -> Any:
    """The session's names, imported when first asked for: a run without reports never loads the report
    builders (issue 14's start-up)."""
    if name in _SESSION_NAMES:
        from brainscan.engine.reports import session

        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "FORMATS",
    "REPORT_HTML",
    "REPORT_PDF",
    "ReportError",
    "ReportOptions",
    "ReportOutcome",
    "ReportSession",
    "ReviewRule",
    "parse_formats",
]
