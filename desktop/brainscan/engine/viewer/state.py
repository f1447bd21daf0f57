"""What the viewer has open and where it stands: Qt-free state the desktop views bind to.

:class:`ViewerSession` holds the open frames grouped into series (a DICOM series, or the
pictures of one folder), the current position, and the screening results by frame: one
:class:`~brainscan.engine.results.record.FrameRecord` each, the one copy that the results table,
the series summary, the browser and the export read, and the network's
:class:`~brainscan.engine.model.inference.Prediction` for the heat maps. Frames are known by
:func:`~brainscan.engine.results.record.frame_key`, as in the ``brainscan`` command's results. The
viewer (:mod:`brainscan.gui`) only draws this state and turns clicks, keys and wheel steps into
calls on it, so the navigation rules are tested without a screen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.model.inference import Prediction
from brainscan.engine.results.record import FrameKey, FrameRecord, frame_key

__all__ = ["FrameCache", "FrameKey", "SeriesGroup", "ViewerSession", "frame_key", "group_refs", "thumbnail"]


@dataclass
class SeriesGroup:
    """Frames shown as one stack: a DICOM series in slice order, or the pictures of one folder.

    Attributes
    ----------
    key:
        ``"series:<SeriesInstanceUID>"`` or ``"folder:<path>"``.
    title:
        What the browser shows.
    kind:
        ``"series"`` (DICOM) or ``"images"``.
    """

    key: str
    title: str
    kind: str
    refs: list[FrameRef] = field(default_factory=list)
    name: str = ""  # the title without the count: "3 · t1_mprage_sag", or the folder and UID tail

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def unit(self) -> str:
        return "slice" if self.kind == "series" else "image"


def _group_key(ref: FrameRef) -> tuple[str, str, str]:
    if ref.series_uid:
        return f"series:{ref.series_uid}", "series", ref.series_uid
    folder = str(Path(ref.path).parent)
    return f"folder:{folder}", "images", folder


def series_tags_name(path: str | Path) -> str:
    """``"Series Number · Series Description"`` from a DICOM file's header, as much of it as is there ("" when
    neither tag is, or the header cannot be read)."""
    from pydicom.errors import InvalidDicomError

    from brainscan.engine.input.dicom_header import import_pydicom

    try:
        ds = import_pydicom().dcmread(path, stop_before_pixels=True, force=True,
                                      specific_tags=["SeriesNumber", "SeriesDescription"])
    except (OSError, ValueError, TypeError, AttributeError, KeyError, InvalidDicomError):
        return ""
    number = str(ds.get("SeriesNumber", "") or "").strip()
    description = str(ds.get("SeriesDescription", "") or "").strip()
    return " · ".join(part for part in (number, description) if part)


def series_name(ref: FrameRef) -> str:
    """What people call a DICOM series: ``"Series Number · Series Description"`` when the tags are there, else
    its folder and the tail of its UID; a NIfTI file's slices: the file's name."""
    if ref.kind == "nifti":
        return Path(ref.path).name
    return series_tags_name(ref.path) or f"{Path(ref.path).parent.name or Path(ref.path).parent} · series …{ref.series_uid[-8:]}"


def group_refs(refs: Iterable[FrameRef]) -> list[SeriesGroup]:
    """Group frames by DICOM series (kept in the given slice order) or by folder, in first-seen order."""
    groups: dict[str, SeriesGroup] = {}
    for ref in refs:
        key, kind, _ = _group_key(ref)
        group = groups.get(key)
        if group is None:
            group = groups[key] = SeriesGroup(key, "", kind)
        group.refs.append(ref)
    for group in groups.values():
        first = group.refs[0]
        if group.kind == "series":
            group.name = series_name(first)
        else:
            folder = Path(first.path).parent
            group.name = f"{folder.name or folder} · images"
        group.title = f"{group.name} ({len(group)})"
    return list(groups.values())


class ViewerSession:
    """The open frames, the current one, and the screening results.

    Navigation moves within the current group (a series or a folder) and clamps at its ends;
    :meth:`step_group` moves to the neighbouring group.
    """

    def __init__(self) -> None:
        self.groups: list[SeriesGroup] = []
        self.results: dict[FrameKey, FrameRecord] = {}
        self.predictions: dict[FrameKey, Prediction] = {}
        self._where: dict[FrameKey, tuple[int, int]] = {}
        self._keys: dict[FrameRef, FrameKey] = {}  # each open frame's key, resolved once
        self.group_index = -1
        self.position = -1

    # -- content ------------------------------------------------------------------------------
    def add(self, refs: Iterable[FrameRef]) -> list[SeriesGroup]:
        """Open more frames (already open ones, under any spelling of their path, are skipped); returns the
        groups that changed."""
        fresh: dict[FrameKey, FrameRef] = {}
        for ref in refs:
            key = self.key_of(ref)
            if key not in self._where:
                fresh.setdefault(key, ref)
        changed: list[SeriesGroup] = []
        for new_group in group_refs(fresh.values()):
            existing = next((g for g in self.groups if g.key == new_group.key), None)
            if existing is None:
                self.groups.append(new_group)
                existing = new_group
            else:
                existing.refs.extend(new_group.refs)
            changed.append(existing)
        self._reindex()
        if self.group_index < 0 and self.groups:
            self.group_index, self.position = 0, 0
        return changed

    def series_names(self) -> dict[str, str]:
        """Each open DICOM series' name (:func:`series_name`) by its Series Instance UID."""
        return {g.refs[0].series_uid: g.name for g in self.groups if g.kind == "series" and g.refs}

    def clear(self) -> None:
        self.groups.clear()
        self.clear_results()
        self._where.clear()
        self._keys.clear()
        self.group_index = self.position = -1

    def _reindex(self) -> None:
        self._where = {
            self.key_of(ref): (g, p) for g, group in enumerate(self.groups) for p, ref in enumerate(group.refs)
        }

    def __len__(self) -> int:
        return len(self._where)

    def key_of(self, ref: FrameRef) -> FrameKey:
        """The frame's :func:`~brainscan.engine.results.record.frame_key` (resolved once per frame)."""
        key = self._keys.get(ref)
        if key is None:
            key = self._keys[ref] = frame_key(ref.path, ref.frame)
        return key

    def refs(self) -> Iterator[FrameRef]:
        for group in self.groups:
            yield from group.refs

    def locate(self, key: FrameKey) -> tuple[int, int] | None:
        return self._where.get(key)

    def ref_of(self, key: FrameKey) -> FrameRef | None:
        where = self._where.get(key)
        return None if where is None else self.groups[where[0]].refs[where[1]]

    # -- the current frame ----------------------------------------------------------------------
    @property
    def current_group(self) -> SeriesGroup | None:
        return self.groups[self.group_index] if 0 <= self.group_index < len(self.groups) else None

    @property
    def current(self) -> FrameRef | None:
        group = self.current_group
        return group.refs[self.position] if group is not None and 0 <= self.position < len(group) else None

    @property
    def current_key(self) -> FrameKey | None:
        ref = self.current
        return None if ref is None else self.key_of(ref)

    def go_to(self, key: FrameKey) -> bool:
        """Make ``key`` current; returns whether the current frame changed."""
        where = self._where.get(key)
        if where is None or where == (self.group_index, self.position):
            return False
        self.group_index, self.position = where
        return True

    def step(self, delta: int) -> bool:
        """Move ``delta`` frames within the current group, clamped; returns whether it moved."""
        group = self.current_group
        if group is None:
            return False
        target = min(max(self.position + delta, 0), len(group) - 1)
        if target == self.position:
            return False
        self.position = target
        return True

    def go_to_end(self, last: bool) -> bool:
        group = self.current_group
        return group is not None and self.step(len(group) if last else -len(group))

    def step_group(self, delta: int) -> bool:
        """Move to the first frame of a neighbouring group (clamped)."""
        if not self.groups:
            return False
        target = min(max(self.group_index + delta, 0), len(self.groups) - 1)
        if target == self.group_index:
            return False
        self.group_index, self.position = target, 0
        return True

    def position_text(self) -> str:
        """``"slice 5/16"`` (1-based) for a series, ``"image 2/8"`` for a folder of pictures."""
        group = self.current_group
        if group is None or self.current is None:
            return "nothing open"
        return f"{group.unit} {self.position + 1}/{len(group)}"

    # -- results --------------------------------------------------------------------------------
    def unclassified(self) -> list[FrameRef]:
        """Open frames without a result yet, in browsing order."""
        return [ref for ref in self.refs() if self.key_of(ref) not in self.results]

    def add_result(self, record: FrameRecord, prediction: Prediction | None = None) -> FrameKey:
        """Keep a frame's record (replacing an earlier one) and the prediction its heat maps are drawn from."""
        key = frame_key(record.path, record.frame)
        self.results[key] = record
        if prediction is None:
            self.predictions.pop(key, None)
        else:
            self.predictions[key] = prediction
        return key

    def clear_results(self) -> None:
        self.results.clear()
        self.predictions.clear()


