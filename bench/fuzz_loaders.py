"""Fuzz the image and DICOM loaders with atheris (libFuzzer), for a bounded time. Run by hand, never in CI.

    .venv/bin/python bench/fuzz_loaders.py --seconds 300 [--findings bench/fuzz-findings]

Property, for every input (a file of up to ``--max-len`` bytes): :func:`brainscan.engine.input.discovery.discover`
finds it, and :func:`~brainscan.engine.input.loading.load_frame` either returns a ``Frame`` whose
``picture`` is uint8 H x W x 3, or raises an :class:`~brainscan.engine.errors.InputError` subclass.
Anything else is a finding: another exception (saved, de-duplicated by exception type and the
line that raised it, and fuzzing goes on), a hang longer than ``--timeout`` seconds, memory above
``--rss-mb``, or a crash of a native decoder (libFuzzer saves those inputs and stops; the driver
starts a new worker until the time is used up).

Seeds: real Kaggle JPGs (grey and colour-encoded), a PNG, 16-bit PNG, BMP and TIFF made from one
of them, and DICOM files from ``tests/dicom_factory.py`` (native, RLE, JPEG 2000, JPEG lossless,
JPEG-LS, multi-frame, RGB, MONOCHROME1, no pixels, no preamble), all downscaled so that inputs stay
small. Instrumented for coverage: brainscan and pydicom (OpenCV and GDCM are native code).
Requires ``pip install atheris`` (in the ``dev`` extra on Linux).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


# -- seeds -----------------------------------------------------------------------------------------
def write_seeds(folder: Path) -> int:
    """Write the seed corpus; returns how many files."""
    import copy

    import cv2
    import numpy as np

    import dicom_factory as factory

    folder.mkdir(parents=True, exist_ok=True)
    jpgs = [factory.kaggle_images(1, c, start=211)[0] for c in ("glioma", "meningioma", "notumor", "pituitary")]
    for path in jpgs[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    grey = cv2.resize(factory.read_grey(jpgs[0]), (48, 48), interpolation=cv2.INTER_AREA)
    colour = cv2.applyColorMap(grey, cv2.COLORMAP_JET)
    for name, array, ext in (
        ("grey.png", grey, ".png"),
        ("colour.png", colour, ".png"),
        ("deep.png", grey.astype(np.uint16) * 257, ".png"),
        ("rgba.png", np.dstack([colour, grey]), ".png"),
        ("small.jpg", grey, ".jpg"),
        ("progressive.jpg", colour, ".jpg"),
        ("colour.bmp", colour, ".bmp"),
        ("deep.tif", grey.astype(np.uint16) * 257, ".tiff"),
    ):
        params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if name == "progressive.jpg" else []
        ok, data = cv2.imencode(ext, array, params)
        assert ok
        (folder / name).write_bytes(data.tobytes())
    pixels = factory.twelve_bit(grey, seed=1)
    dicom = folder / "dicom"
    factory.write_transfer_syntaxes(dicom, pixels)
    factory.write_multiframe(dicom / "multiframe.dcm", [pixels, pixels[::-1]])
    factory.write_rgb(dicom / "rgb.dcm", factory.false_colour(grey))
    factory.write_monochrome_twins(dicom / "twins", pixels, WindowCenter=400, WindowWidth=900)
    factory.write_without_pixels(dicom / "report.dcm")
    factory.write_without_preamble(dicom / "raw-dataset", pixels)
    enhanced = factory.new_dataset(pixels, RescaleSlope=2, RescaleIntercept=-1024)
    factory.save(copy.deepcopy(enhanced), dicom / "rescaled.dcm")
    palette = factory.new_dataset(grey, photometric="PALETTE COLOR", bits_stored=8)
    palette.RedPaletteColorLookupTableDescriptor = [256, 0, 16]
    palette.GreenPaletteColorLookupTableDescriptor = [256, 0, 16]
    palette.BluePaletteColorLookupTableDescriptor = [256, 0, 16]
    ramp = (np.arange(256, dtype=np.uint16) * 257).tobytes()
    palette.RedPaletteColorLookupTableData = ramp
    palette.GreenPaletteColorLookupTableData = ramp[::-1]
    palette.BluePaletteColorLookupTableData = ramp
    factory.save(palette, dicom / "palette.dcm")
    flat = folder / "flat"
    flat.mkdir(exist_ok=True)
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.parent != flat:
            (flat / f"{count:03d}-{path.name}").write_bytes(path.read_bytes())
            count += 1
    return count


# -- the target --------------------------------------------------------------------------------------
class Target:
    """Writes each input to a file and checks the property; saves unexpected exceptions."""

    def __init__(self, scratch: Path, findings: Path) -> None:
        from brainscan.engine.errors import InputError
        from brainscan.engine.input import discovery, loading

        self.discovery, self.loading, self.InputError = discovery, loading, InputError
        self.path = scratch / "input"
        self.findings = findings
        self.seen: set[str] = set()
        self.runs = 0

    def __call__(self, data: bytes) -> None:
        import numpy as np

        self.runs += 1
        self.path.write_bytes(data)
        try:
            refs = self.discovery.discover([self.path])
            assert refs, "discover() found nothing"
            for ref in refs[:4]:  # a fuzzed NumberOfFrames may be large
                frame = self.loading.load_frame(ref)
                picture = frame.picture
                assert isinstance(picture, np.ndarray) and picture.dtype == np.uint8, type(picture)
                assert picture.ndim == 3 and picture.shape[2] == 3 and min(picture.shape[:2]) > 0, picture.shape
        except self.InputError as exc:
            assert str(self.path) in str(exc), f"the message does not name the file: {exc}"
        except Exception as exc:  # a finding: keep it and go on
            self.save(data, exc)

    def save(self, data: bytes, exc: BaseException) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        key = f"{type(exc).__name__} at {where}"
        if key in self.seen:
            return
        self.seen.add(key)
        digest = hashlib.sha1(data).hexdigest()[:12]
        self.findings.mkdir(parents=True, exist_ok=True)
        (self.findings / f"exception-{digest}.bin").write_bytes(data)
        text = "".join(traceback.format_exception(exc))
        (self.findings / f"exception-{digest}.txt").write_text(f"{key}\n\n{text}", encoding="utf-8")
        print(f"\nFINDING {key}: {type(exc).__name__}: {str(exc)[:200]}", flush=True)


def worker(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=["brainscan", "pydicom"]):
        from brainscan.engine.input import discovery, loading  # noqa: F401

    import cv2

    cv2.setNumThreads(1)
    scratch = Path(tempfile.mkdtemp(prefix="brainscan-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    target = Target(scratch, args.findings)
    libfuzzer = [
        sys.argv[0],
        f"-max_total_time={args.seconds}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_mb}",
        f"-max_len={args.max_len}",
        f"-artifact_prefix={args.findings}/",
        "-print_final_stats=1",
        str(args.corpus),
        str(args.seeds),
    ]
    atheris.Setup(libfuzzer, target)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=300, help="total fuzzing time")
    parser.add_argument("--timeout", type=int, default=5, help="seconds before an input counts as a hang")
    parser.add_argument("--rss-mb", type=int, default=3072, help="memory limit before an input counts as a blow-up")
    parser.add_argument("--max-len", type=int, default=65536)
    parser.add_argument("--findings", type=Path, default=ROOT / "bench" / "fuzz-findings")
    parser.add_argument("--corpus", type=Path, default=None, help="the growing corpus (default: a temporary folder)")
    parser.add_argument("--seeds", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.findings = args.findings.resolve()
    args.findings.mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker(args)
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="brainscan-fuzz-corpus-"))
    args.seeds = args.seeds or scratch / "seeds"
    args.corpus = args.corpus or scratch / "corpus"
    args.corpus.mkdir(parents=True, exist_ok=True)
    if not args.seeds.exists():
        count = write_seeds(args.seeds)
        args.seeds = args.seeds / "flat"
        print(f"fuzz_loaders: {count} seed files in {args.seeds}", flush=True)
    deadline = time.monotonic() + args.seconds
    restarts = 0
    while (left := int(deadline - time.monotonic())) > 5:
        command = [sys.executable, __file__, "--worker", "--seconds", str(left), "--timeout", str(args.timeout),
                   "--rss-mb", str(args.rss_mb), "--max-len", str(args.max_len), "--findings", str(args.findings),
                   "--corpus", str(args.corpus), "--seeds", str(args.seeds)]
        started = time.monotonic()
        done = subprocess.run(command)
        if done.returncode == 0 or time.monotonic() - started < 3:  # finished, or cannot start at all
            break
        restarts += 1
        print(f"fuzz_loaders: worker ended with status {done.returncode} (a libFuzzer finding); restarting", flush=True)
    findings = sorted(args.findings.glob("*")) if args.findings.exists() else []
    print(f"fuzz_loaders: done; corpus {len(list(args.corpus.iterdir()))} inputs in {args.corpus}; "
          f"{restarts} worker restarts; findings in {args.findings}: {len(findings)} files", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
