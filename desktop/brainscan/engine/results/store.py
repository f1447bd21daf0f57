"""Screening results on disk: a CSV written row by row, resumable, plus JSON and a series summary.

``results.csv`` is the record of truth. Each row is flushed as it is made, so a killed process
loses at most the row it was writing; that partial last line is cut off when the same output
folder is opened again, and frames already recorded are skipped (resume). ``results.json`` and
``series.csv`` are rewritten from the CSV (atomically) when a run ends or is interrupted. One run
at a time writes a folder: :class:`FolderLock` holds ``DIR/.brainscan.lock`` while the store is open.

Every cell is one line of text that any spreadsheet can open safely:

- paths are written as given, with bytes that are not UTF-8, control characters (a newline or
  carriage return in a file name) and ``%`` itself escaped as ``%XX`` (:func:`path_text`, undone
  by :func:`path_from_text`), so every file gets its row and resume finds it again;
- a cell that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, or a
  quote) gets a leading ``'`` in the CSV files (:func:`neutralise`); ``results.json`` keeps the
  exact values.

Rows are keyed by the resolved file and frame (:func:`~brainscan.engine.results.record.frame_key`), so
the same file given once relative and once absolute is screened once; relative paths in the CSV are
resolved from the folder the first run was started in (``DIR/.brainscan-run.json``). A row is written
from, and read back as, a :class:`~brainscan.engine.results.record.FrameRecord`
(:mod:`~brainscan.engine.results.rows` holds its CSV and JSON forms).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainscan.engine.errors import BrainscanError
from brainscan.engine.input.discovery import OUTPUT_MARKER
from brainscan.engine.results.cells import path_from_text, path_text
from brainscan.engine.results.files import atomic_write_text, cut_partial_last_line
from brainscan.engine.results.record import FrameKey, FrameRecord, FrameResult, frame_key
from brainscan.engine.results.rows import (
    record_from_csv_row,
    record_to_csv_row,
    record_to_json,
    result_columns,
)
from brainscan.engine.results.series import SeriesSummary, summarize_series, write_series_csv
from brainscan.engine.results.verdict import VerdictRule

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
SERIES_CSV = "series.csv"
LOCK_FILE = OUTPUT_MARKER  # held (flock / msvcrt) by the run writing the folder; discovery never enters it
KEPT_SECTIONS = ("stored", "stored_elsewhere")  # results.json sections a later run keeps (--store's record)
RUN_STATE = ".brainscan-run.json"  # the working folder of the first run, to resolve relative paths


class OutputError(BrainscanError):
    """The output folder cannot be used (unwritable, or holds results of another model)."""


class OutputLockedError(OutputError):
    """Another run is writing to the same output folder."""


class FolderLock:
    """An exclusive, non-blocking lock on ``DIR/.brainscan.lock``, released when closed or when the
    process ends (however it ends: the operating system drops the lock with the file handle).

    ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows. The lock file itself is left in place:
    removing it would let a third run lock a new file while the second still holds the old one.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._handle = open(self.path, "a+b")  # noqa: SIM115 (held for the run)
        try:
            self._lock()
        except OSError as exc:
            self._handle.close()
            raise OutputLockedError(
                f"another brainscan run is writing to {folder}; wait for it to end, or choose another --out folder"
            ) from exc

    def _lock(self) -> None:
        if os.name == "nt":
            import msvcrt

            self._handle.seek(0)
            msvcrt.locking(self._handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self._handle.closed:
            return
        try:
            if os.name == "nt":
                import msvcrt

                self._handle.seek(0)
                msvcrt.locking(self._handle.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        finally:
            self._handle.close()


@dataclass
class ResultsStore:
    """Append-only results of one output folder.

    Parameters
    ----------
    out_dir:
        Created if missing.
    classes:
        The model's classes (one ``p_<class>`` column each); an existing CSV with other
        columns is refused rather than mixed.
    include_identifiers:
        Add patient name, ID and birth date columns (off by default).
    uid_map:
        Applied to every Series Instance UID written (``--deidentify``: the run's one mapping).
    verdict_rule:
        How ``series.csv`` calls each series (the model contract's ``series_rule``, else the defaults).
    sources:
        Files that stand in for something else: an instance retrieved from an archive into a cache
        folder, by the instance's URL. The rows of such a file name the URL in ``path`` (CSV and JSON);
        reading rows back gives the local file again, so keys, resume and reports use the file.
    replace:
        Files whose earlier rows are dropped (the CSV rewritten, atomically) when the folder is opened,
        so that they are screened again: an archive instance fetched by this run, whose transfer broke
        off in an earlier one (its error row gives way to its result), and the stand-in of a study or
        series URL that could not be listed then and is now. Other error rows stay final, as ever.
    """

    out_dir: Path
    classes: tuple[str, ...]
    include_identifiers: bool = False
    uid_map: Callable[[str], str] | None = None
    verdict_rule: VerdictRule = field(default_factory=VerdictRule)
    sources: Mapping[str, str] = field(default_factory=dict)  # local file -> the URL its rows name (archives)
    replace: Collection[str] = field(default_factory=frozenset)  # files whose earlier rows are dropped (archives)
    done: dict[FrameKey, str] = field(default_factory=dict)  # key -> status
    paths: dict[FrameKey, Path] = field(default_factory=dict)  # key -> the path as the CSV spells it
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "error": 0})
    out_of_domain: int = 0  # classified frames the picture checks judged out of domain (counted in "ok" too)
    _damaged: int = 0
    _replaced: int = 0

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.columns = result_columns(self.classes, self.include_identifiers)
        self.csv_path = self.out_dir / RESULTS_CSV
        self._url_of = {os.path.realpath(path): url for path, url in self.sources.items()}
        self._file_of = {url: path_text(os.path.abspath(path)) for path, url in self.sources.items()}
        self._replace = {os.path.realpath(path) for path in self.replace}
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock = FolderLock(self.out_dir)  # before reading: a second run must not cut our last line
        except OSError as exc:
            raise OutputError(
                f"{self.out_dir}: cannot write results here ({exc.strerror or exc}); choose another --out folder"
            ) from exc
        try:
            self.origin = self._read_origin()
            resuming = self.csv_path.exists() and self.csv_path.stat().st_size > 0
            if resuming:
                cut_partial_last_line(self.csv_path)
                self._load_existing()
                if self._damaged or self._replaced:
                    self._rewrite_valid_rows()
            self._stream = open(self.csv_path, "a", encoding="utf-8", newline="")  # noqa: SIM115 (held open)
        except OSError as exc:
            self._lock.release()
            raise OutputError(
                f"{self.out_dir}: cannot write results here ({exc.strerror or exc}); choose another --out folder"
            ) from exc
        except BaseException:
            self._lock.release()
            raise
        self._writer = csv.DictWriter(self._stream, fieldnames=self.columns, extrasaction="ignore")
        if self._stream.tell() == 0:
            self._write(self._writer.writeheader)

    def _read_origin(self) -> str:
        """The folder relative paths in this CSV are relative to: the first run's working folder."""
        state = self.out_dir / RUN_STATE
        try:
            return str(path_from_text(json.loads(state.read_text(encoding="utf-8"))["cwd"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        origin = os.getcwd()
        if not (self.csv_path.exists() and self.csv_path.stat().st_size > 0):  # a new folder: remember it
            atomic_write_text(state, json.dumps({"cwd": path_text(origin)}))
        return origin

    def _load_existing(self) -> None:
        with open(self.csv_path, encoding="utf-8", newline="", errors="surrogateescape") as stream:
            reader = csv.DictReader(stream)
            if reader.fieldnames != self.columns:
                raise OutputError(
                    f"{self.csv_path}: holds results with other columns (another model or other options: "
                    f"{', '.join(reader.fieldnames or [])}); use a new --out folder"
                )
            for row in reader:
                record = record_from_csv_row(self._local_row(row), self.classes)
                if record is None:  # damaged by hand or by an older version: redone
                    self._damaged += 1
                    continue
                key = frame_key(record.path, record.frame, origin=self.origin)
                if key[0] in self._replace:  # screened again by this run (see ``replace``)
                    self._replaced += 1
                    continue
                if key in self.done:  # a duplicate row (older versions keyed rows by spelling): counted once
                    continue
                self.done[key] = record.status
                self.paths[key] = record.path
                self._count(record)

    def _rewrite_valid_rows(self) -> None:
        """Drop damaged rows for good (say a half-written one whose quoted path held a newline, which
        would swallow every row appended after it), and the rows of files to :attr:`replace`: the
        others are written back, atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns)
        writer.writeheader()
        with open(self.csv_path, encoding="utf-8", newline="", errors="surrogateescape") as stream:
            writer.writerows(row for row in csv.DictReader(stream) if self._kept(row))
        atomic_write_text(self.csv_path, buffer.getvalue(), errors="surrogateescape")

    def _kept(self, row: Mapping[str, str | None]) -> bool:
        record = record_from_csv_row(self._local_row(row), self.classes)
        if record is None:
            return False
        return frame_key(record.path, record.frame, origin=self.origin)[0] not in self._replace

    @property
    def resumed(self) -> int:
        return len(self.done)

    def status(self, path: str | os.PathLike[str], frame: int) -> str | None:
        """``"ok"`` or ``"error"`` when this frame of this file already has a row, else None."""
        return self.done.get(frame_key(path, frame))

    def is_done(self, path: str | os.PathLike[str], frame: int) -> bool:
        return self.status(path, frame) is not None

    def recorded_path(self, path: str | os.PathLike[str], frame: int) -> Path | None:
        """The spelling of the file's path in the CSV, for a frame that already has a row."""
        return self.paths.get(frame_key(path, frame))

    def record(self, result: FrameResult, cam_method: str | None) -> FrameRecord:
        """The record of a result as this store writes it (the run's UID mapping applied)."""
        return FrameRecord.from_result(result, self.classes, cam_method, self.uid_map)

    def append(self, result: FrameResult, cam_method: str | None = None) -> None:
        """Write the row of one result and flush it to the operating system at once.

        Raises
        ------
        OutputError
            The row cannot be written (a full disk): the message names ``results.csv``; the rows
            written before are kept.
        """
        self.append_record(self.record(result, cam_method))

    def append_record(self, record: FrameRecord) -> None:
        """Write one record's row and flush it at once (raises as :meth:`append`)."""
        row = record_to_csv_row(record, self.columns)
        url = self._url(record)
        if url is not None:
            row["path"] = url
        self._write(lambda: self._writer.writerow(row))
        key = frame_key(record.path, record.frame)
        self.done[key] = record.status
        self.paths.setdefault(key, record.path)
        self._count(record)

    def _url(self, record: FrameRecord) -> str | None:
        """The URL the record's file stands in for (:attr:`sources`), or None."""
        if not self._url_of:
            return None
        return self._url_of.get(os.path.realpath(os.path.join(self.origin, os.fspath(record.path))))

    def _local_row(self, row: Mapping[str, str | None]) -> Mapping[str, str | None]:
        """A row read back, its URL (if it names one of :attr:`sources`) replaced by the local file."""
        local = self._file_of.get(row.get("path") or "")
        return row if local is None else {**row, "path": local}

    def _json_item(self, record: FrameRecord) -> dict[str, Any]:
        item = record_to_json(record, self.columns)
        url = self._url(record)
        if url is not None:
            item["path"] = url
        return item

    def _count(self, record: FrameRecord) -> None:
        self.counts[record.status] = self.counts.get(record.status, 0) + 1
        if record.in_domain is False:
            self.out_of_domain += 1

    def _write(self, action: Callable[[], object]) -> None:
        try:
            action()
            self._stream.flush()
        except OSError as exc:
            raise OutputError(write_failure(self.csv_path, exc)) from exc

    def close(self) -> None:
        try:
            if not self._stream.closed:
                self._stream.close()
        except OSError:  # the last flush failed (disk full): that row was reported already
            pass
        finally:
            self._lock.release()

    def records(self) -> Iterator[FrameRecord]:
        """Stream the records of ``results.csv`` (memory stays flat).

        Damaged rows and repeats of a frame are left out.
        """
        seen: set[FrameKey] = set()
        with open(self.csv_path, encoding="utf-8", newline="", errors="surrogateescape") as stream:
            for row in csv.DictReader(stream):
                record = record_from_csv_row(self._local_row(row), self.classes)
                if record is None:
                    continue
                key = frame_key(record.path, record.frame, origin=self.origin)
                if key in seen:
                    continue
                seen.add(key)
                yield record

    def finalize(self, run_info: Mapping[str, Any]) -> list[SeriesSummary]:
        """Rewrite ``series.csv`` and ``results.json`` from the CSV; returns the series summary written.

        Raises
        ------
        OutputError
            A file cannot be written (a full disk), named in the message.
        """
        self._write(lambda: None)
        series = summarize_series(self.records(), self.classes, self.verdict_rule)
        for entry in series:
            if entry.most_suspicious is not None:
                entry.most_suspicious_source = self._url(entry.most_suspicious) or ""
        document: dict[str, Any] = {
            "run": dict(run_info),
            "counts": dict(self.counts),
            "series_rule": self.verdict_rule.to_dict(),
            "series": [entry.to_dict() for entry in series],
            "results": [self._json_item(record) for record in self.records()],
        }
        document.update(self._kept_sections())
        for path, write in (
            (self.out_dir / SERIES_CSV, lambda target: write_series_csv(target, series)),
            (self.out_dir / RESULTS_JSON,
             lambda target: atomic_write_text(target, json.dumps(document, indent=1, ensure_ascii=False),
                                          errors="backslashreplace")),  # a stray surrogate: a JSON \\u escape
        ):
            try:
                write(path)
            except OSError as exc:
                raise OutputError(write_failure(path, exc)) from exc
        return series

    def _kept_sections(self) -> dict[str, Any]:
        """What earlier runs added to ``results.json`` beside the results (``--store``'s record), kept."""
        try:
            earlier = json.loads((self.out_dir / RESULTS_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(earlier, dict):
            return {}
        return {key: earlier[key] for key in KEPT_SECTIONS if key in earlier}

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_failure(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        return (f"{path}: the disk is full ({reason}); free some space and run the same command again "
                "(the rows written so far are kept, and the run resumes after them)")
    return f"{path}: cannot be written ({reason}); the rows written so far are kept"

