"""Screening into an output folder: the one loop behind ``brainscan screen`` and the viewer's reports.

A :class:`FolderRun` owns one output folder for one run: ``results.csv`` (resumable, one row per
frame, flushed as it is made), ``results.json`` with the run's provenance, optional PNG overlays
and optional reports (:mod:`brainscan.engine.reports`). The command line iterates
:meth:`FolderRun.results` under a progress bar; the viewer iterates it in a worker thread and may
stop between frames. Either way :meth:`FolderRun.finish` (or leaving the ``with`` block) writes
``results.json``; the reports are written only when every frame was seen, from the final records::

    with FolderRun(classifier, refs, RunSettings(out=Path("out"), report_formats=("pdf",))) as run:
        for result in run.results():
            ...                      # progress
        outcome = run.finish()       # results.json, then the reports

Frames already in ``results.csv`` are skipped (resume). Nothing here imports Qt or torch.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnxruntime

from brainscan import RESEARCH_USE_NOTICE, __version__
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.input.planes import conflict_message, planes_in_conflict
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.overlay import blend, caption, write_png
from brainscan.engine.reports import ReportError, privacy
from brainscan.engine.reports.thumbnails import DEFAULT_THRESHOLD, frame_stem
from brainscan.engine.results.cells import path_text
from brainscan.engine.results.record import FrameKey, FrameResult, frame_key
from brainscan.engine.results.series import SeriesSummary
from brainscan.engine.results.store import OutputError, ResultsStore, write_failure
from brainscan.engine.results.verdict import VerdictRule
from brainscan.engine.run.screening import DEFAULT_BATCH_SIZE, screen

if TYPE_CHECKING:  # the report builders are imported only when a run writes reports
    from brainscan.engine.reports import ReportOutcome

OVERLAYS_DIR = "overlays"


@dataclass(frozen=True)
class RunSettings:
    """What one run writes, and how.

    Parameters
    ----------
    out:
        The output folder (made if needed; re-using it resumes).
    cam_method:
        One of :data:`brainscan.engine.cam.METHODS`, or None for no heat maps.
    report_formats:
        Any of ``pdf``, ``html``, ``dicom`` (:data:`brainscan.engine.reports.FORMATS`).
    inputs:
        What the user asked to screen, as given (recorded in ``results.json``).
    device_requested:
        The device the user asked for (the one used is the classifier's).
    sources:
        Files retrieved from an archive into a cache folder, by the instance's URL: their rows name
        the URL (:class:`~brainscan.engine.results.store.ResultsStore`).
    failed_inputs:
        Error results of inputs that failed before screening (an archive instance not retrieved, a
        study or series URL that could not be listed): each is written as an error row when the
        folder is opened, unless its file already has a row.
    replace:
        Files whose earlier rows are dropped so that they are screened again (archive instances
        retrieved by this run: :attr:`ResultsStore.replace <brainscan.engine.results.store.ResultsStore>`).
    """

    out: Path
    cam_method: str | None = "gradcam"
    colormap: str = "jet"
    opacity: float = 0.45
    threshold: float = DEFAULT_THRESHOLD  # heat under it stays uncoloured in thumbnails and saved overlays
    batch_size: int | None = DEFAULT_BATCH_SIZE  # None: measured (engine/run/tuning.py), with lanes
    lanes: int | None = 1  # batches classified at once; None: measured, up to one per share of the cores
    save_overlays: bool = False
    report_formats: tuple[str, ...] = ()
    keep_identifiers: bool = False
    deidentify: bool = False
    inputs: tuple[str, ...] = ()
    device_requested: str = "auto"
    sources: Mapping[str, str] = field(default_factory=dict)  # archive instances: cached file -> its URL
    failed_inputs: tuple[FrameResult, ...] = ()
    replace: frozenset[str] = frozenset()
    annotations_fallback: Path | None = None  # the viewer's sidecar folder for read-only studies (ReportOptions)


@dataclass
class RunOutcome:
    """How a run ended: counts over the whole folder (resumed rows included) and the reports."""

    ok: int = 0
    failed: int = 0
    out_of_domain: int = 0  # of the ok frames, those the picture checks judged out of domain
    interrupted: bool = False
    reports: ReportOutcome | None = None
    report_error: str = ""
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)
    series: list[SeriesSummary] = field(default_factory=list)  # series.csv's summary, verdicts included

    @property
    def frames(self) -> int:
        return self.ok + self.failed


def overlay_name(ref: FrameRef) -> str:
    """A file name for a frame's overlay PNG, unique per source path and frame."""
    return f"{frame_stem(ref.path, ref.frame)}.png"


class FolderRun:
    """One screening run into one output folder (see the module notes).

    Raises
    ------
    BrainscanError
        The folder cannot be used (:class:`~brainscan.engine.errors.OutputError`, another run
        holds it) or a report folder cannot be made (:class:`ReportError`); raised on creation,
        before any frame is screened.
    """

    def __init__(self, classifier: Classifier, refs: Sequence[FrameRef], settings: RunSettings) -> None:
        if not 0.0 <= settings.opacity <= 1.0:
            raise ValueError(f"opacity must lie in [0, 1], got {settings.opacity}")
        if settings.batch_size is not None and settings.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {settings.batch_size}")
        if settings.deidentify and settings.keep_identifiers:
            raise ValueError("keep_identifiers and deidentify contradict each other: choose one")
        self.classifier = classifier
        self.settings = settings
        self._started = time.perf_counter()
        self.verdict_rule = VerdictRule.from_contract(classifier.contract)
        self.store = ResultsStore(settings.out, classifier.classes, include_identifiers=settings.keep_identifiers,
                                  verdict_rule=self.verdict_rule, sources=settings.sources,
                                  replace=settings.replace)
        try:
            # one UID mapping for every output of the folder (CSV, JSON, reports, DICOM objects)
            self.uids = privacy.open_state(settings.out, deidentify=settings.deidentify)
            if settings.deidentify:
                self.store.uid_map = self.uids.replace
            if settings.report_formats:  # the report builders are imported only for a run that writes reports
                from brainscan.engine.reports.session import ReportOptions, ReportSession
            self.reports = ReportSession(
                settings.out,
                ReportOptions(settings.report_formats, colormap=settings.colormap, opacity=settings.opacity,
                              threshold=settings.threshold,
                              keep_identifiers=settings.keep_identifiers, deidentify=settings.deidentify,
                              verdict_rule=self.verdict_rule, sources=settings.sources,
                              annotations_fallback=settings.annotations_fallback),
                application_version=__version__, model_card=classifier.model_card(), cam_method=settings.cam_method,
                uids=self.uids,
            ) if settings.report_formats else None
            self.overlays = settings.out / OVERLAYS_DIR if settings.save_overlays else None
            if self.overlays is not None:
                self.overlays.mkdir(parents=True, exist_ok=True)
            conflicts = planes_in_conflict(self.store.done, refs)  # one plane per file and folder (input/planes.py)
            if conflicts:
                raise OutputError(conflict_message(settings.out, conflicts))
            for failed in settings.failed_inputs:
                if not self.store.is_done(failed.ref.path, failed.ref.frame):
                    # never read: its place in the series is unknown
                    record = self.store.record(failed, None)
                    self.store.append_record(replace(record, series_index=None, series_length=None))
        except BaseException:
            self.store.close()
            raise
        self.total = len(refs)
        self.todo: list[FrameRef] = []  # frames to screen: new ones, and classified ones missing an output
        self._outputs_only: set[FrameKey] = set()  # those that already have their row
        for ref in refs:
            status = self.store.status(ref.path, ref.frame)
            if status is None:
                self.todo.append(ref)
                continue
            # the spelling of the first run, so that its overlays, thumbnails and captures are found
            ref = replace(ref, path=self.store.recorded_path(ref.path, ref.frame) or ref.path)
            if status == "ok" and self._missing_output(ref):
                self.todo.append(ref)
                self._outputs_only.add(frame_key(ref.path, ref.frame))
        self.already_done = self.total - len(self.todo) + len(self._outputs_only)
        self.remade = len(self._outputs_only)
        self.run_info: dict[str, Any] = {
            "application": f"brainscan {__version__}",
            "notice": RESEARCH_USE_NOTICE,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inputs": [path_text(p) for p in settings.inputs],
            "model": classifier.model_card(),
            "device": {"requested": settings.device_requested, "providers": list(classifier.device.providers),
                       "used": classifier.device.used, "note": classifier.device.note},
            "onnxruntime": onnxruntime.__version__,
            "platform": platform.platform(),
            "cam_method": settings.cam_method,
            "cam_settings": {"colormap": settings.colormap, "opacity": settings.opacity},
        }
        self._seen = 0
        self._finalized = False
        self._series: list[SeriesSummary] = []

    # -- the loop ------------------------------------------------------------------------------------
    def results(self) -> Iterator[FrameResult]:
        """Screen every frame not yet done, store its row (and overlay, report parts), yield it.

        The results come without their decoded picture and heat map (``frame``, ``heat``): those are
        written out and released before the next frame, so memory is bounded per frame.
        """
        keep = self.overlays is not None or self.reports is not None
        for result in screen(self.todo, self.classifier, cam_method=self.settings.cam_method,
                             batch_size=self.settings.batch_size, lanes=self.settings.lanes, keep_frames=keep):
            if frame_key(result.ref.path, result.ref.frame) not in self._outputs_only:
                self.store.append(result, self.settings.cam_method)
            if self.overlays is not None:
                self._save_overlay(result)
            if self.reports is not None:
                self.reports.add(result)
            self._seen += 1
            # the picture and heat map are written: let them go before the next frame (memory stays per frame)
            result.frame = result.heat = None
            yield result

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.store.counts)

    @property
    def complete(self) -> bool:
        return self._seen == len(self.todo)

    def _missing_output(self, ref: FrameRef) -> bool:
        """Whether a requested output of an already classified frame is not on disk."""
        overlays_wanted = self.overlays is not None and self.settings.cam_method is not None  # no heat, no overlay
        if overlays_wanted and not (self.overlays / overlay_name(ref)).is_file():  # type: ignore[operator]
            return True
        return self.reports is not None and self.reports.missing(ref)

    def _save_overlay(self, result: FrameResult) -> None:
        if not result.ok or result.frame is None or result.heat is None or self.overlays is None:
            return
        mixed = blend(result.frame.picture, result.heat, colormap=self.settings.colormap, opacity=self.settings.opacity,
                      threshold=self.settings.threshold)
        text = f"{result.label} {result.confidence:.2f} | {self.settings.cam_method} | research use only"
        target = self.overlays / overlay_name(result.ref)
        try:
            write_png(target, caption(mixed, text))
        except OSError as exc:  # a full disk: say which file, keep everything written
            raise OutputError(write_failure(target, exc)) from exc

    # -- the end -------------------------------------------------------------------------------------
    def finish(self) -> RunOutcome:
        """Write ``results.json`` and, when every frame was seen, the reports; release the folder.

        The folder stays locked until the reports are written. A report that cannot be written is
        ``report_error`` in the outcome (its message names the file); ``results.csv`` and everything
        already written are kept.
        """
        try:
            outcome = self._finalize(interrupted=not self.complete)
            if outcome.interrupted or self.reports is None:
                return outcome
            try:
                outcome.reports = self.reports.finish(self.store.records(), self.run_info, self.classifier.classes)
            except ReportError as exc:
                outcome.report_error = str(exc)
            else:
                outcome.messages.extend(outcome.reports.messages)
            return outcome
        finally:
            self.store.close()

    def _finalize(self, *, interrupted: bool) -> RunOutcome:
        counts = self.store.counts
        outcome = RunOutcome(ok=counts.get("ok", 0), failed=counts.get("error", 0),
                             out_of_domain=self.store.out_of_domain, interrupted=interrupted,
                             seconds=round(time.perf_counter() - self._started, 3))
        if not self._finalized:
            self._finalized = True
            self.run_info["seconds"] = outcome.seconds
            self.run_info["interrupted"] = interrupted
            self._series = self.store.finalize(self.run_info)
        outcome.series = list(self._series)
        return outcome

    def close(self) -> None:
        """Release the folder, writing ``results.json`` if :meth:`finish` was not called (idempotent)."""
        try:
            if not self._finalized:
                self._finalize(interrupted=not self.complete)
        finally:
            self.store.close()

    def __enter__(self) -> FolderRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
