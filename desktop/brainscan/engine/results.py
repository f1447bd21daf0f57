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

Rows are keyed by the resolved file and frame (:meth:`ResultsStore.key`), so the same file given
once relative and once absolute is screened once; relative paths in the CSV are resolved from the
folder the first run was started in (``DIR/.brainscan-run.json``).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainscan.engine.errors import BrainscanError
from brainscan.engine.inference import negative_class_index
from brainscan.engine.loading import OUTPUT_MARKER
from brainscan.engine.screening import FrameResult

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
SERIES_CSV = "series.csv"
LOCK_FILE = OUTPUT_MARKER  # held (flock / msvcrt) by the run writing the folder; discovery never enters it
RUN_STATE = ".brainscan-run.json"  # the working folder of the first run, to resolve relative paths
STATUSES = ("ok", "error")
FORMULA_STARTS = ("=", "+", "-", "@", "'")  # what a spreadsheet would evaluate (and the escape itself)

IDENTIFIER_COLUMNS = ("patient_name", "patient_id", "patient_birth_date")


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


def result_columns(classes: Iterable[str], include_identifiers: bool = False) -> list[str]:
    columns = ["path", "frame", "status", "label", "confidence", "tumour_probability"]
    columns += [f"p_{name}" for name in classes]
    columns += ["cam_method", "cam_peak_row", "cam_peak_col", "width", "height", "series_uid", "series_index",
                "series_length", "window_source", "error"]
    if include_identifiers:
        columns += list(IDENTIFIER_COLUMNS)
    return columns


def row_key(path: str, frame: int | str) -> tuple[str, int]:
    return (path, int(frame))


# -- cells -----------------------------------------------------------------------------------------
def path_text(path: str | os.PathLike[str]) -> str:
    """A path as one line of UTF-8 text, reversibly (:func:`path_from_text` undoes it).

    Bytes that are not UTF-8 (which Python holds as lone surrogates), control characters and
    ``%`` are written ``%XX``; everything else is kept, so ordinary paths read as given.
    """
    out = []
    for char in os.fspath(path):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
            out.append(f"%{code - 0xDC00:02X}")
        elif 0xD800 <= code <= 0xDFFF:  # any other lone surrogate (Windows): its UTF-16 code as bytes
            out.extend(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
        elif code < 0x20 or code == 0x7F or char == "%":
            out.append(f"%{code:02X}")
        else:
            out.append(char)
    return "".join(out)


def path_from_text(text: str) -> Path:
    """The path that :func:`path_text` wrote as ``text``."""
    if "%" not in text:
        return Path(text)
    data = bytearray()
    position = 0
    while position < len(text):
        char = text[position]
        if char == "%" and _is_hex(text[position + 1:position + 3]):
            data.append(int(text[position + 1:position + 3], 16))
            position += 3
        else:
            data += char.encode("utf-8", "surrogateescape")
            position += 1
    return Path(bytes(data).decode("utf-8", "surrogateescape"))


def _is_hex(pair: str) -> bool:
    return len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair)


def plain_text(text: str) -> str:
    """Free text (an error message quoting a file name) as one printable line of UTF-8."""
    return "".join(
        f"%{ord(c) - 0xDC00:02X}" if 0xDC80 <= ord(c) <= 0xDCFF
        else "?" if 0xD800 <= ord(c) <= 0xDFFF
        else " " if ord(c) < 0x20 or ord(c) == 0x7F
        else c
        for c in text
    )


def neutralise(cell: str) -> str:
    """A CSV cell that no spreadsheet runs as a formula: a leading ``'`` before ``= + - @ '``."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def restore(cell: str) -> str:
    """The exact value of a cell written by :func:`neutralise`."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def _valid_row(row: Mapping[str, str | None], columns: list[str]) -> bool:
    """A complete row: every column present, a known status and an integer frame."""
    if None in row or any(row.get(c) is None for c in columns) or row.get("status") not in STATUSES:
        return False
    try:
        int(row["frame"] or "")
    except ValueError:
        return False
    return True


def _format(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6f}"


