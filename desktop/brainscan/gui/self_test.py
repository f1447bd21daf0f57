"""``brainscan-viewer --self-test``: proof, headless, that Qt and the viewer work in this installation.

It opens the main window offscreen (``QT_QPA_PLATFORM=offscreen`` unless set) with throw-away
settings, loads the model, opens the bundled samples, waits until the first one is on screen,
renders the window, prints one line and exits 0 (1 with the reason otherwise). Used by the pip
installation (``brainscan-viewer --self-test``) and by the frozen application
(``installer/entry_viewer.py``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

SELF_TEST_SECONDS = 60.0


def viewer_self_test(device: str = "auto") -> int:
    """Run the self-test; returns the exit status (0 passed, 1 failed, the reasons on stderr)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    started = time.perf_counter()
    from brainscan.gui.application import create_application

    app = create_application([sys.argv[0]])
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import QEventLoop, QTimer, qVersion

    from brainscan.engine.resources import samples_dir
    from brainscan.gui.main_window import MainWindow
    from brainscan.gui.settings import AppSettings

    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="brainscan-viewer-self-test-") as scratch:
        settings = AppSettings(Path(scratch) / "settings.ini")
        settings.device = device
        window = MainWindow(settings, model_in_background=False)
        window.show()
        if window.models.classifier is None:
            problems.append(f"no model: {window.status.device_label.toolTip()}")
        loop = QEventLoop()
        window.controller.frameShown.connect(lambda *_: loop.quit())
        window.controller.frameFailed.connect(lambda key, message: (problems.append(message), loop.quit()))
        QTimer.singleShot(int(SELF_TEST_SECONDS * 1000), loop.quit)
        window.opening.open_paths([str(samples_dir())])
        loop.exec()
        shown = len(window.controller.session)
        if shown == 0:
            problems.append(f"no image from {samples_dir()} was shown within {SELF_TEST_SECONDS:.0f} s")
        picture = window.grab()
        if picture.isNull() or picture.width() < 100:
            problems.append("the window could not be rendered")
        device_text = window.status.device_label.text()
        # what the viewer shows for a CUDA fallback: "⚠ fallback" in the status bar, the reason in its tooltip
        classifier = window.models.classifier
        note = window.status.device_label.toolTip() if classifier and classifier.device.note else ""
        window.close()
        app.processEvents()
    for problem in problems:
        print(f"brainscan-viewer: self-test: {problem}", file=sys.stderr)
    if note:
        print(f"brainscan-viewer: {note}", file=sys.stderr)
    verdict = "ok" if not problems else "FAILED"
    print(
        f"brainscan-viewer self-test {verdict}: Qt {qVersion()} (PySide6 {pyside_version}) on the "
        f"{app.platformName()} platform; {shown} images opened; model {device_text}; "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return 0 if not problems else 1
