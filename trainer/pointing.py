"""The pointing game of the heat maps ``brainscan screen`` writes, on pictures whose tumour is boxed.

Measured on the engine's own path, so the figure is exactly what a user gets: each picture is
decoded, classified and its heat maps laid over it by :func:`brainscan.engine.run.screening.screen`
and :func:`~brainscan.engine.run.screening.heat_map_for`, the very calls behind ``cam_peak_row`` and
``cam_peak_col`` in ``results.csv``. The network runs once per picture; then, for every CAM method of
:data:`brainscan.engine.model.cam.METHODS` (read at run time, so a method added later is measured too;
a method the model cannot give, such as one needing a graph output this model lacks, is skipped with
its reason), the map of the predicted class (what ``screen`` writes) and of the true class are taken
at the picture's size, and each records:

- its peak (row, col) and whether it *hits* the box grown by the tolerance (15 px at 512 px,
  :func:`trainer.boxes.pointing_hit`);
- the share of its heat inside the box (:func:`trainer.boxes.heat_inside_share`).

:func:`summarise` gives, per method x map x true class and over all classes, the pointing rate with
its 95 % Wilson interval and the mean heat-inside share, beside two chance levels (a peak drawn at
random, heat spread evenly). :func:`pointing_markdown` writes it as a report section, :func:`gallery`
draws hits and misses of one method. The figshare pictures are for measuring only, never training.
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from brainscan.engine.input.frames import FrameRef, kind_of
from brainscan.engine.input.loading import load_frame
from brainscan.engine.input.raster_headers import sniff_file
from brainscan.engine.model.cam import METHODS, resolve_method
from brainscan.engine.model.inference import Classifier, Prediction
from brainscan.engine.model.overlay import blend
from brainscan.engine.run.screening import cam_target, heat_map_for, heat_peak, screen
from trainer import plots
from trainer.boxes import (
    POINTING_TOLERANCE,
    Box,
    heat_inside_share,
    hit_region_share,
    pointing_hit,
    read_yolo_box,
)
from trainer.metrics import wilson_interval

TARGETS = ("predicted", "true")  # whose class the map is of: the predicted one is what `brainscan screen` writes
BOX_SUFFIX = ".txt"


def screen_default_method(classifier: Classifier) -> str:
    """The heat-map method ``brainscan screen`` writes with this model when not told otherwise (``--cam``'s
    default, ``auto``: the model's explanation head when it carries one, else Grad-CAM)."""
    from brainscan.cli import build_parser

    method = build_parser().parse_args(["screen", "picture.jpg", "--out", "out"]).cam
    return resolve_method(method, classifier.contract) or next(iter(METHODS))


# -- which pictures ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxedPicture:
    """A picture file, its true class (an index into the model's classes) and its box file."""

    path: Path
    label: int
    box_file: Path
    name: str = ""  # how reports call it (relative to its data root)

    @property
    def id(self) -> str:
        return self.path.stem


def box_file_for(picture: Path, boxes: Path, roots: Iterable[Path] = ()) -> Path | None:
    """The box file ``ID.txt`` of ``.../ID.jpg``: under ``boxes`` at the picture's path relative to one of its
    data ``roots`` (a tree mirroring the pictures; beside them when ``boxes`` is the data root), else directly
    in ``boxes``; None when there is none."""
    candidates = []
    for root in roots:
        try:
            candidates.append(boxes / picture.relative_to(root).with_suffix(BOX_SUFFIX))
        except ValueError:
            continue
    candidates.append(boxes / f"{picture.stem}{BOX_SUFFIX}")
    return next((c for c in candidates if c.is_file()), None)


def read_ids(path: str | Path) -> set[str]:
    """Picture ids, one a line (``1841`` or ``1841.jpg``); blank lines and ``#`` comments ignored."""
    ids = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            ids.add(Path(text).stem)
    return ids


def id_mask(paths: Sequence[Path], only: set[str] | None = None, exclude: set[str] | None = None) -> np.ndarray:
    """Which pictures to keep: those whose id (file stem) is in ``only`` (when given) and not in ``exclude``."""
    stems = [Path(p).stem for p in paths]
    keep = np.ones(len(stems), dtype=bool)
    if only is not None:
        keep &= np.array([s in only for s in stems], dtype=bool)
    if exclude:
        keep &= np.array([s not in exclude for s in stems], dtype=bool)
    return keep


def boxed_pictures(
    root: str | Path, classes: Sequence[str], *, boxes: str | Path | None = None, limit: int | None = None,
    only: set[str] | None = None, exclude: set[str] | None = None, suffixes: tuple[str, ...] = (".jpg", ".png"),
) -> list[BoxedPicture]:
    """The boxed pictures of a folder of class folders (``figshare-boxes/{glioma,meningioma,pituitary}``), the
    folders that are classes of the model, sorted by class then id; ``limit`` per class, spread evenly over the
    ids (ids run by patient, so the first N would be few patients)."""
    root = Path(root)
    boxes = Path(boxes) if boxes is not None else root
    chosen: list[BoxedPicture] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name in classes):
        files = sorted((p for p in folder.iterdir() if p.suffix.lower() in suffixes), key=_id_order)
        files = [f for f, keep in zip(files, id_mask(files, only, exclude), strict=True) if keep]
        found = [(f, box_file_for(f, boxes, (root,))) for f in files]
        found = [(f, b) for f, b in found if b is not None]
        if limit is not None and len(found) > limit:
            found = [found[i] for i in np.linspace(0, len(found) - 1, limit).round().astype(int)]
        label = list(classes).index(folder.name)
        chosen.extend(BoxedPicture(f, label, b, f.relative_to(root).as_posix()) for f, b in found)
    return chosen


