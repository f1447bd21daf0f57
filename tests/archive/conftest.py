"""The archive tests run against a real Orthanc: the fixture lives in ``tests/orthanc_fixture.py`` (shared with the viewer's tests)."""

from __future__ import annotations

from orthanc_fixture import orthanc  # noqa: F401 (the fixture, for every test here)
