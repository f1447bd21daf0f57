"""Box-supervised fine-tuning: a loss that puts the classifier's own class evidence on the tumour (issue 17).

For an EfficientNet with global average pooling and a linear classifier, the class activation map
``CAM_c(x, y) = sum_k w_ck A_k(x, y) + b_c`` of the last feature maps ``A`` is exact and cheap: the
class logit is the spatial mean of ``CAM_c`` (Zhou et al. 2016), so no second backward pass is needed.
On the training pictures that carry a tumour box (carried over from the figshare originals by
``python -m trainer match-boxes``; the figshare pictures themselves never train), the true class's
CAM is asked to lie inside the box grown by a margin:

- ``softmax`` (the default): ``-log`` of the share of the spatial softmax of ``CAM_y`` on the cells the
  grown box overlaps ("right for the right reasons", Ross et al. 2017; what :mod:`trainer.explain_head`
  trains the explanation head with). A constant added to the CAM changes nothing, so the class
  biases cannot cheat it, and its minimum puts the map's peak, the pointing game's verdict, in the box.
- ``relu-share``: the share of the positive evidence ``relu(CAM_y)`` that lies outside the box's cells;
  zero when all of it is inside, one when all of it is outside.

The box travels with the picture through the augmentation (rotation, zoom, shift, mirror, black
margin): it is drawn as a mask at input size and sampled by the same ``grid_sample``
(:func:`trainer.augment.augment_batch_with_masks`), then pooled to the feature-map cells.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainscan.engine.model.contract import ModelContract
from trainer.augment import AugmentConfig, augment_batch_with_masks, plain_tensor
from trainer.boxes import read_box_table
from trainer.errors import TrainerError

BOX_LOSSES = ("softmax", "relu-share")
TRAINED_IDS = "trained-figshare-ids.txt"


def box_masks(boxes: torch.Tensor, size: int, margin: float) -> torch.Tensor:
    """N x 1 x size x size float masks of the boxes grown by ``margin`` (a fraction of the side).

    ``boxes`` is N x 4 (x0, y0, x1, y1 in input pixels; a NaN row has no box and gets an empty mask).
    A pixel is inside when its centre lies in the grown box.
    """
    grow = margin * size
    centres = torch.arange(size, dtype=torch.float32, device=boxes.device) + 0.5
    b = torch.nan_to_num(boxes.float(), nan=-1.0)
    x0, y0, x1, y1 = (b[:, i].view(-1, 1) for i in range(4))
    cols = (centres.view(1, -1) >= x0 - grow) & (centres.view(1, -1) < x1 + grow)
    rows = (centres.view(1, -1) >= y0 - grow) & (centres.view(1, -1) < y1 + grow)
    masks = (rows[:, :, None] & cols[:, None, :]).float()
    masks[torch.isnan(boxes[:, 0])] = 0.0
    return masks.unsqueeze(1)


def cell_masks(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """N x gh x gw: 1 for the feature-map cells the (N x 1 x H x W) masks overlap, else 0."""
    coverage = F.adaptive_avg_pool2d(masks.float(), grid)[:, 0]
    return (coverage > 1e-3).float()


def class_cam(features: torch.Tensor, classifier: nn.Linear, labels: torch.Tensor) -> torch.Tensor:
    """N x h x w class activation maps of each picture's ``labels`` class from the N x K x h x w features.

    Their spatial mean is exactly that class's logit (global average pooling, then the linear layer).
    """
    weights = classifier.weight[labels].to(features.dtype)  # N x K
    cam = torch.einsum("nkhw,nk->nhw", features, weights)
    if classifier.bias is not None:
        cam = cam + classifier.bias[labels].to(features.dtype).view(-1, 1, 1)
    return cam


def box_loss(cam: torch.Tensor, cells: torch.Tensor, kind: str = "softmax") -> torch.Tensor:
    """The mean box loss of N x h x w maps against N x h x w cell masks (every row must have a box)."""
    flat, inside = cam.float().flatten(1), cells.flatten(1) > 0
    if kind == "softmax":
        log_inside = torch.logsumexp(flat.masked_fill(~inside, float("-inf")), dim=1)
        return (torch.logsumexp(flat, dim=1) - log_inside).mean()
    if kind == "relu-share":
        positive = F.relu(flat)
        outside = (positive * (~inside).float()).sum(1)
        return (outside / (positive.sum(1) + 1e-6)).mean()
    raise TrainerError(f"box_loss {kind!r} is not one of {', '.join(BOX_LOSSES)}")


def batch_inputs(
    batch: torch.Tensor, boxes: torch.Tensor | None, contract: ModelContract, augment: AugmentConfig | None,
    generator: torch.Generator, margin: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (augmented) input tensor and the grown boxes' masks moved with it (None without boxes).

    ``augment`` None: no augmentation (the masks stay where the boxes are).
    """
    masks = None if boxes is None else box_masks(boxes, batch.shape[1], margin)
    if augment is None:
        return plain_tensor(batch, contract), masks
    return augment_batch_with_masks(batch, masks, contract, augment, generator)


