"""The state of an unfinished fit, saved as ``last.pt`` after every epoch so the fit can resume.

:class:`ResumeState` holds everything an interrupted fit needs to reach the weights an
uninterrupted one reaches: the resolved config and data fingerprint, the weights, the optimiser
and schedule, the random streams, where stage 2 stands (:class:`Progress`), stage 1's scores and
the timings. :meth:`ResumeState.to_dict` and :meth:`ResumeState.from_dict` are its only
(de)serialisation; the file is a flat dict of tensors and plain values (``torch.load`` with
``weights_only=True`` reads it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.run_folder import atomic_save


@dataclass
class BestEpoch:
    """The best stage-2 epoch so far: its number, its monitored value and its weights (CPU)."""

    epoch: int
    value: float
    state: dict[str, torch.Tensor]

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "value": self.value, "state": self.state}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any] | None) -> BestEpoch | None:
        return None if saved is None else cls(saved["epoch"], saved["value"], saved["state"])


@dataclass
class Progress:
    """Where stage 2 stands: epochs done, their history rows, the best one and early stopping."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: BestEpoch | None = None
    bad_epochs: int = 0
    stopped_early: bool = False


@dataclass
class RandomStreams:
    """The states of the fit's generator, of torch's global stream and (on CUDA) of the GPUs' streams."""

    generator: torch.Tensor
    torch_rng: torch.Tensor
    cuda_rng: list[torch.Tensor] | None = None

    @classmethod
    def capture(cls, generator: torch.Generator, device: torch.device) -> RandomStreams:
        cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
        return cls(generator.get_state(), torch.get_rng_state(), cuda)

    def restore(self, generator: torch.Generator, device: torch.device) -> None:
        generator.set_state(self.generator)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(self.cuda_rng)


@dataclass
class ResumeState:
    """Everything ``last.pt`` holds.

    ``optimizer`` and ``scheduler`` are None before the first stage-2 epoch.
    """

    config: dict[str, Any]
    fingerprint: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    scheduler: dict[str, Any] | None
    rng: RandomStreams
    progress: Progress
    stage1: dict[str, Any]
    timings: dict[str, float]

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    def to_dict(self) -> dict[str, Any]:
        """The flat dict saved as ``last.pt``."""
        progress = self.progress
        return {
            "config": self.config, "fingerprint": self.fingerprint, "epoch": progress.epoch, "model": self.model,
            "optimizer": self.optimizer, "scheduler": self.scheduler,
            "generator": self.rng.generator, "torch_rng": self.rng.torch_rng, "cuda_rng": self.rng.cuda_rng,
            "history": progress.history, "best": progress.best.to_dict() if progress.best else None,
            "bad_epochs": progress.bad_epochs, "stage1": self.stage1, "timings": self.timings,
            "stopped_early": progress.stopped_early,
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> ResumeState:
        """Read the dict of :meth:`to_dict` (``cuda_rng`` and ``stopped_early`` may be missing)."""
        progress = Progress(
            epoch=saved["epoch"], history=list(saved["history"]), best=BestEpoch.from_dict(saved["best"]),
            bad_epochs=saved["bad_epochs"], stopped_early=saved.get("stopped_early", False),
        )
        return cls(
            config=dict(saved["config"]), fingerprint=saved["fingerprint"], model=saved["model"],
            optimizer=saved["optimizer"], scheduler=saved["scheduler"],
            rng=RandomStreams(saved["generator"], saved["torch_rng"], saved.get("cuda_rng")),
            progress=progress, stage1=dict(saved["stage1"]), timings=dict(saved["timings"]),
        )

    def save(self, path: Path) -> None:
        atomic_save(self.to_dict(), path)

    @classmethod
    def load(cls, path: Path) -> ResumeState:
        return cls.from_dict(torch.load(path, map_location="cpu", weights_only=True))

    def restore_training(
        self, optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator, device: torch.device
    ) -> None:
        """Load the optimiser and schedule (when stage 2 had begun) and the random streams."""
        if self.optimizer is not None:
            optimizer.load_state_dict(self.optimizer)
            scheduler.load_state_dict(self.scheduler)
        self.rng.restore(generator, device)
