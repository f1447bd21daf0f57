"""Entry point of the frozen ``brainscan-viewer`` (PyInstaller runs this script).

It is :func:`brainscan.gui.app.main`, which also handles ``--self-test [--device auto|cpu|cuda]``
(:mod:`brainscan.gui.self_test`): headless, it opens the main window offscreen, loads the model,
opens the bundled samples and exits 0 when all of that works.
"""

from __future__ import annotations

import multiprocessing
import sys

from brainscan.gui.app import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main(sys.argv[1:]))
