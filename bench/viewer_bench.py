"""Viewer timings: first slice of a 192-slice series, overlay redraws on a 512 x 512 slice, event-loop stalls.

Run from the repository root (a script, not a test; it prints what it measured on this machine)::

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/viewer_bench.py [--model M.onnx] [--slices 192] [--json out.json]

1. **First slice**: a 192-slice DICOM series of real 256 x 256 Siemens slices (the 24 shared ones repeated
   with new UIDs and positions: :func:`build_real_series`) is opened in a fresh window; the time from ``open_paths`` to the first
   slice's pixels being set on screen, and to every thumbnail being decoded in the background.
2. **Overlay redraw**: a 512 x 512 DICOM slice is classified; each heat-map control is changed and
   the view repainted synchronously (``viewport().repaint()``); method and class changes are timed
   both with the map already cached and computed afresh from the stored features, and the first switch
   to each method in the window.
3. **Event-loop stall**: a 10 ms QTimer runs while the whole series is classified by the model;
   the longest gap between its ticks is the longest the window was unresponsive.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def machine() -> dict[str, object]:
    import onnxruntime
    import pyqtgraph
    import PySide6

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyside6": PySide6.__version__,
        "pyqtgraph": pyqtgraph.__version__,
        "onnxruntime": onnxruntime.__version__,
        "qt_platform": os.environ.get("QT_QPA_PLATFORM", ""),
    }


def wait_for(signal, timeout_ms: int = 120_000, condition=None) -> bool:
    """Run the event loop until ``signal`` fires (and ``condition()`` holds), or the timeout."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    fired = []

    def on_signal(*_args) -> None:
        if condition is None or condition():
            fired.append(True)
            loop.quit()

    signal.connect(on_signal)
    QTimer.singleShot(timeout_ms, loop.quit)
    if condition is not None and condition():
        fired.append(True)
    else:
        loop.exec()
    signal.disconnect(on_signal)
    return bool(fired)


SHARED_DICOM = ROOT.parent / "shared" / "data" / "dicom"


def build_real_series(folder: Path, slices: int) -> Path:
    """A ``slices``-slice sagittal series made of the 24 real shared slices (Siemens MPRAGE, 256 x 256, 12 bit:
    ``sagittal-t1-lateral`` and ``sagittal-t1-brain``), repeated in turn with new SOP Instance UIDs, instance
    numbers and positions 1 mm apart along the slice normal, in a new Series Instance UID; file names are UIDs,
    as a scanner's export has them. Only the identity and position change: pixels and every other header stay."""
    import numpy as np
    import pydicom
    from pydicom.uid import generate_uid

    sources = sorted((SHARED_DICOM / "sagittal-t1-lateral").glob("*.dcm")) + sorted(
        (SHARED_DICOM / "sagittal-t1-brain").glob("*.dcm"))
    if not sources:
        raise SystemExit(f"the real shared slices are not at {SHARED_DICOM}")
    target = folder / "series"
    target.mkdir(parents=True)
    series_uid = generate_uid()
    first = pydicom.dcmread(sources[0])
    origin = np.array([float(v) for v in first.ImagePositionPatient])
    cosines = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(cosines[:3], cosines[3:])
    for index in range(slices):
        ds = pydicom.dcmread(sources[index % len(sources)])
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + index * normal]
        ds.SliceLocation = f"{index:.1f}"
        ds.save_as(target / ds.SOPInstanceUID, enforce_file_format=True)
    return target


def build_data(folder: Path, slices: int) -> tuple[Path, Path]:
    import cv2

    import dicom_factory as factory

    series = build_real_series(folder, slices)
    grey = factory.read_grey(factory.kaggle_images(1, "meningioma", start=7)[0])
    big = cv2.resize(grey, (512, 512), interpolation=cv2.INTER_CUBIC)
    single = folder / "single512"
    single.mkdir()
    factory.save(factory.new_dataset(factory.twelve_bit(big), WindowCenter=500, WindowWidth=1000), single / "slice.dcm")
    return series, single


def make_window(settings_path: Path, model: Path, device: str):
    from brainscan.gui.main_window import MainWindow
    from brainscan.gui.settings import AppSettings

    settings = AppSettings(settings_path)
    settings.model_path = model
    settings.device = device
    window = MainWindow(settings, model_in_background=False)
    window.resize(1280, 800)
    window.show()
    return window


