"""The viewer's archive: *Open from archive* (search, series, retrieve in the background, cancel, errors) and *Send
report to archive*, driven with pytest-qt against the real Orthanc of ``tests/orthanc_fixture.py``."""

from __future__ import annotations

import json
import threading

import pytest

pytest.importorskip("PySide6")

import pydicom
import requests
from orthanc_fixture import _free_port, orthanc  # noqa: F401 (the fixture)
from PySide6.QtCore import Qt

from brainscan.engine.archive.dicomweb import DicomWebArchive, session_for
from brainscan.gui.presenters.archive_presenter import CACHE_KEY, SERVER_KEY
from brainscan.gui.report_dialog import ReportRequest

pytestmark = pytest.mark.gui


@pytest.fixture
def credentials(monkeypatch, orthanc):  # noqa: F811
    for name in ("BRAINSCAN_ARCHIVE_TOKEN", "BRAINSCAN_ARCHIVE_CA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BRAINSCAN_ARCHIVE_USER", orthanc.auth[0])
    monkeypatch.setenv("BRAINSCAN_ARCHIVE_PASSWORD", orthanc.auth[1])


@pytest.fixture
def archive_window(window, tmp_path):
    window.settings.qsettings.setValue(CACHE_KEY, str(tmp_path / "cache"))
    return window


