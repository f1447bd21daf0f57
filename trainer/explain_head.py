"""A class-activation head on the 14 x 14 stage maps: heat maps fine enough to point at a tumour.

The classifier's own Grad-CAM lives on the last 7 x 7 maps; a 7 x 7 grid cannot point at a
pituitary adenoma of 20 px in a 224 px input, and the shipped model's maps lit both hemispheres
(issue 17). This head reads the backbone's stage-3 and stage-4 maps (80 + 112 channels at 14 x 14)
and gives one map per class, ``M_c``; its class scores are the maps' means, so ``M_c`` is exactly
the class activation map of those scores (Zhou et al. 2016) and changes with the class and the
picture. It is trained on the frozen backbone's maps with two losses:

- cross-entropy of the mean-pooled scores against the picture's class (every picture), so each map
  is evidence for its class;
- on the Training pictures that carry a tumour box (carried over from figshare, never the figshare
  pictures themselves), the negative log of the share of the true class's spatial softmax that
  falls on the box's cells ("right for the right reasons", Ross et al. 2017), so the evidence sits
  on the tumour.

The screening decision stays the classifier's; the head explains it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ExplainHead(nn.Module):
    """Input standardisation, 3 x 3 conv, ReLU, 1 x 1 conv to one map per class, mirror-averaged.

    The maps of the stage maps and of their mirror (mirrored back) are averaged, so the head is exactly
    mirror-equivariant like the graph's averaged views: a mirrored picture gets the mirrored maps.
    """

    def __init__(self, channels: int, classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("scale", torch.ones(channels))
        self.conv = nn.Conv2d(channels, hidden, 3, padding=1)
        self.maps = nn.Conv2d(hidden, classes, 1)

    def one_view(self, stages: torch.Tensor) -> torch.Tensor:
        x = (stages - self.shift.view(1, -1, 1, 1)) * self.scale.view(1, -1, 1, 1)
        return self.maps(F.relu(self.conv(x)))

    def forward(self, stages: torch.Tensor) -> torch.Tensor:
        return (self.one_view(stages) + self.one_view(stages.flip(-1)).flip(-1)) / 2


@dataclass(frozen=True)
class HeadTraining:
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    box_weight: float = 1.0
    seed: int = 0


def box_cells(boxes: np.ndarray, grid: int, side: int) -> np.ndarray:
    """N x grid x grid masks of the cells a box (x0, y0, x1, y1 in input pixels; NaN = none) overlaps."""
    cell = side / grid
    edges = np.arange(grid) * cell
    masks = np.zeros((len(boxes), grid, grid), dtype=np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if np.isnan(x0):
            continue
        cols = (edges + cell > x0) & (edges < x1)
        rows = (edges + cell > y0) & (edges < y1)
        masks[i] = rows[:, None] & cols[None, :]
    return masks


def head_losses(maps: torch.Tensor, labels: torch.Tensor, cells: torch.Tensor,
                has_box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the pooled scores, and the box loss on the pictures that have a box."""
    scores = maps.mean(dim=(2, 3))
    classification = F.cross_entropy(scores, labels)
    if not bool(has_box.any()):
        return classification, maps.sum() * 0
    true_maps = maps[has_box, labels[has_box]].flatten(1)
    log_share = torch.logsumexp(true_maps.masked_fill(cells[has_box].flatten(1) == 0, -1e4), dim=1) - \
        torch.logsumexp(true_maps, dim=1)
    return classification, -log_share.mean()


def train_head(stages: np.ndarray, labels: np.ndarray, boxes: np.ndarray, classes: int,
               settings: HeadTraining = HeadTraining(), log=print) -> ExplainHead:
    """Fit the head on stage maps (N x C x 14 x 14) with labels (N) and boxes (N x 4 in input px)."""
    torch.manual_seed(settings.seed)
    generator = np.random.default_rng(settings.seed)
    grid = stages.shape[-1]
    head = ExplainHead(stages.shape[1], classes)
    sample = stages[generator.choice(len(stages), min(2000, len(stages)), replace=False)].astype(np.float32)
    head.shift.copy_(torch.from_numpy(sample.mean(axis=(0, 2, 3))))
    head.scale.copy_(torch.from_numpy(1.0 / (sample.std(axis=(0, 2, 3)) + 1e-3)))
    cells = box_cells(boxes, grid, side=grid * 16)
    has_box = ~np.isnan(boxes[:, 0])
    optimiser = torch.optim.AdamW(head.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps = settings.epochs * int(np.ceil(len(stages) / settings.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, settings.learning_rate, total_steps=steps)
    for epoch in range(settings.epochs):
        order = generator.permutation(len(stages))
        totals = np.zeros(2)
        for start in range(0, len(order), settings.batch_size):
            index = order[start : start + settings.batch_size]
            x = torch.from_numpy(stages[index].astype(np.float32))
            m = torch.from_numpy(cells[index])
            flip = torch.from_numpy(generator.random(len(index)) < 0.5)
            x[flip] = x[flip].flip(-1)  # the maps of a mirrored picture are the mirrored maps
            m[flip] = m[flip].flip(-1)
            classification, box = head_losses(head(x), torch.from_numpy(labels[index]), m,
                                              torch.from_numpy(has_box[index]))
            loss = classification + settings.box_weight * box
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            totals += [float(classification.detach()) * len(index), float(box.detach()) * len(index)]
        if epoch % 5 == 4 or epoch == settings.epochs - 1:
            log(f"head epoch {epoch + 1}/{settings.epochs}: classification {totals[0] / len(order):.4f}, "
                f"box {totals[1] / len(order):.4f}")
    return head.eval()


def head_maps(head: ExplainHead, stages: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """N x K x 14 x 14 maps for stage maps N x C x 14 x 14."""
    out = []
    with torch.no_grad():
        for start in range(0, len(stages), batch_size):
            out.append(head(torch.from_numpy(stages[start : start + batch_size].astype(np.float32))).numpy())
    return np.concatenate(out)
