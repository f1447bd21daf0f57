"""Archive credentials from the system keyring: the lookup order, a machine without a keyring, and a real
Orthanc reached with credentials that live only in the keyring (``brainscan archive-login``)."""

from __future__ import annotations

import csv

import keyring
import pytest
from keyring.errors import NoKeyringError
from memory_keyring import kept_in_memory

from brainscan.cli import main
from brainscan.engine.archive.credentials import (
    TOKEN_USER,
    Credentials,
    credentials_for,
    forget_in_keyring,
    origin,
    save_to_keyring,
    service_name,
)
from brainscan.engine.archive.dicomweb import session_for

ROOT = "https://pacs.example.org:8443/dicom-web"


class NoKeyring:
    """The ``keyring`` module on a headless machine: every call raises NoKeyringError."""

    errors = keyring.errors

    def get_password(self, *_):
        raise NoKeyringError("no backend")

    get_credential = set_password = delete_password = get_password


@pytest.fixture
def memory_keyring():
    with kept_in_memory() as kept:
        yield kept


@pytest.fixture
def no_environment(monkeypatch):
    for name in ("BRAINSCAN_ARCHIVE_TOKEN", "BRAINSCAN_ARCHIVE_USER", "BRAINSCAN_ARCHIVE_PASSWORD",
                 "BRAINSCAN_ARCHIVE_CA"):
        monkeypatch.delenv(name, raising=False)


def test_one_keyring_entry_per_server_origin_whatever_the_path_or_user_info():
    assert origin("HTTPS://Pacs.Example.org:8443/dicom-web/studies/1.2") == "https://pacs.example.org:8443"
    assert origin("http://alice:secret@pacs/dicom-web") == "http://pacs"  # user info never in the name
    assert service_name(ROOT) == "brainscan archive https://pacs.example.org:8443"
    with pytest.raises(ValueError):
        origin("pacs/dicom-web")


def test_the_environment_wins_then_the_keyring_then_nothing(memory_keyring):
    assert credentials_for(ROOT, {}) == Credentials()
    save_to_keyring(ROOT, Credentials("basic", "alice", "from-keyring"))
    assert credentials_for(ROOT, {}) == Credentials("basic", "alice", "from-keyring", "keyring")
    # a user named in the environment without a password: that user's password from the keyring
    assert credentials_for(ROOT, {"BRAINSCAN_ARCHIVE_USER": "alice"}).secret == "from-keyring"
    assert credentials_for(ROOT, {"BRAINSCAN_ARCHIVE_USER": "bob"}) == Credentials()
    environment = {"BRAINSCAN_ARCHIVE_USER": "carol", "BRAINSCAN_ARCHIVE_PASSWORD": "from-env"}
    assert credentials_for(ROOT, environment) == Credentials("basic", "carol", "from-env", "environment")
    # a token in the keyring wins over a kept password; the environment's token over both
    save_to_keyring(ROOT, Credentials("bearer", "", "kept-token"))
    assert memory_keyring.entries[(service_name(ROOT), TOKEN_USER)] == "kept-token"
    assert credentials_for(ROOT, {}) == Credentials("bearer", "", "kept-token", "keyring")
    assert credentials_for(ROOT, {"BRAINSCAN_ARCHIVE_TOKEN": "env-token"}).secret == "env-token"
    # another server shares nothing
    assert credentials_for("https://other.example.org/dicom-web", {}) == Credentials()
    assert forget_in_keyring(ROOT) == 2
    assert credentials_for(ROOT, {}) == Credentials() and memory_keyring.entries == {}


def test_a_session_sends_what_the_keyring_keeps_and_never_shows_the_secret(memory_keyring):
    save_to_keyring(ROOT, Credentials("bearer", "", "s3cret"))
    session = session_for(ROOT, {})
    assert session.headers["Authorization"] == "Bearer s3cret" and session.verify is True
    assert "s3cret" not in repr(credentials_for(ROOT, {}))


def test_a_machine_without_a_keyring_uses_the_environment_alone():
    assert credentials_for(ROOT, {}, backend=NoKeyring()) == Credentials()
    environment = {"BRAINSCAN_ARCHIVE_TOKEN": "t"}
    assert credentials_for(ROOT, environment, backend=NoKeyring()).scheme == "bearer"
    with pytest.raises(Exception, match="keyring refused.*BRAINSCAN_ARCHIVE_TOKEN"):
        save_to_keyring(ROOT, Credentials("basic", "a", "b"), backend=NoKeyring())


def test_archive_login_keeps_credentials_a_screen_of_a_real_orthanc_then_uses(
        orthanc, model, memory_keyring, no_environment, tmp_path, monkeypatch, capsys):
    study_url = f"{orthanc.dicomweb}/studies/{orthanc.study_uid}"
    screen = ["screen", study_url, "--model", str(model), "--progress", "never"]
    assert main([*screen, "--out", str(tmp_path / "refused")]) == 2  # nothing kept yet: 401, one line
    assert "brainscan archive-login" in capsys.readouterr().err

    monkeypatch.setattr("getpass.getpass", lambda prompt: orthanc.auth[1])
    assert main(["archive-login", orthanc.dicomweb, "--user", orthanc.auth[0]]) == 0
    said = capsys.readouterr().err
    assert "kept in the system keyring" in said and orthanc.auth[1] not in said
    assert main([*screen, "--out", str(tmp_path / "run")]) == 0
    with open(tmp_path / "run" / "results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and all(row["status"] == "ok" for row in rows)
    written = "".join(path.read_text(encoding="utf-8", errors="replace")
                      for path in (tmp_path / "run").glob("results.*"))
    assert orthanc.auth[1] not in written

    assert main(["archive-logout", orthanc.dicomweb]) == 0
    assert "1 keyring entry removed" in capsys.readouterr().err
    assert main([*screen, "--out", str(tmp_path / "after")]) == 2


def test_archive_login_refuses_an_empty_secret_and_a_root_that_is_not_a_url(memory_keyring, monkeypatch, capsys):
    monkeypatch.setattr("getpass.getpass", lambda prompt: "")
    assert main(["archive-login", ROOT, "--token"]) == 2
    assert memory_keyring.entries == {}
    assert main(["archive-login", "pacs/dicom-web", "--token"]) == 2
    assert "not a DICOMweb root" in capsys.readouterr().err
