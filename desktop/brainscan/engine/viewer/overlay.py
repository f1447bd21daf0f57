"""Heat-map overlay state for the viewer: settings, their one evented model, the drawn lookup table, a CAM
cache and export.

The heat map of a frame is recomputed from the features kept in its
:class:`~brainscan.engine.inference.Prediction` (:func:`~brainscan.engine.cam.cam_on_picture`), so
changing the class or the method never re-runs the network; opacity, colour map and threshold
change only how the same map is drawn (the lookup table and the layer's opacity).

:class:`OverlayModel` is the one owner of the overlay state in the viewer: the heat-map panel, the
*Show heat map* action (H), holding Space, the remembered settings and the drawing all bind to it. Beside
the settings it holds two passing states that are never remembered: ``compare_hidden`` (Space held) and
``on_demand``, a slow map computed on request for one frame (the occlusion check), drawn instead of the
method's map until another method or class is chosen (the controller drops it when the frame changes).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cache

import cv2
import numpy as np

from brainscan import RESEARCH_USE_NOTICE
from brainscan.engine.model.cam import CLASS_INDEPENDENT, METHODS, cam_on_picture
from brainscan.engine.model.contract import ModelContract
from brainscan.engine.model.inference import Prediction
from brainscan.engine.model.overlay import COLORMAPS, blend, caption, colormap_lut
from brainscan.engine.reports.thumbnails import DEFAULT_THRESHOLD
from brainscan.engine.results.names import display_name
from brainscan.engine.run.explain import method_title
from brainscan.engine.viewer.evented import EventedField, EventedModel

PREDICTED = -1  # target "the predicted class"


@dataclass(frozen=True)
class OverlaySettings:
    """How the heat map is chosen and drawn.

    Attributes
    ----------
    visible:
        Draw the heat map at all.
    target:
        Class index whose map is shown, or :data:`PREDICTED` for each frame's predicted class.
    method:
        One of :data:`brainscan.engine.cam.METHODS`.
    opacity:
        In [0, 1].
    colormap:
        One of :data:`brainscan.engine.overlay.COLORMAPS`.
    threshold:
        Heat below it is not coloured, in [0, 1].
    """

    visible: bool = True
    target: int = PREDICTED
    method: str = "gradcam"
    opacity: float = 0.45
    colormap: str = "jet"
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown CAM method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.colormap not in COLORMAPS:
            raise ValueError(f"unknown colour map {self.colormap!r}; choose one of {', '.join(COLORMAPS)}")
        if not 0.0 <= self.opacity <= 1.0 or not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"opacity {self.opacity} and threshold {self.threshold} must lie in [0, 1]")

    def updated(self, **changes: object) -> OverlaySettings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def resolve_target(self, prediction: Prediction) -> int:
        """The class index drawn for ``prediction`` (class-independent methods ignore it)."""
        if self.method in CLASS_INDEPENDENT:
            return 0
        return prediction.label_index if self.target == PREDICTED else self.target



@dataclass(frozen=True, eq=False)
class OnDemandMap:
    """A map computed on request for the frame ``key`` (``method``: the occlusion check), for class ``target``.

    ``heat`` is over the frame's picture (H x W in [0, 1]); ``seconds`` is how long it took.
    """

    key: object
    method: str
    target: int
    heat: np.ndarray
    seconds: float


class OverlayModel(EventedModel[OverlaySettings]):
    """The viewer's overlay settings as one evented model (see :mod:`~brainscan.engine.viewer.evented`).

    Each field of :class:`OverlaySettings` is an attribute that announces its changes
    (``model.opacity = 0.6`` fires ``model.events.opacity(0.6)`` and ``model.events.changed(value)``);
    :attr:`value` is the frozen :class:`OverlaySettings` to pass on. ``compare_hidden`` is the
    momentary hiding while Space is held: it fires ``events.compare_hidden`` and is never part of
    the settings (the panel, the H action and the remembered settings do not follow it). ``on_demand`` is
    an :class:`OnDemandMap` drawn instead of the method's map of its frame (``events.on_demand``); choosing
    another method or class drops it, so the panel never shows one map while another is drawn.
    """

    visible = EventedField()
    target = EventedField()
    method = EventedField()
    opacity = EventedField()
    colormap = EventedField()
    threshold = EventedField()

    def __init__(self, settings: OverlaySettings | None = None) -> None:
        super().__init__(settings or OverlaySettings(), extra_events=("compare_hidden", "on_demand"))
        self._compare_hidden = False
        self._on_demand: OnDemandMap | None = None
        for name in ("method", "target"):
            self.events[name].connect(lambda _value: setattr(self, "on_demand", None))

    @property
    def compare_hidden(self) -> bool:
        return self._compare_hidden

    @compare_hidden.setter
    def compare_hidden(self, hidden: bool) -> None:
        if bool(hidden) != self._compare_hidden:
            self._compare_hidden = bool(hidden)
            self.events.compare_hidden.emit(self._compare_hidden)

    @property
    def on_demand(self) -> OnDemandMap | None:
        return self._on_demand

    @on_demand.setter
    def on_demand(self, shown: OnDemandMap | None) -> None:
        if shown is not self._on_demand:
            self._on_demand = shown
            self.events.on_demand.emit(shown)

    def on_demand_for(self, key: object) -> OnDemandMap | None:
        """The on-demand map of the frame ``key``, or None (none is shown, or it belongs to another frame)."""
        shown = self._on_demand
        return shown if shown is not None and shown.key == key else None

    @property
    def drawn(self) -> bool:
        """Whether the heat map is to be drawn now: visible and not hidden while Space is held."""
        return self.value.visible and not self._compare_hidden


@cache
def overlay_lut(colormap: str, threshold: float) -> np.ndarray:
    """The 256 x 4 RGBA lookup table of the heat layer: the colour map, transparent under ``threshold``.

    Index ``i`` stands for heat ``i / 255``, as in :func:`brainscan.engine.overlay.colorize`, so the
    drawn layer matches :func:`brainscan.engine.overlay.blend` pixel for pixel.
    """
    lut = np.empty((256, 4), dtype=np.uint8)
    lut[:, :3] = colormap_lut(colormap)
    heat = np.arange(256, dtype=np.float64) / 255.0
    lut[:, 3] = np.where(heat >= threshold - 1e-9, 255, 0)
    lut.setflags(write=False)
    return lut


class HeatCache:
    """Heat maps (H x W float32 in [0, 1]) by frame, method and class, least recently used dropped."""

    def __init__(self, capacity: int = 48) -> None:
        self.capacity = capacity
        self._maps: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.computed = 0

    def heat(
        self,
        key: object,
        prediction: Prediction,
        weight: np.ndarray,
        contract: ModelContract,
        method: str,
        target: int,
        shape: tuple[int, int],
    ) -> np.ndarray:
        entry = (key, method, target, shape)
        found = self._maps.get(entry)
        if found is not None:
            self._maps.move_to_end(entry)
            return found
        heat = cam_on_picture(method, prediction.features, weight, target, shape, contract, prediction.head_maps)
        self.computed += 1
        self._maps[entry] = heat
        while len(self._maps) > self.capacity:
            self._maps.popitem(last=False)
        return heat

    def clear(self) -> None:
        self._maps.clear()


def export_caption(
    label: str, confidence: float, settings: OverlaySettings, classes: tuple[str, ...], target: int,
    method: str | None = None,
) -> str:
    """The text under an exported overlay: the finding, the map shown (``method``: an on-demand map's, else the
    settings') and the research-use notice."""
    parts = []
    method = method or settings.method
    if label:
        parts.append(f"{display_name(label)} {confidence:.0%}")
    if settings.visible:
        shown = "any class" if method in CLASS_INDEPENDENT else display_name(classes[target])
        parts.append(f"{method_title(method)} for {shown}")
    parts.append(RESEARCH_USE_NOTICE)
    return " | ".join(parts)


def wrap_caption(text: str, width: int) -> list[str]:
    """Split ``text`` into lines that fit a picture ``width`` pixels wide in :func:`caption`'s font."""
    scale = max(0.35, min(1.0, width / 900))
    lines: list[str] = []
    for words in (part.split() for part in text.split(" | ")):
        line = ""
        for word in words:
            trial = f"{line} {word}".strip()
            (size, _), _ = cv2.getTextSize(trial, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            if line and size > width - 12:
                lines.append(line)
                line = word
            else:
                line = trial
        if line:
            lines.append(line)
    return lines


def compose_export(
    picture: np.ndarray, heat: np.ndarray | None, settings: OverlaySettings, text: str, min_width: int = 512
) -> np.ndarray:
    """The exported picture: ``picture`` (as windowed on screen) with the heat map and caption strips.

    A picture narrower than ``min_width`` is enlarged by a whole factor, each pixel repeated (no
    interpolation of the image), so the caption stays readable.
    """
    factor = -(-min_width // picture.shape[1]) if picture.shape[1] < min_width else 1
    if factor > 1:
        picture = np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)
        if heat is not None:
            size = (picture.shape[1], picture.shape[0])
            heat = cv2.resize(heat.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    shown = picture
    if heat is not None and settings.visible:
        shown = blend(
            picture, heat, colormap=settings.colormap, opacity=settings.opacity, threshold=settings.threshold
        )
    for line in wrap_caption(text, picture.shape[1]):
        shown = caption(shown, line)
    return shown
