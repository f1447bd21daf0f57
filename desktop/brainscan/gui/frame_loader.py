"""Finding and decoding frames in the background, the one on screen first.

:meth:`FrameLoader.discover` runs :func:`brainscan.engine.loading.discover` on a worker thread.
One long-lived worker then decodes frames from a priority queue: the frame asked for on screen
jumps ahead of the background prefetch (which fills the browser's thumbnails), so the first slice
of a 192-slice series shows without waiting for the other 191.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from brainscan.engine.input.discovery import Discovery, find_inputs
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.input.loading import load_frame
from brainscan.engine.results.record import describe_failure
from brainscan.engine.viewer.state import FrameKey, frame_key, thumbnail
from brainscan.gui.workers import GeneratorWorker, WorkerPool

log = logging.getLogger(__name__)

URGENT, BACKGROUND = 0, 1
THUMBNAIL_SIDE = 96


def _discover_job(paths: Sequence[str]) -> Iterator[object]:
    missing = [p for p in paths if not Path(p).exists()]
    present = [p for p in paths if Path(p).exists()]
    errors = [f"{p}: does not exist (check the path and that the drive is connected)" for p in missing]
    found = find_inputs(present) if present else Discovery()
    yield (found.refs, errors, found.notes())


class FrameLoader(QObject):
    """Discovery and decoding off the GUI thread.

    Signals
    -------
    discovered(refs, errors):
        The frames found under the paths given to :meth:`discover`, and messages for paths that
        could not be opened.
    frameLoaded(key, frame, thumbnail):
        A decoded :class:`~brainscan.engine.loading.Frame` and its small picture.
    frameFailed(key, message):
        The file cannot be shown; the message names it and says what to do.
    """

    discovered = Signal(object, object)
    frameLoaded = Signal(object, object, object)
    frameFailed = Signal(object, str)

    def __init__(self, pool: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = pool
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._sequence = itertools.count()
        self._served: dict[FrameKey, int] = {}
        self._served_lock = threading.Lock()
        self._pending: dict[FrameKey, int] = {}  # key -> best priority queued (GUI thread only)
        self._worker: GeneratorWorker | None = None
        self._running = threading.Event()  # cleared: background decoding waits (urgent requests do not)
        self._running.set()
        self.discovering = 0
        self.skipped_notes: list[str] = []  # what the last discovery left out ("2 files skipped: not images")

    # -- discovery -------------------------------------------------------------------------------
    def discover(self, paths: Sequence[str]) -> GeneratorWorker:
        worker = GeneratorWorker(lambda: _discover_job(list(paths)), name="discover")
        worker.signals.yielded.connect(self._on_discovered)
        worker.signals.errored.connect(self._on_discovery_error)
        worker.signals.finished.connect(self._on_discovery_finished)
        self.discovering += 1
        return self._pool.start(worker, priority=1)

    def _on_discovered(self, item: object) -> None:
        refs, errors, self.skipped_notes = item  # type: ignore[misc]
        self.discovered.emit(refs, errors)

    def _on_discovery_error(self, message: str) -> None:
        self.discovered.emit([], [message])

    def _on_discovery_finished(self, _cancelled: bool) -> None:
        self.discovering -= 1

    # -- decoding ----------------------------------------------------------------------------------
    def request(self, ref: FrameRef, urgent: bool = False) -> None:
        """Queue ``ref`` for decoding; an urgent request overtakes the background ones."""
        key = frame_key(ref.path, ref.frame)
        priority = URGENT if urgent else BACKGROUND
        if self._pending.get(key, BACKGROUND + 1) <= priority:
            return
        self._pending[key] = priority
        self._queue.put((priority, next(self._sequence), ref))
        self._ensure_worker()

    def prefetch(self, refs: Sequence[FrameRef]) -> None:
        for ref in refs:
            self.request(ref, urgent=False)

    def is_pending(self, key: FrameKey) -> bool:
        return key in self._pending

    def set_paused(self, paused: bool) -> None:
        """Hold the background prefetch (e.g. while a batch decodes the same files); urgent requests go on."""
        if paused:
            self._running.clear()
        else:
            self._running.set()

    def provided(self, key: FrameKey) -> None:
        """``key`` was decoded elsewhere (by a batch): drop its queued request."""
        if self._pending.pop(key, None) is not None:
            with self._served_lock:
                self._served[key] = next(self._sequence)

    def cancel_pending(self) -> None:
        """Drop every queued request (the frame being decoded still arrives)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._pending.clear()

    def shutdown(self) -> None:
        self.cancel_pending()
        if self._worker is not None:
            self._worker.quit()

    def _ensure_worker(self) -> None:
        if self._worker is not None and not self._worker.done:
            return
        worker = GeneratorWorker(self._decode_loop, name="frame-loader", on_quit=self._wake)
        worker.signals.yielded.connect(self._on_decoded)
        self._worker = worker
        self._pool.start(worker, priority=2)

    def _wake(self) -> None:
        self._queue.put((-1, -1, None))

    def _decode_loop(self) -> Iterator[object]:
        while True:
            priority, ticket, ref = self._queue.get()
            if ref is None:
                return
            if priority == BACKGROUND and not self._running.is_set():
                self._queue.put((priority, ticket, ref))  # keep its place; look for urgent work
                self._running.wait(0.05)
                continue
            key = frame_key(ref.path, ref.frame)
            with self._served_lock:
                if self._served.get(key, -1) > ticket:
                    continue
                self._served[key] = ticket
            try:
                frame = load_frame(ref)
            except Exception as exc:  # every file gets an answer; the loop goes on
                yield (key, None, describe_failure(ref, exc))
                continue
            yield (key, frame, thumbnail(frame.picture, THUMBNAIL_SIDE))

    def _on_decoded(self, item: object) -> None:
        key, frame, extra = item  # type: ignore[misc]
        self._pending.pop(key, None)
        if frame is None:
            self.frameFailed.emit(key, str(extra))
        else:
            self.frameLoaded.emit(key, frame, extra)