def bench_first_slice(app, settings_path: Path, model: Path, device: str, series: Path, runs: int) -> dict:
    first, thumbs = [], []
    slices = 0
    for _ in range(runs):
        window = make_window(settings_path, model, device)
        app.processEvents()
        loaded: set = set()
        window.controller.thumbnailReady.connect(lambda key, _p, s=loaded: s.add(key))
        start = time.perf_counter()
        window.opening.open_paths([str(series)])
        assert wait_for(window.controller.frameShown), "the first slice never showed"
        first.append(time.perf_counter() - start)
        slices = len(window.controller.session)
        assert wait_for(window.controller.thumbnailReady, condition=lambda s=loaded, n=slices: len(s) >= n)
        thumbs.append(time.perf_counter() - start)
        window.close()
        app.processEvents()
    return {
        "slices": slices,
        "first_slice_s": first,
        "all_thumbnails_s": thumbs,
    }


def bench_overlay(app, settings_path: Path, model: Path, device: str, single: Path, repeats: int) -> dict:
    window = make_window(settings_path, model, device)
    window.opening.open_paths([str(single)])
    assert wait_for(window.controller.frameShown)
    assert window.batch.classify_all()
    assert wait_for(window.batch.finished)
    panel, controller, viewport = window.overlay_panel, window.controller, window.view.viewport()
    shape = window.view.slice_item.image.shape
    methods = ["gradcam", "layercam", "gradcam++", "eigencam"]
    classes = list(range(len(window.models.classifier.classes)))

    def timed(change, fresh: bool = False) -> float:
        if fresh:
            controller.heat_cache.clear()
        start = time.perf_counter()
        change()
        viewport.repaint()
        return (time.perf_counter() - start) * 1000

    plans = {
        "method (map cached)": lambda i: panel.method_combo.setCurrentIndex(panel.method_combo.findData(methods[i % 4])),
        "method (map computed)": lambda i: panel.method_combo.setCurrentIndex(
            panel.method_combo.findData(methods[i % 4])),
        "class (map computed)": lambda i: panel.target_combo.setCurrentIndex(
            panel.target_combo.findData(classes[i % len(classes)])),
        "opacity": lambda i: panel.opacity_slider.setValue(20 + (i % 2) * 50),
        "colour map": lambda i: panel.colormap_combo.setCurrentIndex(i % panel.colormap_combo.count()),
        "threshold": lambda i: panel.threshold_slider.setValue(10 + (i % 2) * 40),
        "show/hide": lambda i: panel.visible_box.setChecked(i % 2 == 1),
    }
    first_switch = {}  # each method drawn for the first time in this window (the issue saw 404 ms once)
    for method in [*methods, "headcam"]:
        index = panel.method_combo.findData(method)
        if index >= 0 and panel.method_combo.currentIndex() != index:
            first_switch[method] = timed(lambda i=index: panel.method_combo.setCurrentIndex(i))
    for i in range(4):  # warm the cache of every method once
        plans["method (map cached)"](i)
    results = {}
    for name, plan in plans.items():
        fresh = "computed" in name
        panel.method_combo.setCurrentIndex(panel.method_combo.findData("gradcam"))
        panel.visible_box.setChecked(True)
        samples = [timed(lambda i=i, p=plan: p(i + 1), fresh=fresh) for i in range(repeats)]
        results[name] = {"median_ms": statistics.median(samples), "max_ms": max(samples)}
    panel.target_combo.setCurrentIndex(0)
    window.close()
    app.processEvents()
    return {"slice_shape": list(shape), "controls": results, "first_switch_ms": first_switch}


