"""The ``brainscan`` command: headless screening of images and DICOM series; one frame's heat map on demand.

Exit status: 0 every frame was classified, 1 some frames failed (each has an ``error`` row),
2 nothing could run (bad model, bad arguments, unusable output folder, no archive URL gave an instance
and no other input) or a report could not be written (results.csv is kept), 130 interrupted. ``explain``: 0 the overlay was written, 2 a bad file, frame,
class, model or output, 130 interrupted.
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
from typing import Any

from brainscan import RESEARCH_USE_NOTICE, __version__
from brainscan.engine.archive.access import ArchiveError, ArchiveLocation, is_archive_url, public_url
from brainscan.engine.errors import BrainscanError, Cancelled
from brainscan.engine.input.discovery import Discovery, find_inputs
from brainscan.engine.input.planes import ACQUIRED, PLANE_CHOICES
from brainscan.engine.model.cam import AUTO, METHODS, resolve_method
from brainscan.engine.model.inference import DEVICES, Classifier
from brainscan.engine.model.integrity import ALLOW_UNVERIFIED_FLAG, UNVERIFIED_WARNING, is_verified
from brainscan.engine.model.overlay import COLORMAPS
from brainscan.engine.reports import FORMATS, ReportError, parse_formats
from brainscan.engine.resources import default_model_path
from brainscan.engine.results.series import verdict_lines
from brainscan.engine.run.archive_run import (
    CACHE_DIR,
    ArchiveInputs,
    dicom_outputs,
    fetch_archive_inputs,
    open_archive,
    store_outputs,
)
from brainscan.engine.run.explain import (
    EXPLAIN_METHODS,
    OCCLUSION,
    explain_frame,
    load_explained_frame,
    write_explanation,
)
from brainscan.engine.run.folder_run import FolderRun, RunSettings
from brainscan.engine.run.tuning import session_threads

EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING_RAN, EXIT_INTERRUPTED = 0, 1, 2, 130
CAM_CHOICES = (AUTO, *METHODS, "none")
ALLOW_UNVERIFIED_HELP = (
    "use a model whose contract records no weights checksum: its weights cannot be verified and may have been "
    "altered, so its results may be wrong; a warning is printed and written on every report page"
)


class _Usage(argparse.ArgumentParser):
    subcommands: dict[str, argparse.ArgumentParser] = {}  # noqa: RUF012 (set once by build_parser, read only)

    def error(self, message: str) -> None:  # one line, exit 2, as for every other refusal
        # prog is "brainscan" for the top level and "brainscan screen" for a sub-command
        self.exit(EXIT_NOTHING_RAN, f"brainscan: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option after a sub-command points to that sub-command's help."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            where = self.subcommands.get(getattr(namespace, "command", None) or "", self)
            where.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace


def build_parser() -> argparse.ArgumentParser:
    parser = _Usage(prog="brainscan", description=f"Brain-tumour screening of MRI. {RESEARCH_USE_NOTICE}")
    parser.add_argument("--version", action="version", version=f"brainscan {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Usage)

    run = commands.add_parser("screen", help="classify images and DICOM files or folders, writing results to --out")
    run.add_argument("paths", nargs="+", metavar="PATH",
                     help="image files, DICOM files, folders (recursed), DICOMweb study or series URLs "
                          "(http(s)://host[:port]/<root>/studies/<StudyUID>[/series/<SeriesUID>], retrieved into "
                          "DIR/archive-cache; credentials from BRAINSCAN_ARCHIVE_TOKEN or BRAINSCAN_ARCHIVE_USER and "
                          "BRAINSCAN_ARCHIVE_PASSWORD)")
    run.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (re-use it to resume)")
    run.add_argument("--model", type=Path, default=None, help="ONNX model with a brainscan contract (default: shipped)")
    run.add_argument("--device", choices=DEVICES, default="auto", help="inference device (default: auto)")
    run.add_argument("--cam", choices=CAM_CHOICES, default=AUTO,
                     help="heat-map method (default: auto, the model's own: headcam when it carries an explanation "
                          "head, else gradcam)")
    run.add_argument("--save-overlays", action="store_true", help="write PNG overlays of the heat map to DIR/overlays")
    run.add_argument("--colormap", choices=tuple(COLORMAPS), default="jet", help="overlay colour map")
    run.add_argument("--opacity", type=float, default=0.45, help="overlay opacity in [0, 1]")
    run.add_argument("--batch-size", type=int, default=None,
                     help="frames per inference batch (default: measured on this machine, 1 to 4; larger ones use more "
                          "memory)")
    run.add_argument("--threads", type=int, default=None,
                     help="onnxruntime threads per batch (default on a CPU: 1, with one batch per core at once)")
    run.add_argument("--keep-identifiers", action="store_true",
                     help="also write the patient name, ID and birth date of DICOM inputs into results.csv, "
                          "results.json and the PDF and HTML reports (left out by default). The DICOM objects of "
                          "--report dicom keep the patient name, ID and birth date of their source with or "
                          "without this option (for study linkage), unless --deidentify")
    run.add_argument("--report", type=_report_formats, default=(), metavar="FORMATS",
                     help=f"also write reports: any of {','.join(FORMATS)}, comma-separated (dicom: for DICOM "
                          "inputs, a Secondary Capture per slice and a Structured Report per study, in the source "
                          "study, carrying its patient and study modules unless --deidentify)")
    run.add_argument("--deidentify", action="store_true",
                     help="de-identify: the DICOM objects get the DICOM basic profile (pseudonymous patient name "
                          "and ID, dates emptied, every UID replaced), and the Series and SOP Instance UIDs in "
                          "the CSV, JSON, PDF and HTML are the same new ones; file paths stay as given; not with "
                          "--keep-identifiers")
    run.add_argument("--store", default=None, metavar="ROOT",
                     help="after the run, send its DICOM outputs (--report dicom) to this DICOMweb root with STOW-RS "
                          "(e.g. http://host:8042/dicom-web); what was stored is recorded in results.json")
    run.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                     help="progress bar: auto shows it on a terminal only")
    run.add_argument("--plane", choices=PLANE_CHOICES, default=ACQUIRED,
                     help="the plane volumes are screened along (default: acquired: DICOM frames as stored, NIfTI "
                          "files across their third voxel axis). axial, coronal or sagittal screens each 3-D DICOM "
                          "series as reformats of its volume and each NIfTI file along that plane, without "
                          "resampling (pictures and single slices as they are); an output folder keeps one plane")
    run.add_argument(ALLOW_UNVERIFIED_FLAG, action="store_true", help=ALLOW_UNVERIFIED_HELP)

    _add_explain(commands)
    _add_archive_login(commands)

    card = commands.add_parser("model", help="print the model card (the contract inside the model) as JSON")
    card.add_argument("--model", type=Path, default=None)
    card.add_argument(ALLOW_UNVERIFIED_FLAG, action="store_true", help=ALLOW_UNVERIFIED_HELP)

    check = commands.add_parser(
        "self-test", help="check this installation: screen the bundled samples and compressed DICOM, exit 0 if all pass"
    )
    check.add_argument("--model", type=Path, default=None, help="model to test (default: shipped)")
    check.add_argument("--device", choices=DEVICES, default="auto", help="inference device (default: auto)")
    check.add_argument(ALLOW_UNVERIFIED_FLAG, action="store_true", help=ALLOW_UNVERIFIED_HELP)
    parser.subcommands = dict(commands.choices)
    return parser


def _add_explain(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser(
        "explain", help="the heat map of one frame as a PNG overlay; by default the occlusion map (slow: one network "
                        "run per occluded square; model-agnostic, a check of the fast maps)")
    explain.add_argument("file", type=Path, metavar="FILE", help="an image or DICOM file")
    explain.add_argument("--out", required=True, type=Path, metavar="PNG", help="the overlay to write (PNG)")
    explain.add_argument("--frame", type=int, default=0, metavar="N", help="frame of a multi-frame DICOM file, from 0")
    explain.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                         help="the class to explain (default: the predicted class)")
    explain.add_argument("--method", choices=EXPLAIN_METHODS, default=OCCLUSION,
                         help="occlusion (default): the drop of the class's logit when a 32 px black square hides "
                              "each of 14 x 14 places; or a fast CAM method; auto: the model's own CAM method")
    explain.add_argument("--model", type=Path, default=None, help="ONNX model with a brainscan contract (default: shipped)")
    explain.add_argument("--device", choices=DEVICES, default="auto", help="inference device (default: auto)")
    explain.add_argument(ALLOW_UNVERIFIED_FLAG, action="store_true", help=ALLOW_UNVERIFIED_HELP)


def _add_archive_login(commands: argparse._SubParsersAction) -> None:
    login = commands.add_parser(
        "archive-login", help="keep an archive's credentials in the system keyring (asked for, never on the command line)")
    login.add_argument("root", metavar="ROOT", help="the archive's DICOMweb root, e.g. https://pacs.example.org/dicom-web")
    who = login.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="NAME", help="HTTP basic: this user; the password is asked for")
    who.add_argument("--token", action="store_true", help="a bearer token, asked for")
    logout = commands.add_parser("archive-logout", help="remove an archive's credentials from the system keyring")
    logout.add_argument("root", metavar="ROOT", help="the archive's DICOMweb root")


def run_archive_login(args: argparse.Namespace, ask: Any = None) -> int:
    """``brainscan archive-login`` / ``archive-logout``: the keyring entry of one server (the secret is asked
    for with ``getpass``, so it stays out of the shell's history)."""
    from brainscan.engine.archive.credentials import Credentials, forget_in_keyring, origin, save_to_keyring

    try:
        server = origin(args.root)
    except ValueError:
        raise ArchiveError(args.root, "not a DICOMweb root", "give it as http(s)://host[:port]/path") from None
    if args.command == "archive-logout":
        removed = forget_in_keyring(args.root)
        _say(f"{server}: {removed} keyring entr{'y' if removed == 1 else 'ies'} removed")
        return 0
    if ask is None:
        import getpass

        ask = getpass.getpass
    secret = ask(f"{'Token' if args.token else 'Password'} for {server}: ")
    if not secret:
        _say(f"{server}: nothing entered; the keyring is unchanged")
        return EXIT_NOTHING_RAN
    credentials = Credentials("bearer", "", secret) if args.token else Credentials("basic", args.user, secret)
    service = save_to_keyring(args.root, credentials)
    _say(f"{server}: kept in the system keyring as '{service}'; brainscan screen and the viewer use it for this server")
    return 0


def _report_formats(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text)
    except ReportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _say(message: str) -> None:
    print(f"brainscan: {message}", file=sys.stderr, flush=True)


def _warn_if_unverified(classifier: Classifier) -> None:
    """One warning line on stderr when an unverified model was allowed (``--allow-unverified-model``)."""
    if not is_verified(classifier.integrity):
        _say(f"warning: {UNVERIFIED_WARNING} ({classifier.model_path}: {classifier.integrity}); "
             "its results may come from altered weights")


class _NoBar:
    """What a progress bar offers, doing nothing: tqdm is not even imported when no bar is shown."""

    n = 0
    total: int | None = None

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, count: int = 1) -> None:
        self.n += count

    def refresh(self) -> None:
        pass

    def set_postfix_str(self, *args: object, **kwargs: object) -> None:
        pass