def _id_order(path: Path) -> tuple[int, str]:
    return (int(path.stem), "") if path.stem.isdigit() else (1 << 62, path.stem)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread while the maps are computed, when threadpoolctl is installed: the maps' small
    matrix work (EigenCAM's SVD of 49 x 1280) runs ten times slower when BLAS threads compete with onnxruntime's
    and the decoders' on a few cores. The maps are the same either way."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# -- measuring ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MapPoint:
    """Where one heat map points: its peak (row, col), whether that hits the box, its heat inside the box."""

    peak: tuple[int, int]
    hit: bool
    inside: float


@dataclass
class Measured:
    """One picture's verdicts, per (method, target) with target in :data:`TARGETS`."""

    picture: BoxedPicture
    predicted: int
    confidence: float
    box: Box
    chance_hit: float  # the share of the picture a random peak would hit
    box_share: float  # the box's share of the picture: the heat-inside share of an even map
    maps: dict[tuple[str, str], MapPoint] = field(default_factory=dict)

    @property
    def right(self) -> bool:
        return self.predicted == self.picture.label


@dataclass
class Measurement:
    """Every picture's verdicts, and what could not be measured."""

    classes: tuple[str, ...]
    methods: list[str]  # the methods measured (those the model can give)
    pictures: list[Measured]
    skipped_methods: dict[str, str]  # method: why the model cannot give it
    failed: list[tuple[str, str]]  # (file, why) of pictures the engine could not read
    tolerance_fraction: float
    seconds: float
    box_labels_disagree: list[str]  # files whose box file's label is not their folder's class


def measure_prediction(
    prediction: Prediction, classifier: Classifier, shape: tuple[int, int], box: Box, label: int,
    methods: Sequence[str], skipped: dict[str, str], tolerance_fraction: float = POINTING_TOLERANCE,
) -> dict[tuple[str, str], MapPoint]:
    """The verdicts of every method's maps of the predicted and the true class of one classified picture (no
    network: the maps come from the prediction). A method that raises goes into ``skipped`` with its reason."""
    points: dict[tuple[str, str], MapPoint] = {}
    classes = {"predicted": prediction.label_index, "true": label}
    for method in methods:
        if method in skipped:
            continue
        done: dict[int, MapPoint] = {}  # by the class asked for: one map when both targets ask for the same
        try:
            for target in TARGETS:
                asked = cam_target(method, classes[target])
                if asked not in done:
                    heat = heat_map_for(prediction, classifier, method, asked, shape)
                    peak = heat_peak(heat)
                    done[asked] = MapPoint(peak, pointing_hit(peak, box, tolerance_fraction),
                                           heat_inside_share(heat, box))
                points[(method, target)] = done[asked]
        except Exception as exc:  # a method this model or prediction cannot give (e.g. a missing graph output)
            skipped[method] = f"{type(exc).__name__}: {exc}"
            for target in TARGETS:
                points.pop((method, target), None)
    return points


def measure(
    classifier: Classifier, pictures: Sequence[BoxedPicture], methods: Sequence[str] | None = None, *,
    batch_size: int = 4, tolerance_fraction: float = POINTING_TOLERANCE, progress: Callable[[int], Any] | None = None,
) -> Measurement:
    """Screen ``pictures`` as ``brainscan screen`` does (network once per picture) and measure every method's
    maps against their boxes."""
    started = time.perf_counter()
    methods = list(METHODS) if methods is None else list(methods)
    skipped: dict[str, str] = {}
    measured: list[Measured] = []
    failed: list[tuple[str, str]] = []
    disagree: list[str] = []
    refs = [FrameRef(p.path, kind=kind_of(sniff_file(p.path))) for p in pictures]
    results = screen(refs, classifier, cam_method=None, batch_size=batch_size, keep_frames=True)
    with _one_blas_thread():
        for item, result in zip(pictures, results, strict=True):
            if progress is not None:
                progress(1)
            name = item.name or str(item.path)
            if result.status != "ok" or result.frame is None or result.prediction is None:
                failed.append((name, result.error or result.status))
                continue
            shape = result.frame.picture.shape[:2]
            box = read_yolo_box(item.box_file, shape[1], shape[0])
            if box.label in classifier.classes and classifier.classes.index(box.label) != item.label:
                disagree.append(name)
            prediction = result.prediction
            points = measure_prediction(prediction, classifier, shape, box, item.label, methods, skipped,
                                        tolerance_fraction)
            measured.append(Measured(item, prediction.label_index, prediction.confidence, box,
                                     hit_region_share(box, tolerance_fraction), float(box.mask().mean()), points))
    kept = [m for m in methods if m not in skipped]
    return Measurement(tuple(classifier.classes), kept, measured, skipped, failed, tolerance_fraction,
                       time.perf_counter() - started, disagree)


# -- summing up --------------------------------------------------------------------------------
def pointing_cell(points: Sequence[MapPoint]) -> dict[str, Any]:
    """Pictures, hits, the pointing rate with its 95 % Wilson interval, and the mean heat-inside share."""
    hits = sum(p.hit for p in points)
    low, high = wilson_interval(hits, len(points))
    return {
        "pictures": len(points),
        "hits": int(hits),
        "pointing": round(hits / len(points), 4) if points else None,
        "pointing_ci95": [round(low, 4), round(high, 4)] if points else None,
        "heat_inside": round(float(np.mean([p.inside for p in points])), 4) if points else None,
    }


def summarise(measurement: Measurement, default_method: str | None = None) -> dict[str, Any]:
    """The JSON-ready figures: per method, per map (predicted / true class), per true class and overall, by
    correct and wrong classification too; the chance levels per class; what was skipped."""
    pictures = measurement.pictures
    present = [c for c in range(len(measurement.classes)) if any(m.picture.label == c for m in pictures)]
    by_class = {measurement.classes[c]: [m for m in pictures if m.picture.label == c] for c in present}

    def cells(subset: Sequence[Measured], method: str, target: str) -> dict[str, Any]:
        return pointing_cell([m.maps[(method, target)] for m in subset if (method, target) in m.maps])

    methods = {
        method: {
            target: {
                "overall": cells(pictures, method, target),
                "per_class": {name: cells(subset, method, target) for name, subset in by_class.items()},
                "classified_right": cells([m for m in pictures if m.right], method, target),
                "classified_wrong": cells([m for m in pictures if not m.right], method, target),
            }
            for target in TARGETS
        }
        for method in measurement.methods
    }

    def chance(subset: Sequence[Measured]) -> dict[str, Any]:
        return {
            "random_peak_hits": round(float(np.mean([m.chance_hit for m in subset])), 4) if subset else None,
            "even_heat_inside": round(float(np.mean([m.box_share for m in subset])), 4) if subset else None,
        }

    right = sum(m.right for m in pictures)
    return {
        "what": "pointing game: a heat map hits when its peak (row, col) lies in the tumour box grown by the "
                "tolerance; heat_inside: the share of the map's heat inside the box; maps at the picture's size "
                "as `brainscan screen` computes them (predicted: the map screen writes; true: the true class's)",
        "tolerance": {"fraction_of_longer_side": measurement.tolerance_fraction,
                      "pixels_at_512": round(measurement.tolerance_fraction * 512, 2)},
        "interval": "95 % Wilson score interval",
        "screen_default_method": default_method,
        "pictures": len(pictures),
        "pictures_per_class": {name: len(subset) for name, subset in by_class.items()},
        "classified_right": int(right),
        "accuracy": round(right / len(pictures), 4) if pictures else None,
        "methods": methods,
        "chance": {"overall": chance(pictures), "per_class": {n: chance(s) for n, s in by_class.items()}},
        "skipped_methods": dict(measurement.skipped_methods),
        "failed_pictures": [{"file": f, "why": w} for f, w in measurement.failed],
        "box_label_disagrees_with_folder": list(measurement.box_labels_disagree),
        "seconds": round(measurement.seconds, 1),
    }


def _percent(cell: dict[str, Any]) -> str:
    if not cell["pictures"]:
        return "–"
    low, high = cell["pointing_ci95"]
    return f"{100 * cell['pointing']:.1f} % [{100 * low:.1f}–{100 * high:.1f}] · {cell['heat_inside']:.2f}"


def pointing_markdown(summary: dict[str, Any], gallery_file: str | None = None, heading: str = "##") -> str:
    """The report section: a table of method x map against the true classes, the chance levels, the notes."""
    names = list(summary["pictures_per_class"])
    tolerance = summary["tolerance"]
    lines = [
        f"{heading} Where the heat maps point (pointing game)",
        "",
        f"{summary['pictures']} pictures with a tumour box ({', '.join(f'{n} {c}' for c, n in summary['pictures_per_class'].items())}); "
        f"classified right: {summary['classified_right']} ({100 * (summary['accuracy'] or 0):.1f} %). "
        f"A map *hits* when its peak lies in the box grown by {tolerance['pixels_at_512']:g} px at 512 px "
        f"({tolerance['fraction_of_longer_side']:.4f} of the longer side). Each cell: pointing rate "
        f"[{summary['interval']}] · mean share of the heat inside the box. The maps are the engine's, at the "
        "picture's size; *predicted* is the map `brainscan screen` writes"
        + (f" (its default method: `{summary['screen_default_method']}`)" if summary.get("screen_default_method") else "")
        + ", *true* the map of the true class.",
        "",
        "| method | map of | " + " | ".join(names) + " | all |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    for method, targets in summary["methods"].items():
        for target, table in targets.items():
            cells = [_percent(table["per_class"][n]) for n in names] + [_percent(table["overall"])]
            label = f"**{method}**" if method == summary.get("screen_default_method") else method
            lines.append(f"| {label} | {target} class | " + " | ".join(cells) + " |")
    chance = summary["chance"]
    row = [chance["per_class"][n] for n in names] + [chance["overall"]]
    lines.append("| chance | random peak · even heat | " + " | ".join(
        f"{100 * c['random_peak_hits']:.1f} % · {c['even_heat_inside']:.2f}" for c in row) + " |")
    lines.append("")
    default = summary.get("screen_default_method")
    if default in summary["methods"]:
        table = summary["methods"][default]["predicted"]
        lines.append(
            f"By the classification's outcome ({default}, predicted class): right "
            f"{_percent(table['classified_right'])}, wrong {_percent(table['classified_wrong'])}."
        )
        lines.append("")
    for method, why in summary["skipped_methods"].items():
        lines.append(f"- `{method}` not measured: this model cannot give it ({why}).")
    if summary["failed_pictures"]:
        lines.append(f"- {len(summary['failed_pictures'])} picture(s) could not be read and are left out.")
    if summary["box_label_disagrees_with_folder"]:
        lines.append(f"- {len(summary['box_label_disagrees_with_folder'])} box file(s) name another class than "
                     "their picture's folder (the folder's class is used).")
    if gallery_file:
        lines += ["", f"![hits and misses]({gallery_file})", "",
                  f"Hits and misses of `{default}` (the map of the predicted class): the box in green, the "
                  "tolerance in a thin line, the peak as a white cross, per true class."]
    return "\n".join(lines).rstrip() + "\n"


def write_picture_rows(measurement: Measurement, path: Path) -> Path:
    """One CSV row per picture, method and map: the raw verdicts (to recount on any subset)."""
    classes = measurement.classes
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "file", "true", "predicted", "confidence", "box_x0", "box_y0", "box_x1", "box_y1",
                         "width", "height", "method", "map_of", "peak_row", "peak_col", "hit", "heat_inside"])
        for m in measurement.pictures:
            b = m.box
            head = [m.picture.id, m.picture.name or str(m.picture.path), classes[m.picture.label],
                    classes[m.predicted], f"{m.confidence:.4f}", f"{b.x0:.1f}", f"{b.y0:.1f}", f"{b.x1:.1f}",
                    f"{b.y1:.1f}", b.width, b.height]
            for (method, target), p in m.maps.items():
                writer.writerow([*head, method, target, p.peak[0], p.peak[1], int(p.hit), f"{p.inside:.4f}"])
    return path


