"""Screening results on disk: a CSV written row by row, resumable, plus JSON and a series summary.

``results.csv`` is the record of truth. Each row is flushed as it is made, so a killed process
loses at most the row it was writing; that partial last line is cut off when the same output
folder is opened again, and frames already recorded are skipped (resume). ``results.json`` and
``series.csv`` are rewritten from the CSV (atomically) when a run ends or is interrupted. One run
at a time writes a folder: :class:`FolderLock` holds ``DIR/.brainscan.lock`` while the store is open.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainscan.engine.errors import BrainscanError
from brainscan.engine.inference import negative_class_index
from brainscan.engine.screening import FrameResult

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
SERIES_CSV = "series.csv"
LOCK_FILE = ".brainscan.lock"  # held (flock / msvcrt) by the run writing the folder

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


def _atomic_write(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
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
    """

    out_dir: Path
    classes: tuple[str, ...]
    include_identifiers: bool = False
    done: set[tuple[str, int]] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "error": 0})

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
            resuming = self.csv_path.exists() and self.csv_path.stat().st_size > 0
            if resuming:
                _cut_partial_last_line(self.csv_path)
                self._load_existing()
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
            self._writer.writeheader()
            self._stream.flush()

    def _load_existing(self) -> None:
        with open(self.csv_path, encoding="utf-8", newline="") as stream:
            reader = csv.DictReader(stream)
            if reader.fieldnames != self.columns:
                raise OutputError(
                    f"{self.csv_path}: holds results with other columns (another model or other options: "
                    f"{', '.join(reader.fieldnames or [])}); use a new --out folder"
                )
            for row in reader:
                self.done.add(row_key(row["path"], row["frame"]))
                self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1

    @property
    def resumed(self) -> int:
        return len(self.done)

    def is_done(self, path: str, frame: int) -> bool:
        return row_key(path, frame) in self.done

    def row(self, result: FrameResult, cam_method: str | None) -> dict[str, Any]:
        ref = result.ref
        row: dict[str, Any] = {
            "path": str(ref.path),
            "frame": ref.frame,
            "status": result.status,
            "label": result.label,
            "confidence": _format(result.confidence),
            "tumour_probability": _format(result.tumour_probability),
            "series_uid": ref.series_uid,
            "series_index": ref.series_index if ref.series_uid else "",
            "series_length": ref.series_length if ref.series_uid else "",
            "error": result.error.replace("\n", " "),
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
            row["patient_name"] = result.identifiers.get("PatientName", "")
            row["patient_id"] = result.identifiers.get("PatientID", "")
            row["patient_birth_date"] = result.identifiers.get("PatientBirthDate", "")
        return row

    def append(self, result: FrameResult, cam_method: str | None = None) -> None:
        """Write one row and flush it to the operating system at once."""
        self._writer.writerow(self.row(result, cam_method))
        self._stream.flush()
        self.done.add(row_key(str(result.ref.path), result.ref.frame))
        self.counts[result.status] = self.counts.get(result.status, 0) + 1

    def close(self) -> None:
        if not self._stream.closed:
            self._stream.close()
        self._lock.release()

    def rows(self) -> Iterator[dict[str, str]]:
        """Stream the rows of ``results.csv`` (memory stays flat)."""
        with open(self.csv_path, encoding="utf-8", newline="") as stream:
            yield from csv.DictReader(stream)

    def finalize(self, run_info: Mapping[str, Any]) -> None:
        """Rewrite ``series.csv`` and ``results.json`` from the CSV."""
        self._stream.flush()
        series = summarize_series(self.rows(), self.classes)
        write_series_csv(self.out_dir / SERIES_CSV, series)
        document = {
            "run": dict(run_info),
            "counts": dict(self.counts),
            "series": series,
            "results": [_typed(row, self.classes) for row in self.rows()],
        }
        _atomic_write(self.out_dir / RESULTS_JSON, json.dumps(document, indent=1, ensure_ascii=False))

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
    text = str(value)
    if any(ch in text for ch in ',"\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text
