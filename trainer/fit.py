"""An honest, resumable two-stage fit of a pretrained EfficientNet (or a small CNN from scratch).

1. Decode and resize every picture once (the engine's preprocessing) into a uint8 array, kept on
   the training device; unreadable files are reported and skipped.
2. Group near-duplicates (pHash) and split train/validation by group, so no copy of a
   validation picture is trained on.
3. Stage 1, the head: the backbone is frozen, so its pooled features are computed once (as is
   and mirrored) and the linear classifier is fitted on them (AdamW, cosine schedule).
4. Stage 2, the deeper blocks: ``finetune_modules`` and the head are fine-tuned on augmented
   pictures at a lower rate (AdamW, warm-up then cosine), the rest stays frozen, BN statistics
   included. After every epoch the validation split is scored; the best epoch's weights are
   kept, training stops early after ``patience`` epochs without improvement, and the whole state
   (weights, optimiser, schedule, random streams, history) is saved to ``last.pt`` so an
   interrupted fit resumes where it stopped (``python -m trainer fit --resume runs/<name>``).
   A refit (``val_fraction`` 0, ``refit_of`` a validated run of the same recipe) trains on every
   picture and keeps the last epoch; its contract carries the validated run's metrics, marked
   (:mod:`trainer.refit`).
5. The best weights are scored on validation, a temperature is fitted there (calibration), and
   the checkpoint, the resolved config, the history and the model contract (metrics and
   provenance) are saved under ``runs/<name>/``.

This module runs those steps in order (:func:`run_fit`); the steps live in
:mod:`trainer.prepared_data` (1, 2), :mod:`trainer.fit_stages` and :mod:`trainer.training_loop`
(3, 4), :mod:`trainer.fit_record` (5), the run folder in :mod:`trainer.run_folder` and the state
of an unfinished fit in :mod:`trainer.resume_state`.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainer.cam_box_loss import session_boxes
from trainer.config import FitConfig, save_resolved
from trainer.device import Runtime
from trainer.errors import TrainerError
from trainer.fit_record import final_metrics, training_record
from trainer.fit_stages import FitSession, Stage2, Stop, fit_head_stage, run_epochs, save_resume_state
from trainer.inference import pictures_tensor
from trainer.model import create_model
from trainer.prepared_data import Log, Prepared, prepare_data
from trainer.refit import ValidatedTwin, check_same_data, load_twin
from trainer.resume_state import Progress, ResumeState
from trainer.run_folder import CHECKPOINT, FIT_LOG, LAST, save_checkpoint, write_history, write_skipped

__all__ = ["FitInterrupted", "run_fit"]


class FitInterrupted(TrainerError):
    """A fit stopped before its end; its last completed epoch is saved and can be resumed."""


def _open_run(config: FitConfig, resume: bool, overwrite: bool) -> tuple[FitConfig, ResumeState | None]:
    """The config to fit with and, when resuming, the saved state (whose own config is used)."""
    run_dir = Path(config.runs_dir) / config.name
    last_path = run_dir / LAST
    if resume:
        if not last_path.is_file():
            where = "a finished run" if (run_dir / CHECKPOINT).is_file() else "no interrupted fit"
            raise TrainerError(f"{run_dir}: nothing to resume ({where}, no {LAST})")
        saved = ResumeState.load(last_path)
        # The run's own config, at the folder where the run now lies.
        config = FitConfig.from_dict({**saved.config, "runs_dir": config.runs_dir, "name": config.name}).resolved()
        return config, saved
    if not overwrite and ((run_dir / CHECKPOINT).is_file() or last_path.is_file()):
        raise TrainerError(
            f"{run_dir} already holds a run; choose another --name, --resume an interrupted one, or --overwrite"
        )
    return config, None


def _run_log(run_dir: Path, started_wall: float) -> Log:
    """Print a line with the seconds since the start and append it to the run's ``fit.log``."""

    def log(message: str) -> None:
        line = f"[{time.perf_counter() - started_wall:7.1f}s] {message}"
        print(line, flush=True)
        with open(run_dir / FIT_LOG, "a") as handle:
            handle.write(line + "\n")

    return log


def _prepare(
    config: FitConfig, run_dir: Path, saved: ResumeState | None, twin: ValidatedTwin | None,
    timings: dict[str, float], log: Log,
) -> Prepared:
    """The data set, checked against the interrupted fit's or the refit's twin's; unreadable files listed."""
    tic = time.perf_counter()
    data = prepare_data(config, log)
    timings["prepare_s"] = time.perf_counter() - tic
    if saved is not None and saved.fingerprint != data.fingerprint:
        raise TrainerError(
            f"{run_dir}: the data changed since the interrupted fit (fingerprint {data.fingerprint} "
            f"!= {saved.fingerprint}); start a new run instead of resuming"
        )
    if twin is not None:
        check_same_data(twin, data.fingerprint)
        log(f"a refit of {twin.run_dir} on all {len(data.train)} pictures; its validation metrics are carried")
    if data.skipped:
        write_skipped(run_dir, data.skipped)
    return data


