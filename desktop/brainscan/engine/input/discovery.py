"""Finding the pictures to screen: files and folders to :class:`~brainscan.engine.input.frames.FrameRef` items.

:func:`find_inputs` walks folders, sniffs each file, groups DICOM slices into series in anatomical
order, and counts what it leaves out (files that are not pictures, DICOM objects without an image,
brainscan output folders); no pixel is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from brainscan.engine.errors import InputError
from brainscan.engine.input import dicom_header, dicom_series, planes, raster_headers
from brainscan.engine.input.frames import FrameRef, is_plausible_dicom, kind_of

# -- discovery ---------------------------------------------------------------------------------
# Names that say "picture": such a file found in a folder gets a result even when it cannot be read.
# Any other file found in a folder is kept only when its content sniffs as a picture or DICOM
# (extension-less DICOM is common), so a study folder's LICENSE or notes are skipped, not errors.
PICTURE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".dcm", ".dicom", ".dic", ".ima",
    ".nii",  # NIfTI volumes (and .nii.gz: has_picture_name), screened slice by slice (engine/input/planes.py)
    # pictures brainscan cannot read: their error row says what to convert them to
    ".gif", ".webp", ".jp2", ".j2k", ".heic", ".heif", ".avif", ".nrrd", ".mha", ".mhd", ".img",
})
# Left in every folder a run writes into (results.py holds it there); such a folder is never screened.
OUTPUT_MARKER = ".brainscan.lock"
# The viewer's measurements and key images, kept beside a study's files (engine/results/annotations.py).
ANNOTATIONS_SIDECAR = "brainscan-annotations.json"

SKIPPED_NOT_IMAGES = "not images"
SKIPPED_NON_IMAGE_DICOM = "DICOM objects without an image (reports, plans, waveforms)"
SKIPPED_OUTPUT = "brainscan output folders"


@dataclass
class Discovery:
    """What :func:`find_inputs` found: the frames to screen, and what it left out and why."""

    refs: list[FrameRef] = field(default_factory=list)
    skipped: dict[str, list[Path]] = field(default_factory=dict)  # reason -> files (or folders)

    def skip(self, reason: str, path: Path) -> None:
        self.skipped.setdefault(reason, []).append(path)

    def notes(self, examples: int = 3) -> list[str]:
        """One line per reason, e.g. ``2 files skipped: not images (LICENSE, README.md)``."""
        lines = []
        for reason, paths in self.skipped.items():
            names = ", ".join(p.name for p in paths[:examples]) + (", ..." if len(paths) > examples else "")
            what = "folder" if reason == SKIPPED_OUTPUT else "file"
            lines.append(f"{len(paths)} {what}{'s' if len(paths) != 1 else ''} skipped: {reason} ({names})")
        return lines


def has_picture_name(path: Path) -> bool:
    """Whether the file name says it is a picture or DICOM (the content decides what it really is)."""
    return path.suffix.lower() in PICTURE_SUFFIXES or path.name.lower().endswith(".nii.gz")


def is_output_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is (or was) written by a brainscan run: it holds :data:`OUTPUT_MARKER`."""
    return os.path.lexists(os.path.join(folder, OUTPUT_MARKER))


def iter_files(
    paths: Iterable[str | Path],
    *,
    exclude: Iterable[str | Path] = (),
    skipped: Discovery | None = None,
) -> Iterator[tuple[Path, bool]]:
    """``(file, named)`` for the files named (``named`` True) and the files inside folders named.

    Folders are recursed in sorted order. Inside folders, dotfiles, dot-folders and DICOMDIR files
    are skipped, symbolic links to folders are followed once (no loops), and every file is yielded
    once. Folders in ``exclude`` and brainscan output folders (:func:`is_output_folder`) are never
    entered, even when named; they are noted in ``skipped``. A file named explicitly is always yielded.

    Raises
    ------
    InputError
        A path that does not exist.
    """
    seen_files: set[str] = set()
    seen_dirs: set[str] = set()
    excluded = {os.path.realpath(p) for p in exclude}
    for item in paths:
        path = Path(item)
        if path.is_dir():
            yield from ((p, False) for p in _walk(path, seen_dirs, seen_files, excluded, skipped))
        elif path.exists() or path.is_symlink():
            key = os.path.realpath(path)
            if key not in seen_files:
                seen_files.add(key)
                yield path, True
        else:
            raise InputError(path, "does not exist", "check the path and that the drive is connected")


def _walk(
    root: Path, seen_dirs: set[str], seen_files: set[str], excluded: set[str], skipped: Discovery | None
) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen_dirs:  # a link back up, or a folder named twice
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        if real in excluded or is_output_folder(directory):
            if skipped is not None:
                skipped.skip(SKIPPED_OUTPUT, Path(directory))
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.upper() == "DICOMDIR" or name == ANNOTATIONS_SIDECAR:
                continue
            path = Path(directory, name)
            key = os.path.realpath(path)
            if key not in seen_files and not os.path.isdir(path):
                seen_files.add(key)
                yield path


