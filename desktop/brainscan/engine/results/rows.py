"""A :class:`~brainscan.engine.results.record.FrameRecord` as a row of ``results.csv`` and as an item of
``results.json``, and back: the one place that turns results into text and text into results.

The CSV cells follow :mod:`~brainscan.engine.results.cells`: the path reversibly escaped
(:func:`~brainscan.engine.results.cells.path_text`), free text (series UID, error, identifiers) as one
printable line, numbers with six decimals ("" for none), and every cell a spreadsheet would run as a
formula neutralised; ``in_domain`` as ``true``, ``false`` or "" (not judged). The JSON item holds the same
values, typed and exact: numbers as numbers, none
as ``null``, no neutralising.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from brainscan.engine.results.cells import (
    STATUSES,
    neutralise,
    path_from_text,
    path_text,
    plain_text,
    restore,
)
from brainscan.engine.results.record import RECORD_IDENTIFIERS, FrameRecord

IDENTIFIER_COLUMNS = tuple(RECORD_IDENTIFIERS)
_INTEGERS = ("frame", "cam_peak_row", "cam_peak_col", "width", "height", "series_index", "series_length")


def result_columns(classes: Iterable[str], include_identifiers: bool = False) -> list[str]:
    """The columns of ``results.csv``, in order: one ``p_<class>`` per class of the model."""
    columns = ["path", "frame", "status", "label", "confidence", "tumour_probability"]
    columns += [f"p_{name}" for name in classes]
    columns += ["cam_method", "cam_peak_row", "cam_peak_col", "width", "height", "series_uid", "series_index",
                "series_length", "window_source", "in_domain", "domain_score", "domain_reason", "heat_outside", "error"]
    if include_identifiers:
        columns += list(IDENTIFIER_COLUMNS)
    return columns


def number_text(value: float | None) -> str:
    """A probability or confidence as written: six decimals, "" for none (NaN)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6f}"


def _cells(record: FrameRecord) -> dict[str, str]:
    """Every cell of the record's row, exact (before neutralising): "" where there is no value."""
    peak = record.cam_peak or ("", "")
    cells = {
        "path": path_text(record.path),
        "frame": str(record.frame),
        "status": record.status,
        "label": record.label,
        "confidence": number_text(record.confidence),
        "tumour_probability": number_text(record.tumour_probability),
        **{f"p_{name}": number_text(value) for name, value in record.probabilities.items()},
        "cam_method": record.cam_method,
        "cam_peak_row": str(peak[0]),
        "cam_peak_col": str(peak[1]),
        "width": _integer_text(record.width),
        "height": _integer_text(record.height),
        "series_uid": plain_text(record.series_uid),
        "series_index": _integer_text(record.series_index),
        "series_length": _integer_text(record.series_length),
        "window_source": record.window_source,
        "in_domain": _DOMAIN_TEXT[record.in_domain],
        "domain_score": number_text(record.domain_score),
        "domain_reason": plain_text(record.domain_reason),
        "heat_outside": number_text(record.heat_outside),
        "error": plain_text(record.error),
    }
    cells.update({column: plain_text(record.identifiers.get(column, "")) for column in IDENTIFIER_COLUMNS})
    return cells


_DOMAIN_TEXT = {True: "true", False: "false", None: ""}
_DOMAIN_OF = {text: value for value, text in _DOMAIN_TEXT.items()}


def _integer_text(value: int | None) -> str:
    return "" if value is None else str(value)


def record_to_csv_row(record: FrameRecord, columns: list[str]) -> dict[str, str]:
    """The record's cells under ``columns`` (see :func:`result_columns`), as ``results.csv`` holds them."""
    cells = _cells(record)
    return {column: neutralise(cells.get(column, "")) for column in columns}


def record_to_json(record: FrameRecord, columns: list[str]) -> dict[str, Any]:
    """The record's item of ``results.json``: the values of its CSV row, typed (``None`` for an empty cell)."""
    cells = _cells(record)
    numbers = {"confidence", "tumour_probability", "domain_score", "heat_outside", *(f"p_{name}" for name in record.probabilities)}
    item: dict[str, Any] = {}
    for column in columns:
        text = cells.get(column, "")
        if text == "":
            item[column] = None
        elif column in numbers:
            item[column] = float(text)
        elif column in _INTEGERS:
            item[column] = int(text)
        elif column == "in_domain":
            item[column] = _DOMAIN_OF[text]
        else:
            item[column] = text
    return item


def record_from_csv_row(row: Mapping[str, str | None], classes: tuple[str, ...]) -> FrameRecord | None:
    """The record of a row read by :class:`csv.DictReader`, or None for a damaged row.

    Damaged: a cell missing or one too many, a column of :func:`result_columns` absent, a status
    that is not ``ok`` or ``error``, or a frame, number or integer that does not parse. Identifier
    columns are read when present.
    """
    if None in row or any(value is None for value in row.values()):
        return None
    if any(column not in row for column in result_columns(classes)) or row["status"] not in STATUSES:
        return None
    cells: dict[str, str] = {name: restore(value) for name, value in row.items()}  # type: ignore[arg-type]
    cells["frame"] = row["frame"]  # type: ignore[assignment]  # as written: a neutralised frame ("'-1") is damage
    try:
        return _parse(cells, classes)
    except ValueError:
        return None


def _parse(cells: Mapping[str, str], classes: tuple[str, ...]) -> FrameRecord:
    """The record of a row's exact cells (raises ValueError for a number or integer that does not parse)."""
    integers = {column: None if cells[column] == "" else int(cells[column]) for column in _INTEGERS}
    if integers["frame"] is None:
        raise ValueError("no frame number")
    peak = (integers["cam_peak_row"], integers["cam_peak_col"])
    if cells["in_domain"] not in _DOMAIN_OF:
        raise ValueError("in_domain is not true, false or empty")
    return FrameRecord(
        path=path_from_text(cells["path"]),
        frame=integers["frame"],
        status=cells["status"],
        label=cells["label"],
        confidence=_number(cells["confidence"]),
        tumour_probability=_number(cells["tumour_probability"]),
        probabilities={name: _number(cells[f"p_{name}"]) for name in classes},
        cam_method=cells["cam_method"],
        cam_peak=None if None in peak else peak,  # type: ignore[arg-type]
        width=integers["width"],
        height=integers["height"],
        series_uid=cells["series_uid"],
        series_index=integers["series_index"],
        series_length=integers["series_length"],
        window_source=cells["window_source"],
        in_domain=_DOMAIN_OF[cells["in_domain"]],
        domain_reason=cells["domain_reason"],
        domain_score=_number(cells["domain_score"]),
        heat_outside=_number(cells["heat_outside"]),
        error=cells["error"],
        identifiers={column: cells[column] for column in IDENTIFIER_COLUMNS if cells.get(column)},
    )


def _number(text: str) -> float:
    return math.nan if text == "" else float(text)


def read_records(path: Path, classes: tuple[str, ...]) -> Iterator[FrameRecord]:
    """The records of a results CSV file, in its order; damaged rows are left out (memory stays flat)."""
    with open(path, encoding="utf-8", newline="", errors="surrogateescape") as stream:
        for row in csv.DictReader(stream):
            record = record_from_csv_row(row, classes)
            if record is not None:
                yield record
