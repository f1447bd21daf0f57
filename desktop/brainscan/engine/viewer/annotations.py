"""The viewer's measurements and key images: one evented model (Qt-free) that the slice view's tools, the
Measurements dock and the sidecar file follow.

:class:`AnnotationsModel` holds an :class:`AnnotationState` (the study's
:class:`~brainscan.engine.results.annotations.Annotations` and the selected measurement) and offers the
edits a person makes: add, move (new points and figures), relabel, delete, select, toggle a key image,
edit its note. Every edit announces ``annotations`` (and ``changed``); selecting announces ``selected``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from brainscan.engine.results.annotations import Annotations, Figures, KeyImage, Measurement, Point, new_ident
from brainscan.engine.results.record import FrameKey
from brainscan.engine.viewer.evented import EventedField, EventedModel


@dataclass(frozen=True)
class AnnotationState:
    """The annotations of everything open, and the ident of the selected measurement ("" for none)."""

    annotations: Annotations = field(default_factory=Annotations)
    selected: str = ""


class AnnotationsModel(EventedModel[AnnotationState]):
    """The one owner of the viewer's measurements and key images (see the module docstring)."""

    annotations = EventedField()
    selected = EventedField()

    def __init__(self) -> None:
        super().__init__(AnnotationState())

    # -- measurements ----------------------------------------------------------------------------
    def measurement(self, ident: str) -> Measurement | None:
        return next((m for m in self.annotations.measurements if m.ident == ident), None)

    def add(self, kind: str, frame: FrameKey, points: tuple[Point, ...], figures: Figures | None = None,
            label: str = "") -> Measurement:
        """A new measurement on ``frame``, selected."""
        current: Annotations = self.annotations
        made = Measurement(new_ident(m.ident for m in current.measurements), kind, tuple(frame),  # type: ignore[arg-type]
                           tuple(points), label, figures)
        self.set(AnnotationState(replace(current, measurements=(*current.measurements, made)), made.ident))
        return made

    def _replace(self, ident: str, **changes: object) -> bool:
        current: Annotations = self.annotations
        found = self.measurement(ident)
        if found is None:
            return False
        changed = replace(found, **changes)
        return self.update(annotations=replace(current, measurements=tuple(
            changed if m.ident == ident else m for m in current.measurements)))

    def move(self, ident: str, points: tuple[Point, ...], figures: Figures | None) -> bool:
        """New points (a handle dragged) and the figures measured on them."""
        return self._replace(ident, points=tuple(points), figures=figures)

    def relabel(self, ident: str, label: str) -> bool:
        return self._replace(ident, label=label)

    def delete(self, ident: str) -> bool:
        current: Annotations = self.annotations
        kept = tuple(m for m in current.measurements if m.ident != ident)
        if len(kept) == len(current.measurements):
            return False
        return self.set(AnnotationState(replace(current, measurements=kept),
                                        "" if self.selected == ident else self.selected))

    def select(self, ident: str) -> None:
        self.selected = ident if self.measurement(ident) is not None else ""

    # -- key images ------------------------------------------------------------------------------
    def is_key(self, frame: FrameKey) -> bool:
        return self.annotations.key_image(tuple(frame)) is not None

    def toggle_key(self, frame: FrameKey) -> bool:
        """Mark ``frame`` as a key image, or unmark it; returns whether it is key now."""
        current: Annotations = self.annotations
        frame = tuple(frame)  # type: ignore[assignment]
        if current.key_image(frame) is not None:
            self.update(annotations=replace(current, key_images=tuple(k for k in current.key_images
                                                                      if k.frame != frame)))
            return False
        self.update(annotations=replace(current, key_images=(*current.key_images, KeyImage(frame))))
        return True

    def set_note(self, frame: FrameKey, note: str) -> None:
        """The note of ``frame`` (which becomes a key image when it is not one yet)."""
        current: Annotations = self.annotations
        frame = tuple(frame)  # type: ignore[assignment]
        if current.key_image(frame) is None:
            self.update(annotations=replace(current, key_images=(*current.key_images, KeyImage(frame, note))))
            return
        self.update(annotations=replace(current, key_images=tuple(
            KeyImage(k.frame, note) if k.frame == frame else k for k in current.key_images)))

    # -- the whole study -------------------------------------------------------------------------
    def merge(self, found: Annotations) -> bool:
        """Annotations read from a sidecar, added to those shown; returns whether any was new."""
        return self.update(annotations=self.annotations.merged(found))

    def clear(self) -> None:
        self.set(AnnotationState())
