"""Cells of the results files: every value one line of UTF-8 that a spreadsheet opens safely.

Paths are written reversibly (:func:`path_text`, :func:`path_from_text`): bytes that are not UTF-8,
control characters and ``%`` become ``%XX``. A cell a spreadsheet would run as a formula gets a
leading ``'`` in the CSV files (:func:`neutralise`, undone by :func:`restore`).
"""

from __future__ import annotations

import os
from pathlib import Path

STATUSES = ("ok", "error")
FORMULA_STARTS = ("=", "+", "-", "@", "'")  # what a spreadsheet would evaluate (and the escape itself)


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
