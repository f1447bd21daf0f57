"""What a PDF or HTML report shows, gathered once from the records of ``results.csv``, the thumbnails and the run info.

Both writers render the same :class:`ReportContent`, so they always agree. Nothing here decodes a
picture: input fingerprints come from file hashes (raster) and DICOM headers read without pixels.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from brainscan import RESEARCH_USE_NOTICE
from brainscan.engine.input import raster_headers
from brainscan.engine.input.dicom_header import import_pydicom
from brainscan.engine.input.frames import kind_of
from brainscan.engine.input.picture_checks import HEAT_OUTSIDE_WARNING
from brainscan.engine.input.planes import frame_label
from brainscan.engine.model.cam import pointing_note
from brainscan.engine.model.integrity import UNVERIFIED_WARNING, file_sha256, is_verified
from brainscan.engine.reports.annotation_content import AnnotationSection, gather
from brainscan.engine.reports.flags import ReviewRule
from brainscan.engine.reports.thumbnails import THUMBNAILS_DIR, thumbnail_name
from brainscan.engine.results.annotations import Annotations
from brainscan.engine.results.cells import path_text
from brainscan.engine.results.names import display_name
from brainscan.engine.results.record import FrameRecord
from brainscan.engine.results.rows import IDENTIFIER_COLUMNS
from brainscan.engine.results.series import SeriesSummary, summarize_series
from brainscan.engine.results.verdict import VerdictRule

log = logging.getLogger(__name__)

MAX_THUMBNAILS = 200
MAX_TABLE_ROWS = 5000


@dataclass
class ImageEntry:
    """One frame as a report shows it: its record, why it is flagged for review, its thumbnail.

    ``identifiers`` holds the patient identifiers shown (none unless the report keeps them); ``folder`` is the
    common folder of the run's inputs, which the report names once and shows each path relative to.
    """

    record: FrameRecord
    review: list[str] = field(default_factory=list)
    thumbnail: Path | None = None
    identifiers: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None
    source: str = ""  # the archive URL the file was retrieved from ("" for a local file)

    @property
    def path(self) -> str:
        """The file as the report shows it: its archive URL (:attr:`source`), else relative to :attr:`folder`
        (the results files keep it absolute)."""
        return self.source or shown_path(self.record.path, self.folder)

    @property
    def display_label(self) -> str:
        """The class for people ("No tumour"); :attr:`label` is the raw name."""
        return display_name(self.record.label)

    @property
    def frame(self) -> int:
        return self.record.frame

    @property
    def ok(self) -> bool:
        return self.record.ok

    @property
    def label(self) -> str:
        return self.record.label

    @property
    def confidence(self) -> float:
        return self.record.confidence

    @property
    def tumour_probability(self) -> float:
        return self.record.tumour_probability

    @property
    def probabilities(self) -> Mapping[str, float]:
        return self.record.probabilities

    @property
    def error(self) -> str:
        return self.record.error

    @property
    def where(self) -> str:
        """The path, with the frame when it is not the first."""
        return f"{self.path} [{frame_label(self.frame)}]" if self.frame else self.path

    @property
    def warnings(self) -> list[str]:
        """What the picture checks say against this frame: out of domain, a heat map mostly outside the head."""
        found = []
        if self.record.in_domain is False:
            found.append(f"OUT OF DOMAIN: {self.record.domain_reason or 'the picture checks failed'}")
        if self.record.heat_outside > HEAT_OUTSIDE_WARNING:  # False for NaN
            found.append(f"WARNING: {100 * self.record.heat_outside:.0f} % of the heat map lies outside the head")
        return found

    @property
    def flags(self) -> list[str]:
        """Every line a report shows against this frame: its warnings, then why it is flagged for review."""
        return self.warnings + (["REVIEW: " + "; ".join(self.review)] if self.review else [])


@dataclass
class InputRecord:
    """How one input file is pinned down: its SHA-256 (raster) or SOP Instance UID (DICOM)."""

    path: str
    kind: str  # "raster" | "dicom" | "unknown"
    fingerprint: str  # hex digest, UID, or "" when unavailable
    note: str = ""


@dataclass
class ReportContent:
    """Everything a report shows."""

    title: str
    notice: str
    created: str
    classes: tuple[str, ...]
    run: Mapping[str, Any]
    entries: list[ImageEntry]
    table: list[ImageEntry]  # the per-image table (capped at max_table_rows)
    gallery: list[ImageEntry]  # entries with a thumbnail, most suspicious first (capped)
    errors: list[ImageEntry]
    series: list[SeriesSummary]
    inputs: list[InputRecord]
    rule: ReviewRule
    colormap: str
    opacity: float
    notes: list[str] = field(default_factory=list)
    identifiers_shown: bool = False
    verdict_rule: VerdictRule = field(default_factory=VerdictRule)
    common_folder: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict)  # archive instances: real path of the file -> URL
    annotations: AnnotationSection = field(default_factory=AnnotationSection)  # measurements and key images

    @property
    def counts(self) -> dict[str, int]:
        ok = sum(1 for e in self.entries if e.ok)
        return {"frames": len(self.entries), "ok": ok, "error": len(self.entries) - ok,
                "flagged": sum(1 for e in self.entries if e.ok and e.review),
                "out_of_domain": sum(1 for e in self.entries if e.ok and e.record.in_domain is False)}

    def summary_line(self) -> str:
        """The one-line summary both reports open with."""
        counts = self.counts
        return (f"{counts['frames']} frames: {counts['ok']} classified, {counts['error']} failed, "
                f"{counts['flagged']} flagged for review ({self.rule.describe()}); "
                f"{counts['out_of_domain']} out of domain (by the picture checks, not pictures the model knows; "
                "their probabilities are kept for research only).")

    def folder_line(self) -> str:
        """Where the paths shown are relative to, once for the summary ("" when the inputs share no folder)."""
        if self.common_folder is None:
            return ""
        return f"Inputs: paths are shown relative to their common folder {path_text(self.common_folder)}"

    def class_rows(self) -> list[list[str]]:
        """The frames per class, header first, by the classes' display names."""
        return [["class", "frames"], *([display_name(name), str(n)] for name, n in self.label_counts().items())]

    def probability_heads(self) -> list[str]:
        """The per-class probability columns' headers ("p(No tumour)")."""
        return [f"p({display_name(c)})" for c in self.classes]

    def verdict_rule_line(self) -> str:
        """How the series verdicts are reached, once for the summary ("" without series)."""
        return f"Series verdicts: {self.verdict_rule.describe()}" if self.series else ""

    def label_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for entry in self.entries:
            if entry.ok:
                counts[entry.label] = counts.get(entry.label, 0) + 1
        return counts


