"""One run's reports: thumbnails and DICOM captures while screening, then the reports at the end.

The command line makes a :class:`ReportSession`, hands it every :class:`FrameResult` as it comes
(:meth:`ReportSession.add`) and, once ``results.csv`` and ``results.json`` are final, calls
:meth:`ReportSession.finish` with its records and the run info. Failures are
:class:`~brainscan.engine.reports.common.ReportError` with a one-line message; what was already
written (``results.csv`` above all) is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainscan.engine.input.frames import FrameRef
from brainscan.engine.reports import common, privacy
from brainscan.engine.reports.content import MAX_TABLE_ROWS, MAX_THUMBNAILS, build_content
from brainscan.engine.reports.flags import ReviewRule
from brainscan.engine.reports.thumbnails import (
    DEFAULT_THRESHOLD,
    MAX_SIDE,
    THUMBNAILS_DIR,
    make_thumbnail,
    png_bytes,
    thumbnail_name,
)
from brainscan.engine.results import annotations as sidecar
from brainscan.engine.results.record import FrameRecord, FrameResult, frame_key
from brainscan.engine.results.verdict import VerdictRule

log = logging.getLogger(__name__)

RASTER_HAS_NO_DICOM = "{n} raster images have no DICOM output; DICOM objects are written for DICOM inputs only"


@dataclass
class ReportOptions:
    """What to write, and how.

    Parameters
    ----------
    formats:
        Any of :data:`~brainscan.engine.reports.common.FORMATS`.
    keep_identifiers:
        Show patient name, ID and birth date in the PDF and HTML (from ``results.csv``).
    deidentify:
        De-identify the DICOM objects (basic profile, new UIDs consistent within the run).
    verdict_rule:
        How each series is called (the model contract's ``series_rule``, else the defaults).
    sources:
        Files retrieved from an archive, by URL: the PDF and HTML show the URL instead of the cached file.
    annotations_fallback:
        Where the viewer keeps the annotations sidecar of a study in a read-only folder (its settings
        folder); the sidecar beside the study's files is always read.
    """

    formats: tuple[str, ...]
    colormap: str = "jet"
    opacity: float = 0.45
    threshold: float = DEFAULT_THRESHOLD
    keep_identifiers: bool = False
    deidentify: bool = False
    rule: ReviewRule = field(default_factory=ReviewRule)
    max_thumbnails: int = MAX_THUMBNAILS
    max_table_rows: int = MAX_TABLE_ROWS
    thumbnail_side: int = MAX_SIDE
    verdict_rule: VerdictRule = field(default_factory=VerdictRule)
    sources: Mapping[str, str] = field(default_factory=dict)  # archive instances: cached file -> URL (shown)
    annotations_fallback: Path | None = None

    @property
    def documents(self) -> bool:
        return bool({"pdf", "html"} & set(self.formats))

    @property
    def dicom(self) -> bool:
        return "dicom" in self.formats


@dataclass
class ReportOutcome:
    written: list[Path] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class ReportSession:
    """Report writing for one output folder (see the module docstring).

    Raises
    ------
    ReportError
        A report folder that cannot be used (made at once, before any screening).
    """

    def __init__(self, out_dir: Path, options: ReportOptions, *, application_version: str,
                 model_card: Mapping[str, Any], cam_method: str | None,
                 uids: privacy.UidFactory | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.options = options
        self.cam_method = cam_method
        self.thumbnails = common.ensure_folder(self.out_dir / THUMBNAILS_DIR) if options.documents else None
        self.dicom = None
        if options.dicom:
            from brainscan.engine.reports.dicom_outputs import DicomSettings, DicomWriter

            self.dicom = DicomWriter(self.out_dir / common.DICOM_DIR, DicomSettings(
                application_version=application_version, model_card=model_card, cam_method=cam_method,
                colormap=options.colormap, opacity=options.opacity, deidentify=options.deidentify,
            ), uids)

    def missing(self, ref: FrameRef) -> bool:
        """Whether an output this session writes for a classified frame is not on disk (a run killed
        between the frame's row and its files): resume then makes it again."""
        if self.thumbnails is not None and not (self.thumbnails / thumbnail_name(ref.path, ref.frame)).is_file():
            return True
        return self.dicom is not None and ref.kind == "dicom" and not self.dicom.sc_path(ref.path, ref.frame).is_file()

    def add(self, result: FrameResult) -> None:
        """Write what one result needs now: its thumbnail, its Secondary Capture.

        Raises
        ------
        ReportError
            A write that failed (disk full, folder gone), with a one-line message.
        """
        if not result.ok or result.frame is None:
            return
        try:
            if self.thumbnails is not None:
                picture = make_thumbnail(result.frame.picture, result.heat, colormap=self.options.colormap,
                                         opacity=self.options.opacity, threshold=self.options.threshold,
                                         max_side=self.options.thumbnail_side)
                path = self.thumbnails / thumbnail_name(result.ref.path, result.ref.frame)
                common.write_atomic(path, png_bytes(picture))
            if self.dicom is not None:
                self.dicom.add(result)
        except OSError as exc:
            raise common.ReportError(
                common.describe_os_error(Path(exc.filename or self.out_dir), exc)
                + "; results.csv and everything already written are kept"
            ) from exc

    def _annotations(self, records: list[FrameRecord]) -> sidecar.Annotations:
        """A person's measurements and key images of these frames (their study's sidecar); none when the
        sidecar cannot be read: annotations never stop a report."""
        try:
            found = sidecar.load({r.path for r in records}, self.options.annotations_fallback)
        except Exception as exc:
            log.warning("annotations not read for the report: %s", exc)
            return sidecar.Annotations()
        return found.only(frame_key(r.path, r.frame) for r in records)

    def finish(self, records: Iterable[FrameRecord], run: Mapping[str, Any], classes: tuple[str, ...]) -> ReportOutcome:
        """Write the PDF, HTML and the Structured Reports from the final records and run info.

        Raises
        ------
        ReportError
            A report that could not be written, or nothing written at all (e.g. DICOM asked for
            raster images only). The message is one line.
        """
        records = list(records)
        outcome = ReportOutcome()
        failures: list[str] = []
        found = self._annotations(records)
        if self.options.documents:
            from brainscan.engine.reports.html_report import write_html
            from brainscan.engine.reports.pdf_report import write_pdf

            uid_map = self.dicom.uids.replace if (self.dicom is not None and self.options.deidentify) else None
            content = build_content(
                self.out_dir, records, run, classes, rule=self.options.rule, colormap=self.options.colormap,
                opacity=self.options.opacity, keep_identifiers=self.options.keep_identifiers,
                max_thumbnails=self.options.max_thumbnails, max_table_rows=self.options.max_table_rows,
                dicom_uid=uid_map, verdict_rule=self.options.verdict_rule, sources=self.options.sources,
                annotations=found,
            )
            for name, writer, filename in (("pdf", write_pdf, common.REPORT_PDF), ("html", write_html, common.REPORT_HTML)):
                if name not in self.options.formats:
                    continue
                path = self.out_dir / filename
                try:
                    outcome.written.append(writer(content, path))
                except OSError as exc:
                    failures.append(common.describe_os_error(path, exc))
        if self.dicom is not None:
            try:
                summary = self.dicom.write_reports(records, classes, found)
            except OSError as exc:
                failures.append(common.describe_os_error(Path(exc.filename or self.dicom.folder), exc))
                summary = self.dicom.summary
            captures = sorted(self.dicom.folder.glob("SC-*.dcm"))
            outcome.written += summary.structured_reports
            nothing = not captures and not summary.structured_reports
            if not nothing:
                outcome.messages.append(
                    f"DICOM: {len(captures)} secondary captures and {len(summary.structured_reports)} structured "
                    f"reports in {self.dicom.folder}" + (" (de-identified)" if self.options.deidentify else ""))
            if summary.failures:
                outcome.messages.append(f"{len(summary.failures)} DICOM objects could not be made; "
                                        f"first: {summary.failures[0]}")
            raster_note = RASTER_HAS_NO_DICOM.format(n=summary.raster_inputs) if summary.raster_inputs else ""
            if nothing and not self.options.documents and not failures:
                failures.append(raster_note or "no DICOM objects written: no DICOM input was classified")
            elif raster_note:
                outcome.messages.append(raster_note)
        if failures:
            raise common.ReportError("; ".join(failures) + "; results.csv and everything already written are kept")
        return outcome
