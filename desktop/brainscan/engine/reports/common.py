"""What every report writer shares: the formats, the typed error, and writing a file atomically."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from brainscan.engine.errors import BrainscanError

FORMATS = ("pdf", "html", "dicom")
REPORT_PDF = "report.pdf"
REPORT_HTML = "report.html"
DICOM_DIR = "dicom"
RESEARCH_BANNER = "RESEARCH USE ONLY"


class ReportError(BrainscanError):
    """A report that cannot be written (unwritable folder, full disk) or asked for wrongly."""


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"pdf,html"`` to ``("pdf", "html")`` in :data:`FORMATS` order, without repeats.

    Raises
    ------
    ReportError
        An unknown or empty format, naming the ones there are.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [item.strip().lower() for item in items]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not any(names):
        bad = ", ".join(repr(n) for n in unknown) if unknown else "an empty list"
        raise ReportError(f"--report got {bad}; choose any of {', '.join(FORMATS)}, comma-separated (e.g. pdf,html)")
    return tuple(name for name in FORMATS if name in names)


def describe_os_error(path: Path, exc: OSError) -> str:
    """A one-line reason for a failed write, with what to do about a full disk or a read-only folder."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        return f"{path}: the disk is full ({reason}); free some space and run the same command again"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path}: cannot write here ({reason}); choose another --out folder or fix its permissions"
    return f"{path}: cannot be written ({reason})"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a half-written file.

    Raises
    ------
    OSError
        As the operating system reports it (the temporary file is removed first).
    """
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` (and parents) or raise :class:`ReportError` saying why it cannot be used."""
    if folder.exists() and not folder.is_dir():
        raise ReportError(f"{folder}: is a file where a folder should be; move it away or choose another --out folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "permission denied", str(folder))
    except OSError as exc:
        raise ReportError(describe_os_error(folder, exc)) from exc
    return folder