def common_folder(paths: Iterable[str | os.PathLike[str]]) -> Path | None:
    """The deepest folder holding every input (a single file's own folder); None when they share none
    (different drives) or there is no input."""
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    if not folders:
        return None
    try:
        return Path(os.path.commonpath(sorted(folders)))
    except ValueError:
        return None


def real_sources(sources: Mapping[str, str] | None) -> dict[str, str]:
    """``sources`` (a file retrieved from an archive -> its URL) keyed by each file's real path."""
    return {os.path.realpath(path): url for path, url in (sources or {}).items()}


def shown_path(path: str | os.PathLike[str], folder: Path | None, sources: Mapping[str, str] | None = None) -> str:
    """``path`` as a report shows it: the URL of an archive instance (``sources``, keyed by real path,
    :func:`real_sources`), else relative to ``folder`` when under it, else as the results files write it."""
    if sources:
        url = sources.get(os.path.realpath(path))
        if url is not None:
            return url
    if folder is not None:
        try:
            return path_text(Path(os.path.abspath(path)).relative_to(folder))
        except ValueError:
            pass
    return path_text(path)


def entry_from_record(record: FrameRecord, classes: tuple[str, ...], rule: ReviewRule, thumbnails: Path | None,
                      keep_identifiers: bool, folder: Path | None = None,
                      sources: Mapping[str, str] | None = None) -> ImageEntry:
    """A record as a report shows it: flagged by ``rule``, with its thumbnail when it has one in ``thumbnails``,
    its path relative to ``folder`` (or its archive URL, ``sources`` keyed by real path)."""
    entry = ImageEntry(record, folder=folder,
                       source=(sources or {}).get(os.path.realpath(record.path), "") if sources else "")
    if record.ok:
        entry.review = rule.reasons({name: record.probability(name) for name in classes})
        if thumbnails is not None:
            candidate = thumbnails / thumbnail_name(record.path, record.frame)
            entry.thumbnail = candidate if candidate.is_file() else None
    if keep_identifiers:
        entry.identifiers = {c: record.identifiers[c] for c in IDENTIFIER_COLUMNS if record.identifiers.get(c)}
    return entry


