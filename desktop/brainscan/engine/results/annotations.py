"""Measurements, regions, key images and notes that a person adds to a study, and the sidecar file that keeps them.

Records (Qt-free, frozen): a :class:`Measurement` (a distance line, a rectangle, an ellipse or a freehand
polygon) on one frame, its points in the frame's pixel coordinates (x = column, y = row of the stored
picture, before any rotation or flip of the view; pixel (r, c) covers ``[c, c + 1) x [r, r + 1)``), and
its :class:`Figures` (length in mm, area in mm², intensity statistics of the region's mask); a
:class:`KeyImage` (a frame and a note); and :class:`Annotations`, holding both.

The figures come from the frame's modality values (``Frame.values``, else the 8-bit picture) and its Pixel
Spacing; without a spacing they are in pixels ("px", "px²"). Masks are exact: a pixel belongs to a region
when its centre lies inside the shape.

The sidecar (:data:`SIDECAR_NAME`, JSON with :data:`FORMAT_VERSION`) lives in the folder of the study's
files when that folder is writable, else in a fallback folder (the viewer's settings folder) under a name
derived from the Study Instance UID (or the folder's path). Frames in it are named so that a moved study
keeps its annotations: the SOP Instance UID and frame number for DICOM, the file name relative to the
sidecar for pictures (:class:`FrameId`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from brainscan.engine.errors import InputError
from brainscan.engine.input import raster_headers
from brainscan.engine.input.discovery import ANNOTATIONS_SIDECAR
from brainscan.engine.input.frames import kind_of
from brainscan.engine.results.files import atomic_write_text
from brainscan.engine.results.record import FrameKey, frame_key

log = logging.getLogger(__name__)

SIDECAR_NAME = ANNOTATIONS_SIDECAR  # skipped, not counted, by discovery
FORMAT_VERSION = 1
KINDS = ("line", "rectangle", "ellipse", "freehand")
KIND_NAMES = {"line": "Distance", "rectangle": "Rectangle", "ellipse": "Ellipse", "freehand": "Freehand"}
_MIN_POINTS = {"line": 2, "rectangle": 2, "ellipse": 2, "freehand": 3}

Point = tuple[float, float]  # (x = column, y = row) in the stored picture's pixels


# -- records ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    """What a measurement measures. ``unit`` is "mm" or "px"; areas are in its square."""

    unit: str
    length: float | None = None  # a line's length
    area: float | None = None  # a region's area (the shape's exact area)
    mean: float | None = None
    sd: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    pixels: int | None = None  # pixels of the region's mask

    def text(self) -> str:
        """One line for people: "12.3 mm" or "area 250.1 mm², mean 412.0, sd 30.2, min 350, max 480 (1000 px)"."""
        if self.length is not None:
            return f"{self.length:.1f} {self.unit}"
        if self.area is None:
            return ""
        parts = [f"area {self.area:.1f} {self.unit}²"]
        if self.pixels:
            parts.append(f"mean {self.mean:.1f}, sd {self.sd:.1f}, min {self.minimum:g}, max {self.maximum:g} "
                         f"({self.pixels} px)")
        return ", ".join(parts)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping) -> Figures:
        return cls(unit=str(data.get("unit", "px")), **{
            k: (int(data[k]) if k == "pixels" else float(data[k]))
            for k in ("length", "area", "mean", "sd", "minimum", "maximum", "pixels") if data.get(k) is not None})


@dataclass(frozen=True)
class Measurement:
    """A distance or a region on one frame.

    Parameters
    ----------
    ident:
        Unique within the study (kept in the sidecar).
    kind:
        One of :data:`KINDS`.
    frame:
        The frame's :func:`~brainscan.engine.results.record.frame_key` (resolved path, frame number).
    points:
        (column, row) in the stored picture's pixels: a line's two ends, a rectangle's or an ellipse's two
        opposite bounding corners (axis-aligned in the picture), a freehand polygon's vertices.
    label:
        Optional text a person gives it.
    figures:
        What it measures (:func:`measure`), None until measured.
    """

    ident: str
    kind: str
    frame: FrameKey
    points: tuple[Point, ...]
    label: str = ""
    figures: Figures | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"measurement kind {self.kind!r} is not one of {KINDS}")
        if len(self.points) < _MIN_POINTS[self.kind]:
            raise ValueError(f"a {self.kind} needs at least {_MIN_POINTS[self.kind]} points, not {len(self.points)}")
        if self.kind in ("line", "rectangle", "ellipse") and len(self.points) != 2:
            raise ValueError(f"a {self.kind} has exactly 2 points, not {len(self.points)}")

    @property
    def name(self) -> str:
        return KIND_NAMES[self.kind]

    def summary(self) -> str:
        """"Distance 12.3 mm" (with the label first when there is one)."""
        text = f"{self.name} {self.figures.text() if self.figures else ''}".strip()
        return f"{self.label}: {text}" if self.label else text


@dataclass(frozen=True)
class KeyImage:
    """A frame marked as key, with a note (may be empty)."""

    frame: FrameKey
    note: str = ""


@dataclass(frozen=True)
class Annotations:
    """The measurements and key images of a study (or of everything open in the viewer)."""

    measurements: tuple[Measurement, ...] = ()
    key_images: tuple[KeyImage, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.measurements or self.key_images)

    def on_frame(self, frame: FrameKey) -> tuple[Measurement, ...]:
        return tuple(m for m in self.measurements if m.frame == frame)

    def key_image(self, frame: FrameKey) -> KeyImage | None:
        return next((k for k in self.key_images if k.frame == frame), None)

    def frames(self) -> list[FrameKey]:
        """Every frame annotated, once, in the order first met."""
        return list(dict.fromkeys([*(k.frame for k in self.key_images), *(m.frame for m in self.measurements)]))

    def only(self, frames: Iterable[FrameKey]) -> Annotations:
        """The annotations of ``frames`` alone."""
        keep = set(frames)
        return Annotations(tuple(m for m in self.measurements if m.frame in keep),
                           tuple(k for k in self.key_images if k.frame in keep))

    def merged(self, other: Annotations) -> Annotations:
        """``other``'s records added: a measurement already here is not added twice, one whose ident is taken
        by another (idents are unique within one sidecar only) gets a new ident; a key image of a frame already
        key keeps the note it has here."""
        by_ident = {m.ident: m for m in self.measurements}
        added = []
        for measurement in other.measurements:
            same = by_ident.get(measurement.ident)
            if same == measurement:
                continue
            if same is not None:
                measurement = replace(measurement, ident=new_ident(by_ident))
            by_ident[measurement.ident] = measurement
            added.append(measurement)
        keys = {k.frame for k in self.key_images}
        return Annotations(self.measurements + tuple(added),
                           self.key_images + tuple(k for k in other.key_images if k.frame not in keys))


def new_ident(existing: Iterable[str] = ()) -> str:
    """A short ident not in ``existing`` ("m1", "m2", ...)."""
    taken = set(existing)
    number = len(taken) + 1
    while f"m{number}" in taken:
        number += 1
    return f"m{number}"


# -- figures ---------------------------------------------------------------------------------------
def frame_values(values: np.ndarray | None, picture: np.ndarray) -> np.ndarray:
    """The values statistics are taken from: the modality values, else the 8-bit picture (grey: its mean)."""
    if values is not None:
        return np.asarray(values, dtype=np.float64)
    array = np.asarray(picture, dtype=np.float64)
    return array.mean(axis=2) if array.ndim == 3 else array


def region_mask(kind: str, points: Iterable[Point], shape: tuple[int, int]) -> np.ndarray:
    """The pixels (H x W bool) whose centres lie inside a region (a line has no region: all False)."""
    height, width = shape
    pts = np.asarray(list(points), dtype=np.float64)
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    if kind == "line":
        return np.zeros(shape, dtype=bool)
    if kind in ("rectangle", "ellipse"):
        (x0, y0), (x1, y1) = np.min(pts, axis=0), np.max(pts, axis=0)
        if kind == "rectangle":
            inside_x = (cols >= x0) & (cols < x1)
            inside_y = (rows >= y0) & (rows < y1)
            return inside_y[:, None] & inside_x[None, :]
        a, b = (x1 - x0) / 2, (y1 - y0) / 2
        if a <= 0 or b <= 0:
            return np.zeros(shape, dtype=bool)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return ((cols[None, :] - cx) / a) ** 2 + ((rows[:, None] - cy) / b) ** 2 <= 1.0
    return _polygon_mask(pts, rows, cols)


def _polygon_mask(pts: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Even-odd rule on the pixel centres, one scan line per row (exact for any simple or crossing polygon)."""
    mask = np.zeros((len(rows), len(cols)), dtype=bool)
    x, y = pts[:, 0], pts[:, 1]
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    for index, row in enumerate(rows):
        crossing = (y <= row) != (y2 <= row)
        if not crossing.any():
            continue
        xs = np.sort(x[crossing] + (row - y[crossing]) * (x2[crossing] - x[crossing]) / (y2[crossing] - y[crossing]))
        for start, stop in zip(xs[0::2], xs[1::2], strict=False):
            mask[index] |= (cols >= start) & (cols < stop)
    return mask


