"""Reports of a screening run: PDF, HTML and DICOM (Secondary Capture and Structured Report).

Qt-free and torch-free. While screening, :class:`ReportSession` writes a small overlay thumbnail per
classified frame (``DIR/thumbnails``) and a DICOM Secondary Capture per classified DICOM slice
(``DIR/dicom``); at the end it builds the PDF and HTML reports and one DICOM Structured Report per
study from ``results.csv``, the thumbnails and the run info, so reports survive resume and memory
stays flat. Every page of every report carries :data:`brainscan.RESEARCH_USE_NOTICE`.
"""

from __future__ import annotations

from brainscan.engine.reports.common import FORMATS, REPORT_HTML, REPORT_PDF, ReportError, parse_formats
from brainscan.engine.reports.flags import ReviewRule
from brainscan.engine.reports.session import ReportOptions, ReportOutcome, ReportSession

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
