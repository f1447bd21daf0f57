"""A guard against a reference-counting bug of ``SignalInstance.emit`` in PySide6 6.12.0.

In PySide6 6.12.0 on CPython before 3.12, every ``signal.emit(...)`` returns ``True`` without
taking a reference to it, so each emit lowers the reference count of ``True`` by one. After a few
hundred emits (pyqtgraph alone emits on every mouse move) the count reaches zero and the
interpreter aborts with "Fatal Python error: bool_dealloc: deallocating True or False".

:func:`protect_bools` measures the leak once with a throw-away signal and, only when it is there,
gives ``True`` and ``False`` a reference count so large that no session can exhaust it; this is
what CPython 3.12 does for them anyway (they are immortal there). Remove this module once the
project requires a PySide6 without the bug.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_RESERVE = 1 << 48
_applied = False


def emit_leaks_true() -> bool:
    """Whether ``Signal.emit`` lowers the reference count of ``True`` (PySide6 6.12.0)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(8):
        probe.ping.emit()
    return sys.getrefcount(True) < before


def protect_bools() -> bool:
    """Apply the guard when the bug is present (idempotent); returns whether it is in place."""
    global _applied
    if _applied:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False  # True and False are immortal there
    if not emit_leaks_true():
        return False
    for value in (True, False):  # ob_refcnt is the first field of every CPython object
        ctypes.c_ssize_t.from_address(id(value)).value += _RESERVE
    import PySide6

    log.info("PySide6 %s: Signal.emit leaks references to True; guarded", PySide6.__version__)
    _applied = True
    return True