def shape_area(kind: str, points: Iterable[Point]) -> float:
    """The exact area of a region in pixels² (0 for a line)."""
    pts = np.asarray(list(points), dtype=np.float64)
    if kind == "line":
        return 0.0
    if kind in ("rectangle", "ellipse"):
        width, height = np.abs(pts[1] - pts[0])
        return float(width * height * (math.pi / 4 if kind == "ellipse" else 1.0))
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def measure(kind: str, points: Iterable[Point], values: np.ndarray,
            spacing: tuple[float, float] | None) -> Figures:
    """The figures of a shape on a frame whose values are ``values`` (H x W) and Pixel Spacing ``spacing``
    (mm between rows, mm between columns; None: in pixels)."""
    pts = tuple((float(x), float(y)) for x, y in points)
    row_mm, col_mm = spacing if spacing is not None else (1.0, 1.0)
    unit = "mm" if spacing is not None else "px"
    if kind == "line":
        (x0, y0), (x1, y1) = pts[0], pts[-1]
        return Figures(unit, length=float(math.hypot((x1 - x0) * col_mm, (y1 - y0) * row_mm)))
    mask = region_mask(kind, pts, values.shape[:2])
    inside = values[mask]
    area = shape_area(kind, pts) * row_mm * col_mm
    if inside.size == 0:
        return Figures(unit, area=area, pixels=0)
    return Figures(unit, area=area, mean=float(inside.mean()), sd=float(inside.std()),
                   minimum=float(inside.min()), maximum=float(inside.max()), pixels=int(inside.size))


