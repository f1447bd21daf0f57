"""``brainscan self-test``: prove, headless, that an installation (or the frozen bundle) works.

It loads the model (the shipped default unless one is given), screens the bundled samples
(``resources/samples``: the true class is the file name's first word), builds DICOM files from one
sample in four compressed transfer syntaxes in a temporary folder, checks that every DICOM decoder
the application relies on is present and decodes them to the stored values, screens them too, and
checks that the GPL ``pylibjpeg-libjpeg`` is absent. It prints one line and returns 0 when all
passed; otherwise one line per failure and a non-zero status.

Qt-free and torch-free (the viewer's own ``--self-test`` proves Qt loads).
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.integrity import UNVERIFIED_WARNING, is_verified
from brainscan.engine.resources import default_model_path, samples_dir
from brainscan.engine.run.screening import DEFAULT_BATCH_SIZE, screen

# transfer syntax keyword -> decoding plugins that must be available (the bundled codecs)
REQUIRED_DECODERS = {
    "RLELossless": ("pylibjpeg",),  # pylibjpeg-rle
    "JPEG2000Lossless": ("gdcm", "pylibjpeg"),  # python-gdcm, pylibjpeg-openjpeg
    "JPEGLSLossless": ("gdcm",),
    "JPEGLosslessSV1": ("gdcm",),
}
GPL_MODULES = ("libjpeg",)  # pylibjpeg-libjpeg is GPL-3 and must never be shipped


@dataclass
class SelfTestReport:
    """What the self-test found: passed checks counted, failures described."""

    failures: list[str] = field(default_factory=list)
    samples: int = 0  # sample images classified as their file name says
    dicom: int = 0  # compressed DICOM files classified as the sample they were made from
    model: str = ""
    device: str = ""
    device_note: str = ""
    integrity: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        verdict = "ok" if self.ok else f"FAILED ({len(self.failures)} problem{'s' * (len(self.failures) != 1)})"
        return (
            f"brainscan self-test {verdict}: {self.samples} samples and {self.dicom} compressed DICOM files "
            f"screened as named; model {self.model} ({self.integrity}) on {self.device}; {self.seconds:.1f} s"
        )


def expected_class(path: Path) -> str:
    """The true class of a sample from its file name: ``glioma-Tr-gl_0100.jpg`` is a glioma."""
    return path.name.split("-")[0]


# -- DICOM built from a sample -------------------------------------------------------------------
def _base_dataset(grey: np.ndarray):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.SeriesDescription = "brainscan self-test"
    ds.set_pixel_data(np.ascontiguousarray(grey), "MONOCHROME2", 8)
    ds.WindowCenter, ds.WindowWidth = 127.5, 255  # the stored 8-bit values shown as they are
    return ds


def _gdcm_transcode(source: Path, target: Path) -> None:
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    if not reader.Read():
        raise RuntimeError(f"gdcm cannot read {source}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError("gdcm cannot encode JPEG lossless")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"gdcm cannot write {target}")


def write_compressed_dicom(grey: np.ndarray, folder: Path) -> dict[str, Path]:
    """One 8-bit grey picture as DICOM in the transfer syntaxes of :data:`REQUIRED_DECODERS`.

    Encoders: pydicom's RLE, pylibjpeg-openjpeg (JPEG 2000), pyjpegls (JPEG-LS) and python-gdcm
    (JPEG lossless, first-order prediction), all lossless.
    """
    import copy

    from pydicom import uid

    folder.mkdir(parents=True, exist_ok=True)
    base = _base_dataset(grey)
    plain = folder / "native.dcm"
    base.save_as(plain, enforce_file_format=True)
    written = {}
    for keyword in REQUIRED_DECODERS:
        path = folder / f"{keyword}.dcm"
        if keyword == "JPEGLosslessSV1":
            _gdcm_transcode(plain, path)
        else:
            ds = copy.deepcopy(base)
            ds.compress(getattr(uid, keyword), **({"encoding_plugin": "pydicom"} if keyword == "RLELossless" else {}))
            ds.save_as(path, enforce_file_format=True)
        written[keyword] = path
    return written


def check_decoders(files: dict[str, Path], grey: np.ndarray) -> list[str]:
    """Every required plugin is available and decodes its file to exactly ``grey``."""
    import pydicom
    from pydicom import uid
    from pydicom.pixels import get_decoder, pixel_array

    problems = []
    for keyword, plugins in REQUIRED_DECODERS.items():
        decoder = get_decoder(getattr(uid, keyword))
        available = set(decoder.available_plugins)
        for plugin in plugins:
            if plugin not in available:
                problems.append(
                    f"DICOM decoder {plugin!r} for {keyword} is missing (available: {sorted(available) or 'none'})"
                )
                continue
            try:
                decoded = pixel_array(pydicom.dcmread(files[keyword]), decoding_plugin=plugin)
            except Exception as exc:
                problems.append(f"DICOM decoder {plugin!r} fails on {keyword}: {type(exc).__name__}: {exc}")
                continue
            if not np.array_equal(decoded, grey):
                problems.append(f"DICOM decoder {plugin!r} gives other pixels for {keyword}")
    return problems


def check_no_gpl_codecs() -> list[str]:
    return [
        f"the GPL module {name!r} (pylibjpeg-libjpeg) is present; it must not be shipped"
        for name in GPL_MODULES
        if importlib.util.find_spec(name) is not None
    ]


# -- the whole test -----------------------------------------------------------------------------
def _screen_expecting(
    refs: list[FrameRef], expected: Callable[[FrameRef], str], classifier: Classifier
) -> tuple[int, list[str]]:
    """Screen ``refs`` with Grad-CAM: how many came out as expected, and what went wrong with the others."""
    problems = []
    for result in screen(refs, classifier, cam_method="gradcam", batch_size=DEFAULT_BATCH_SIZE):
        name = result.ref.path.name
        if not result.ok:
            problems.append(f"{name}: {result.error}")
        elif result.label != expected(result.ref):
            problems.append(f"{name}: classified {result.label} ({result.confidence:.2f}), expected {expected(result.ref)}")
        elif result.cam_peak is None:
            problems.append(f"{name}: no heat map")
    return len(refs) - len(problems), problems


def run_self_test(
    model_path: str | Path | None = None, device: str = "auto", *, allow_unverified: bool = False
) -> SelfTestReport:
    """Run every check; never raises for a failed check (see :class:`SelfTestReport`).

    Parameters
    ----------
    model_path, device:
        The model to test (default: the shipped one) and the inference device.
    allow_unverified:
        Test a model whose contract records no weights checksum (refused otherwise).

    Raises
    ------
    BrainscanError
        The model cannot be opened at all (the caller reports it like any other refusal).
    """
    started = time.perf_counter()
    report = SelfTestReport()
    classifier = Classifier(model_path or default_model_path(), device=device, allow_unverified=allow_unverified)
    contract = classifier.contract
    report.model = f"{contract.name} {contract.version}"
    used = classifier.device
    report.device = f"{used.used.upper()} ({', '.join(used.providers)})"
    report.device_note, report.integrity = used.note, classifier.integrity
    samples = sorted(samples_dir().glob("*.jpg"))
    if not samples:
        report.failures.append(f"no sample images in {samples_dir()}")
    unknown = sorted({expected_class(p) for p in samples} - set(classifier.classes))
    if unknown:
        report.failures.append(f"sample classes {unknown} are not among the model's classes {list(classifier.classes)}")
    else:
        report.samples, problems = _screen_expecting(
            discover(samples), lambda ref: expected_class(ref.path), classifier
        )
        report.failures += problems
    report.failures += check_no_gpl_codecs()
    if samples and not unknown:
        with tempfile.TemporaryDirectory(prefix="brainscan-self-test-") as scratch:
            from brainscan.engine.input.loading import load_picture

            source = samples[0]
            grey = load_picture(source)[:, :, 0]
            try:
                files = write_compressed_dicom(grey, Path(scratch))
            except Exception as exc:
                report.failures.append(f"cannot build the test DICOM files ({type(exc).__name__}: {exc})")
            else:
                report.failures += check_decoders(files, grey)
                report.dicom, problems = _screen_expecting(
                    discover(list(files.values())), lambda ref: expected_class(source), classifier
                )
                report.failures += problems
    report.seconds = time.perf_counter() - started
    return report


def main_self_test(
    model_path: str | Path | None, device: str, say: Callable[[str], None], *, allow_unverified: bool = False
) -> int:
    """The ``brainscan self-test`` command: 0 all passed, 1 a check failed (2 is left to the caller)."""
    report = run_self_test(model_path, device, allow_unverified=allow_unverified)
    if not is_verified(report.integrity):
        say(f"warning: {UNVERIFIED_WARNING} ({report.integrity})")
    if report.device_note:
        say(report.device_note)
    for problem in report.failures:
        say(f"self-test: {problem}")
    print(report.summary(), flush=True)
    return 0 if report.ok else 1

