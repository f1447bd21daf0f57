"""The ``brainscan-viewer`` entry point: ``brainscan-viewer [--settings FILE] [--allow-unverified-model] [PATH ...]``,
or ``--self-test``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from brainscan import RESEARCH_USE_NOTICE, __version__

if TYPE_CHECKING:  # pragma: no cover
    from brainscan.gui.main_window import MainWindow


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainscan-viewer", description=f"Desktop viewer for brain-MRI screening. {RESEARCH_USE_NOTICE}"
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="images, DICOM files or folders to open")
    parser.add_argument("--settings", metavar="FILE", default=None,
                        help="keep the settings in this INI file instead of the user's (also $BRAINSCAN_SETTINGS)")
    parser.add_argument("--version", action="version", version=f"brainscan-viewer {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation headless (offscreen window, model, bundled samples) and exit")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default=None,
                        help="with --self-test: the inference device to test (default: auto)")
    parser.add_argument("--allow-unverified-model", action="store_true",
                        help="accept a model whose contract records no weights checksum: its weights cannot be "
                             "verified and may have been altered, so its results may be wrong; the status bar "
                             "and every report page then say so (refused without this option)")
    return parser


def open_window(args: argparse.Namespace) -> MainWindow:
    """The main window for the parsed command line (its model opens in the background)."""
    from brainscan.gui.main_window import MainWindow
    from brainscan.gui.settings import AppSettings

    return MainWindow(AppSettings(args.settings), allow_unverified=args.allow_unverified_model)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.self_test:
        from brainscan.gui.self_test import viewer_self_test

        return viewer_self_test(args.device or "auto")
    from brainscan.gui.application import create_application

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_application([sys.argv[0]])
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl+C in the terminal ends the viewer

    window = open_window(args)
    window.show()
    if args.paths:
        window.opening.open_paths(args.paths)
    return int(app.exec())