def fingerprint_inputs(paths: Iterable[Path], dicom_uid: Callable[[str], str] | None = None,
                       folder: Path | None = None, sources: Mapping[str, str] | None = None) -> list[InputRecord]:
    """SHA-256 of each raster input, SOP Instance UID of each DICOM input (``dicom_uid`` maps it, e.g. de-identified).

    Each input is listed once, by its path relative to ``folder`` (as the results files write it without one).
    """
    records = []
    for path in dict.fromkeys(paths):
        text = shown_path(path, folder, sources)
        try:
            kind = kind_of(raster_headers.sniff_file(path))
        except Exception as exc:  # a file gone since screening: say so, keep going
            records.append(InputRecord(text, "unknown", "", f"unavailable ({type(exc).__name__})"))
            continue
        try:
            if kind == "raster":
                records.append(InputRecord(text, kind, file_sha256(path)))
            elif kind == "dicom":
                ds = import_pydicom().dcmread(path, stop_before_pixels=True, force=True,
                                              specific_tags=["SOPInstanceUID"])
                uid = str(ds.get("SOPInstanceUID", "") or "")
                records.append(InputRecord(text, kind, dicom_uid(uid) if (uid and dicom_uid) else uid))
            else:
                records.append(InputRecord(text, kind, file_sha256(path), "not an image"))
        except Exception as exc:
            log.info("no fingerprint for %s: %s", path, exc)
            records.append(InputRecord(text, kind, "", f"unavailable ({type(exc).__name__})"))
    return records


def build_content(
    out_dir: Path,
    records: Iterable[FrameRecord],
    run: Mapping[str, Any],
    classes: tuple[str, ...],
    *,
    rule: ReviewRule | None = None,
    colormap: str = "jet",
    opacity: float = 0.45,
    keep_identifiers: bool = False,
    max_thumbnails: int = MAX_THUMBNAILS,
    max_table_rows: int = MAX_TABLE_ROWS,
    dicom_uid: Callable[[str], str] | None = None,
    verdict_rule: VerdictRule | None = None,
    sources: Mapping[str, str] | None = None,
    annotations: Annotations | None = None,
) -> ReportContent:
    """Gather a report from the records of ``results.csv`` (:meth:`~brainscan.engine.results.store.ResultsStore.records`).

    ``verdict_rule`` calls each series (the model contract's ``series_rule``; the defaults when None).
    ``sources`` maps files retrieved from an archive to their URLs: the report shows the URL.
    ``annotations``: a person's measurements and key images (those of the frames reported are shown).
    """
    rule = rule or ReviewRule()
    verdict_rule = verdict_rule or VerdictRule()
    thumbnails = out_dir / THUMBNAILS_DIR
    records = list(records)
    sources = real_sources(sources)
    folder = common_folder(r.path for r in records if os.path.realpath(r.path) not in sources)
    entries = [entry_from_record(r, classes, rule, thumbnails, keep_identifiers, folder, sources) for r in records]
    notes: list[str] = []

    table = entries
    if len(entries) > max_table_rows:
        ranked = sorted(entries, key=_suspicion, reverse=True)[:max_table_rows]
        keep = {id(e) for e in ranked}
        table = [e for e in entries if id(e) in keep]
        notes.append(f"The per-image table lists the {max_table_rows} most suspicious of {len(entries)} frames "
                     f"(errors first); every frame is in results.csv.")

    with_thumbnail = sorted((e for e in entries if e.ok and e.thumbnail is not None), key=_suspicion, reverse=True)
    gallery = with_thumbnail[:max_thumbnails]
    classified = sum(1 for e in entries if e.ok)
    missing = classified - len(with_thumbnail)
    if len(with_thumbnail) > max_thumbnails:  # the gallery draws from the frames with a thumbnail only
        among = (f"{classified} classified frames" if not missing else
                 f"the {len(with_thumbnail)} of {classified} classified frames that have a thumbnail")
        notes.append(f"Thumbnails: the {max_thumbnails} most suspicious of {among} "
                     f"(highest tumour probability first); every frame is in the table and in results.csv.")
    if missing:
        notes.append(f"{missing} classified {'frame has' if missing == 1 else 'frames have'} no thumbnail "
                     "(screened by an earlier run without --report, or stopped before it was written).")

    errors = [e for e in entries if not e.ok]
    series = summarize_series(records, classes, verdict_rule)
    inputs = fingerprint_inputs((r.path for r in records), dicom_uid, folder, sources)
    if dicom_uid is not None and any(i.kind == "dicom" for i in inputs):
        notes.append("DICOM inputs are listed by their de-identified SOP Instance UIDs (--deidentify), "
                     "the same as in the DICOM objects written.")
    return ReportContent(
        title="brainscan screening report",
        notice=RESEARCH_USE_NOTICE,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        classes=tuple(classes),
        run=run,
        entries=entries,
        table=table,
        gallery=gallery,
        errors=errors,
        series=series,
        inputs=inputs,
        rule=rule,
        colormap=colormap,
        opacity=opacity,
        notes=notes,
        identifiers_shown=keep_identifiers,
        verdict_rule=verdict_rule,
        common_folder=folder,
        sources=sources,
        annotations=gather(annotations, entries),
    )


def _suspicion(entry: ImageEntry) -> float:
    """Sort key: errors first, then the highest tumour probability."""
    if not entry.ok:
        return math.inf
    return entry.tumour_probability if not math.isnan(entry.tumour_probability) else -1.0