# -- gallery -----------------------------------------------------------------------------------
def _marked(picture: np.ndarray, heat: np.ndarray, box: Box, peak: tuple[int, int], tolerance: float) -> np.ndarray:
    shown = blend(picture, heat, opacity=0.45)
    line = max(1, round(max(shown.shape[:2]) / 170))
    corners = (round(box.x0), round(box.y0)), (round(box.x1) - 1, round(box.y1) - 1)
    grown = ((round(box.x0 - tolerance), round(box.y0 - tolerance)),
             (round(box.x1 + tolerance) - 1, round(box.y1 + tolerance) - 1))
    cv2.rectangle(shown, *grown, (0, 200, 0), max(1, line // 2), cv2.LINE_AA)
    cv2.rectangle(shown, *corners, (0, 255, 0), line, cv2.LINE_AA)
    size = max(9, max(shown.shape[:2]) // 18)
    cv2.drawMarker(shown, (peak[1], peak[0]), (0, 0, 0), cv2.MARKER_CROSS, size, line + 2)
    cv2.drawMarker(shown, (peak[1], peak[0]), (255, 255, 255), cv2.MARKER_CROSS, size, line)
    return shown


def gallery(
    classifier: Classifier, measurement: Measurement, method: str, path: Path, *, per_class: int = 3,
    tile_size: int = 200, seed: int = 0,
) -> Path | None:
    """A PNG of up to ``per_class`` hits and ``per_class`` misses of ``method``'s map of the predicted class per
    true class (seeded at random), the box and the peak drawn; None when there is nothing to show. Re-runs the
    network on the few pictures shown only."""
    if method not in measurement.methods:
        return None
    rng = np.random.default_rng(seed)
    rows = []
    for c, name in enumerate(measurement.classes):
        chosen: list[Measured] = []
        subset = [m for m in measurement.pictures if m.picture.label == c and (method, "predicted") in m.maps]
        for hit in (True, False):
            group = [m for m in subset if m.maps[(method, "predicted")].hit == hit]
            picks = rng.choice(len(group), size=min(per_class, len(group)), replace=False) if group else []
            chosen.extend(group[i] for i in sorted(picks))
        if not chosen:
            continue
        frames = [load_frame(FrameRef(m.picture.path, kind=kind_of(sniff_file(m.picture.path)))) for m in chosen]
        predictions = classifier.predict([f.picture for f in frames])
        row = []
        for m, frame, prediction in zip(chosen, frames, predictions, strict=True):
            shape = frame.picture.shape[:2]
            heat = heat_map_for(prediction, classifier, method, cam_target(method, prediction.label_index), shape)
            point = m.maps[(method, "predicted")]
            tolerance = measurement.tolerance_fraction * max(shape)
            shown = _marked(frame.picture, heat, m.box, point.peak, tolerance)
            text = (f"{'HIT' if point.hit else 'miss'} {m.picture.id} {name[:5]}>"
                    f"{measurement.classes[m.predicted][:5]} {point.inside:.2f}")
            row.append(plots.tile(shown, None, text, tile_size))
        rows.append(row)
    return plots.write_png(path, plots.grid(rows)) if rows else None


# -- the whole measurement into a folder -------------------------------------------------------
def write_pointing(
    classifier: Classifier, measurement: Measurement, out_dir: Path, *, gallery_per_class: int = 3,
    default_method: str | None = None, log: Callable[[str], Any] = print,
) -> tuple[dict[str, Any], str]:
    """``pointing.json``, ``pointing.md``, ``pointing_pictures.csv`` and ``pointing_gallery.png`` into
    ``out_dir``; returns the summary and the markdown section."""
    out_dir.mkdir(parents=True, exist_ok=True)
    default_method = default_method or screen_default_method(classifier)
    summary = summarise(measurement, default_method)
    (out_dir / "pointing.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_picture_rows(measurement, out_dir / "pointing_pictures.csv")
    picture = None
    if gallery_per_class > 0:
        picture = gallery(classifier, measurement, default_method, out_dir / "pointing_gallery.png",
                          per_class=gallery_per_class)
    markdown = pointing_markdown(summary, picture.name if picture is not None else None)
    (out_dir / "pointing.md").write_text(markdown, encoding="utf-8")
    if default_method in summary["methods"]:
        cell = summary["methods"][default_method]["predicted"]["overall"]
        log(f"pointing game ({default_method}, map of the predicted class): {_percent(cell)} over "
            f"{cell['pictures']} boxed pictures; {out_dir / 'pointing.json'}")
    return summary, markdown


def measure_selection(
    onnx: str | Path, paths: Sequence[Path], class_names: Sequence[str], boxes: str | Path, roots: Sequence[Path],
    out_dir: Path, *, device: str = "cpu", threads: int = 2, gallery_per_class: int = 3,
    log: Callable[[str], Any] = print,
) -> tuple[dict[str, Any], str] | None:
    """The pointing game of an evaluation's pictures (``paths`` with their true ``class_names``) that have a box
    under ``boxes``, screened by the engine with the ONNX file; the files of :func:`write_pointing` into
    ``out_dir``. Pictures whose class is not the model's, or without a box, are left out; None when none is left."""
    classifier = Classifier(onnx, device=device if device in ("auto", "cuda", "cpu") else "auto", threads=threads,
                            allow_unverified=True)
    boxes, roots = Path(boxes), [Path(r) for r in roots]
    pictures = []
    for path, name in zip(paths, class_names, strict=True):
        box_file = box_file_for(Path(path), boxes, roots) if name in classifier.classes else None
        if box_file is not None:
            pictures.append(BoxedPicture(Path(path), classifier.classes.index(name), box_file,
                                         _relative(Path(path), roots)))
    log(f"pointing game: {len(pictures)} of {len(paths)} pictures have a box under {boxes}")
    if not pictures:
        return None
    measurement = measure(classifier, pictures)
    return write_pointing(classifier, measurement, out_dir, gallery_per_class=gallery_per_class, log=log)


def _relative(path: Path, roots: Sequence[Path]) -> str:
    for root in roots:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(path)


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The few figures ``metrics.json`` carries: the default method's map (what ``screen`` writes), per class."""
    method = summary.get("screen_default_method")
    table = summary["methods"].get(method, {}).get("predicted")
    return {
        "file": "pointing.json",
        "method": method,
        "map_of": "predicted class",
        "tolerance_px_at_512": summary["tolerance"]["pixels_at_512"],
        "overall": table["overall"] if table else None,
        "per_class": table["per_class"] if table else None,
    }
