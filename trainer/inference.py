"""Batched inference of a torch model over uint8 pictures: pooled features and logits.

:func:`run_batches` is the one loop (eval mode, no gradients, the runtime's autocast and memory
format, a progress bar); :func:`pooled_features` and :func:`predict_logits` are what the fit and
the evaluation ask of it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from brainscan.engine.model.contract import ModelContract
from trainer.augment import plain_tensor
from trainer.device import Runtime

Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def index_batches(indices: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive slices of ``indices`` of ``batch_size`` (the last one may be shorter)."""
    for start in range(0, len(indices), batch_size):
        yield indices[start : start + batch_size]


def pictures_tensor(pictures: np.ndarray | torch.Tensor, rt: Runtime) -> torch.Tensor:
    """The pictures as a tensor on the runtime's device (not copied when already there)."""
    tensor = torch.as_tensor(pictures)
    return tensor.to(rt.device) if tensor.device != rt.device else tensor


@torch.no_grad()
def run_batches(
    model: nn.Module, pictures: np.ndarray | torch.Tensor, contract: ModelContract, forward: Forward, *,
    indices: np.ndarray | None = None, mirror: bool = False, batch_size: int = 64, rt: Runtime | None = None,
    desc: str = "inference", to_cpu: bool = False,
) -> list[torch.Tensor]:
    """``forward(model, x)`` of the un-augmented ``pictures[indices]`` (all when None), batch by batch.

    The model is put in eval mode; each output is cast to float32 and, with ``to_cpu``, moved to
    the CPU. Returns one tensor per batch (an empty list for no pictures).
    """
    rt = rt or Runtime(torch.device("cpu"))
    pictures = pictures_tensor(pictures, rt)
    order = torch.as_tensor(indices if indices is not None else np.arange(len(pictures)), dtype=torch.long)
    model.eval()
    out = []
    with tqdm(total=len(order), desc=desc, unit="img", mininterval=5, file=sys.stdout) as bar:
        for idx in index_batches(order, batch_size):
            x = rt.prepare(plain_tensor(pictures[idx.to(rt.device)], contract, mirror=mirror))
            with rt.autocast():
                output = forward(model, x).float()
            out.append(output.cpu() if to_cpu else output)
            bar.update(len(idx))
    return out


def _pooled(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def pooled_features(
    model: nn.Module, pictures: np.ndarray | torch.Tensor, contract: ModelContract, *,
    indices: np.ndarray | None = None, mirror: bool = False, batch_size: int = 64, rt: Runtime | None = None,
    desc: str = "features",
) -> torch.Tensor:
    """The backbone's pooled features (N x C, float32, on the runtime's device) in eval mode."""
    return torch.cat(run_batches(model, pictures, contract, _pooled, indices=indices, mirror=mirror,
                                 batch_size=batch_size, rt=rt, desc=desc))


def predict_logits(
    model: nn.Module, pictures: np.ndarray | torch.Tensor, contract: ModelContract, *,
    indices: np.ndarray | None = None, batch_size: int = 64, rt: Runtime | None = None, desc: str = "evaluate",
) -> np.ndarray:
    """Logits (N x K, float32 numpy) of un-augmented pictures, in eval mode."""
    out = run_batches(model, pictures, contract, _logits, indices=indices, batch_size=batch_size, rt=rt, desc=desc,
                      to_cpu=True)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)
