"""Real study folders as a user hands them over: odd file names, companions that are not images, the
output folder inside the input, a second run that resumes, and the privacy of every output."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
from pathlib import Path

import pydicom
import pytest

from brainscan.cli import main
from brainscan.engine.input.discovery import SKIPPED_NON_IMAGE_DICOM, SKIPPED_NOT_IMAGES, find_inputs
from brainscan.engine.results import store
from brainscan.engine.results.cells import path_from_text, path_text
from brainscan.engine.results.store import RESULTS_CSV
from tiny_models import build_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def sagittal(shared_data_dir: Path) -> Path:
    folder = shared_data_dir / "dicom" / "sagittal-t1-brain"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not on this machine")
    return folder


def screen(model: Path, *args: str | Path) -> int:
    return main(["screen", "--model", str(model), "--progress", "never", *map(str, args)])


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def physical_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# -- file names --------------------------------------------------------------------------------------
def odd_named_copies(folder: Path, source: Path) -> list[Path]:
    folder.mkdir()
    names = [os.fsdecode(b"bad\xffname.jpg"), "new\nline.jpg", "carriage\rreturn.jpg", "50%.jpg", "tab\there.jpg"]
    copies = [folder / name for name in names]
    for target in copies:
        shutil.copy(source, target)
    return copies


def test_paths_with_bytes_that_are_not_utf8_or_control_characters_are_written_and_resumed(
    model, real_jpgs, tmp_path, capsys
):
    copies = odd_named_copies(tmp_path / "in", real_jpgs[0])
    out = tmp_path / "out"
    assert screen(model, tmp_path / "in", "--out", out) == 0
    rows = csv_rows(out / RESULTS_CSV)
    assert sorted(path_from_text(r["path"]) for r in rows) == sorted(copies)
    assert len(physical_lines(out / RESULTS_CSV)) == 1 + len(copies)  # one line per row, whatever the name
    assert {r["path"].rsplit("/", 1)[1] for r in rows} >= {"bad%FFname.jpg", "new%0Aline.jpg", "50%25.jpg"}
    document = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert sorted(r["path"] for r in document["results"]) == sorted(r["path"] for r in rows)
    capsys.readouterr()
    assert screen(model, tmp_path / "in", "--out", out) == 0  # the resume recognises every one of them
    assert f"{len(copies)} of {len(copies)} frames already done" in capsys.readouterr().err
    assert len(csv_rows(out / RESULTS_CSV)) == len(copies)


@pytest.mark.parametrize("path", ["plain/slice 1.jpg", os.fsdecode(b"\xff\xfe/x.jpg"), "a%2Fb\n\r\t%", "日本/脳.png"])
def test_path_text_is_reversible(path):
    text = path_text(path)
    assert "\n" not in text and "\r" not in text
    text.encode("utf-8")  # always writable
    assert path_from_text(text) == Path(path)


def test_cells_a_spreadsheet_would_run_are_neutralised_in_csv_and_exact_in_json(
    model, real_jpgs, tmp_path, monkeypatch, sagittal
):
    monkeypatch.chdir(tmp_path)
    names = ["=HYPERLINK(1).jpg", "+1.jpg", "-2.jpg", "@SUM(A1).jpg", "'=quoted.jpg"]
    for name in names:
        shutil.copy(real_jpgs[1], tmp_path / name)
    (tmp_path / "=broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    shutil.copytree(sagittal, tmp_path / "=series")
    assert screen(model, "--out", "out", "--", *names, "=broken.jpg", "=series") == 1
    rows = csv_rows(tmp_path / "out" / RESULTS_CSV)
    for row in rows:
        for column in ("path", "error"):
            assert not row[column].startswith(("=", "+", "-", "@")), row[column]
    by_json = {r["path"] for r in json.loads((tmp_path / "out" / "results.json").read_text())["results"]}
    assert set(names) | {"=broken.jpg"} <= by_json
    error = next(r["error"] for r in json.loads((tmp_path / "out" / "results.json").read_text())["results"]
                 if r["path"] == "=broken.jpg")
    assert error.startswith("=broken.jpg")
    with open(tmp_path / "out" / "series.csv", newline="", encoding="utf-8") as handle:
        (series,) = list(csv.DictReader(handle))
    assert series["most_suspicious_path"].startswith("'=series/")


def test_a_half_written_row_whose_path_held_a_newline_is_dropped_and_the_run_resumes(model, real_jpgs, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for index in range(3):
        shutil.copy(real_jpgs[index], source / f"s{index}.jpg")
    out = tmp_path / "out"
    assert screen(model, source, "--out", out) == 0
    text = (out / RESULTS_CSV).read_text(encoding="utf-8")
    header, first, *rest = text.splitlines(keepends=True)
    # an older version wrote raw newlines in quoted paths; a kill left this row half-written mid-file
    damaged = header + first + '"' + str(source / "s1") + '\nhalf.jpg",0,o' + "\n" + "".join(rest)
    (out / RESULTS_CSV).write_text(damaged, encoding="utf-8")
    for _ in range(2):  # and every later retry works too
        assert screen(model, source, "--out", out) == 0
        rows = csv_rows(out / RESULTS_CSV)
        assert sorted(Path(r["path"]).name for r in rows) == ["s0.jpg", "s1.jpg", "s2.jpg"]


# -- what is screened ----------------------------------------------------------------------------------
def test_the_output_folder_inside_the_screened_folder_is_never_screened(model, real_jpgs, tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    for index in range(4):
        shutil.copy(real_jpgs[index], study / f"slice{index}.jpg")
    out = study / "brainscan-out"
    arguments = [study, "--out", out, "--save-overlays", "--report", "html,pdf"]
    assert screen(model, *arguments) == 0
    capsys.readouterr()
    assert screen(model, *arguments) == 0  # not 1: nothing of its own output became an error row
    assert "4 of 4 frames already done" in capsys.readouterr().err
    assert sorted(Path(r["path"]).name for r in csv_rows(out / RESULTS_CSV)) == [f"slice{i}.jpg" for i in range(4)]


def test_text_files_in_a_study_folder_are_skipped_and_counted_not_classified(model, real_jpgs, tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    shutil.copy(real_jpgs[0], study / "slice.jpg")
    shutil.copy(real_jpgs[1], study / "extensionless")  # a picture without a picture name is still screened
    (study / "LICENSE").write_text("MIT License\n")
    (study / "README.md").write_text("# a study\n")
    (study / "notes.txt").write_text("scanned on a Tuesday\n")
    (study / "empty.png").write_bytes(b"")  # named like a picture: an error row
    assert screen(model, study, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "3 files skipped: not images (LICENSE, README.md, notes.txt)" in err
    rows = csv_rows(tmp_path / "out" / RESULTS_CSV)
    assert {Path(r["path"]).name: r["status"] for r in rows} == {
        "slice.jpg": "ok", "extensionless": "ok", "empty.png": "error"}


def test_a_folder_of_text_only_says_no_images_found(model, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("nothing to see")
    assert screen(model, tmp_path / "docs", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "no images found" in err and "1 file skipped: not images (notes.txt)" in err
    assert "cannot be read" not in err


def test_a_text_file_named_on_the_command_line_still_gets_its_error_row(model, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    assert screen(model, notes, "--out", tmp_path / "out") == 1
    (row,) = csv_rows(tmp_path / "out" / RESULTS_CSV)
    assert row["status"] == "error" and "notes.txt" in row["error"]


def test_the_same_files_given_relative_and_absolute_are_screened_once(model, real_jpgs, tmp_path, monkeypatch, capsys):
    study = tmp_path / "study"
    study.mkdir()
    for index in range(5):
        shutil.copy(real_jpgs[index], study / f"s{index}.jpg")
    monkeypatch.chdir(tmp_path)
    assert screen(model, "study", str(study), "--out", "out") == 0
    assert len(csv_rows(tmp_path / "out" / RESULTS_CSV)) == 5
    monkeypatch.chdir(study)  # another working folder, another spelling: still the same five files
    capsys.readouterr()
    assert screen(model, str(study), "--out", tmp_path / "out", "--report", "html") == 0
    assert "5 of 5 frames already done" in capsys.readouterr().err
    assert len(csv_rows(tmp_path / "out" / RESULTS_CSV)) == 5
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "5 frames: 5 classified" in html


# -- resume makes every requested output --------------------------------------------------------------
def test_resume_makes_the_outputs_a_killed_run_left_missing(model, sagittal, tmp_path, capsys):
    out = tmp_path / "out"
    arguments = [sagittal, "--out", out, "--save-overlays", "--report", "pdf,dicom"]
    assert screen(model, *arguments) == 0
    captures = sorted((out / "dicom").glob("SC-*.dcm"))
    overlays = sorted((out / "overlays").glob("*.png"))
    thumbnails = sorted((out / "thumbnails").glob("*.png"))
    assert len(captures) == len(overlays) == len(thumbnails) == 16
    for lost in (captures[3], overlays[7], thumbnails[11]):  # killed between the row and its files
        lost.unlink()
    capsys.readouterr()
    assert screen(model, *arguments) == 0
    err = capsys.readouterr().err
    assert "16 of 16 frames already done; 3 of them lack an output" in err
    assert "16 secondary captures" in err
    assert sorted((out / "dicom").glob("SC-*.dcm")) == captures
    assert sorted((out / "overlays").glob("*.png")) == overlays
    assert sorted((out / "thumbnails").glob("*.png")) == thumbnails
    assert len(csv_rows(out / RESULTS_CSV)) == 16


# -- privacy -------------------------------------------------------------------------------------------
def test_deidentify_maps_every_uid_of_every_output_the_same_way(model, sagittal, tmp_path):
    from pypdf import PdfReader

    study = tmp_path / "study"  # the shared files are named by their SOP UIDs: paths are written as given
    study.mkdir()
    for number, source in enumerate(sorted(sagittal.iterdir())):
        shutil.copy(source, study / f"slice{number:02d}.dcm")
    out = tmp_path / "out"
    assert screen(model, study, "--out", out, "--report", "pdf,html,dicom", "--deidentify") == 0
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(study.iterdir())]
    originals = {str(ds.SeriesInstanceUID) for ds in sources} | {str(ds.SOPInstanceUID) for ds in sources}
    originals |= {str(ds.StudyInstanceUID) for ds in sources}
    texts = {name: (out / name).read_text(encoding="utf-8") for name in (RESULTS_CSV, "results.json", "series.csv",
                                                                          "report.html")}
    texts["report.pdf"] = "".join(page.extract_text() for page in PdfReader(out / "report.pdf").pages)
    for name, text in texts.items():
        leaked = [uid for uid in originals if uid in text.replace("\n", "")]
        assert not leaked, f"{name} shows original UIDs: {leaked[:2]}"
    (mapped,) = {r["series_uid"] for r in csv_rows(out / RESULTS_CSV)}
    (report,) = (pydicom.dcmread(p) for p in (out / "dicom").glob("SR-*.dcm"))
    evidence = {s.SeriesInstanceUID for item in report.CurrentRequestedProcedureEvidenceSequence
                for s in item.ReferencedSeriesSequence}
    assert evidence == {mapped}  # the series the SR cites is the one results.csv names


def test_deidentify_and_keep_identifiers_together_are_refused(model, real_jpgs, tmp_path, capsys):
    assert screen(model, real_jpgs[0], "--out", tmp_path / "out", "--deidentify", "--keep-identifiers") == 2
    assert "contradict" in capsys.readouterr().err


def test_a_folder_screened_without_deidentify_refuses_a_deidentified_resume(model, real_jpgs, tmp_path, capsys):
    assert screen(model, real_jpgs[0], "--out", tmp_path / "out") == 0
    capsys.readouterr()
    assert screen(model, real_jpgs[0], "--out", tmp_path / "out", "--deidentify") == 2
    assert "written without --deidentify" in capsys.readouterr().err


# -- a full disk ----------------------------------------------------------------------------------------
def test_a_full_disk_while_writing_results_names_the_file_and_keeps_the_rows(
    model, real_jpgs, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    calls = {"n": 0}
    original = store.ResultsStore._write

    def fill_up(self, action):
        calls["n"] += 1
        if calls["n"] == 3:  # the header and the first row went through
            raise_error = OSError(errno.ENOSPC, "No space left on device")
            try:
                raise raise_error
            except OSError as exc:
                raise store.OutputError(store.write_failure(self.csv_path, exc)) from exc
        return original(self, action)

    monkeypatch.setattr(store.ResultsStore, "_write", fill_up)
    assert screen(model, *real_jpgs[:4], "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(str(out / RESULTS_CSV) in line and "disk is full" in line for line in err), err
    assert not any("Traceback" in line for line in err)
    assert len(csv_rows(out / RESULTS_CSV)) == 1


# -- pydicom's own corpus -------------------------------------------------------------------------------
def test_pydicoms_test_corpus_screens_without_a_traceback_skipping_objects_without_images(model, tmp_path, capsys):
    corpus = Path(pydicom.__file__).parent / "data" / "test_files"
    found = find_inputs([corpus])
    skipped = found.skipped.get(SKIPPED_NON_IMAGE_DICOM, [])
    assert skipped, "the corpus holds structured reports, RT plans and an ECG"
    for path in skipped:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        assert "Rows" not in ds, path
    out = tmp_path / "out"
    status = screen(model, corpus, "--out", out, "--report", "dicom")
    err = capsys.readouterr().err
    assert status in (0, 1) and "Traceback" not in err
    assert f"skipped: {SKIPPED_NON_IMAGE_DICOM}" in err
    rows = csv_rows(out / RESULTS_CSV)
    named = {path_from_text(r["path"]) for r in rows}
    assert not named & set(skipped)
    assert not named & set(found.skipped.get(SKIPPED_NOT_IMAGES, []))
    assert sum(r["status"] == "ok" for r in rows) >= 60  # many of its pictures are icons under 32 px
    for row in rows:
        assert row["status"] == "ok" or Path(row["path"]).name in row["error"], row
    assert "broadcast" not in err  # every classified frame got its Secondary Capture, whatever its size


def test_a_run_without_heat_maps_does_not_screen_again_for_overlays_it_never_makes(model, real_jpgs, tmp_path, capsys):
    arguments = [*real_jpgs[:3], "--out", tmp_path / "out", "--save-overlays", "--cam", "none"]
    assert screen(model, *arguments) == 0
    capsys.readouterr()
    assert screen(model, *arguments) == 0
    err = capsys.readouterr().err
    assert "3 of 3 frames already done" in err and "lack an output" not in err


def test_a_long_discovery_shows_a_running_count_of_files(model, real_jpgs, tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    for index in range(30):
        shutil.copy(real_jpgs[index % len(real_jpgs)], study / f"s{index:02d}.jpg")
    assert main(["screen", "--model", str(model), "--progress", "always", str(study), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"finding files: 30 files", err), err[-500:]


def test_a_full_disk_while_writing_an_overlay_names_the_overlay_file(model, real_jpgs, tmp_path, monkeypatch, capsys):
    from brainscan.engine.run import folder_run

    def no_space(path, rgb):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder_run, "write_png", no_space)
    assert screen(model, real_jpgs[0], "--out", tmp_path / "out", "--save-overlays") == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert str(tmp_path / "out" / "overlays") in line and "disk is full" in line
    assert len(csv_rows(tmp_path / "out" / RESULTS_CSV)) == 1  # the row written before is kept
