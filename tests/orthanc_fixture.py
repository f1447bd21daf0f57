"""A real Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb``) on a free loopback port, for the archive tests
(``tests/archive``) and the viewer's archive dialog (``tests/gui``): their conftest files import :func:`orthanc`.

Started once per module with a temporary configuration and storage folder, HTTP basic authentication
on (one user, :data:`USER` / :data:`PASSWORD`), DIMSE off; the shared sagittal series is uploaded through
its REST API; stopped by its process id at the end. Where Orthanc is not installed the tests skip
(``.ci/system-packages.sh`` installs it, so CI runs them; with ``CI=true`` a missing Orthanc fails).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

USER, PASSWORD = "brainscan", "archive-test-password"
PLUGIN_PLACES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so")


@dataclass(frozen=True)
class Orthanc:
    url: str  # http://127.0.0.1:PORT
    dicomweb: str  # the DICOMweb root: http://127.0.0.1:PORT/dicom-web
    study_uid: str
    series_uid: str
    files: tuple[Path, ...]
    auth: tuple[str, str] = (USER, PASSWORD)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the archive tests (.ci/system-packages.sh installs orthanc)")
    pytest.skip(f"{reason} (apt-get install -y orthanc orthanc-dicomweb)")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, sagittal_series_dir: Path) -> Iterator[Orthanc]:
    binary = shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc",) if os.path.exists(p)), None)
    plugin = next((p for p in PLUGIN_PLACES if os.path.exists(p)), None)
    if binary is None:
        _unavailable("Orthanc is not installed")
    if plugin is None:
        _unavailable("Orthanc's DICOMweb plugin is not installed")
    folder = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    config = {
        "Name": "brainscan-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": port, "DicomServerEnabled": False, "DicomPort": _free_port(),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 (held while Orthanc runs)
    process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                               cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"Orthanc stopped at start (exit {process.returncode}); see {folder / 'orthanc.log'}")
            try:
                if requests.get(f"{url}/system", auth=(USER, PASSWORD), timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not answer on {url} within 30 s; see {folder / 'orthanc.log'}")
            time.sleep(0.1)
        files = tuple(sorted(sagittal_series_dir.glob("*.dcm")))
        answer: dict = {}
        for path in files:
            response = requests.post(f"{url}/instances", data=path.read_bytes(), auth=(USER, PASSWORD), timeout=30)
            response.raise_for_status()
            answer = response.json()
        tags = requests.get(f"{url}/instances/{answer['ID']}/simplified-tags", auth=(USER, PASSWORD), timeout=10).json()
        yield Orthanc(url, f"{url}/dicom-web", tags["StudyInstanceUID"], tags["SeriesInstanceUID"], files)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