def _bar(show: bool, **kwargs: object) -> Any:  # a tqdm bar, or a _NoBar
    """A tqdm progress bar when ``show``, else a silent stand-in (tqdm's import costs about 45 ms)."""
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(dynamic_ncols=True, **kwargs)


def _find_inputs(paths: Sequence[str], out: Path, show: bool, plane: str = ACQUIRED) -> Discovery:
    """Discovery with a running count of the files looked at (on a terminal); never the output folder."""
    with _bar(show, unit=" files", desc="finding files") as bar:
        found = find_inputs(paths, exclude=[out], on_file=lambda count: bar.update(count - bar.n), plane=plane)
        bar.refresh()  # the final count stays on screen
        return found


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_screen(args: argparse.Namespace) -> int:
    if not 0.0 <= args.opacity <= 1.0:
        _say(f"error: --opacity must lie in [0, 1], got {args.opacity}")
        return EXIT_NOTHING_RAN
    if args.batch_size is not None and args.batch_size < 1:
        _say(f"error: --batch-size must be at least 1, got {args.batch_size}")
        return EXIT_NOTHING_RAN
    classifier = Classifier(args.model or default_model_path(), device=args.device,
                            threads=session_threads(args.threads, args.device), allow_unverified=args.allow_unverified_model)
    _warn_if_unverified(classifier)
    if classifier.device.note:
        _say(classifier.device.note)
    if args.deidentify and args.keep_identifiers:
        _say("error: --keep-identifiers and --deidentify contradict each other: choose one")
        return EXIT_NOTHING_RAN
    try:
        cam_method = resolve_method(None if args.cam == "none" else args.cam, classifier.contract)
    except ValueError as exc:
        _say(f"error: {exc}")
        return EXIT_NOTHING_RAN
    if args.store is not None and (not is_archive_url(args.store) or "dicom" not in args.report):
        _say("error: --store needs a DICOMweb root URL (http(s)://host[:port]/<root>) and --report dicom "
             "(it sends the run's DICOM outputs)")
        return EXIT_NOTHING_RAN
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    urls = [p for p in args.paths if is_archive_url(p)]
    local = [p for p in args.paths if not is_archive_url(p)]
    try:
        fetched = _fetch_archive_inputs(urls, args.out, show) if urls else None
    except (KeyboardInterrupt, Cancelled):
        _say(f"interrupted while retrieving: the instances retrieved so far are kept in {args.out / CACHE_DIR}; "
             "run the same command again to resume")
        return EXIT_INTERRUPTED
    paths = local + [str(folder) for folder in fetched.folders] if fetched else local
    found = _find_inputs(paths, args.out, show, args.plane) if paths else Discovery()
    for note in found.notes():
        _say(note)
    refs = found.refs
    if not refs:
        if fetched and not local and (fetched.errors or fetched.retrieval.failed):
            return EXIT_NOTHING_RAN  # each URL's failure is said already
        _say(f"error: no images found in {', '.join(public_url(p) for p in args.paths)}"
             + ("" if found.skipped or urls else " (the folders are empty)"))
        return EXIT_NOTHING_RAN
    settings = RunSettings(
        out=args.out, cam_method=cam_method, colormap=args.colormap,
        opacity=args.opacity, batch_size=args.batch_size, lanes=None, save_overlays=args.save_overlays,
        report_formats=args.report, keep_identifiers=args.keep_identifiers, deidentify=args.deidentify,
        inputs=tuple(public_url(str(p)) for p in args.paths), device_requested=args.device,
        sources=fetched.sources if fetched else {},
        failed_inputs=fetched.failed_results if fetched else (), replace=fetched.replace if fetched else frozenset(),
    )
    with FolderRun(classifier, refs, settings) as run:
        if run.already_done:
            _say(f"resuming in {args.out}: {run.already_done} of {run.total} frames already done"
                 + (f"; {run.remade} of them lack an output and are screened again for it" if run.remade else ""))
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            with _bar(show, total=len(run.todo), unit="frame") as bar:
                for _ in run.results():
                    bar.update(1)
                    # a plain integer: set_postfix(errors=20000) shows tqdm's short form "2e+4"
                    bar.set_postfix_str(f"errors={run.counts.get('error', 0)}", refresh=False)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        outcome = run.finish()
    domain = f" ({outcome.out_of_domain} out of domain)" if outcome.out_of_domain else ""
    _say(f"{outcome.ok} ok{domain}, {outcome.failed} failed of {outcome.frames} frames on {classifier.device.used.upper()}; "
         f"results in {args.out / 'results.csv'}")
    if outcome.interrupted:
        _say("interrupted: run the same command again to resume" + (" and write the reports" if args.report else ""))
        return EXIT_INTERRUPTED
    for line in verdict_lines(outcome.series):
        _say(line)
    if outcome.report_error:
        _say(f"error: {outcome.report_error}")
        return EXIT_NOTHING_RAN
    for message in outcome.messages:
        _say(message)
    documents = [str(path) for path in (outcome.reports.written if outcome.reports else []) if path.suffix != ".dcm"]
    if documents:
        _say(f"reports: {', '.join(documents)}")
    store_failed = _store_outputs(args.store, args.out, show) if args.store else False
    retrieval_failed = bool(fetched and (fetched.retrieval.failed or fetched.errors))
    return EXIT_SOME_FAILED if outcome.failed or store_failed or retrieval_failed else EXIT_OK