def measured(measurement: Measurement, values: np.ndarray, spacing: tuple[float, float] | None) -> Measurement:
    """``measurement`` with its figures computed on a frame."""
    return replace(measurement, figures=measure(measurement.kind, measurement.points, values, spacing))


# -- frames in the sidecar -------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameId:
    """A frame as the sidecar names it: the file relative to the sidecar's folder (or absolute, for a sidecar
    kept elsewhere), its frame number, and for DICOM its SOP Instance UID (which wins when the file moved)."""

    file: str
    frame: int = 0
    sop_instance_uid: str = ""

    def to_json(self) -> dict:
        item: dict = {"file": self.file, "frame": self.frame}
        if self.sop_instance_uid:
            item["sop_instance_uid"] = self.sop_instance_uid
        return item

    @classmethod
    def from_json(cls, data: Mapping) -> FrameId:
        return cls(str(data.get("file", "")), int(data.get("frame", 0)), str(data.get("sop_instance_uid", "")))


def dicom_uids(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(SOP Instance UID, Study Instance UID) of a DICOM file, ("", "") for anything else."""
    try:
        if kind_of(raster_headers.sniff_file(Path(path))) != "dicom":
            return "", ""
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=["SOPInstanceUID", "StudyInstanceUID"])
        return str(ds.get("SOPInstanceUID", "") or ""), str(ds.get("StudyInstanceUID", "") or "")
    except (InputError, OSError, ValueError, AttributeError, TypeError) as exc:
        log.debug("no UIDs for %s: %s", path, exc)
        return "", ""
    except Exception as exc:  # pydicom's own errors on a damaged header
        log.debug("no UIDs for %s: %s", path, exc)
        return "", ""


class FrameIndex:
    """The frames of one folder's files, named both ways (key <-> :class:`FrameId`); UIDs read once per file."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], base: Path | None) -> None:
        self.base = base
        self.paths = list(dict.fromkeys(os.path.realpath(p) for p in paths))
        self._uids: dict[str, tuple[str, str]] = {}

    def uids(self, path: str) -> tuple[str, str]:
        if path not in self._uids:
            self._uids[path] = dicom_uids(path)
        return self._uids[path]

    def study_uid(self) -> str:
        """The Study Instance UID of the first DICOM file ("" for pictures)."""
        for path in self.paths:
            study = self.uids(path)[1]
            if study:
                return study
        return ""

    def name(self, key: FrameKey) -> FrameId:
        path, frame = key
        try:
            text = Path(path).relative_to(self.base).as_posix() if self.base is not None else path
        except ValueError:
            text = path
        return FrameId(text, frame, self.uids(path)[0])

    def resolve(self, ident: FrameId) -> FrameKey | None:
        """The key of the frame ``ident`` names among this index's files, or None."""
        hinted = os.path.realpath(self.base / ident.file) if self.base is not None else os.path.realpath(ident.file)
        if hinted in self.paths and (not ident.sop_instance_uid or self.uids(hinted)[0] == ident.sop_instance_uid):
            return frame_key(hinted, ident.frame)
        if ident.sop_instance_uid:
            for path in self.paths:
                if self.uids(path)[0] == ident.sop_instance_uid:
                    return frame_key(path, ident.frame)
            return None
        name = Path(ident.file).name  # a picture: the same name in this folder
        matches = [p for p in self.paths if Path(p).name == name]
        return frame_key(matches[0], ident.frame) if len(matches) == 1 else None


# -- JSON ------------------------------------------------------------------------------------------
def to_json(annotations: Annotations, name: Callable[[FrameKey], FrameId]) -> dict:
    """The sidecar's JSON of ``annotations`` (frames named by ``name``)."""
    return {
        "format": "brainscan-annotations",
        "version": FORMAT_VERSION,
        "measurements": [{
            "id": m.ident, "kind": m.kind, "frame": name(m.frame).to_json(),
            "points": [[round(x, 3), round(y, 3)] for x, y in m.points], "label": m.label,
            **({"figures": m.figures.to_json()} if m.figures is not None else {}),
        } for m in annotations.measurements],
        "key_images": [{"frame": name(k.frame).to_json(), "note": k.note} for k in annotations.key_images],
    }


def from_json(data: Mapping, resolve: Callable[[FrameId], FrameKey | None], *, source: Path | None = None
              ) -> tuple[Annotations, int]:
    """Annotations from the sidecar's JSON and how many records name a frame not found (they are left out).

    Raises
    ------
    InputError
        Not a brainscan annotations file, or of a newer format version.
    """
    where = source or Path(SIDECAR_NAME)
    if not isinstance(data, Mapping) or data.get("format") != "brainscan-annotations":
        raise InputError(where, "is not a brainscan annotations file", "move it away or delete it")
    version = data.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(where, f"has annotations format version {version!r}, newer than this brainscan "
                         f"reads ({FORMAT_VERSION})", "open the study with a newer brainscan")
    measurements, keys, missing = [], [], 0
    for item in data.get("measurements", []):
        try:
            key = resolve(FrameId.from_json(item["frame"]))
            if key is None:
                missing += 1
                continue
            figures = Figures.from_json(item["figures"]) if item.get("figures") else None
            ident = str(item["id"])
            if any(m.ident == ident for m in measurements):
                ident = new_ident(m.ident for m in measurements)
            measurements.append(Measurement(ident, str(item["kind"]), key,
                                            tuple((float(x), float(y)) for x, y in item["points"]),
                                            str(item.get("label", "")), figures))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(where, f"has a measurement that cannot be read ({exc})", "fix or delete the file") from exc
    for item in data.get("key_images", []):
        try:
            key = resolve(FrameId.from_json(item["frame"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(where, f"has a key image that cannot be read ({exc})", "fix or delete the file") from exc
        if key is None:
            missing += 1
            continue
        keys.append(KeyImage(key, str(item.get("note", ""))))
    return Annotations(tuple(measurements), tuple(keys)), missing


# -- where the sidecar lives -----------------------------------------------------------------------
def fallback_name(study_uid: str, folder: str | os.PathLike[str]) -> str:
    """The sidecar's name in the fallback folder: from the Study Instance UID, else from the folder's path."""
    seed = f"study:{study_uid}" if study_uid else f"folder:{os.path.realpath(folder)}"
    return f"annotations-{hashlib.sha1(seed.encode()).hexdigest()[:16]}.json"


def folder_writable(folder: Path) -> bool:
    """Whether a sidecar may be written in ``folder``: writable to us, and not marked read-only for everyone
    (a folder without any write permission is left alone even by an administrator)."""
    try:
        marked = bool(os.stat(folder).st_mode & 0o222)
    except OSError:
        return False
    return marked and os.access(folder, os.W_OK | os.X_OK)


@dataclass
class Sidecar:
    """One sidecar file and the frames of the files it covers."""

    path: Path
    index: FrameIndex


def sidecars(paths: Iterable[str | os.PathLike[str]], fallback_dir: Path | None) -> list[Sidecar]:
    """The sidecar of each folder of ``paths``: in the folder when it is writable or already holds one, else
    in ``fallback_dir`` (None: the folder's own, even when read-only)."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        real = os.path.realpath(path)
        by_folder.setdefault(os.path.dirname(real), []).append(real)
    found: dict[Path, Sidecar] = {}
    for folder, files in by_folder.items():
        own = Path(folder) / SIDECAR_NAME
        if fallback_dir is None or folder_writable(Path(folder)):
            place, base = own, Path(folder)
        else:
            index = FrameIndex(files, None)
            place, base = Path(fallback_dir) / fallback_name(index.study_uid(), folder), None
        if place in found:
            found[place].index.paths += files
        else:
            found[place] = Sidecar(place, index if base is None else FrameIndex(files, base))
    return list(found.values())


def _unopened(sidecar: Sidecar) -> dict[str, list]:
    """The records of the sidecar file on disk that name frames not among its index's files, as they are."""
    try:
        data = json.loads(sidecar.path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, Mapping) or data.get("format") != "brainscan-annotations":
        return {}
    kept: dict[str, list] = {"measurements": [], "key_images": []}
    for name in kept:
        for item in data.get(name, []):
            try:
                if sidecar.index.resolve(FrameId.from_json(item["frame"])) is None:
                    kept[name].append(item)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # unreadable: dropped, as load drops it
    return kept


def load(paths: Iterable[str | os.PathLike[str]], fallback_dir: Path | None = None) -> Annotations:
    """The annotations kept for the frames of ``paths`` (their folders' sidecars, else those in ``fallback_dir``).

    A sidecar that cannot be read is logged and skipped: annotations never stop a study from opening.
    """
    result = Annotations()
    found_places = sidecars(paths, fallback_dir)
    for sidecar in list(found_places):
        if sidecar.index.base is None:  # kept elsewhere: a sidecar shipped in the read-only folder is read too
            folders = dict.fromkeys(os.path.dirname(p) for p in sidecar.index.paths)
            found_places += [Sidecar(Path(f) / SIDECAR_NAME, FrameIndex(
                [p for p in sidecar.index.paths if os.path.dirname(p) == f], Path(f))) for f in folders]
    for sidecar in found_places:
        try:
            text = sidecar.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("%s: cannot be read (%s); its annotations are not shown", sidecar.path, exc)
            continue
        try:
            found, missing = from_json(json.loads(text), sidecar.index.resolve, source=sidecar.path)
        except (ValueError, InputError) as exc:
            log.warning("%s: %s; its annotations are not shown", sidecar.path, exc)
            continue
        if missing:
            log.info("%s: %d annotations name frames not open", sidecar.path, missing)
        result = result.merged(found)
    return result


def save(annotations: Annotations, paths: Iterable[str | os.PathLike[str]], fallback_dir: Path | None = None
         ) -> list[Path]:
    """Write the sidecar of each folder of ``paths`` (atomically) with the annotations of its frames.

    A folder that lost its last annotation gets its sidecar rewritten empty, so a deletion is kept.
    Returns the files written.

    Raises
    ------
    OSError
        A sidecar that cannot be written.
    """
    written = []
    for sidecar in sidecars(paths, fallback_dir):
        files = set(sidecar.index.paths)
        mine = Annotations(tuple(m for m in annotations.measurements if m.frame[0] in files),
                           tuple(k for k in annotations.key_images if k.frame[0] in files))
        if not mine and not sidecar.path.is_file():
            continue
        data = to_json(mine, sidecar.index.name)
        for name, items in _unopened(sidecar).items():  # the records of files not open now are kept
            data[name] += items
        if sidecar.index.base is None:  # kept away from the study: say which folder it is about
            data["folder"] = os.path.dirname(sidecar.index.paths[0]) if sidecar.index.paths else ""
        sidecar.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(sidecar.path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        written.append(sidecar.path)
    return written
