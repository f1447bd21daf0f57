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
import platform
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import onnxruntime

from brainscan import RESEARCH_USE_NOTICE, __version__
from brainscan.engine.cam import METHODS
from brainscan.engine.errors import BrainscanError
from brainscan.engine.inference import DEVICES, Classifier
from brainscan.engine.loading import discover
from brainscan.engine.overlay import COLORMAPS, blend, caption, write_png
from brainscan.engine.reports import FORMATS, ReportError, ReportOptions, ReportSession, parse_formats
from brainscan.engine.resources import default_model_path
from brainscan.engine.results import ResultsStore
from brainscan.engine.screening import FrameResult, screen

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


def _overlay_name(result: FrameResult) -> str:
    import hashlib

    digest = hashlib.sha1(str(result.ref.path).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in result.ref.path.stem)[:60]
    return f"{stem}-f{result.ref.frame}-{digest}.png"


def _save_overlay(result: FrameResult, folder: Path, args: argparse.Namespace) -> None:
    if not result.ok or result.frame is None or result.heat is None:
        return
    mixed = blend(result.frame.picture, result.heat, colormap=args.colormap, opacity=args.opacity)
    text = f"{result.label} {result.confidence:.2f} | {args.cam} | research use only"
    write_png(folder / _overlay_name(result), caption(mixed, text))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_screen(args: argparse.Namespace) -> int:
    if not 0.0 <= args.opacity <= 1.0:
        _say(f"error: --opacity must lie in [0, 1], got {args.opacity}")
        return EXIT_NOTHING_RAN
    if args.batch_size < 1:
        _say(f"error: --batch-size must be at least 1, got {args.batch_size}")
        return EXIT_NOTHING_RAN
    started = time.perf_counter()
    classifier = Classifier(args.model or default_model_path(), device=args.device, threads=args.threads)
    if classifier.device.note:
        _say(classifier.device.note)
    refs = discover(args.paths)
    if not refs:
        _say(f"error: no files found in {', '.join(args.paths)}")
        return EXIT_NOTHING_RAN
    cam_method = None if args.cam == "none" else args.cam
    overlays = args.out / "overlays"
    if args.deidentify and "dicom" not in args.report:
        _say("note: --deidentify applies to the DICOM objects of --report dicom")
    with ResultsStore(args.out, classifier.classes, include_identifiers=args.keep_identifiers) as store:
        reports = ReportSession(
            args.out, ReportOptions(args.report, colormap=args.colormap, opacity=args.opacity,
                                    keep_identifiers=args.keep_identifiers, deidentify=args.deidentify),
            application_version=__version__, model_card=classifier.model_card(), cam_method=cam_method,
        ) if args.report else None
        todo = [ref for ref in refs if not store.is_done(str(ref.path), ref.frame)]
        if store.resumed:
            _say(f"resuming in {args.out}: {len(refs) - len(todo)} of {len(refs)} frames already done")
        if args.save_overlays:
            overlays.mkdir(parents=True, exist_ok=True)
        show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
        run_info = {
            "application": f"brainscan {__version__}",
            "notice": RESEARCH_USE_NOTICE,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inputs": [str(p) for p in args.paths],
            "model": classifier.model_card(),
            "device": {"requested": args.device, "providers": list(classifier.device.providers),
                       "used": classifier.device.used, "note": classifier.device.note},
            "onnxruntime": onnxruntime.__version__,
            "platform": platform.platform(),
            "cam_method": cam_method,
            "cam_settings": {"colormap": args.colormap, "opacity": args.opacity},
        }
        interrupted = False
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            from tqdm import tqdm

            results = screen(todo, classifier, cam_method=cam_method, batch_size=args.batch_size,
                             keep_frames=args.save_overlays or reports is not None)
            with tqdm(total=len(todo), disable=not show, unit="frame", dynamic_ncols=True) as bar:
                for result in results:
                    store.append(result, cam_method)
                    if args.save_overlays:
                        _save_overlay(result, overlays, args)
                    if reports is not None:
                        reports.add(result)
                    bar.update(1)
                    bar.set_postfix(errors=store.counts.get("error", 0), refresh=False)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            signal.signal(signal.SIGTERM, previous)
            run_info["seconds"] = round(time.perf_counter() - started, 3)
            run_info["interrupted"] = interrupted
            store.finalize(run_info)
    ok, failed = store.counts.get("ok", 0), store.counts.get("error", 0)
    _say(f"{ok} ok, {failed} failed of {ok + failed} frames on {classifier.device.used.upper()}; "
         f"results in {args.out / 'results.csv'}")
    if interrupted:
        _say("interrupted: run the same command again to resume" + (" and write the reports" if reports else ""))
        return EXIT_INTERRUPTED
    if reports is not None:
        try:
            outcome = reports.finish(store.rows(), run_info, classifier.classes)
        except ReportError as exc:
            _say(f"error: {exc}")
            return EXIT_NOTHING_RAN
        for message in outcome.messages:
            _say(message)
        documents = [str(path) for path in outcome.written if path.suffix != ".dcm"]
        if documents:
            _say(f"reports: {', '.join(documents)}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


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
