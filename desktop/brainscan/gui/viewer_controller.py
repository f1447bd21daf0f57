"""Binds the Qt-free viewer state to the slice view: what is shown, its window, its heat map.

The decisions live in the engine (:mod:`~brainscan.engine.viewer.state`,
:mod:`~brainscan.engine.viewer.display`, :mod:`~brainscan.engine.viewer.overlay`); this class
asks the loader for frames, pushes arrays, levels and lookup tables into
:class:`~brainscan.gui.slice_view.SliceView`, and tells the panels what changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
from PySide6.QtCore import QObject, Signal

from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.model.inference import Classifier, Prediction
from brainscan.engine.results.names import display_name
from brainscan.engine.results.record import FrameRecord, FrameResult
from brainscan.engine.run.explain import method_title
from brainscan.engine.viewer.display import (
    DisplayImage,
    WindowLevel,
    display_image,
    drag_window,
    window_presets,
)
from brainscan.engine.viewer.domain import slice_warnings
from brainscan.engine.viewer.overlay import HeatCache, OverlayModel, OverlaySettings, overlay_lut
from brainscan.engine.viewer.state import (
    FrameCache,
    FrameKey,
    SeriesGroup,
    ViewerSession,
    frame_key,
    thumbnail,
)
from brainscan.gui.binding import follow
from brainscan.gui.frame_loader import THUMBNAIL_SIDE, FrameLoader
from brainscan.gui.slice_view import SliceView


class ViewerController(QObject):
    """The current frame on screen.

    Signals
    -------
    currentChanged(key):
        Another frame became current (panels select it).
    frameShown(key):
        The current frame's pixels are on screen.
    frameFailed(key, message):
        A frame cannot be decoded.
    thumbnailReady(key, picture):
        A frame's small picture for the browser.
    infoChanged():
        Position, finding or window text changed.
    overlayDrawn():
        The heat map was redrawn after a change of the overlay model.

    The heat map follows :class:`OverlayModel` (``overlay``): the controller listens to it and
    redraws only what a change touches; holding Space sets the model's ``compare_hidden``. An on-demand
    map (the occlusion check, the model's ``on_demand``) is drawn instead of the method's map of its own
    frame only: showing another frame, closing everything or changing the model drops it.
    """

    currentChanged = Signal(object)
    frameShown = Signal(object)
    frameFailed = Signal(object, str)
    thumbnailReady = Signal(object, object)
    infoChanged = Signal()
    overlayDrawn = Signal()

    def __init__(self, view: SliceView, loader: FrameLoader, overlay: OverlayModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.loader = loader
        self.session = ViewerSession()
        self.cache = FrameCache()
        self.heat_cache = HeatCache()
        self.failures: dict[FrameKey, str] = {}
        self.overlay = overlay
        self._drawn_settings = overlay.value
        self.classifier: Classifier | None = None
        self.display: DisplayImage | None = None
        self.window: WindowLevel | None = None
        self.shown_key: FrameKey | None = None
        self.heat_shown = False
        self.last_render_ms = 0.0
        self._manual_window_group: str | None = None
        self._drag_start: WindowLevel | None = None
        loader.frameLoaded.connect(self._on_frame_loaded)
        loader.frameFailed.connect(self._on_frame_failed)
        view.sliceStep.connect(self.step)
        view.sliceJump.connect(self.jump_to_end)
        view.windowDrag.connect(self._on_window_drag)
        view.compareHeld.connect(self._on_compare_held)
        view.fitRequested.connect(view.fit)
        follow(self, overlay.events.changed, self._on_overlay_changed)
        follow(self, overlay.events.compare_hidden, self._on_compare_hidden)
        follow(self, overlay.events.on_demand, self._on_on_demand)
        view.set_colorbar(overlay_lut(overlay.colormap, overlay.threshold))
        view.show_colorbar(False)
        view.clear_image("Open images, a folder or a DICOM series (File menu, toolbar, or drop them here).")

    # -- opening ---------------------------------------------------------------------------------
    def open_refs(self, refs: Iterable[FrameRef]) -> list[SeriesGroup]:
        """Add frames; shows the first one when nothing was shown; queues the rest for thumbnails."""
        refs = list(refs)
        had_current = self.session.current is not None
        changed = self.session.add(refs)
        if not had_current and self.session.current is not None:
            self._show_current()
        self.loader.prefetch(refs)
        return changed

    def close_all(self) -> None:
        self.loader.cancel_pending()
        self.session.clear()
        self.cache.clear()
        self.heat_cache.clear()
        self.failures.clear()
        self.overlay.on_demand = None
        self.display = self.window = self.shown_key = None
        self._manual_window_group = None
        self.view.clear_image("Nothing open.")
        self.view.show_colorbar(False)
        self.view.set_corner_text("", "", "")
        self.view.set_warnings("", "")
        self.currentChanged.emit(None)
        self.infoChanged.emit()

    # -- navigation --------------------------------------------------------------------------------
    def go_to(self, key: FrameKey) -> bool:
        if not self.session.go_to(tuple(key)):
            return False
        self._show_current()
        return True

    def step(self, delta: int) -> bool:
        if not self.session.step(delta):
            return False
        self._show_current()
        return True

    def jump_to_end(self, last: bool) -> bool:
        if not self.session.go_to_end(last):
            return False
        self._show_current()
        return True

    def step_group(self, delta: int) -> bool:
        if not self.session.step_group(delta):
            return False
        self._show_current()
        return True

    # -- frames ------------------------------------------------------------------------------------
    def frame_of(self, key: FrameKey) -> Frame | None:
        """The decoded frame when the cache holds it (the batch's frames go there too)."""
        return self.cache.get(key)

    @property
    def current_frame(self) -> Frame | None:
        key = self.session.current_key
        return None if key is None else self.frame_of(key)

    def _show_current(self) -> None:
        ref = self.session.current
        if ref is None:
            return
        key = frame_key(ref.path, ref.frame)
        if self.overlay.on_demand_for(key) is None:
            self.overlay.on_demand = None  # another frame: back to the method's maps
        self.currentChanged.emit(key)
        frame = self.frame_of(key)
        if frame is not None:
            self._display(key, frame)
            return
        if key in self.failures:
            self._show_failure(key, self.failures[key])
            return
        self.shown_key = None
        self.view.show_message(f"Loading {ref.path.name}…")
        self.loader.request(ref, urgent=True)
        self.infoChanged.emit()

    def _on_frame_loaded(self, key: object, frame: Frame, picture: np.ndarray) -> None:
        key = tuple(key)  # type: ignore[arg-type]
        if self.session.locate(key) is None:
            return  # closed meanwhile
        self.cache.put(key, frame)
        self.thumbnailReady.emit(key, picture)
        if key == self.session.current_key and self.shown_key != key:
            self._display(key, frame)

    def _on_frame_failed(self, key: object, message: str) -> None:
        key = tuple(key)  # type: ignore[arg-type]
        if self.session.locate(key) is None:
            return
        self.failures[key] = message
        self.frameFailed.emit(key, message)
        if key == self.session.current_key:
            self._show_failure(key, message)

    def _show_failure(self, key: FrameKey, message: str) -> None:
        self.shown_key = None
        self.display = None
        self.view.clear_image(f"This file cannot be shown:\n{message}", error=True)
        self.view.set_corner_text(self.session.position_text(), "", "")
        self.view.set_warnings("", "")
        self.infoChanged.emit()

    def _display(self, key: FrameKey, frame: Frame) -> None:
        display = display_image(frame)
        group = self.session.current_group
        same_group = group is not None and group.key == self._manual_window_group
        if not (same_group and self.window is not None and self.display is not None):
            self._manual_window_group = None
            self.window = display.default
        self.display = display
        self.shown_key = key
        self.view.set_image(display.array, display.levels(self.window))
        self._render_overlay()
        self._update_corners()
        self.frameShown.emit(key)
        self.infoChanged.emit()

    # -- window / level ------------------------------------------------------------------------------
    def presets(self) -> list:
        frame = self.current_frame
        return [] if frame is None else window_presets(frame)

    def set_window(self, window: WindowLevel, manual: bool = True) -> None:
        if self.display is None:
            return
        self.window = window
        group = self.session.current_group
        self._manual_window_group = group.key if (manual and group is not None) else None
        self.view.set_levels(self.display.levels(window))
        self._update_corners()
        self.infoChanged.emit()

    def reset_window(self) -> None:
        if self.display is not None:
            self.set_window(self.display.default, manual=False)

    def _on_window_drag(self, dx: float, dy: float, phase: int) -> None:
        if self.display is None or self.window is None:
            return
        if phase == 0 or self._drag_start is None:
            self._drag_start = self.window
        self.set_window(drag_window(self._drag_start, dx, dy, self.display.robust_range))
        if phase == 2:
            self._drag_start = None

    # -- results and overlay ---------------------------------------------------------------------------
    def set_classifier(self, classifier: Classifier | None) -> None:
        """A new model: results of the previous one no longer apply."""
        self.classifier = classifier
        self.session.clear_results()
        self.heat_cache.clear()
        self.overlay.on_demand = None
        self._render_overlay()
        self._update_corners()
        self.infoChanged.emit()

    def add_results(self, results: Iterable[FrameResult], cam_method: str | None) -> list[FrameKey]:
        """Keep the records of a batch's results (screened with ``cam_method``) in the session; returns their keys."""
        classes = self.classifier.classes if self.classifier is not None else ()
        keys = []
        current = self.session.current_key
        touched_current = False
        for result in results:
            key = self.session.add_result(FrameRecord.from_result(result, classes, cam_method), result.prediction)
            keys.append(key)
            if result.frame is not None and key not in self.cache:
                self.cache.put(key, result.frame)
                if self.loader.is_pending(key):  # the batch decoded it: no second decode for its thumbnail
                    self.loader.provided(key)
                    self.thumbnailReady.emit(key, thumbnail(result.frame.picture, THUMBNAIL_SIDE))
            touched_current |= key == current
        if touched_current:
            if self.shown_key != current and current is not None and self.frame_of(current) is not None:
                self._display(current, self.frame_of(current))  # type: ignore[arg-type]
            else:
                self._render_overlay()
                self._update_corners()
                self.infoChanged.emit()
        return keys

    def results_changed(self, keys: Iterable[FrameKey]) -> None:
        """The session's records of ``keys`` were replaced: redraw the current frame's text when among them."""
        if self.session.current_key in set(keys):
            self._update_corners()
            self.infoChanged.emit()

    def _on_overlay_changed(self, settings: OverlaySettings) -> None:
        """Draw the model's new settings, redrawing only what they change."""
        old, self._drawn_settings = self._drawn_settings, settings
        if (old.colormap, old.threshold) != (settings.colormap, settings.threshold):
            lut = overlay_lut(settings.colormap, settings.threshold)
            self.view.set_colorbar(lut)
            if self.heat_shown:
                self.view.set_heat_lut(lut)
        if old.opacity != settings.opacity and self.heat_shown:
            self.view.set_heat_opacity(settings.opacity)
        if (old.visible, old.method, old.target) != (settings.visible, settings.method, settings.target):
            self._render_overlay()
        self._update_corners()
        self.overlayDrawn.emit()

    def _on_compare_held(self, held: bool) -> None:
        """Space held in the view: hide the heat map meanwhile (compare with and without)."""
        self.overlay.compare_hidden = held

    def _on_compare_hidden(self, _hidden: bool) -> None:
        self._render_overlay()

    def _on_on_demand(self, _shown: object) -> None:
        """An on-demand map was given or dropped: draw the map that now applies."""
        self._render_overlay()
        self._update_corners()
        self.overlayDrawn.emit()

    def current_result(self) -> FrameRecord | None:
        key = self.session.current_key
        return None if key is None else self.session.results.get(key)

    def current_prediction(self) -> Prediction | None:
        """What the network gave for the current frame (its heat maps are drawn from it), or None."""
        key = self.session.current_key
        return None if key is None else self.session.predictions.get(key)

    def current_heat(self) -> np.ndarray | None:
        """The heat map of the frame on screen with the current settings, or None."""
        result = self.current_result()
        prediction = self.current_prediction()
        frame = self.current_frame
        if result is None or not result.ok or prediction is None or frame is None or self.classifier is None:
            return None
        on_demand = self.overlay.on_demand_for(self.session.current_key)
        if on_demand is not None:
            return on_demand.heat
        target = self.overlay.value.resolve_target(prediction)
        return self.heat_cache.heat(
            self.session.current_key,
            prediction,
            self.classifier.cam_weight,
            self.classifier.contract,
            self.overlay.method,
            target,
            frame.picture.shape[:2],
        )

    def _render_overlay(self) -> None:
        started = time.perf_counter()
        heat = None
        if self.overlay.drawn and self.shown_key is not None:
            heat = self.current_heat()
        if heat is None:
            self.view.hide_heat()
            self.heat_shown = False
        else:
            self.view.set_heat(heat, overlay_lut(self.overlay.colormap, self.overlay.threshold), self.overlay.opacity)
            self.heat_shown = True
        self.view.show_colorbar(self.current_result() is not None and self.overlay.visible)
        self.last_render_ms = (time.perf_counter() - started) * 1000

    # -- text ------------------------------------------------------------------------------------------
    def finding_text(self) -> str:
        result = self.current_result()
        if result is None:
            return ""
        if not result.ok:
            return "classification failed"
        text = f"{display_name(result.label)} {result.confidence:.0%}"
        prediction = self.current_prediction()
        if self.classifier is not None and prediction is not None and self.overlay.visible:
            on_demand = self.overlay.on_demand_for(self.session.current_key)
            if on_demand is not None:
                return (f"{text}\nmap: {method_title(on_demand.method)} · "
                        f"{display_name(self.classifier.classes[on_demand.target])}")
            target = self.overlay.value.resolve_target(prediction)
            shown = display_name(self.classifier.classes[target]) if self.overlay.method != "eigencam" else "features"
            text += f"\nmap: {method_title(self.overlay.method)} · {shown}"
        return text

    def _update_corners(self) -> None:
        window = self.window.describe() if (self.window is not None and self.display is not None) else ""
        self.view.set_corner_text(self.session.position_text(), self.finding_text(), window)
        shown = self.current_result() if self.shown_key is not None else None
        self.view.set_warnings(*slice_warnings(shown))
