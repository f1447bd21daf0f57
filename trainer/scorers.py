"""What scores pictures for an evaluation: a torch checkpoint or an exported ONNX file.

A :class:`Scorer` turns uint8 pictures at the input size into logits and the CAM feature maps;
:class:`TorchScorer` runs a checkpoint on the training runtime's device, :class:`OnnxScorer` an
exported file in onnxruntime as the application runs it. :func:`score` and :func:`cams` run a
scorer in batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from brainscan.engine.model.cam import compute_cam
from brainscan.engine.model.contract import CAM_WEIGHT, FEATURES, LOGITS, ModelContract
from brainscan.engine.model.preprocess import normalize
from trainer.device import Runtime


class Scorer(Protocol):
    """Logits and CAM feature maps of uint8 pictures at the input size."""

    name: str

    def run(self, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def cam_weight(self) -> np.ndarray: ...


class TorchScorer:
    """A torch model on the training runtime's device."""

    def __init__(self, model: torch.nn.Module, contract: ModelContract, rt: Runtime) -> None:
        self.model = model.to(rt.device).eval()
        if rt.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.contract, self.rt = contract, rt
        self.name = f"torch checkpoint ({rt.describe()})"

    @torch.no_grad()
    def run(self, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.rt.prepare(torch.from_numpy(normalize(pictures, self.contract)).to(self.rt.device))
        with self.rt.autocast():
            features = self.model.forward_features(x)
            logits = self.model.forward_head(features)
        return logits.float().cpu().numpy(), features.float().cpu().contiguous().numpy()

    @property
    def cam_weight(self) -> np.ndarray:
        return self.model.get_classifier().weight.detach().float().cpu().numpy()


class OnnxScorer:
    """An exported ONNX file in onnxruntime (what the application runs)."""

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        from trainer.export import open_session, read_contract

        self.path = Path(path)
        self.session = open_session(self.path, threads=threads)
        self.contract = read_contract(self.session, source=str(self.path))
        self.input = self.session.get_inputs()[0].name
        self.name = f"onnxruntime ({self.path.name})"
        self._weight: np.ndarray | None = None

    def run(self, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and features as the application gets them: with the contract's test-time
        augmentation (``hflip``: the logits of the picture and its mirror averaged, as the engine does)."""
        tensor = normalize(pictures, self.contract)
        mirrored = "hflip" in self.contract.test_time_augmentation
        if mirrored:
            tensor = np.concatenate([tensor, tensor[..., ::-1]])
        logits, features, weight = self.session.run([LOGITS, FEATURES, CAM_WEIGHT], {self.input: tensor})
        self._weight = weight
        if mirrored:
            count = len(pictures)
            logits, features = (logits[:count] + logits[count:]) / 2, features[:count]
        return logits, features

    @property
    def cam_weight(self) -> np.ndarray:
        if self._weight is None:
            height, width = self.contract.input_size
            self.run(np.zeros((1, height, width, 3), dtype=np.uint8))
        return self._weight


def score(scorer: Scorer, pictures: np.ndarray, indices: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits of ``pictures[indices]``, in batches."""
    out = []
    for start in range(0, len(indices), batch_size):
        logits, _ = scorer.run(pictures[indices[start : start + batch_size]])
        out.append(logits)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def cams(scorer: Scorer, pictures: np.ndarray, targets: list[list[int]], method: str) -> list[list[np.ndarray]]:
    """For each picture, the CAMs of the given target classes, at the input size."""
    weight = scorer.cam_weight
    out = []
    for start in range(0, len(pictures), 16):
        _, features = scorer.run(pictures[start : start + 16])
        for offset, maps in enumerate(features):
            size = pictures.shape[1:3]
            out.append([compute_cam(method, maps, weight, t, size) for t in targets[start + offset]])
    return out
