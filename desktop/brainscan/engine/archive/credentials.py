"""Where an archive's credentials come from: the environment first, then the system keyring.

Credentials are never taken from the command line (they would stay in the shell's history and in
``ps``) and never written into an output or a log. Two sources, in this order:

1. the environment: ``BRAINSCAN_ARCHIVE_TOKEN`` (a bearer token), or ``BRAINSCAN_ARCHIVE_USER`` and
   ``BRAINSCAN_ARCHIVE_PASSWORD`` (HTTP basic); a user without a password looks the password up in
   the keyring;
2. the system keyring (macOS Keychain, Windows Credential Locker, the Secret Service on Linux) through
   the ``keyring`` package, one entry per server *origin* (``scheme://host[:port]``), service name
   ``brainscan archive <origin>``: a bearer token is kept under the user name :data:`TOKEN_USER`, a
   password under its user name. ``brainscan archive-login ROOT`` puts them there.

A machine without a usable keyring (a headless server with no Secret Service) is the same as an
empty keyring: the environment alone counts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from urllib.parse import urlsplit

from brainscan.engine.archive.access import ArchiveError

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "BRAINSCAN_ARCHIVE_TOKEN"
USER_VARIABLE = "BRAINSCAN_ARCHIVE_USER"
PASSWORD_VARIABLE = "BRAINSCAN_ARCHIVE_PASSWORD"
CA_VARIABLE = "BRAINSCAN_ARCHIVE_CA"
TOKEN_USER = "__token__"  # the keyring user name a bearer token is kept under (as twine does for PyPI)
SERVICE_PREFIX = "brainscan archive "
CREDENTIALS_FIX = (f"set {TOKEN_VARIABLE} (a bearer token), or {USER_VARIABLE} and {PASSWORD_VARIABLE}, or keep "
                   "them in the system keyring with 'brainscan archive-login ROOT', for an account the archive "
                   "lets read and store")


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to one server: nothing, a bearer token, or a user and password.

    The secret never shows in ``repr`` (so never in a log line or a traceback's locals).
    """

    scheme: str = "none"  # "none" | "bearer" | "basic"
    user: str = ""
    secret: str = field(default="", repr=False)
    source: str = "none"  # "environment" | "keyring" | "none": said in messages, never the secret

    @property
    def present(self) -> bool:
        return self.scheme != "none"


def origin(root: str) -> str:
    """``scheme://host[:port]`` of an archive's root URL, lower-cased, without user info or path."""
    parts = urlsplit(root.strip())
    host = (parts.hostname or "").lower()
    if not parts.scheme or not host:
        raise ValueError(f"not an http(s) URL: {root!r}")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{host}{port}"


def service_name(root: str) -> str:
    """The keyring service the credentials of the server at ``root`` live under."""
    return SERVICE_PREFIX + origin(root)


def _keyring() -> ModuleType | None:
    try:
        import keyring
    except ImportError:  # an installation without it: the environment alone counts
        return None
    return keyring


def _keyring_errors(backend: ModuleType) -> tuple[type[BaseException], ...]:
    errors = getattr(backend, "errors", None)
    base = getattr(errors, "KeyringError", None)
    return (base, RuntimeError) if isinstance(base, type) else (RuntimeError,)


def from_keyring(root: str, user: str = "", *, backend: ModuleType | None = None) -> Credentials:
    """The keyring's credentials for the server at ``root`` (for ``user`` when given), or none."""
    backend = backend if backend is not None else _keyring()
    if backend is None:
        return Credentials()
    service = service_name(root)
    try:
        if user:
            secret = backend.get_password(service, user)
            return Credentials("basic", user, secret, "keyring") if secret is not None else Credentials()
        token = backend.get_password(service, TOKEN_USER)
        if token:
            return Credentials("bearer", "", token, "keyring")
        found = backend.get_credential(service, None)
    except _keyring_errors(backend) as exc:  # no usable keyring on this machine
        log.debug("no keyring for %s: %s", service, type(exc).__name__)
        return Credentials()
    if found is None or not found.username or found.username == TOKEN_USER:
        return Credentials()
    return Credentials("basic", found.username, found.password or "", "keyring")


def credentials_for(root: str, environ: Mapping[str, str] | None = None, *,
                    backend: ModuleType | None = None) -> Credentials:
    """The credentials for the server at ``root``: the environment's, else the keyring's, else none."""
    environ = os.environ if environ is None else environ
    token = environ.get(TOKEN_VARIABLE, "")
    if token:
        return Credentials("bearer", "", token, "environment")
    user = environ.get(USER_VARIABLE, "")
    if user and PASSWORD_VARIABLE in environ:
        return Credentials("basic", user, environ[PASSWORD_VARIABLE], "environment")
    try:
        return from_keyring(root, user, backend=backend)
    except ValueError:  # not an http(s) root: nothing to look up
        return Credentials()


def save_to_keyring(root: str, credentials: Credentials, *, backend: ModuleType | None = None) -> str:
    """Keep ``credentials`` in the system keyring for the server at ``root``; the service name used.

    Raises
    ------
    ArchiveError
        No keyring is installed or usable on this machine (the fix: the environment variables).
    """
    backend = backend if backend is not None else _keyring()
    service = service_name(root)
    if backend is None:
        raise ArchiveError(origin(root), "the keyring package is not installed",
                           f"pip install keyring, or set {TOKEN_VARIABLE} / {USER_VARIABLE} and {PASSWORD_VARIABLE}")
    user = TOKEN_USER if credentials.scheme == "bearer" else credentials.user
    try:
        backend.set_password(service, user, credentials.secret)
    except _keyring_errors(backend) as exc:
        raise ArchiveError(origin(root), f"the system keyring refused to keep the credentials ({type(exc).__name__})",
                           f"unlock or install a keyring (Secret Service on Linux), or set {TOKEN_VARIABLE} / "
                           f"{USER_VARIABLE} and {PASSWORD_VARIABLE}") from None
    return service


def forget_in_keyring(root: str, user: str = "", *, backend: ModuleType | None = None) -> int:
    """Remove what the keyring keeps for the server at ``root`` (the token, and ``user``'s password); how many."""
    backend = backend if backend is not None else _keyring()
    if backend is None:
        return 0
    service = service_name(root)
    removed = 0
    for name in (TOKEN_USER, user) if user else (TOKEN_USER,):
        try:
            backend.delete_password(service, name)
            removed += 1
        except _keyring_errors(backend):
            pass
    if not user:
        found = from_keyring(root, backend=backend)
        if found.scheme == "basic":
            removed += forget_in_keyring(root, found.user, backend=backend)
    return removed
