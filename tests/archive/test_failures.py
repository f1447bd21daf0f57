"""Issue 16's failures against a real Orthanc: a transfer cut off, a failing URL beside good inputs,
Ctrl-C mid-retrieval, URLs in series.csv and the reports, the ``stored`` record kept; bearer tokens."""

from __future__ import annotations

import csv
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests

from brainscan.cli import main
from brainscan.engine.archive import dicomweb
from brainscan.engine.archive.credentials import Credentials
from brainscan.engine.archive.dicomweb import DicomWebArchive, session_for, session_with
from brainscan.engine.run.archive_run import CACHE_DIR


class _Proxy(http.server.ThreadingHTTPServer):
    """Forwards GETs to Orthanc; the first instance retrieval while ``cut`` is set gets half its answer,
    then the connection is closed (a connection dropped mid-transfer)."""

    daemon_threads = True

    def __init__(self, target: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target = target
        self.cut = True
        self.cut_paths: list[str] = []
        self.lock = threading.Lock()


class _Forward(http.server.BaseHTTPRequestHandler):
    server: _Proxy

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")}
        answer = requests.get(self.server.target + self.path, headers=headers, timeout=30)
        body = answer.content
        with self.server.lock:
            cut = self.server.cut and "/instances/" in self.path and not self.server.cut_paths
            if cut:
                self.server.cut_paths.append(self.path)
        self.send_response(answer.status_code)
        for key in ("Content-Type",):
            if key in answer.headers:
                self.send_header(key, answer.headers[key])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def proxy(orthanc) -> Iterator[_Proxy]:
    server = _Proxy(orthanc.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _screen(out: Path, model: Path, *arguments: str) -> int:
    return main(["screen", *arguments, "--out", str(out), "--model", str(model), "--progress", "never"])


def _rows(out: Path, name: str = "results.csv") -> list[dict[str, str]]:
    with open(out / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("brainscan: error")]


def _leftovers(out: Path) -> list[Path]:
    return [p for p in (out / CACHE_DIR).rglob("*") if p.suffix in (".part", ".tmp")]


def test_an_instance_cut_off_mid_transfer_gets_an_error_row_replaced_by_the_next_run(
        orthanc, credentials, model, proxy, tmp_path, capsys):
    root = f"http://127.0.0.1:{proxy.server_address[1]}/dicom-web"
    series_url = f"{root}/studies/{orthanc.study_uid}/series/{orthanc.series_uid}"
    assert _screen(tmp_path, model, series_url) == 1
    stderr = capsys.readouterr().err
    assert len(proxy.cut_paths) == 1
    cut_url = f"http://127.0.0.1:{proxy.server_address[1]}{proxy.cut_paths[0]}"
    assert f"not retrieved: {cut_url}" in stderr and "traceback" not in stderr.lower()
    rows = _rows(tmp_path)
    assert len(rows) == 16
    failed = [row for row in rows if row["status"] == "error"]
    assert [row["path"] for row in failed] == [cut_url]
    assert failed[0]["error"].startswith(root + ": ") and "run the same command again" in failed[0]["error"]
    assert failed[0]["series_uid"] == orthanc.series_uid
    assert len(list((tmp_path / CACHE_DIR).rglob("*.dcm"))) == 15 and not _leftovers(tmp_path)
    assert [row["errors"] for row in _rows(tmp_path, "series.csv")] == ["1"]

    proxy.cut = False
    assert _screen(tmp_path, model, series_url) == 0
    stderr = capsys.readouterr().err
    assert "1 instances retrieved, 15 already in" in stderr
    rows = _rows(tmp_path)
    assert len(rows) == 16 and all(row["status"] == "ok" for row in rows)
    assert cut_url in {row["path"] for row in rows}
    assert [row["errors"] for row in _rows(tmp_path, "series.csv")] == ["0"]
    document = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert document["counts"] == {"ok": 16, "error": 0}


def test_a_failing_url_beside_other_inputs_is_one_line_and_an_error_row(orthanc, credentials, model, tmp_path,
                                                                         capsys):
    unknown = f"{orthanc.dicomweb}/studies/1.2.3.4.5"
    series_url = f"{orthanc.dicomweb}/studies/{orthanc.study_uid}/series/{orthanc.series_uid}"
    out = tmp_path / "mixed"
    assert _screen(out, model, unknown, series_url) == 1
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 1 and "has no study 1.2.3.4.5" in errors[0]
    rows = _rows(out)
    assert len(rows) == 17
    failed = [row for row in rows if row["status"] == "error"]
    assert [row["path"] for row in failed] == [unknown]
    assert "has no study 1.2.3.4.5" in failed[0]["error"] and orthanc.dicomweb in failed[0]["error"]
    # resumed, the URL still fails: its row is not written twice
    assert _screen(out, model, unknown, series_url) == 1
    assert len(_rows(out)) == 17


def test_ctrl_c_during_retrieval_exits_130_with_one_line_and_no_half_written_file(
        orthanc, credentials, model, tmp_path, capsys, monkeypatch):
    calls = []
    cut = dicomweb._cut_single_part

    def interrupted_on_the_third(part: Path, target: Path, content_type: str) -> None:
        calls.append(part)
        if len(calls) == 3:
            assert part.is_file()  # the transfer's temporary file exists: it must not stay
            raise KeyboardInterrupt
        cut(part, target, content_type)

    monkeypatch.setattr(dicomweb, "_cut_single_part", interrupted_on_the_third)
    series_url = f"{orthanc.dicomweb}/studies/{orthanc.study_uid}/series/{orthanc.series_uid}"
    assert _screen(tmp_path, model, series_url) == 130
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and "run the same command again" in lines[0]
    assert len(list((tmp_path / CACHE_DIR).rglob("*.dcm"))) == 2 and not _leftovers(tmp_path)
    assert not (tmp_path / "results.csv").exists()

    monkeypatch.setattr(dicomweb, "_cut_single_part", cut)
    assert _screen(tmp_path, model, series_url) == 0
    assert "14 instances retrieved, 2 already in" in capsys.readouterr().err


def test_series_csv_and_the_reports_name_the_url_not_the_cache(orthanc, credentials, model, tmp_path):
    series_url = f"{orthanc.dicomweb}/studies/{orthanc.study_uid}/series/{orthanc.series_uid}"
    assert _screen(tmp_path, model, series_url, "--report", "html,pdf") == 0
    series = _rows(tmp_path, "series.csv")
    assert series[0]["most_suspicious_path"].startswith(f"{series_url}/instances/")
    document = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert document["series"][0]["most_suspicious_path"] == series[0]["most_suspicious_path"]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert series[0]["most_suspicious_path"] in html
    assert CACHE_DIR not in html
    assert (tmp_path / "report.pdf").stat().st_size > 0


def test_a_later_run_without_store_keeps_what_was_stored(orthanc, credentials, model, tmp_path):
    series_url = f"{orthanc.dicomweb}/studies/{orthanc.study_uid}/series/{orthanc.series_uid}"
    assert _screen(tmp_path, model, series_url, "--report", "dicom", "--store", orthanc.dicomweb) == 0
    stored = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["stored"]
    assert len(stored["stored"]) == 17
    assert _screen(tmp_path, model, series_url, "--report", "dicom") == 0
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["stored"] == stored
    # stored again on the same server: the same findings make the same SR (same UID), so nothing is added
    assert _screen(tmp_path, model, series_url, "--report", "dicom", "--store", orthanc.dicomweb) == 0
    again = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["stored"]
    assert sorted(again["stored"]) == sorted(stored["stored"])
    assert again["failed"] == [] and again["server"] == orthanc.dicomweb
    (report,) = (tmp_path / "dicom").glob("SR-*.dcm")
    sr_series = pydicom.dcmread(report, stop_before_pixels=True).SeriesInstanceUID
    found = requests.get(f"{orthanc.dicomweb}/studies/{orthanc.study_uid}/series/{sr_series}/instances",
                         auth=orthanc.auth, timeout=10).json()
    assert len(found) == 1  # one SR in the archive, however often the folder was stored


def test_a_bearer_token_is_sent_as_an_authorization_header(monkeypatch):
    environ = {"BRAINSCAN_ARCHIVE_TOKEN": "s3cret-token", "BRAINSCAN_ARCHIVE_USER": "ignored",
               "BRAINSCAN_ARCHIVE_PASSWORD": "ignored"}
    session = session_for("https://pacs.example/dicom-web/", environ)
    archive = DicomWebArchive("https://pacs.example/dicom-web/", session=session)
    sent = []

    def send(request, **kwargs):
        sent.append(request)
        response = requests.Response()
        response.status_code, response._content, response.request = 200, b"[]", request
        return response

    monkeypatch.setattr(session, "send", send)
    assert archive.find_studies(PatientID="123") == []
    (request,) = sent
    assert request.headers["Authorization"] == "Bearer s3cret-token"  # the token wins over user and password
    assert request.headers["Accept"] == "application/dicom+json"
    assert request.url == "https://pacs.example/dicom-web/studies?PatientID=123"
    assert session.verify is True and session.trust_env is False
    assert "s3cret-token" not in archive.server

    basic = session_for("https://pacs.example/dicom-web/", {"BRAINSCAN_ARCHIVE_USER": "u", "BRAINSCAN_ARCHIVE_PASSWORD": "p"})
    assert "Authorization" not in basic.headers and basic.auth == ("u", "p")
    assert "Authorization" not in session_with(Credentials()).headers