# -- text shared by both writers -------------------------------------------------------------------
def series_text(item: SeriesSummary, folder: Path | None = None,
                sources: Mapping[str, str] | None = None) -> tuple[str, str]:
    """A series summary's labels ("Glioma 12, No tumour 4") and its most suspicious slice (its path relative
    to ``folder``, or its archive URL: ``sources`` keyed by real path), as text."""
    where = ""
    best = item.most_suspicious
    if best is not None:
        index = best.series_index
        where = (f"slice {index + 1 if index is not None else '?'} of {item.slices}: "
                 f"{shown_path(best.path, folder, sources)} ({display_name(best.label)})")
    labels = ", ".join(f"{display_name(k)} {v}" for k, v in sorted(item.labels.items()))
    return labels, where


def verdict_text(item: SeriesSummary) -> str:
    """A series' verdict with its support, for people ("Meningioma: 4 of 120 in-domain slices at p >= 0.90")."""
    return "" if item.verdict is None else item.verdict.display_text


def fmt(value: float, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def integrity_warning(run: Mapping[str, Any]) -> str:
    """The warning every page of a report carries when the run's model was not verified, else "".

    Driven by the run info alone (``run["model"]["integrity"]``, the model card), so the command
    line's and the viewer's reports agree; a card without the entry counts as unverified.
    """
    card = run.get("model") or {}
    return "" if is_verified(card.get("integrity")) else UNVERIFIED_WARNING


def model_facts(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The model card as (label, text) pairs."""
    card = run.get("model") or {}
    facts = [
        ("Name", str(card.get("name", ""))),
        ("Version", str(card.get("version", ""))),
        ("Integrity", str(card.get("integrity") or "unknown (not recorded)")),
        ("Architecture", str(card.get("architecture", ""))),
        ("Task", str(card.get("task", ""))),
        ("Classes", ", ".join(card.get("classes", []))),
        ("Input size", " x ".join(str(v) for v in card.get("input_size", []))),
        ("Test-time augmentation", test_time_views(card)),
        ("Intended use", str(card.get("intended_use", ""))),
    ]
    training = card.get("training") or {}
    if training.get("data_fingerprint"):
        facts.append(("Training data fingerprint", str(training["data_fingerprint"])))
    return facts


def test_time_views(card: Mapping[str, Any]) -> str:
    """The views averaged per picture, and whether the graph or the engine averages them."""
    parts = [f"{v} (inside the model)" for v in card.get("views_in_graph", [])]
    parts += [f"{v} (by brainscan)" for v in card.get("test_time_augmentation", [])]
    return ", ".join(parts) or "none"


def validation_facts(run: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """Validation metrics from the model contract: scalar facts, and a per-class table (header first)."""
    metrics = (run.get("model") or {}).get("metrics") or {}
    validation = metrics.get("validation", metrics) if isinstance(metrics, Mapping) else {}
    facts: list[tuple[str, str]] = []
    per_class: list[list[str]] = []
    for key, value in validation.items():
        if key == "per_class" and isinstance(value, Mapping):
            per_class = [["class", "precision", "recall", "F1", "support"]]
            for name, item in value.items():
                per_class.append([display_name(name), *(str(item.get(k, "")) for k in ("precision", "recall", "f1", "support"))])
        elif key in ("confusion_matrix_axes",):
            continue
        elif isinstance(value, (str, int, float)):
            facts.append((key.replace("_", " "), str(value)))
        else:
            facts.append((key.replace("_", " "), _compact(value)))
    if not validation:
        facts.append(("validation", "the model contract states no validation metrics"))
    return facts, per_class


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)[:600]


def provenance_facts(run: Mapping[str, Any], content: ReportContent) -> list[tuple[str, str]]:
    card = run.get("model") or {}
    device = run.get("device") or {}
    cam = run.get("cam_method") or "none"
    settings = run.get("cam_settings") or {"colormap": content.colormap, "opacity": content.opacity}
    facts = [
        ("Application", str(run.get("application", ""))),
        ("Model file", str(card.get("file", ""))),
        ("Model SHA-256", str(card.get("sha256", ""))),
        ("onnxruntime", str(run.get("onnxruntime", ""))),
        ("Execution provider used", ", ".join(device.get("providers", [])[:1]) or str(device.get("used", ""))),
        ("Device", f"{device.get('used', '')} (requested {device.get('requested', '')})"),
        ("CAM method", cam),
        ("What the heat map is", pointing_note(card.get("metrics") or {}, cam) if cam != "none" else "no heat map"),
        ("CAM settings", ", ".join(f"{k} {v}" for k, v in settings.items())),
        ("Platform", str(run.get("platform", ""))),
        ("Screening started", str(run.get("started", ""))),
        ("Report written", content.created),
        ("Review rule", content.rule.describe()),
    ]
    if device.get("note"):
        facts.append(("Device note", str(device["note"])))
    return facts
