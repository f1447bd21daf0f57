"""Where training runs: device choice, bf16 autocast, memory format, and a description of the machine.

The same code runs on a GPU and on the CPU. On CUDA the decoded uint8 pictures live on the GPU,
augmentation runs there as batched tensor ops, the forward pass runs under bf16 autocast and the
tensors are channels_last; on the CPU autocast is off by default (bf16 is slower there on most
processors) and everything else is the same.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from typing import Any

import torch

from trainer.errors import TrainerError


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when torch can use it, else the CPU; ``cuda``/``mps`` refuse when absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainerError(
            f"--device cuda, but this torch ({torch.__version__}) sees no CUDA GPU; "
            "install a CUDA build of torch, or use --device cpu"
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TrainerError("--device mps, but Apple's Metal backend is not available here; use --device cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise TrainerError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


@dataclass(frozen=True)
class Runtime:
    """The device and the speed settings that go with it."""

    device: torch.device
    bf16: bool = False
    channels_last: bool = True

    @classmethod
    def from_config(cls, device: str = "auto", amp: str = "auto", channels_last: bool = True) -> Runtime:
        chosen = select_device(device)
        bf16 = amp == "bf16" or (amp == "auto" and chosen.type == "cuda")
        if chosen.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return cls(chosen, bf16, channels_last)

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` in bf16 when enabled, else a no-op."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def prepare(self, tensor: torch.Tensor) -> torch.Tensor:
        """An input batch in the runtime's memory format (already on its device)."""
        return tensor.contiguous(memory_format=torch.channels_last) if self.channels_last else tensor

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def describe(self) -> str:
        return f"{self.device.type}{' bf16' if self.bf16 else ''}{' channels_last' if self.channels_last else ''}"


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """What the figures were measured on: processor, cores, threads, GPU, versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device.type if device is not None else "cpu"),
    }
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info