# -- frames in memory ------------------------------------------------------------------------------
def frame_bytes(frame: Frame) -> int:
    size = frame.picture.nbytes
    if frame.values is not None:
        size += frame.values.nbytes
    return size


class FrameCache:
    """Decoded frames kept up to a memory budget, the least recently used dropped first."""

    def __init__(self, budget_bytes: int = 512 << 20) -> None:
        self.budget = budget_bytes
        self.used = 0
        self._frames: OrderedDict[FrameKey, Frame] = OrderedDict()

    def get(self, key: FrameKey) -> Frame | None:
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
        return frame

    def __contains__(self, key: FrameKey) -> bool:
        return key in self._frames

    def put(self, key: FrameKey, frame: Frame) -> None:
        old = self._frames.pop(key, None)
        if old is not None:
            self.used -= frame_bytes(old)
        self._frames[key] = frame
        self.used += frame_bytes(frame)
        while self.used > self.budget and len(self._frames) > 1:
            _, dropped = self._frames.popitem(last=False)
            self.used -= frame_bytes(dropped)

    def clear(self) -> None:
        self._frames.clear()
        self.used = 0


def thumbnail(picture: np.ndarray, side: int = 64) -> np.ndarray:
    """A picture shrunk to fit ``side`` x ``side`` (area interpolation), H x W x 3 uint8."""
    height, width = picture.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return np.ascontiguousarray(picture)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.ascontiguousarray(cv2.resize(picture, size, interpolation=cv2.INTER_AREA))
