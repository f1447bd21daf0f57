"""One frame explained on demand (``brainscan explain``): a CAM method or the slow occlusion map, its peak and
its overlay PNG.

The frame is classified once (the class explained defaults to the predicted one); a CAM method draws its
map from that pass, the occlusion map (:mod:`brainscan.engine.model.occlusion`) runs the network once per
occluded position. Both are laid over the picture the same way, so their peaks can be compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainscan.engine.errors import InputError
from brainscan.engine.input.frames import Frame, FrameRef, kind_of
from brainscan.engine.input.loading import load_frame
from brainscan.engine.input.raster_headers import sniff_file
from brainscan.engine.model.cam import AUTO, CLASS_INDEPENDENT, METHOD_TITLES, METHODS, resolve_method
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.occlusion import OCCLUSION, OCCLUSION_TITLE, occlusion_map, occlusion_on_picture
from brainscan.engine.model.overlay import blend, caption, write_png
from brainscan.engine.run.screening import cam_target, heat_map_for, heat_peak

EXPLAIN_METHODS = (OCCLUSION, AUTO, *METHODS)


@dataclass(frozen=True)
class Explanation:
    """A frame's map for one class and method.

    ``heat`` is over the picture (H x W in [0, 1]); ``peak`` its (row, column), None when the map is flat
    (an occlusion map where no region's occlusion lowers the class's logit); ``seconds`` the time taken,
    the classifying pass included.
    """

    frame: Frame
    label: str
    confidence: float
    method: str
    target: int
    class_name: str
    heat: np.ndarray
    peak: tuple[int, int] | None
    seconds: float

    def line(self) -> str:
        """One line for a person: the class explained, the method, the peak in picture pixels, the time."""
        height, width = self.heat.shape
        where = (f"peak at row {self.peak[0]}, column {self.peak[1]} of {height} x {width}" if self.peak is not None
                 else "no peak: no occluded region lowers its logit")
        took = f"{self.seconds:.1f} s" if self.seconds >= 1 else f"{1000 * self.seconds:.0f} ms"
        return (f"{self.class_name} explained by {method_title(self.method)}: {where}; {took} "
                f"(predicted {self.label} {self.confidence:.0%})")


def method_title(method: str) -> str:
    return OCCLUSION_TITLE if method == OCCLUSION else METHOD_TITLES.get(method, method)


def load_explained_frame(path: str | Path, frame: int = 0) -> Frame:
    """Decode frame ``frame`` of ``path`` (a picture has only frame 0; a DICOM file says how many it holds).

    Raises
    ------
    InputError
        The file cannot be read, or has no such frame.
    """
    path = Path(path)
    if frame < 0:
        raise InputError(path, f"has no frame {frame}", "frames are counted from 0")
    ref = FrameRef(path, frame=frame, kind=kind_of(sniff_file(path)))
    if ref.kind == "raster" and frame > 0:
        raise InputError(path, f"is a single picture: it has no frame {frame}", "leave --frame out")
    return load_frame(ref)


def explain_frame(
    classifier: Classifier, frame: Frame, *, method: str = OCCLUSION, class_name: str | None = None,
    progress: Callable[[int, int], object] | None = None, cancelled: Callable[[], bool] | None = None,
) -> Explanation:
    """Explain ``frame`` for ``class_name`` (default: the predicted class) with ``method``.

    Raises
    ------
    ValueError
        An unknown class or a method this model cannot give (say it and stop).
    Cancelled
        ``cancelled()`` said so during an occlusion map.
    """
    classes = classifier.classes
    if class_name is not None and class_name not in classes:
        raise ValueError(f"class {class_name!r} is not one of this model's: {', '.join(classes)}")
    if method != OCCLUSION:
        method = resolve_method(method, classifier.contract) or ""
    started = time.perf_counter()
    picture = frame.picture
    prediction = classifier.predict([picture])[0]
    index = classes.index(class_name) if class_name is not None else prediction.label_index
    if method == OCCLUSION:
        drops = occlusion_map(classifier, picture, index, progress=progress, cancelled=cancelled)
        heat = occlusion_on_picture(drops, picture.shape[:2], classifier.contract)
    else:
        index = cam_target(method, index)
        heat = heat_map_for(prediction, classifier, method, index, picture.shape[:2])
    seconds = time.perf_counter() - started
    return Explanation(
        frame=frame, label=classes[prediction.label_index], confidence=prediction.confidence, method=method,
        target=index, class_name="any class" if method in CLASS_INDEPENDENT else classes[index], heat=heat,
        peak=heat_peak(heat) if float(heat.max()) > 0 else None, seconds=seconds,
    )


def write_explanation(explanation: Explanation, path: str | Path, *, colormap: str = "jet", opacity: float = 0.45) -> Path:
    """Write the picture with its map and a caption (the method and class, the prediction, research use only) as PNG."""
    e = explanation
    mixed = blend(e.frame.picture, e.heat, colormap=colormap, opacity=opacity)
    mixed = caption(mixed, f"{method_title(e.method)} for {e.class_name}")
    mixed = caption(mixed, f"predicted {e.label} {e.confidence:.2f} | research use only")
    path = Path(path)
    write_png(path, mixed)
    return path
