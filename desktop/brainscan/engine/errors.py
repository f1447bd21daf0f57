"""Typed, user-facing errors.

Every error a person can act on derives from :class:`BrainscanError`; its message names the
file (or model, or device) and says what to do. The command line prints the message and exits
non-zero, the viewer shows it. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class BrainscanError(Exception):
    """Base class of the errors a user can understand and fix."""


class InputError(BrainscanError):
    """A file that cannot be turned into a picture."""

    def __init__(self, path: str | Path, problem: str, fix: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        message = f"{self.path}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class NotAnImageError(InputError):
    """The file is neither a supported raster image nor DICOM."""


class CorruptImageError(InputError):
    """The file claims to be an image but cannot be decoded (truncated, damaged)."""


class ImageTooLargeError(InputError):
    """The declared size is absurd or would exhaust memory (a decompression bomb guard)."""


class ImageTooSmallError(InputError):
    """A picture too small to hold a brain slice (an icon, a thumbnail, a placeholder)."""


class DicomError(InputError):
    """A DICOM file without usable pixels, or with an unsupported encoding."""


class ModelError(BrainscanError):
    """A model file that is missing, unreadable, or whose contract does not match its graph."""


class UnverifiedModelError(ModelError):
    """A model whose contract records no weights checksum, refused unless explicitly allowed."""


class DeviceError(BrainscanError):
    """An inference device that cannot be used."""


class Cancelled(Exception):
    """Long work stopped because it was asked to (its ``cancelled()`` callback said so): not a failure, so not a
    :class:`BrainscanError`."""
