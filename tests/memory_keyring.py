"""A keyring kept in a dict, put in place of the system keyring for a test: what the macOS Keychain, the
Windows Credential Locker or the Secret Service do, without touching the machine's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keyring
from keyring.backend import KeyringBackend
from keyring.credentials import SimpleCredential
from keyring.errors import PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    """A keyring kept in a dict: what the system keyring does, without touching the machine's."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def delete_password(self, service, username):
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(username)

    def get_credential(self, service, username):
        for (kept_service, user), password in self.entries.items():
            if kept_service == service and (username is None or user == username):
                return SimpleCredential(user, password)
        return None


@contextlib.contextmanager
def kept_in_memory() -> Iterator[MemoryKeyring]:
    """The ``keyring`` module answers from a fresh :class:`MemoryKeyring` inside the block."""
    previous = keyring.get_keyring()
    kept = MemoryKeyring()
    keyring.set_keyring(kept)
    try:
        yield kept
    finally:
        keyring.set_keyring(previous)
