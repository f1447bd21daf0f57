"""The README screenshot: the real viewer window at 1280 x 800 under Xvfb, a study open and a heat map shown.

Run from the repository root (needs Xvfb and the xcb libraries listed in ../shared/RECIPES.md)::

    .venv/bin/python bench/screenshot.py [--out resources/screenshot.png] [--model M.onnx]

It starts its own Xvfb (display :99 unless ``--display``), opens a copy of the real shared sagittal
series (``../shared/data/dicom/sagittal-t1-brain``: 16 slices of a Siemens MPRAGE; ``--series`` for another
folder, ``--synthetic`` for the 16-slice series built from Kaggle slices) and the bundled sample
pictures, classifies them with the shipped model (a tiny test model if it is missing, said in the
output), shows the most suspicious slice of the series with the model's default heat map (the
explanation head's) and an ellipse measured on it, and grabs the whole screen. Settings and the
measurement's sidecar live in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
WIDTH, HEIGHT = 1280, 800


def start_xvfb(display: str) -> subprocess.Popen:
    server = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket = Path(f"/tmp/.X11-unix/X{display.lstrip(':')}")
    deadline = time.monotonic() + 10
    while not socket.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"Xvfb {display} did not start (is it installed? apt-get install xvfb)")
        time.sleep(0.05)
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / "screenshot.png")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--display", default=":99")
    parser.add_argument("--series", type=Path, default=ROOT.parent / "shared" / "data" / "dicom" / "sagittal-t1-brain",
                        help="the DICOM series folder to show (copied first; default: the real shared sagittal slices)")
    parser.add_argument("--synthetic", action="store_true",
                        help="show a 16-slice series built from Kaggle slices instead (tests/dicom_factory.py)")
    parser.add_argument("--no-measurement", action="store_true", help="leave out the example ellipse")
    args = parser.parse_args()

    server = start_xvfb(args.display)
    os.environ["DISPLAY"] = args.display
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    scratch = Path(tempfile.mkdtemp(prefix="brainscan-screenshot-"))
    try:
        return shoot(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        server.terminate()
        server.wait(10)


def shoot(args: argparse.Namespace, scratch: Path) -> int:
    from viewer_bench import wait_for

    import dicom_factory as factory
    from brainscan.engine.resources import default_model_path, samples_dir
    from brainscan.gui.application import create_application
    from brainscan.gui.main_window import MainWindow
    from brainscan.gui.settings import AppSettings

    model = args.model or default_model_path()
    which = "given" if args.model else "shipped default"
    if not model.is_file():
        from tiny_models import build_tiny_model

        model, which = build_tiny_model(scratch / "tiny.onnx"), "tiny test model (the shipped model is missing)"
    if args.synthetic:
        folder = factory.write_sagittal_series(scratch / "MR-brain-T1", factory.kaggle_images(16, "glioma", start=300)).folder
    else:  # a copy: the measurement's sidecar is written beside the study's files, never into the shared data
        folder = scratch / args.series.name
        shutil.copytree(args.series, folder)

    app = create_application([sys.argv[0]])
    settings = AppSettings(scratch / "settings.ini")
    settings.model_path = model
    settings.device = "cpu"
    window = MainWindow(settings, model_in_background=False)
    window.setGeometry(0, 0, WIDTH, HEIGHT)
    window.show()
    window.opening.open_paths([str(folder), str(samples_dir())])
    assert wait_for(window.controller.frameShown), "nothing showed"
    assert wait_for(window.opening.finished, condition=lambda: len(window.controller.session) >= 24)
    window.overlay_panel.threshold_slider.setValue(30)  # a calmer map for the picture
    assert window.batch.classify_all()
    assert wait_for(window.batch.finished)
    keys = window.results_panel.table_model.suspicious
    series_key = next(iter(keys))
    window.controller.go_to(series_key)
    wait_for(window.controller.frameShown, timeout_ms=5000, condition=lambda: window.controller.shown_key == series_key)
    window.series_dock.raise_()
    window.results_dock.raise_()
    window.browser.select_key(series_key)
    if not args.no_measurement:  # an ellipse around the brain stem and cerebellum region, its figures on screen
        height, width = window.view.slice_item.image.shape[:2]
        window.measurements.overlay.add("ellipse", ((width * 0.52, height * 0.55), (width * 0.72, height * 0.78)))
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    shot = app.primaryScreen().grabWindow(0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not shot.save(str(args.out)):
        raise SystemExit(f"could not write {args.out}")
    print(f"{args.out}: {shot.width()} x {shot.height()}, model: {window.models.classifier.contract.name} ({which}), "
          f"slice {window.controller.session.position_text()}, {window.controller.finding_text().splitlines()[0]}")
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