def _dicom_headers(path: Path, sniffed: str) -> list[dicom_series.SliceHeader] | None:
    """Slice headers of a DICOM file, or None when its header cannot be read or declares more frames
    than its pixel data holds (either way the file becomes one ref, and :func:`load_frame` says why)."""
    try:
        ds, capacity = dicom_series.read_header_and_capacity(path, force=sniffed == "dicom-raw")
        if sniffed == "dicom-raw" and not is_plausible_dicom(ds):
            return None
        frames = dicom_header.number_of_frames(ds)
        # every frame takes at least a byte of the file, whatever the pixel data element says
        holds = capacity.frames if capacity is not None else os.path.getsize(path)
        if frames > 1 and frames > holds:
            return None
        # values are converted when first read: a damaged one (e.g. an unknown VR) raises here
        return dicom_series.headers_from_dataset(ds, path)
    except Exception:  # any header problem is reported by load_frame, with the file named
        return None


def discover(
    paths: Iterable[str | Path], *, exclude: Iterable[str | Path] = (), plane: str = planes.ACQUIRED
) -> list[FrameRef]:
    """Every picture to screen under ``paths``: :func:`find_inputs` without its notes."""
    return find_inputs(paths, exclude=exclude, plane=plane).refs


def find_inputs(
    paths: Iterable[str | Path],
    *,
    exclude: Iterable[str | Path] = (),
    on_file: Callable[[int], None] | None = None,
    plane: str = planes.ACQUIRED,
) -> Discovery:
    """Every picture to screen under ``paths``, without decoding pixels, and what was left out.

    Raster files give one :class:`FrameRef` each; DICOM files one per frame, grouped by series
    and sorted along the slice normal (see :mod:`brainscan.engine.input.dicom_series`), each series
    placed where its first file was found.

    Every file named on the command line, and every file found in a folder that is named like a
    picture (:data:`PICTURE_SUFFIXES`), gets a ref: an unreadable one a ``kind="unknown"`` ref, so
    that it gets an error row (:func:`load_frame` explains what is wrong with it). A file found in
    a folder that neither is named like a picture nor sniffs as one (a LICENSE, notes), and a DICOM
    object without an image (a structured report, an RT plan, an ECG) found in a folder, are
    skipped and counted in :attr:`Discovery.skipped`; so are output folders (``exclude``, and any
    folder a brainscan run writes into).

    Parameters
    ----------
    on_file:
        Called with the number of files looked at so far, after each (progress of a long walk).
    plane:
        ``"acquired"`` (DICOM frames as stored, NIfTI across its third voxel axis), or a plane that 3-D DICOM
        series and NIfTI files are cut along (:mod:`brainscan.engine.input.planes`); a NIfTI file gives one
        series of its slices either way.

    Raises
    ------
    InputError
        A path that does not exist.
    """
    found = Discovery()
    slots: list[FrameRef | str] = []  # a ref, or the key of a series placed here
    series: dict[str, list[dicom_series.SliceHeader]] = {}
    for count, (path, named) in enumerate(iter_files(paths, exclude=exclude, skipped=found), start=1):
        if on_file is not None:
            on_file(count)
        keep_anyway = named or has_picture_name(path)
        try:
            sniffed = raster_headers.sniff_file(path)
        except InputError:
            sniffed = "unknown"
        if sniffed == "nifti":
            slots.extend(planes.nifti_refs(path, plane))
            continue
        headers = _dicom_headers(path, sniffed) if kind_of(sniffed) == "dicom" else None
        if headers is None:
            kind = "dicom" if sniffed == "dicom" else kind_of(sniffed)
            if kind == "unknown" and not keep_anyway:
                found.skip(SKIPPED_NOT_IMAGES, path)
            else:
                slots.append(FrameRef(path, kind=kind))
            continue
        if not named and not any(h.is_image for h in headers):
            found.skip(SKIPPED_NON_IMAGE_DICOM, path)
            continue
        for header in headers:
            key = dicom_series.series_key(header)
            if key not in series:
                series[key] = []
                slots.append(key)
            series[key].append(header)
    for slot in slots:
        if isinstance(slot, FrameRef):
            found.refs.append(slot)
        else:
            found.refs.extend(planes.reformat_refs(_series_refs(series[slot]), plane, series[slot]))
    return found


def _series_refs(headers: list[dicom_series.SliceHeader]) -> list[FrameRef]:
    ordered, _method = dicom_series.sort_series(headers)
    return [
        FrameRef(
            h.path,
            frame=h.frame,
            kind="dicom",
            series_uid=h.series_uid,
            series_index=i,
            series_length=len(ordered),
        )
        for i, h in enumerate(ordered)
    ]