def _fetch_archive_inputs(urls: Sequence[str], out: Path, show: bool) -> ArchiveInputs:
    """Retrieve the studies and series named by URL into the cache in ``out`` (a bar per URL on a terminal);
    one error line per URL that gave nothing, a line per instance not retrieved (the first five)."""
    bars: list[Any] = []

    def progress(location: ArchiveLocation) -> Any:
        bar = _bar(show, unit=" instances", desc=f"retrieving {location.series_uid or location.study_uid}"[:40])
        bars.append(bar)

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        return update

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        fetched = fetch_archive_inputs(urls, out, progress=progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for bar in bars:
            bar.__exit__(None, None, None)
    for failure in fetched.errors:  # one line per URL that gave nothing; the others are screened
        _say(f"error: {failure.error}")
    retrieval = fetched.retrieval
    _say(f"archive: {retrieval.fetched} instances retrieved, {retrieval.cached} already in {out / CACHE_DIR}"
         + (f", {len(retrieval.failed)} not retrieved" if retrieval.failed else ""))
    for url, why in retrieval.failed[:5]:
        _say(f"not retrieved: {url}: {why}")
    if len(retrieval.failed) > 5:
        _say(f"... and {len(retrieval.failed) - 5} more not retrieved; run the same command again to fetch them")
    return fetched


def _store_outputs(root: str, out: Path, show: bool) -> bool:
    """Send the run's DICOM outputs to ``root``; True when some were refused (each named on stderr)."""
    archive = open_archive(root)
    files = dicom_outputs(out)
    with _bar(show, total=len(files), unit=" files", desc="storing") as bar:
        outcome = store_outputs(archive, out, progress=lambda done, total: bar.update(done - bar.n))
    _say(f"stored {len(outcome.stored)} of {len(files)} DICOM outputs on {outcome.server}; "
         f"recorded in {out / 'results.json'}")
    for failure in outcome.failed[:5]:
        _say(f"not stored: {failure['file']}: {failure['why']}")
    return bool(outcome.failed)


def run_explain(args: argparse.Namespace) -> int:
    """Explain one frame, write its overlay, print one line: the class, the method, the peak and the time."""
    classifier = Classifier(args.model or default_model_path(), device=args.device,
                            allow_unverified=args.allow_unverified_model)
    _warn_if_unverified(classifier)
    if classifier.device.note:
        _say(classifier.device.note)
    frame = load_explained_frame(args.file, args.frame)
    slow = args.method == OCCLUSION  # a CAM method takes one network run: no bar
    with _bar(slow and sys.stderr.isatty(), unit=" squares", desc=args.method) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            explanation = explain_frame(classifier, frame, method=args.method, class_name=args.class_name,
                                        progress=progress)
        except ValueError as exc:
            _say(f"error: {exc}")
            return EXIT_NOTHING_RAN
        except KeyboardInterrupt:
            _say("interrupted: no overlay written")
            return EXIT_INTERRUPTED
    try:
        write_explanation(explanation, args.out)
    except OSError as exc:
        _say(f"error: {args.out}: cannot write the overlay ({exc.strerror or exc})")
        return EXIT_NOTHING_RAN
    print(f"{explanation.line()}; overlay in {args.out}", flush=True)
    return EXIT_OK


def run_model(args: argparse.Namespace) -> int:
    classifier = Classifier(args.model or default_model_path(), device="cpu",
                            allow_unverified=args.allow_unverified_model)
    _warn_if_unverified(classifier)
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
        if args.command == "explain":
            return run_explain(args)
        if args.command in ("archive-login", "archive-logout"):
            return run_archive_login(args)
        if args.command == "self-test":
            from brainscan.selftest import main_self_test

            return main_self_test(args.model, args.device, _say, allow_unverified=args.allow_unverified_model)
        return run_model(args)
    except BrainscanError as exc:
        _say(f"error: {exc}")
        return EXIT_NOTHING_RAN
    except OSError as exc:  # e.g. the disk filled while writing: rows written so far are kept
        where = exc.filename or getattr(args, "out", None) or "the output folder"
        _say(f"error: {where}: {exc.strerror or exc}; results written so far are kept")
        return EXIT_NOTHING_RAN


if __name__ == "__main__":
    sys.exit(main())
