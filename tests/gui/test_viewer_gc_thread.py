"""Cycles are collected in the GUI thread while the viewer's workers run (brainscan.gui.gui_thread_gc).

A worker that allocates a lot would otherwise be the thread that runs Python's cycle collector, and it would
destroy Qt objects of the GUI thread caught in cycles: undefined behaviour in Qt (deadlocks and aborts seen).
"""

from __future__ import annotations

import gc
import threading
from typing import ClassVar

import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui


class _Cycle:
    """An object in a reference cycle that records which thread finalised it."""

    finalised_in: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        _Cycle.finalised_in.append(threading.current_thread().name)


def _allocate_cycles(count: int):
    for _ in range(count):
        a, b = [], []
        a.append(b)
        b.append(a)
    yield "done"


def test_a_worker_pool_moves_cycle_collection_to_the_gui_thread(qtbot):
    from brainscan.gui.workers import GeneratorWorker, WorkerPool

    pool = WorkerPool(max_threads=1)
    assert not gc.isenabled(), "with worker threads about, the interpreter must not collect on its own"
    _Cycle.finalised_in.clear()
    _Cycle()  # unreachable at once: only a cycle collection can finalise it

    worker = GeneratorWorker(lambda: _allocate_cycles(200_000), name="allocates")
    with qtbot.waitSignal(worker.signals.finished, timeout=30_000):
        pool.start(worker)
    qtbot.waitUntil(lambda: bool(_Cycle.finalised_in), timeout=5_000)  # the GUI thread's timer collects it
    assert _Cycle.finalised_in == [threading.main_thread().name]
    assert pool.wait_all()


def test_giving_collection_back_re_enables_the_interpreters_collector(qtbot):
    from brainscan.gui.gui_thread_gc import restore_automatic_gc
    from brainscan.gui.workers import WorkerPool

    WorkerPool(max_threads=1)
    assert not gc.isenabled()
    restore_automatic_gc()
    assert gc.isenabled()