def _search(qtbot, presenter, server: str, **fields: str) -> str:
    dialog = presenter.show_dialog()
    dialog.server.setText(server)
    for name, text in fields.items():
        getattr(dialog, name).clear()
        qtbot.keyClicks(getattr(dialog, name), text)
    with qtbot.waitSignal(presenter.searched, timeout=30_000) as blocker:
        qtbot.mouseClick(dialog.search, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def _choose_study(qtbot, presenter, study_uid: str) -> None:
    row = next(i for i, study in enumerate(presenter.studies) if study.study_uid == study_uid)
    with qtbot.waitSignal(presenter.searched, timeout=30_000) as blocker:
        presenter.dialog.studies.selectRow(row)
    assert blocker.args == [""]


def test_search_by_patient_name_lists_the_study_and_its_series_then_open_shows_16_slices(
        qtbot, archive_window, orthanc, credentials, tmp_path):  # noqa: F811
    window, presenter = archive_window, archive_window.archive
    assert window.actions_.file_menu.actions().count(presenter.actions.open_archive) == 1
    assert "Ctrl+Shift+A" in presenter.actions.open_archive.toolTip()
    name = str(pydicom.dcmread(orthanc.files[0], stop_before_pixels=True).PatientName)
    assert _search(qtbot, presenter, orthanc.dicomweb + "/", patient_name=name[:4]) == ""
    dialog = presenter.dialog
    assert dialog.error.text() == ""
    assert orthanc.study_uid in {study.study_uid for study in presenter.studies}
    assert window.settings.qsettings.value(SERVER_KEY) == orthanc.dicomweb  # remembered, without the slash
    _choose_study(qtbot, presenter, orthanc.study_uid)
    row = dialog.selected_study_row()
    assert dialog.studies.item(row, 0).text() == name
    assert (dialog.studies.item(row, 5).text(), dialog.studies.item(row, 6).text()) == ("1", "16")
    assert dialog.series.rowCount() == 1 and dialog.series.item(0, 3).text() == "16"
    assert dialog.open.isEnabled()

    dialog.series.selectRow(0)
    with qtbot.waitSignal(presenter.retrieved, timeout=60_000) as blocker:
        qtbot.mouseClick(dialog.open, Qt.MouseButton.LeftButton)
    folders, error = blocker.args
    assert error == ""
    series_folder = tmp_path / "cache" / orthanc.study_uid / orthanc.series_uid
    assert folders == [series_folder]
    assert len(list(series_folder.glob("*.dcm"))) == 16
    qtbot.waitUntil(lambda: len(window.controller.session) == 16, timeout=30_000)
    assert window.browser.browser_model.item(0).rowCount() == 16
    assert not dialog.isVisible()  # opened: the dialog steps aside
    assert not presenter.running


def test_cancel_mid_retrieval_leaves_no_partial_file_and_the_viewer_usable(
        qtbot, archive_window, orthanc, credentials, tmp_path):  # noqa: F811
    window, presenter = archive_window, archive_window.archive
    gate, fetched = threading.Event(), []

    class Gated(DicomWebArchive):  # holds the third instance until the test has asked to cancel
        def _fetch(self, instance, target):
            why = super()._fetch(instance, target)
            fetched.append(target)
            if len(fetched) == 3:
                gate.wait(30)
            return why

    presenter.make_archive = lambda server: Gated(server, session_for(server))
    assert _search(qtbot, presenter, orthanc.dicomweb, patient_id="") == ""
    _choose_study(qtbot, presenter, orthanc.study_uid)
    dialog = presenter.dialog
    qtbot.mouseClick(dialog.open, Qt.MouseButton.LeftButton)  # no series selected: the whole study
    qtbot.waitUntil(lambda: len(fetched) == 3, timeout=30_000)
    assert dialog.cancel.isEnabled() and window.actions_.cancel is not None
    with qtbot.waitSignal(presenter.retrieved, timeout=30_000) as blocker:
        qtbot.mouseClick(dialog.cancel, Qt.MouseButton.LeftButton)
        gate.set()
    assert blocker.args == [[], ""]
    cache = tmp_path / "cache"
    assert sorted(path.name for path in cache.rglob("*") if path.is_file()) == sorted(path.name for path in fetched)
    assert not list(cache.rglob("*.part")) and not list(cache.rglob("*.tmp"))
    assert len(window.controller.session) == 0 and window.browser.browser_model.rowCount() == 0
    assert not presenter.running and not dialog.cancel.isEnabled() and dialog.search.isEnabled()

    # usable: the same Open now fetches the 13 missing instances and shows the series
    with qtbot.waitSignal(presenter.retrieved, timeout=60_000) as blocker:
        qtbot.mouseClick(dialog.open, Qt.MouseButton.LeftButton)
    assert blocker.args[1] == "" and len(fetched) == 16
    assert dialog.info.text().startswith("13 instances retrieved, 3 already in")
    qtbot.waitUntil(lambda: len(window.controller.session) == 16, timeout=30_000)


def test_an_unreachable_server_and_missing_credentials_are_one_line_naming_the_server_and_the_fix(
        qtbot, archive_window, orthanc, monkeypatch):  # noqa: F811
    presenter = archive_window.archive
    nowhere = f"http://127.0.0.1:{_free_port()}/dicom-web"
    error = _search(qtbot, presenter, nowhere)
    assert error.startswith(f"{nowhere}: cannot be reached") and "check the URL" in error
    assert presenter.dialog.error.text() == error and "\n" not in error
    assert presenter.studies == [] and presenter.dialog.studies.rowCount() == 0

    for name in ("BRAINSCAN_ARCHIVE_TOKEN", "BRAINSCAN_ARCHIVE_USER", "BRAINSCAN_ARCHIVE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    error = _search(qtbot, presenter, orthanc.dicomweb)
    assert error.startswith(f"{orthanc.dicomweb}: refused access (HTTP 401") and "BRAINSCAN_ARCHIVE_USER" in error
    assert presenter.dialog.error.text() == error

    error = _search(qtbot, presenter, orthanc.dicomweb, date_from="last week")
    assert "YYYY-MM-DD" in error and presenter.dialog.error.text() == error
    assert not presenter.running


def test_send_report_to_archive_stores_the_dicom_outputs(
        qtbot, archive_window, orthanc, credentials, gui_data, tmp_path):  # noqa: F811
    window, presenter = archive_window, archive_window.archive
    send = presenter.actions.send_report
    assert not send.isEnabled()
    with qtbot.waitSignal(window.controller.frameShown, timeout=10_000):
        window.opening.open_paths([str(gui_data.series.folder)])
    qtbot.waitUntil(lambda: len(window.controller.session) == 16, timeout=10_000)
    folder = tmp_path / "report"
    refs = tuple(window.reports.scopes()["all"])
    with qtbot.waitSignal(window.reports.finished, timeout=60_000):
        assert window.reports.write(ReportRequest("all", refs, ("dicom",), folder))
    assert presenter.report_folder == folder and send.isEnabled()
    files = sorted((folder / "dicom").glob("*.dcm"))
    assert len(files) == 17  # 16 Secondary Captures and one SR

    window.settings.qsettings.setValue(SERVER_KEY, orthanc.dicomweb)
    with qtbot.waitSignal(presenter.stored, timeout=60_000) as blocker:
        assert presenter.send_report(folder)
    outcome, error = blocker.args
    assert error == "" and outcome.failed == [] and len(outcome.stored) == 17
    assert window.status.current_message() == f"17 DICOM objects stored on {orthanc.dicomweb}"
    assert json.loads((folder / "results.json").read_text(encoding="utf-8"))["stored"]["stored"] == outcome.stored

    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    found = requests.get(f"{orthanc.dicomweb}/studies/{study}/series", auth=orthanc.auth, timeout=10,
                         params={"includefield": "00201209"}, headers={"Accept": "application/dicom+json"}).json()
    sops = set()
    for item in found:
        series = item["0020000E"]["Value"][0]
        instances = requests.get(f"{orthanc.dicomweb}/studies/{study}/series/{series}/instances", auth=orthanc.auth,
                                 timeout=10, headers={"Accept": "application/dicom+json"}).json()
        sops |= {instance["00080018"]["Value"][0] for instance in instances}
    assert set(outcome.stored) <= sops
    assert send.isEnabled() and not presenter.running


def test_sign_in_keeps_credentials_in_the_keyring_and_the_search_then_uses_them(
        qtbot, archive_window, orthanc, monkeypatch):  # noqa: F811
    from memory_keyring import kept_in_memory

    for name in ("BRAINSCAN_ARCHIVE_TOKEN", "BRAINSCAN_ARCHIVE_USER", "BRAINSCAN_ARCHIVE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    presenter = archive_window.archive
    with kept_in_memory() as kept:
        assert "401" in _search(qtbot, presenter, orthanc.dicomweb)  # nothing kept yet: refused, said in the dialog
        dialog = presenter.dialog
        assert "archive-login" in dialog.error.text()
        asking = presenter.sign_in()
        assert asking is not None and asking.isVisible() and asking.secret.echoMode() == asking.secret.EchoMode.Password
        qtbot.keyClicks(asking.user, orthanc.auth[0])
        qtbot.keyClicks(asking.secret, orthanc.auth[1])
        qtbot.mouseClick(asking.buttons.button(asking.buttons.StandardButton.Ok), Qt.MouseButton.LeftButton)
        assert list(kept.entries.values()) == [orthanc.auth[1]]
        assert orthanc.auth[1] not in json.dumps({key: str(archive_window.settings.qsettings.value(key))
                                                  for key in archive_window.settings.qsettings.allKeys()})
        assert _search(qtbot, presenter, orthanc.dicomweb) == ""
        assert orthanc.study_uid in {study.study_uid for study in presenter.studies}
