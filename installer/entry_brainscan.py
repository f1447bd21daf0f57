"""Entry point of the frozen ``brainscan`` command (PyInstaller runs this script)."""

from __future__ import annotations

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from brainscan.cli import main

    sys.exit(main())