def bench_stall(app, settings_path: Path, model: Path, device: str, series: Path) -> dict:
    from PySide6.QtCore import QElapsedTimer, QTimer

    window = make_window(settings_path, model, device)
    window.opening.open_paths([str(series)])
    assert wait_for(window.controller.frameShown)
    gaps: list[float] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setInterval(10)

    def tick() -> None:
        gaps.append(clock.nsecsElapsed() / 1e6)
        clock.restart()

    timer.timeout.connect(tick)
    # the user keeps scrolling while it runs, as they would
    scroll = QTimer()
    scroll.setInterval(100)
    scroll.timeout.connect(lambda: window.controller.step(1) or window.controller.jump_to_end(False))
    clock.start()
    timer.start()
    scroll.start()
    start = time.perf_counter()
    assert window.batch.classify_all()
    assert wait_for(window.batch.finished, timeout_ms=600_000)
    elapsed = time.perf_counter() - start
    timer.stop()
    scroll.stop()
    frames = len(window.results_panel.table_model.rows)
    gaps = gaps[1:]
    window.close()
    app.processEvents()
    ordered = sorted(gaps)
    return {
        "frames": frames,
        "batch_s": elapsed,
        "frames_per_s": frames / elapsed if elapsed else float("nan"),
        "timer_ticks": len(gaps),
        "longest_gap_ms": max(gaps) if gaps else float("nan"),
        "p99_gap_ms": ordered[int(0.99 * (len(ordered) - 1))] if gaps else float("nan"),
        "median_gap_ms": statistics.median(gaps) if gaps else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one, else a tiny one)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--slices", type=int, default=192)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of the first-slice measurement")
    parser.add_argument("--repeats", type=int, default=20, help="changes per overlay control")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    from brainscan.engine.model.inference import Classifier
    from brainscan.engine.resources import default_model_path
    from brainscan.gui.application import create_application

    app = create_application([sys.argv[0]])
    scratch = Path(tempfile.mkdtemp(prefix="brainscan-viewer-bench-"))
    try:
        model = args.model
        model_note = "given"
        if model is None:
            model = default_model_path()
            model_note = "shipped default"
            if not model.is_file():
                from tiny_models import build_tiny_model

                model = build_tiny_model(scratch / "tiny.onnx")
                model_note = "tiny test model (the shipped model is missing)"
        classifier = Classifier(model, args.device)
        started = time.perf_counter()
        series, single = build_data(scratch, args.slices)
        build_s = time.perf_counter() - started
        settings_path = scratch / "settings.ini"
        report = {
            "machine": machine(),
            "model": {"path": str(model), "which": model_note, "name": classifier.contract.name,
                      "input_size": list(classifier.contract.input_size), "device": classifier.device.describe()},
            "data": {"series": str(series), "slices": args.slices, "slice_shape": "256 x 256 (the real shared sagittal slices)",
                     "built_s": build_s},
        }
        del classifier
        report["first_slice"] = bench_first_slice(app, settings_path, model, args.device, series, args.runs)
        report["overlay"] = bench_overlay(app, settings_path, model, args.device, single, args.repeats)
        report["stall"] = bench_stall(app, settings_path, model, args.device, series)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['affinity_cpus']} usable), {m['memory']}, "
          f"{m['platform']}, Python {m['python']}, PySide6 {m['pyside6']}, pyqtgraph {m['pyqtgraph']}, "
          f"onnxruntime {m['onnxruntime']}, Qt platform {m['qt_platform']}")
    print(f"model: {report['model']['name']} ({report['model']['which']}), {report['model']['device']}")
    f = report["first_slice"]
    print(f"\n1. {f['slices']}-slice DICOM series, time to the first slice on screen: "
          + ", ".join(f"{t * 1000:.0f} ms" for t in f["first_slice_s"])
          + "; all thumbnails decoded: " + ", ".join(f"{t:.2f} s" for t in f["all_thumbnails_s"]))
    o = report["overlay"]
    print(f"\n2. overlay control change to repainted view, {o['slice_shape'][1]} x {o['slice_shape'][0]} slice "
          f"(median / max of {args.repeats}):")
    print("   first switch to each method: " + ", ".join(f"{m} {t:.1f} ms" for m, t in o["first_switch_ms"].items()))
    for name, figures in o["controls"].items():
        print(f"   {name:<24} {figures['median_ms']:7.2f} ms / {figures['max_ms']:7.2f} ms")
    s = report["stall"]
    print(f"\n3. batch of {s['frames']} slices in {s['batch_s']:.1f} s ({s['frames_per_s']:.1f} slices/s) with a 10 ms "
          f"timer and a scroll every 100 ms: longest gap {s['longest_gap_ms']:.1f} ms, 99th percentile "
          f"{s['p99_gap_ms']:.1f} ms, median {s['median_gap_ms']:.1f} ms over {s['timer_ticks']} ticks")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