def logits_and_box_loss(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, masks: torch.Tensor | None, kind: str,
    occlusion: tuple[float, float, torch.Tensor, torch.Generator] | None = None, cam_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The logits and ``cam_weight`` times the box loss of the pictures whose box survived the augmentation
    (None: no such picture).

    ``occlusion`` ``(weight, margin, fill, generator)``: also run each boxed picture with a black square on its
    box and one elsewhere (:func:`occluded_pairs`, in the same forward pass) and add ``weight`` times
    :func:`occlusion_rank_loss`. The model needs timm's ``forward_features``/``forward_head`` and a linear
    ``get_classifier()``.
    """
    n = len(x)
    extra = None
    if masks is not None and occlusion is not None:
        weight, margin, fill, generator = occlusion
        on_box, elsewhere, valid = occluded_pairs(x, masks, fill, generator)
        if bool(valid.any()):
            extra = (weight, margin, valid)
            x = torch.cat([x, on_box[valid], elsewhere[valid]])
    features = model.forward_features(x)
    all_logits = model.forward_head(features)
    logits, features = all_logits[:n], features[:n]
    if masks is None:
        return logits, None
    cells = cell_masks(masks, tuple(features.shape[-2:]))
    has_box = cells.flatten(1).sum(1) > 0
    loss = None
    if bool(has_box.any()):
        cam = class_cam(features[has_box].float(), model.get_classifier(), target[has_box])
        loss = cam_weight * box_loss(cam, cells[has_box], kind)
    if extra is not None:
        weight, margin, valid = extra
        k = int(valid.sum())
        picked = target[valid]
        z_box = all_logits[n : n + k].gather(1, picked.view(-1, 1))[:, 0]
        z_else = all_logits[n + k :].gather(1, picked.view(-1, 1))[:, 0]
        rank = weight * occlusion_rank_loss(z_box, z_else, margin)
        loss = rank if loss is None else loss + rank
    return logits, loss


def occluded_pairs(
    x: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor, generator: torch.Generator, patch: int = 32,
    stride: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each picture with a black ``patch`` square on its box's centre, and with one elsewhere on the head.

    The second square is drawn among the ``stride``-spaced places (the occlusion check's grid) that do not touch
    the grown box and lie mostly on the head (not the black background). ``fill`` is black in normalised units
    (3 values). Returns the two N x 3 x H x W batches and which pictures got both squares.
    """
    n, _, height, width = x.shape
    weight = masks[:, 0].float()
    area = weight.sum(dim=(1, 2))
    rows = torch.arange(height, dtype=torch.float32, device=x.device)
    cols = torch.arange(width, dtype=torch.float32, device=x.device)
    cy = (weight.sum(2) * rows).sum(1) / area.clamp_min(1)
    cx = (weight.sum(1) * cols).sum(1) / area.clamp_min(1)
    top = (cy - patch / 2).round().clamp(0, height - patch).long()
    left = (cx - patch / 2).round().clamp(0, width - patch).long()
    black = fill.view(1, 3, 1, 1).to(x)
    head = F.avg_pool2d((x - black).abs().mean(1, keepdim=True), patch, stride)[:, 0] > 0.3
    touches = F.avg_pool2d(weight.unsqueeze(1), patch, stride)[:, 0] > 0
    allowed = (head & ~touches).flatten(1).float().cpu()
    valid = (area > 0).cpu() & (allowed.sum(1) > 0)
    places = torch.multinomial(allowed + (~valid).float().unsqueeze(1), 1, generator=generator)[:, 0]
    cols_count = (width - patch) // stride + 1
    other_top, other_left = (places // cols_count * stride).tolist(), (places % cols_count * stride).tolist()
    on_box, elsewhere = x.clone(), x.clone()
    for i in range(n):
        t, lft = int(top[i]), int(left[i])
        on_box[i, :, t : t + patch, lft : lft + patch] = black[0]
        elsewhere[i, :, other_top[i] : other_top[i] + patch, other_left[i] : other_left[i] + patch] = black[0]
    return on_box, elsewhere, valid.to(x.device)


def occlusion_rank_loss(on_box: torch.Tensor, elsewhere: torch.Tensor, margin: float) -> torch.Tensor:
    """Hiding the tumour must cost the true class's logit ``margin`` more than hiding a place elsewhere:
    ``relu(margin - (z(elsewhere) - z(on_box)))``, averaged (inputs: the true class's logits of each)."""
    return F.relu(margin - (elsewhere.float() - on_box.float())).mean()


def trained_figshare_ids(csv_path: str | Path, paths: list[str], train: np.ndarray) -> list[str]:
    """The figshare ids whose Kaggle twins are training pictures: leave them out of every measurement."""
    trained = {"/".join(Path(paths[i]).parts[-2:]) for i in train}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        return sorted({row["figshare_id"] for row in csv.DictReader(handle)
                       if "/".join(Path(row["path"]).parts[-2:]) in trained}, key=int)


def session_boxes(csv_path: str | Path, paths: list[str], train: np.ndarray, input_size: int, run_dir: Path,
                  device: torch.device, log) -> torch.Tensor:
    """The boxes of a fit's pictures on the training device; writes the run's ``trained-figshare-ids.txt``."""
    boxes = read_box_table(csv_path, paths, input_size)
    ids = trained_figshare_ids(csv_path, paths, train)
    (run_dir / TRAINED_IDS).write_text("\n".join(ids) + "\n", encoding="utf-8")
    boxed_train = int((~np.isnan(boxes[train, 0])).sum())
    log(f"box loss on {boxed_train} of {len(train)} training pictures ({csv_path}); the {len(ids)} figshare ids "
        f"they came from are in {run_dir / TRAINED_IDS}: leave them out of pointing measurements")
    return torch.from_numpy(boxes).to(device)
