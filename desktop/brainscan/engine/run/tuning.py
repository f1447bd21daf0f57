"""How screening runs the network on this machine: how many batches at once (lanes) and how many frames each.

On a CPU a small network runs best as several single-threaded runs side by side (one *lane* per core) at
batch 1 or 2: larger batches fall out of the CPU's caches, and no onnxruntime thread spins waiting for work
while decoding, the heat maps and writing need the core. What is fastest depends on the machine and on what
else runs there, so it is measured, not assumed: the first run of a model on a machine tries a few plans on
its own first frames (:class:`PlanTuner`: real work, nothing classified twice), keeps the fastest for the
rest of the run and remembers it in the user's cache folder (``inference-plans.json`` beside the weights
cache, :func:`brainscan.engine.model.integrity.cache_dir`: never the output folder), keyed by the machine,
onnxruntime's version and the model file's SHA-256. Later runs start at once with the remembered plan,
unless it uses fewer lanes than there are cores: that wins only while other work holds cores, so it is
measured again. A plan changes no result beyond float noise (each frame's numbers do not depend on its batch
neighbours; ``tests/test_screening_plans.py``).

Measured on the 2-core test machine (model 0.4.0, 224 px, the network alone, ms per frame): one thread at
batch 1 12.8 (CPU time), at batch 2 14.7, at batch 4 15.9-16.3; with the cores free two lanes 7.6 and one run
on two threads 7.5 (wall); with other work on the CPU two lanes 13.5-15.5 and one run on two threads 34-55.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.integrity import cache_dir

PLANS_FILE = "inference-plans.json"
PLANS_KEPT = 32
MAX_LANES = 8  # more runs side by side buy little on a CPU and each holds its own working memory
BATCH_CHOICES = (1, 2, 4)
GPU_BATCH = 4  # on CUDA one lane; batches keep the device busy
TRIAL_FRAMES = 8  # frames per lane timed for each plan tried (at batch 1: about 0.1 s on 2 cores)
# A plan that uses every lane is kept unless another is faster by more than this share: fewer lanes only win
# while other work takes cores (on the test machine under a load of 3: 1 lane 59, 2 lanes 57 frames/s), and
# that passes, while with the cores free every lane is about twice as fast as one.
ALL_LANES_BONUS = 0.15
# Batches waiting for a lane beyond those running: a lane that finishes starts the next at once instead of idling
# while the heat maps and rows of earlier frames are made (400 JPGs, 2 lanes: 3.55 against 3.86 s at best).
QUEUED = 1


@dataclass(frozen=True)
class InferencePlan:
    """``lanes`` batches of ``batch_size`` frames classified at once."""

    lanes: int
    batch_size: int

    def describe(self) -> str:
        return f"{self.lanes} lane{'s' if self.lanes != 1 else ''} x batch {self.batch_size}"


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def session_threads(requested: int | None, device: str) -> int | None:
    """onnxruntime's intra-op threads for screening: ``requested``, else 1 where it will run on the CPU (the
    lanes share the cores), None (its own choice) where CUDA may take it."""
    if requested is not None:
        return requested
    if device == "cpu":
        return 1
    import onnxruntime

    return None if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else 1


def max_lanes(classifier: Classifier) -> int:
    """How many runs side by side may help: one per ``threads``-sized share of the cores (1 on CUDA, or when
    onnxruntime's own threads already take every core)."""
    if classifier.device.used == "cuda" or not classifier.threads:
        return 1
    return max(1, min(MAX_LANES, available_cores() // classifier.threads))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plan_key(classifier: Classifier) -> str:
    """The table's key: machine (CPU, cores), device, threads per lane, onnxruntime and the model's bytes."""
    import onnxruntime

    return "|".join((
        _cpu_name(), f"{available_cores()} cores", classifier.device.used, f"threads {classifier.threads}",
        f"onnxruntime {onnxruntime.__version__}", classifier.sha256,
    ))


def _read_plans() -> dict[str, dict]:
    try:
        entries = json.loads((cache_dir() / PLANS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}


def remembered_plan(key: str, lanes_limit: int) -> InferencePlan | None:
    """The plan measured fastest before under ``key``, if it is still allowed (a damaged entry: None)."""
    entry = _read_plans().get(key)
    if entry is None:
        return None
    lanes, batch = entry.get("lanes"), entry.get("batch_size")
    if not (isinstance(lanes, int) and isinstance(batch, int)) or isinstance(lanes, bool) or isinstance(batch, bool):
        return None
    if not (1 <= lanes <= lanes_limit and batch in BATCH_CHOICES):
        return None
    return InferencePlan(lanes, batch)


def remember_plan(key: str, plan: InferencePlan, rates: dict[InferencePlan, float]) -> None:
    """Keep ``plan`` (and what each plan tried measured, frames per second) for ``key``; a read-only cache
    folder only means measuring again next time."""
    entries = _read_plans()
    entries.pop(key, None)
    entries[key] = {"lanes": plan.lanes, "batch_size": plan.batch_size,
                    "measured": {p.describe(): round(rate, 1) for p, rate in rates.items()},
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{PLANS_FILE}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(dict(list(entries.items())[-PLANS_KEPT:]), indent=1), encoding="utf-8")
        os.replace(temporary, folder / PLANS_FILE)
    except OSError:
        pass


def lane_choices(limit: int) -> list[int]:
    """The lane counts tried, most first: every core, half of them, one."""
    return sorted({limit, max(1, limit // 2), 1}, reverse=True)


class PlanTuner:
    """Chooses the plan while screening runs, by timing its first frames under each plan tried.

    The loop asks :attr:`plan` and :meth:`may_submit` before it starts a batch, and reports each batch
    started (:meth:`submitted`) and finished (:meth:`finished`). While plans are tried, each trial runs
    :data:`TRIAL_FRAMES` frames per lane, then drains (no batch of the next trial starts before the last
    one of this trial is done), so each is timed alone; the first batch of a run only warms up and is not
    timed. Lanes are tried at batch 1 (every core, half, one), then the best lanes at batch 2, and at 4
    if 2 was faster. Once every trial ran, the fastest plan (:meth:`best`: every lane preferred unless
    another plan is faster by more than :data:`ALL_LANES_BONUS`) is kept for the rest of the run and
    remembered under ``key`` (None: not remembered). A run shorter than the trials keeps what it ran.

    Parameters
    ----------
    fixed:
        A plan to keep from the start, trying nothing (a remembered one, or the caller's choice).
    lanes:
        Lanes chosen by the caller: only the batch size is tried.
    """

    def __init__(self, lanes_limit: int, *, fixed: InferencePlan | None = None, key: str | None = None,
                 lanes: int | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.lanes_limit = max(1, lanes_limit if lanes is None else lanes)
        self.key = key
        self.clock = clock
        self.rates: dict[InferencePlan, float] = {}
        self.tuning = fixed is None
        tried = lane_choices(self.lanes_limit) if lanes is None else [self.lanes_limit]
        self._queue = [InferencePlan(count, 1) for count in tried]
        self.plan = fixed if fixed is not None else self._queue[0]
        self._warming = self.tuning  # the first batch: not timed
        self._started_frames = 0
        self._done_frames = 0
        self._in_flight = 0
        self._began = 0.0

    @property
    def largest(self) -> InferencePlan:
        """The largest plan this tuner may run (its lanes and batch size bound the threads and frames held)."""
        if not self.tuning:
            return self.plan
        return InferencePlan(self.lanes_limit, max(BATCH_CHOICES))

    def _quota(self) -> int:
        return self.plan.batch_size if self._warming else TRIAL_FRAMES * self.plan.lanes

    def may_submit(self, in_flight: int) -> bool:
        """Whether another batch may start now, with ``in_flight`` batches running or waiting for a lane
        (:data:`QUEUED` more than there are lanes)."""
        if in_flight >= self.plan.lanes + QUEUED:
            return False
        return not self.tuning or self._started_frames < self._quota()

    def submitted(self, frames: int) -> None:
        if self.tuning and self._started_frames == 0:
            self._began = self.clock()
        self._started_frames += frames
        self._in_flight += 1

    def finished(self, frames: int) -> None:
        """A batch of ``frames`` is classified; ends the trial when it was its last."""
        self._in_flight -= 1
        if not self.tuning:
            return
        self._done_frames += frames
        if self._in_flight or self._started_frames < self._quota():
            return
        if self._warming:
            self._warming = False
        else:
            seconds = max(self.clock() - self._began, 1e-9)
            self.rates[self.plan] = self._done_frames / seconds
            self._queue.pop(0)
            self._next_trials()
        self._started_frames = self._done_frames = 0
        if self._queue:
            self.plan = self._queue[0]
        else:
            self.tuning = False
            self.plan = self.best()
            if self.key is not None:
                remember_plan(self.key, self.plan, self.rates)

    def best(self) -> InferencePlan:
        """The fastest plan tried, every lane counting :data:`ALL_LANES_BONUS` faster than it measured."""
        return max(self.rates, key=lambda plan: self.rates[plan] * (
            1.0 + ALL_LANES_BONUS if plan.lanes == self.lanes_limit else 1.0))

    def _next_trials(self) -> None:
        if self._queue:
            return
        best = self.best()
        for batch in BATCH_CHOICES[1:]:
            if InferencePlan(best.lanes, batch) in self.rates:
                continue
            previous = InferencePlan(best.lanes, batch // 2)
            if previous == best:  # a larger batch is tried only while the one below it won
                self._queue.append(InferencePlan(best.lanes, batch))
            return


def tuner_for(classifier: Classifier, *, batch_size: int | None = None, lanes: int | None = None,
              remember: bool = True) -> PlanTuner:
    """The tuner of one screening run: fixed when the caller gives both ``batch_size`` and ``lanes``, else the
    remembered plan, else one that tries plans (lanes up to :func:`max_lanes`; a given ``batch_size`` or
    ``lanes`` is kept as given)."""
    limit = max_lanes(classifier) if lanes is None else max(1, lanes)
    if classifier.device.used == "cuda" and batch_size is None:
        batch_size = GPU_BATCH
    if batch_size is not None:
        # the caller chose the batch: every lane it may use, nothing tried
        return PlanTuner(limit, fixed=InferencePlan(limit, batch_size))
    if lanes is not None:
        return PlanTuner(limit, lanes=limit)
    key = plan_key(classifier) if remember else None
    known = remembered_plan(key, limit) if key is not None else None
    if known is not None and known.lanes < limit:
        # fewer lanes won only while other work held cores: measured again rather than trusted for good
        known = None
    return PlanTuner(limit, fixed=known, key=key)
