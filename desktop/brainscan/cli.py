"""The ``brainscan`` command: headless screening of images and DICOM series.

Exit status: 0 every frame was classified, 1 some frames failed (each has an ``error`` row),
2 nothing could run (bad model, bad arguments, unusable output folder) or a report could not be
written (results.csv is kept), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from brainscan import RESEARCH_USE_NOTICE, __version__
from brainscan.engine.cam import METHODS
from brainscan.engine.errors import BrainscanError
from brainscan.engine.folder_run import FolderRun, RunSettings
from brainscan.engine.inference import DEVICES, Classifier
from brainscan.engine.loading import discover
from brainscan.engine.overlay import COLORMAPS
from brainscan.engine.reports import FORMATS, ReportError, parse_formats
from brainscan.engine.resources import default_model_path

EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING_RAN, EXIT_INTERRUPTED = 0, 1, 2, 130
CAM_CHOICES = (*METHODS, "none")


class _Usage(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for every other refusal
        self.exit(EXIT_NOTHING_RAN, f"brainscan: error: {message} (see brainscan {self.prog.split()[-1]} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Usage(prog="brainscan", description=f"Brain-tumour screening of MRI. {RESEARCH_USE_NOTICE}")
    parser.add_argument("--version", action="version", version=f"brainscan {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Usage)

    run = commands.add_parser("screen", help="classify images and DICOM files or folders, writing results to --out")
    run.add_argument("paths", nargs="+", metavar="PATH", help="image files, DICOM files, folders (recursed)")
    run.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (re-use it to resume)")
    run.add_argument("--model", type=Path, default=None, help="ONNX model with a brainscan contract (default: shipped)")
    run.add_argument("--device", choices=DEVICES, default="auto", help="inference device (default: auto)")
    run.add_argument("--cam", choices=CAM_CHOICES, default="gradcam", help="heat-map method (default: gradcam)")
    run.add_argument("--save-overlays", action="store_true", help="write PNG overlays of the heat map to DIR/overlays")
    run.add_argument("--colormap", choices=tuple(COLORMAPS), default="jet", help="overlay colour map")
    run.add_argument("--opacity", type=float, default=0.45, help="overlay opacity in [0, 1]")
    run.add_argument("--batch-size", type=int, default=8, help="frames per inference batch (default: 8)")
    run.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: one per core)")
    run.add_argument("--keep-identifiers", action="store_true",
                     help="also write patient name, ID and birth date (left out by default)")
    run.add_argument("--report", type=_report_formats, default=(), metavar="FORMATS",
                     help=f"also write reports: any of {','.join(FORMATS)}, comma-separated (DICOM for DICOM inputs)")
    run.add_argument("--deidentify", action="store_true",
                     help="de-identify the DICOM objects of --report dicom (basic profile, new UIDs)")
    run.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                     help="progress bar: auto shows it on a terminal only")

    card = commands.add_parser("model", help="print the model card (the contract inside the model) as JSON")
    card.add_argument("--model", type=Path, default=None)

    check = commands.add_parser(
        "self-test", help="check this installation: screen the bundled samples and compressed DICOM, exit 0 if all pass"
    )
    check.add_argument("--model", type=Path, default=None, help="model to test (default: shipped)")
    check.add_argument("--device", choices=DEVICES, default="auto", help="inference device (default: auto)")
    return parser


def _report_formats(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text)
    except ReportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _say(message: str) -> None:
    print(f"brainscan: {message}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_screen(args: argparse.Namespace) -> int:
    if not 0.0 <= args.opacity <= 1.0:
        _say(f"error: --opacity must lie in [0, 1], got {args.opacity}")
        return EXIT_NOTHING_RAN
    if args.batch_size < 1:
        _say(f"error: --batch-size must be at least 1, got {args.batch_size}")
        return EXIT_NOTHING_RAN
    classifier = Classifier(args.model or default_model_path(), device=args.device, threads=args.threads)
    if classifier.device.note:
        _say(classifier.device.note)
    refs = discover(args.paths)
    if not refs:
        _say(f"error: no files found in {', '.join(args.paths)}")
        return EXIT_NOTHING_RAN
    if args.deidentify and "dicom" not in args.report:
        _say("note: --deidentify applies to the DICOM objects of --report dicom")
    settings = RunSettings(
        out=args.out, cam_method=None if args.cam == "none" else args.cam, colormap=args.colormap,
        opacity=args.opacity, batch_size=args.batch_size, save_overlays=args.save_overlays,
        report_formats=args.report, keep_identifiers=args.keep_identifiers, deidentify=args.deidentify,
        inputs=tuple(str(p) for p in args.paths), device_requested=args.device,
    )
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    with FolderRun(classifier, refs, settings) as run:
        if run.already_done:
            _say(f"resuming in {args.out}: {run.already_done} of {run.total} frames already done")
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            from tqdm import tqdm

            with tqdm(total=len(run.todo), disable=not show, unit="frame", dynamic_ncols=True) as bar:
                for _ in run.results():
                    bar.update(1)
                    bar.set_postfix(errors=run.counts.get("error", 0), refresh=False)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        outcome = run.finish()
    _say(f"{outcome.ok} ok, {outcome.failed} failed of {outcome.frames} frames on {classifier.device.used.upper()}; "
         f"results in {args.out / 'results.csv'}")
    if outcome.interrupted:
        _say("interrupted: run the same command again to resume" + (" and write the reports" if args.report else ""))
        return EXIT_INTERRUPTED
    if outcome.report_error:
        _say(f"error: {outcome.report_error}")
        return EXIT_NOTHING_RAN
    for message in outcome.messages:
        _say(message)
    documents = [str(path) for path in (outcome.reports.written if outcome.reports else []) if path.suffix != ".dcm"]
    if documents:
        _say(f"reports: {', '.join(documents)}")
    return EXIT_SOME_FAILED if outcome.failed else EXIT_OK


def run_model(args: argparse.Namespace) -> int:
    classifier = Classifier(args.model or default_model_path(), device="cpu")
    print(json.dumps(classifier.model_card(), indent=2))
    return EXIT_OK


def _quiet_decoders() -> None:
    """Keep stderr to brainscan's own lines: a damaged file's problem is already in its row.

    pydicom logs every decoder that fails on a damaged file with its traceback and warns about odd
    values; OpenCV logs libtiff's complaints. ``BRAINSCAN_LOG=DEBUG`` shows them all again.
    """
    import warnings

    import cv2

    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="pydicom")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("BRAINSCAN_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    if "BRAINSCAN_LOG" not in os.environ:
        _quiet_decoders()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "screen":
            return run_screen(args)
        if args.command == "self-test":
            from brainscan.selftest import main_self_test

            return main_self_test(args.model, args.device, _say)
        return run_model(args)
    except BrainscanError as exc:
        _say(f"error: {exc}")
        return EXIT_NOTHING_RAN
    except OSError as exc:  # e.g. the disk filled while writing: rows written so far are kept
        _say(f"error: {exc.filename or ''} {exc.strerror or exc}; results written so far are kept")
        return EXIT_NOTHING_RAN


if __name__ == "__main__":
    sys.exit(main())
