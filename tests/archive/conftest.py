"""The archive tests run against a real Orthanc: the fixture lives in ``tests/orthanc_fixture.py`` (shared with the
viewer's tests). Here: a small model to screen with, and the test server's credentials in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from orthanc_fixture import orthanc  # noqa: F401 (the fixture, for every test here)

from tiny_models import build_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx", seed=5)


@pytest.fixture
def credentials(monkeypatch, orthanc):  # noqa: F811 (the fixture imported above)
    for name in ("BRAINSCAN_ARCHIVE_TOKEN", "BRAINSCAN_ARCHIVE_CA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BRAINSCAN_ARCHIVE_USER", orthanc.auth[0])
    monkeypatch.setenv("BRAINSCAN_ARCHIVE_PASSWORD", orthanc.auth[1])
