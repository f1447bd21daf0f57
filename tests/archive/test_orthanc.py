"""`brainscan screen URL` against a real Orthanc: WADO-RS retrieval, resume, STOW-RS back, and the refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import requests

from brainscan.cli import main
from brainscan.engine.archive.dicomweb import _cut_single_part
from brainscan.engine.run.archive_run import CACHE_DIR


def _screen(out: Path, model: Path, *arguments: str) -> int:
    return main(["screen", *arguments, "--out", str(out), "--model", str(model), "--progress", "never"])


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("brainscan: error")]


def test_a_study_url_is_retrieved_screened_and_resumed_without_fetching_again(orthanc, credentials, model, tmp_path,
                                                                              capsys):
    study_url = f"{orthanc.dicomweb}/studies/{orthanc.study_uid}"
    assert _screen(tmp_path, model, study_url) == 0
    rows = _rows(tmp_path)
    assert len(rows) == len(orthanc.files) == 16
    assert all(row["status"] == "ok" for row in rows)
    series_url = f"{study_url}/series/{orthanc.series_uid}/instances/"
    assert all(row["path"].startswith(series_url) for row in rows)
    assert [row["series_index"] for row in rows] == [str(i) for i in range(16)]
    document = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert {item["path"] for item in document["results"]} == {row["path"] for row in rows}
    cached = sorted((tmp_path / CACHE_DIR / orthanc.study_uid / orthanc.series_uid).glob("*.dcm"))
    assert len(cached) == 16
    assert {f"{series_url}{path.stem}" for path in cached} == {row["path"] for row in rows}
    assert "16 instances retrieved" in capsys.readouterr().err

    stamps = {path: path.stat().st_mtime_ns for path in cached}
    assert _screen(tmp_path, model, study_url) == 0
    stderr = capsys.readouterr().err
    assert "0 instances retrieved, 16 already in" in stderr
    assert "16 of 16 frames already done" in stderr
    assert {path: path.stat().st_mtime_ns for path in cached} == stamps
    assert len(_rows(tmp_path)) == 16


def test_outputs_stored_back_are_found_by_qido(orthanc, credentials, model, tmp_path):
    series_url = f"{orthanc.dicomweb}/studies/{orthanc.study_uid}/series/{orthanc.series_uid}"
    assert _screen(tmp_path, model, series_url, "--report", "dicom", "--store", orthanc.dicomweb) == 0
    stored = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["stored"]
    assert stored["server"] == orthanc.dicomweb
    assert stored["failed"] == []
    assert len(stored["stored"]) == 17  # 16 Secondary Captures and one SR
    series = requests.get(f"{orthanc.dicomweb}/studies/{orthanc.study_uid}/series", auth=orthanc.auth,
                          headers={"Accept": "application/dicom+json"}, timeout=10).json()
    found: dict[str, set[str]] = {}
    for item in series:
        modality = item["00080060"]["Value"][0]
        uid = item["0020000E"]["Value"][0]
        instances = requests.get(f"{orthanc.dicomweb}/studies/{orthanc.study_uid}/series/{uid}/instances",
                                 auth=orthanc.auth, timeout=10).json()
        found.setdefault(modality, set()).update(i["00080018"]["Value"][0] for i in instances)
    assert len(found["SR"]) == 1
    assert len(found["OT"]) == 16  # brainscan's Secondary Captures
    assert found["SR"] | found["OT"] == set(stored["stored"])

    # the study now holds brainscan's own outputs: screening the study again leaves them out
    again = tmp_path / "again"
    assert _screen(again, model, f"{orthanc.dicomweb}/studies/{orthanc.study_uid}") == 0
    assert len(_rows(again)) == 16


def test_an_unreachable_archive_is_one_line_and_exit_2(model, tmp_path, capsys, orthanc):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert _screen(tmp_path, model, f"http://127.0.0.1:{port}/dicom-web/studies/1.2.3") == 2
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 1
    assert f"http://127.0.0.1:{port}/dicom-web" in errors[0] and "cannot be reached" in errors[0]


def test_wrong_credentials_name_401_and_the_fix_without_the_password(orthanc, model, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BRAINSCAN_ARCHIVE_TOKEN", raising=False)
    monkeypatch.setenv("BRAINSCAN_ARCHIVE_USER", orthanc.auth[0])
    monkeypatch.setenv("BRAINSCAN_ARCHIVE_PASSWORD", "not-the-password")
    assert _screen(tmp_path, model, f"{orthanc.dicomweb}/studies/{orthanc.study_uid}") == 2
    stderr = capsys.readouterr().err
    errors = _errors(stderr)
    assert len(errors) == 1
    assert "401" in errors[0] and "BRAINSCAN_ARCHIVE_USER" in errors[0] and orthanc.dicomweb in errors[0]
    assert "not-the-password" not in stderr


def test_an_unknown_study_says_so(orthanc, credentials, model, tmp_path, capsys):
    assert _screen(tmp_path, model, f"{orthanc.dicomweb}/studies/1.2.3.4.5") == 2
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 1 and "has no study 1.2.3.4.5" in errors[0]


def test_store_needs_the_dicom_report(orthanc, credentials, model, tmp_path, capsys):
    series_url = f"{orthanc.dicomweb}/studies/{orthanc.study_uid}/series/{orthanc.series_uid}"
    assert _screen(tmp_path, model, series_url, "--store", orthanc.dicomweb) == 2
    assert "--report dicom" in _errors(capsys.readouterr().err)[0]


def test_a_retrieval_cut_short_is_refused_and_leaves_no_file(tmp_path):
    part = tmp_path / "x.dcm.part"
    part.write_bytes(b"--b1\r\nContent-Type: application/dicom\r\n\r\nDICM-half-of-a-file")
    with pytest.raises(ValueError, match="cut short"):
        _cut_single_part(part, tmp_path / "x.dcm", 'multipart/related; type="application/dicom"; boundary=b1')
    assert not (tmp_path / "x.dcm").exists()
    part.write_bytes(b"--b1\r\nContent-Type: application/dicom\r\n\r\nDICM-whole\r\n--b1--\r\n")
    _cut_single_part(part, tmp_path / "x.dcm", 'multipart/related; type="application/dicom"; boundary=b1')
    assert (tmp_path / "x.dcm").read_bytes() == b"DICM-whole"
