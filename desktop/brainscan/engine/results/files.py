"""Writing the results files safely: whole files atomically, and cutting the line a killed process left half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cut_partial_last_line(path: Path) -> None:
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



def atomic_write_text(path: Path, text: str, errors: str = "strict") -> None:
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="", errors=errors) as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