def _cut_partial_last_line(path: Path) -> None:
    """A process killed mid-write leaves a line without its newline: drop it."""
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        step = min(size, 1 << 16)
        handle.seek(size - step)
        tail = handle.read(step)
        cut = tail.rfind(b"\n")
        handle.truncate(size - step + cut + 1 if cut >= 0 else 0)


def _atomic_write(path: Path, text: str, errors: str = "strict") -> None:
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="", errors=errors) as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
    """

    out_dir: Path
    classes: tuple[str, ...]
    include_identifiers: bool = False
    uid_map: Callable[[str], str] | None = None
    done: dict[tuple[str, int], str] = field(default_factory=dict)  # key -> status
    paths: dict[tuple[str, int], str] = field(default_factory=dict)  # key -> the path text in the CSV
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "error": 0})
    _damaged: int = 0

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.columns = result_columns(self.classes, self.include_identifiers)
        self.csv_path = self.out_dir / RESULTS_CSV
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
                _cut_partial_last_line(self.csv_path)
                self._load_existing()
                if self._damaged:
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
            _atomic_write(state, json.dumps({"cwd": path_text(origin)}))
        return origin

    def key(self, path: str | os.PathLike[str], frame: int, *, origin: str | None = None) -> tuple[str, int]:
        """The resolved file and the frame: the same for every spelling of one file's path."""
        return (os.path.realpath(os.path.join(origin or os.getcwd(), os.fspath(path))), int(frame))

    def _load_existing(self) -> None:
        with open(self.csv_path, encoding="utf-8", newline="", errors="surrogateescape") as stream:
            reader = csv.DictReader(stream)
            if reader.fieldnames != self.columns:
                raise OutputError(
                    f"{self.csv_path}: holds results with other columns (another model or other options: "
                    f"{', '.join(reader.fieldnames or [])}); use a new --out folder"
                )
            for row in reader:
                if not _valid_row(row, self.columns):  # damaged by hand or by an older version: redone
                    self._damaged += 1
                    continue
                text = restore(row["path"])
                key = self.key(path_from_text(text), int(row["frame"]), origin=self.origin)
                if key in self.done:  # a duplicate row (older versions keyed rows by spelling): counted once
                    continue
                self.done[key] = row["status"]
                self.paths[key] = text
                self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1

    def _rewrite_valid_rows(self) -> None:
        """Drop damaged rows for good (say a half-written one whose quoted path held a newline, which
        would swallow every row appended after it): the valid rows are written back, atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns)
        writer.writeheader()
        with open(self.csv_path, encoding="utf-8", newline="", errors="surrogateescape") as stream:
            writer.writerows(row for row in csv.DictReader(stream) if _valid_row(row, self.columns))
        _atomic_write(self.csv_path, buffer.getvalue(), errors="surrogateescape")

    @property
    def resumed(self) -> int:
        return len(self.done)

    def status(self, path: str | os.PathLike[str], frame: int) -> str | None:
        """``"ok"`` or ``"error"`` when this frame of this file already has a row, else None."""
        return self.done.get(self.key(path, frame))

    def is_done(self, path: str | os.PathLike[str], frame: int) -> bool:
        return self.status(path, frame) is not None

    def recorded_path(self, path: str | os.PathLike[str], frame: int) -> Path | None:
        """The spelling of the file's path in the CSV, for a frame that already has a row."""
        text = self.paths.get(self.key(path, frame))
        return None if text is None else path_from_text(text)

    def row(self, result: FrameResult, cam_method: str | None) -> dict[str, Any]:
        """The exact values of a result's row (``results.json`` keeps them; the CSV neutralises them)."""
        ref = result.ref
        series_uid = ref.series_uid
        if series_uid and self.uid_map is not None:
            series_uid = self.uid_map(series_uid)
        row: dict[str, Any] = {
            "path": path_text(ref.path),
            "frame": ref.frame,
            "status": result.status,
            "label": result.label,
            "confidence": _format(result.confidence),
            "tumour_probability": _format(result.tumour_probability),
            "series_uid": plain_text(series_uid),
            "series_index": ref.series_index if ref.series_uid else "",
            "series_length": ref.series_length if ref.series_uid else "",
            "error": plain_text(result.error),
            "cam_method": (cam_method or "") if result.ok else "",
        }
        if result.probabilities is not None:
            for name, value in zip(self.classes, result.probabilities, strict=True):
                row[f"p_{name}"] = _format(float(value))
        if result.cam_peak is not None:
            row["cam_peak_row"], row["cam_peak_col"] = result.cam_peak
        if result.size is not None:
            row["height"], row["width"] = result.size
        row["window_source"] = result.window_source
        if self.include_identifiers:
            row["patient_name"] = plain_text(result.identifiers.get("PatientName", ""))
            row["patient_id"] = plain_text(result.identifiers.get("PatientID", ""))
            row["patient_birth_date"] = plain_text(result.identifiers.get("PatientBirthDate", ""))
        return row

    def append(self, result: FrameResult, cam_method: str | None = None) -> None:
        """Write one row and flush it to the operating system at once.

        Raises
        ------
        OutputError
            The row cannot be written (a full disk): the message names ``results.csv``; the rows
            written before are kept.
        """
        row = {name: neutralise(str(value)) for name, value in self.row(result, cam_method).items()}
        self._write(lambda: self._writer.writerow(row))
        key = self.key(result.ref.path, result.ref.frame)
        self.done[key] = result.status
        self.paths.setdefault(key, row["path"])
        self.counts[result.status] = self.counts.get(result.status, 0) + 1

    def _write(self, action: Callable[[], object]) -> None:
        try:
            action()
            self._stream.flush()
        except OSError as exc:
            raise OutputError(_write_failure(self.csv_path, exc)) from exc

    def close(self) -> None:
        try:
            if not self._stream.closed:
                self._stream.close()
        except OSError:  # the last flush failed (disk full): that row was reported already
            pass
        finally:
            self._lock.release()

    def rows(self) -> Iterator[dict[str, str]]:
        """Stream the rows of ``results.csv`` with their exact values (memory stays flat).

        Damaged rows and repeats of a frame are left out; paths stay text (:func:`path_from_text`).
        """
        seen: set[tuple[str, int]] = set()
        with open(self.csv_path, encoding="utf-8", newline="", errors="surrogateescape") as stream:
            for raw in csv.DictReader(stream):
                if not _valid_row(raw, self.columns):
                    continue
                row = {name: restore(value) for name, value in raw.items()}
                key = self.key(path_from_text(row["path"]), int(row["frame"]), origin=self.origin)
                if key in seen:
                    continue
                seen.add(key)
                yield row

    def finalize(self, run_info: Mapping[str, Any]) -> None:
        """Rewrite ``series.csv`` and ``results.json`` from the CSV.

        Raises
        ------
        OutputError
            A file cannot be written (a full disk), named in the message.
        """
        self._write(lambda: None)
        series = summarize_series(self.rows(), self.classes)
        document = {
            "run": dict(run_info),
            "counts": dict(self.counts),
            "series": series,
            "results": [_typed(row, self.classes) for row in self.rows()],
        }
        for path, write in (
            (self.out_dir / SERIES_CSV, lambda target: write_series_csv(target, series)),
            (self.out_dir / RESULTS_JSON,
             lambda target: _atomic_write(target, json.dumps(document, indent=1, ensure_ascii=False),
                                          errors="backslashreplace")),  # a stray surrogate: a JSON \\u escape
        ):
            try:
                write(path)
            except OSError as exc:
                raise OutputError(_write_failure(path, exc)) from exc

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _write_failure(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        return (f"{path}: the disk is full ({reason}); free some space and run the same command again "
                "(the rows written so far are kept, and the run resumes after them)")
    return f"{path}: cannot be written ({reason}); the rows written so far are kept"


def _typed(row: Mapping[str, str], classes: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    numeric = {"confidence", "tumour_probability", *(f"p_{c}" for c in classes)}
    integer = {"frame", "cam_peak_row", "cam_peak_col", "width", "height", "series_index", "series_length"}
    for key, value in row.items():
        if value == "":
            out[key] = None
        elif key in numeric:
            out[key] = float(value)
        elif key in integer:
            out[key] = int(value)
        else:
            out[key] = value
    return out


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
    _atomic_write(path, "\n".join(lines) + "\n")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    text = neutralise(plain_text(str(value)))
    if any(ch in text for ch in ',"\n\r'):
        text = '"' + text.replace('"', '""') + '"'
    return text
