"""Decoding ahead of the model on a thread pool, bounded in bytes (:class:`DecodeBudget`), in input order.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from brainscan.engine.input import raster_headers
from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.input.loading import load_frame

log = logging.getLogger(__name__)

# Memory held by frames decoded ahead of the model, and by one inference batch: a bound in bytes, not in
# frames, so a run of 40-megapixel pictures keeps one or two in memory where a run of small slices keeps
# ``ahead`` and ``batch_size`` of them.
DECODE_AHEAD_BYTES = 128 << 20
def _load(ref: FrameRef) -> Frame | BaseException:
    try:
        return load_frame(ref)
    except Exception as exc:  # every file gets a result: the batch goes on
        return exc


def frame_bytes(item: Frame | BaseException | None) -> int:
    """The memory a decoded frame holds (its picture and values); 0 for a failure."""
    if not isinstance(item, Frame):
        return 0
    return item.picture.nbytes + (item.values.nbytes if item.values is not None else 0)


class DecodeBudget:
    """The memory decoded frames hold, in bytes, from their decoding until screening lets go of them.

    A frame is *waiting* (decoded, not yet taken from :func:`decode_ahead`), *kept* (taken, in an
    inference batch) or *in use* (being classified, explained and written by the consumer). Frames start
    decoding in order, each when everything held, the frames decoding and itself stay within ``limit``,
    a frame's size being estimated from its header where that is cheap (raster files) and otherwise
    taken as the largest of the last few decoded (the whole limit before any). The frame the consumer
    is waiting for always starts: a frame larger than the limit goes through, alone.
    """

    RECENT = 8

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting = 0
        self.kept = 0
        self.in_use = 0
        self._running: dict[int, int] = {}  # sequence number -> estimated bytes, of the frames decoding
        self._recent: deque[int] = deque(maxlen=self.RECENT)
        self._awaited = -1  # the sequence number the consumer is blocked on, -1 when none
        self._started = 0  # the sequence number to start next
        self._closed = False
        self._changed = threading.Condition()

    @property
    def held(self) -> int:
        return self.waiting + self.kept + self.in_use

    def _guess(self) -> int:
        return max(self._recent) if self._recent else self.limit

    def _may_start(self, number: int, estimate: int) -> bool:
        if self._closed:
            return True
        if number != self._started:
            return False
        return number == self._awaited or self.held + sum(self._running.values()) + estimate <= self.limit

    def start(self, number: int, estimate: int | None = None) -> bool:
        """Wait until frame ``number`` may be decoded; False when screening has stopped."""
        with self._changed:
            self._changed.wait_for(lambda: self._may_start(number, self._guess() if estimate is None else estimate))
            if self._closed:
                return False
            self._running[number] = self._guess() if estimate is None else estimate
            self._started += 1
            self._changed.notify_all()
            return True

    def decoded(self, number: int, nbytes: int) -> None:
        with self._changed:
            self._running.pop(number, None)
            self.waiting += nbytes
            self._recent.append(nbytes)
            self._changed.notify_all()

    def awaiting(self, number: int) -> None:
        """The consumer blocks on frame ``number`` (-1: it no longer does)."""
        with self._changed:
            self._awaited = number
            self._changed.notify_all()

    def taken(self, nbytes: int) -> None:
        with self._changed:
            self.waiting -= nbytes
            self.kept += nbytes

    def use(self, nbytes: int) -> None:
        with self._changed:
            self.kept -= nbytes
            self.in_use += nbytes

    def let_go(self, nbytes: int) -> None:
        with self._changed:
            self.in_use -= nbytes
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


def estimated_bytes(ref: FrameRef) -> int | None:
    """What a frame will hold once decoded, from its header where that is cheap (raster), else None."""
    if ref.kind != "raster":
        return None
    try:
        return raster_headers.estimated_picture_bytes(ref.path)
    except Exception:  # an unreadable file fails quickly when decoded; no estimate needed
        return None


def _load_within(budget: DecodeBudget, number: int, ref: FrameRef) -> Frame | BaseException | None:
    """Decode frame ``number`` once the budget allows; None when screening stopped first."""
    if not budget.start(number, estimated_bytes(ref)):
        return None
    item: Frame | BaseException | None = None
    try:
        item = _load(ref)
        return item
    finally:
        budget.decoded(number, frame_bytes(item))


def decode_ahead(
    refs: Iterable[FrameRef],
    workers: int = 2,
    ahead: int = 16,
    budget: DecodeBudget | None = None,
) -> Iterator[tuple[FrameRef, Frame | BaseException]]:
    """Decode frames on a thread pool, yielding them in order.

    At most ``ahead`` frames are queued, and the bytes of decoded frames are bounded by ``budget``
    (:class:`DecodeBudget`; by default :data:`DECODE_AHEAD_BYTES`, each frame let go once yielded).
    A caller that passes its own budget moves each frame it takes to ``use`` and ``let_go`` itself.
    """
    own = budget is None
    budget = DecodeBudget(DECODE_AHEAD_BYTES) if budget is None else budget
    iterator = iter(refs)
    numbers = itertools.count()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="brainscan-decode") as pool:
        pending: deque[tuple[int, FrameRef, Future]] = deque()

        def submit(ref: FrameRef) -> None:
            number = next(numbers)
            pending.append((number, ref, pool.submit(_load_within, budget, number, ref)))

        for ref in itertools.islice(iterator, ahead):
            submit(ref)
        try:
            while pending:
                number, ref, future = pending.popleft()
                following = next(iterator, None)
                if following is not None:
                    submit(following)
                budget.awaiting(number)
                try:
                    item = future.result()
                finally:
                    budget.awaiting(-1)
                nbytes = frame_bytes(item)
                budget.taken(nbytes)
                if own:
                    budget.use(nbytes)
                    budget.let_go(nbytes)
                yield ref, item
                del item
        finally:
            budget.close()  # decode threads waiting for room give up; the pool's exit waits for the rest
            for _, _, future in pending:
                future.cancel()


