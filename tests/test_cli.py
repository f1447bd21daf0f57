"""`brainscan screen` end to end on real images, broken files and DICOM, with a tiny model."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from brainscan.cli import main
from tiny_models import build_tiny_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KAGGLE = SHARED / "brain-tumor-mri" / "Training"


def _real_images(count: int) -> list[Path]:
    files = sorted((KAGGLE / "glioma").glob("*.jpg"))[:count // 2] + sorted((KAGGLE / "notumor").glob("*.jpg"))[: count - count // 2]
    assert len(files) == count, f"expected the Kaggle training images under {KAGGLE}"
    return files


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    folder = tmp_path / "study"
    (folder / "nested").mkdir(parents=True)
    for source in _real_images(4):
        shutil.copy(source, folder / source.name)
    png = folder / "nested" / "really-a-png.jpg"  # PNG data behind a .jpg name
    import cv2

    cv2.imwrite(str(png.with_suffix(".png")), cv2.imread(str(_real_images(2)[0])))
    png.with_suffix(".png").rename(png)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image at all")
    good = _real_images(2)[1].read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    return folder


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_file_gets_a_row_and_bad_ones_a_clear_error(mixed_folder, model, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["screen", str(mixed_folder), "--out", str(out), "--model", str(model), "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 1
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert len(rows) == 8
    for name in ("really-a-png.jpg", *[p.name for p in _real_images(4)]):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["label"] in ("glioma", "meningioma", "notumor", "pituitary")
        probabilities = [float(rows[name][f"p_{c}"]) for c in ("glioma", "meningioma", "notumor", "pituitary")]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert rows[name]["cam_method"] == "gradcam" and rows[name]["cam_peak_row"] != ""
    for name in ("empty.jpg", "notes.png", "truncated.jpg"):
        assert rows[name]["status"] == "error"
        assert name in rows[name]["error"]
    assert "Traceback" not in captured.err
    document = json.loads((out / "results.json").read_text())
    assert document["counts"] == {"ok": 5, "error": 3}
    assert document["run"]["device"]["used"] == "cpu"
    assert len(document["results"]) == 8


def test_all_good_files_exit_zero_and_overlays_are_written(model, tmp_path):
    images = _real_images(3)
    out = tmp_path / "out"
    status = main(["screen", *map(str, images), "--out", str(out), "--model", str(model), "--save-overlays",
                   "--cam", "layercam"])
    assert status == 0
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 3
    import cv2

    first = cv2.imread(str(overlays[0]))
    assert first.shape[1] == 224 and first.shape[0] > 224  # the picture plus its caption strip


def test_rerun_with_the_same_out_resumes_without_repeating(model, tmp_path, capsys):
    images = _real_images(6)
    out = tmp_path / "out"
    assert main(["screen", *map(str, images[:4]), "--out", str(out), "--model", str(model)]) == 0
    # a run killed mid-write leaves a partial last line
    with open(out / "results.csv", "a", encoding="utf-8") as handle:
        handle.write(f"{images[4]},0,ok,gli")
    capsys.readouterr()
    assert main(["screen", *map(str, images), "--out", str(out), "--model", str(model)]) == 0
    assert "4 of 6 frames already done" in capsys.readouterr().err
    paths = [r["path"] for r in _rows(out)]
    assert sorted(paths) == sorted(str(p) for p in images)


def test_out_folder_of_another_model_is_refused(model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("path,frame,status,label,p_yes\n")
    assert main(["screen", str(_real_images(2)[0]), "--out", str(out), "--model", str(model)]) == 2
    assert "use a new --out folder" in capsys.readouterr().err


def _exit_status(arguments: list[str]) -> int:
    try:
        return main(arguments)
    except SystemExit as exc:  # argparse refuses bad arguments by exiting
        return int(exc.code)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model", "{tmp}/missing.onnx"], "model file not found"),
        (["--device", "tpu"], "invalid choice"),
        (["--opacity", "3"], "--opacity must lie in [0, 1]"),
        (["--cam", "scorecam"], "invalid choice"),
    ],
)
def test_nothing_can_run_exits_two_with_one_line(arguments, message, tmp_path, capsys, model):
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    if "--model" not in arguments:
        arguments += ["--model", str(model)]
    status = _exit_status(["screen", str(_real_images(2)[0]), "--out", str(tmp_path / "o"), *arguments])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_input_path_exits_two(model, tmp_path, capsys):
    assert main(["screen", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--model", str(model)]) == 2
    assert "nowhere" in capsys.readouterr().err


def _dicom_with_patient(path: Path, picture: np.ndarray) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "MR"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "PID-98765", "19700101"
    ds.Rows, ds.Columns = picture.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (picture.astype(np.uint16) * 16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_patient_identifiers_stay_out_unless_asked_for(model, tmp_path):
    import cv2

    picture = cv2.imread(str(_real_images(2)[0]), cv2.IMREAD_GRAYSCALE)
    dicom = tmp_path / "in" / "slice.dcm"
    dicom.parent.mkdir()
    _dicom_with_patient(dicom, picture)
    assert pydicom.dcmread(dicom).PatientName == "Doe^Jane"
    private, keep = tmp_path / "private", tmp_path / "keep"
    assert main(["screen", str(dicom), "--out", str(private), "--model", str(model), "--save-overlays"]) == 0
    for output in private.rglob("*"):
        if output.is_file() and output.suffix in (".csv", ".json"):
            text = output.read_text()
            assert "Doe" not in text and "PID-98765" not in text and "19700101" not in text, output
    assert main(["screen", str(dicom), "--out", str(keep), "--model", str(model), "--keep-identifiers"]) == 0
    row = _rows(keep)[0]
    assert row["patient_id"] == "PID-98765" and "Doe" in row["patient_name"]


def test_killed_run_resumes_losing_and_repeating_nothing(model, tmp_path):
    images = _real_images(40)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "brainscan.cli", "screen", *map(str, images), "--out", str(out),
               "--model", str(model), "--batch-size", "1", "--progress", "never"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "results.csv").exists() and len(_rows(out)) >= 5:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(_rows(out))
    assert done_before >= 5, "the first rows should be on disk before the kill"
    finished = subprocess.run(command, stderr=subprocess.PIPE, text=True, env={**os.environ}, timeout=120)
    assert finished.returncode == 0, finished.stderr
    paths = [r["path"] for r in _rows(out)]
    assert sorted(paths) == sorted(str(p) for p in images)


# -- messages: usage hints, progress bar, help ---------------------------------------------------
@pytest.mark.parametrize(
    "arguments, hint",
    [
        (["screen", "--bad"], "(see brainscan screen --help)"),
        (["screen", "x.jpg", "--out", "o", "--bad"], "(see brainscan screen --help)"),
        (["model", "--bad"], "(see brainscan model --help)"),
        (["--bad"], "(see brainscan --help)"),
        ([], "(see brainscan --help)"),
    ],
)
def test_a_usage_error_points_to_the_help_of_the_command_it_belongs_to(arguments, hint, capsys):
    assert _exit_status(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainscan: error: ") and err.rstrip().endswith(hint), err
    assert "brainscan brainscan" not in err and len(err.strip().splitlines()) == 1


def test_the_progress_bar_counts_errors_as_a_plain_integer(model, tmp_path, capsys, monkeypatch):
    from brainscan.engine.run.folder_run import FolderRun

    monkeypatch.setattr(FolderRun, "counts", property(lambda self: {"ok": 1, "error": 20000}))
    status = main(["screen", str(_real_images(2)[0]), "--out", str(tmp_path / "out"), "--model", str(model),
                   "--progress", "always"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "errors=20000" in err and "2e+4" not in err


def test_help_says_the_dicom_objects_keep_patient_name_and_id_unless_deidentify(capsys):
    assert _exit_status(["screen", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    start = text.index("--keep-identifiers also write")
    keep = text[start:text.index("--report FORMATS", start)]
    assert "results.csv, results.json and the PDF and HTML reports (left out by default)" in keep
    assert "DICOM objects of --report dicom keep the patient name, ID and birth date" in keep
    assert "with or without this option" in keep and "unless --deidentify" in keep
    start = text.index("--deidentify de-identify")
    deidentify = text[start:text.index("--progress", start)]
    for claim in ("pseudonymous patient name and ID", "CSV, JSON, PDF and HTML", "file paths stay as given"):
        assert claim in deidentify