def _build_model(config: FitConfig, saved: ResumeState | None, rt: Runtime) -> nn.Module:
    """The model on the training device: pretrained as configured, or with the interrupted fit's weights."""
    model = create_model(config.architecture, len(config.classes), "none" if saved else config.weights,
                         config.drop_rate)
    if saved is not None:
        model.load_state_dict(saved.model)
    model = model.to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _start_session(
    config: FitConfig, run_dir: Path, saved: ResumeState | None, twin: ValidatedTwin | None, log: Log,
    started_wall: float,
) -> FitSession:
    """Seed, choose the runtime, prepare the data and the model: what the stages share."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    rt = Runtime.from_config(config.device, config.amp, config.channels_last)
    log(f"run {run_dir} on {rt.describe()}" + (f", resuming after epoch {saved.epoch}" if saved else ""))
    contract = config.contract()
    generator = torch.Generator().manual_seed(config.seed)
    timings: dict[str, float] = dict(saved.timings) if saved else {}
    data = _prepare(config, run_dir, saved, twin, timings, log)
    model = _build_model(config, saved, rt)
    boxes = None
    if config.box_loss_weight > 0 or config.box_occlusion_weight > 0:
        boxes = session_boxes(config.boxes, data.paths, data.train, config.input_size, run_dir, rt.device, log)
    return FitSession(
        config, contract, rt, run_dir, data, model, pictures_tensor(data.pictures, rt),
        torch.as_tensor(data.labels, dtype=torch.long, device=rt.device), generator, timings, log, started_wall,
        prior_wall=timings.get("wall_s", 0.0), boxes=boxes,
    )


def _finish(
    s: FitSession, stage2: Stage2, progress: Progress, metrics: dict, *, command: str, resumed: bool,
    started: datetime,
) -> None:
    """Save the checkpoint with its contract (metrics and provenance) and the history; drop ``last.pt``."""
    s.model = s.model.to("cpu", memory_format=torch.contiguous_format).eval()
    wall = s.prior_wall + time.perf_counter() - s.started_wall
    s.timings.pop("wall_s", None)
    training = training_record(s, command, stage2, progress, resumed=resumed, wall=wall, started=started)
    contract = s.contract.with_updates(
        training=training, metrics=metrics, created=datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    path = save_checkpoint(s.run_dir, s.model, s.config, contract)
    write_history(s.run_dir, progress.history)
    (s.run_dir / LAST).unlink(missing_ok=True)
    s.log(f"saved {path} ({wall:.0f}s in all)")


def run_fit(
    config: FitConfig,
    argv: Sequence[str] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = True,
    stop: Stop | None = None,
    log: Log | None = None,
) -> Path:
    """Train, evaluate and save under ``runs/<name>/``; returns that folder.

    Parameters
    ----------
    resume:
        Continue the interrupted fit saved in the run folder's ``last.pt`` (its own config is used).
    overwrite:
        When false, refuse to start over a run folder that already holds a checkpoint or an
        interrupted fit.
    stop:
        Called after every stage-2 epoch with the epoch number and the history; returning false
        stops the fit there as if interrupted (the state is saved; ``resume`` continues it).

    Raises
    ------
    FitInterrupted
        On Ctrl+C: the last completed epoch is saved and the message says how to resume.
    """
    started_wall = time.perf_counter()
    started = datetime.now(timezone.utc)
    config, saved = _open_run(config.resolved(), resume, overwrite)
    run_dir = Path(config.runs_dir) / config.name
    twin = load_twin(config) if config.val_fraction == 0.0 else None
    run_dir.mkdir(parents=True, exist_ok=True)
    log = log or _run_log(run_dir, started_wall)
    command = "python -m trainer " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if saved is None:
        save_resolved(config, run_dir, command)
    s = _start_session(config, run_dir, saved, twin, log, started_wall)

    stage1 = dict(saved.stage1) if saved else fit_head_stage(s)
    stage2 = Stage2.plan(s.model, config, len(s.data.train))
    progress = saved.progress if saved else Progress()
    if saved is not None:
        saved.restore_training(stage2.optimizer, stage2.scheduler, s.generator, s.rt.device)
    train_model = torch.compile(s.model) if config.compile else s.model
    if saved is None:
        save_resume_state(s, stage2, progress, stage1)
    try:
        if not run_epochs(s, stage2, progress, train_model, stage1, stop):
            return run_dir
    except KeyboardInterrupt as exc:
        raise FitInterrupted(
            f"interrupted during epoch {progress.epoch + 1}; epoch {progress.epoch} is saved in {run_dir / LAST}: "
            f"resume with `python -m trainer fit --resume {run_dir}`"
        ) from exc

    if progress.best is not None:
        s.model.load_state_dict(progress.best.state)
        log(f"best epoch {progress.best.epoch} ({config.monitor} {progress.best.value})")
    metrics = final_metrics(s, twin, stage1)
    _finish(s, stage2, progress, metrics, command=command, resumed=bool(saved), started=started)
    return run_dir
