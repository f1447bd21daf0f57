"""The CAM box loss of box-supervised fine-tuning (issue 17): the loss, the exact CAM, masks that follow the picture."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

import torch

from trainer.augment import AugmentConfig, augment_batch, augment_batch_with_masks
from trainer.boxes import read_box_table
from trainer.cam_box_loss import (
    box_loss,
    box_masks,
    cell_masks,
    class_cam,
    logits_and_box_loss,
    trained_figshare_ids,
)
from trainer.config import FitConfig, load_yaml, resolve_config, save_resolved
from trainer.errors import TrainerError

pytestmark = pytest.mark.trainer
STILL = dict(rotate_deg=0.0, shift=0.0, zoom=0.0, brightness=0.0, contrast=0.0)


def _cells(rows: slice, cols: slice, grid: int = 7) -> torch.Tensor:
    cells = torch.zeros(1, grid, grid)
    cells[0, rows, cols] = 1
    return cells


def test_relu_share_is_zero_inside_and_grows_as_the_evidence_moves_out():
    cells = _cells(slice(2, 4), slice(2, 4))
    cam = torch.full((1, 7, 7), -1.0)
    cam[0, 2:4, 2:4] = 3.0
    assert float(box_loss(cam, cells, "relu-share")) == 0.0
    losses = []
    for outside in (0.0, 1.0, 3.0, 9.0):
        moved = cam.clone()
        moved[0, 6, 6] = outside
        losses.append(float(box_loss(moved, cells, "relu-share")))
    assert losses[0] == 0.0 and all(a < b for a, b in itertools.pairwise(losses))
    assert losses[-1] == pytest.approx(9 / (12 + 9), abs=1e-5)
    everything_out = torch.zeros(1, 7, 7)
    everything_out[0, 0, 0] = 5.0
    assert float(box_loss(everything_out, cells, "relu-share")) == pytest.approx(1.0, abs=1e-5)


def test_softmax_mass_is_near_zero_on_the_box_large_off_it_and_blind_to_a_shift():
    cells = _cells(slice(3, 4), slice(3, 4))
    on_box = torch.zeros(1, 7, 7)
    on_box[0, 3, 3] = 30.0
    off_box = torch.zeros(1, 7, 7)
    off_box[0, 0, 6] = 30.0
    flat = torch.zeros(1, 7, 7)
    assert float(box_loss(on_box, cells)) < 1e-6
    assert float(box_loss(flat, cells)) == pytest.approx(math.log(49), abs=1e-5)
    assert float(box_loss(off_box, cells)) > 29.0
    # a constant added to the CAM (the class bias) cannot lower it
    assert float(box_loss(off_box + 100.0, cells)) == pytest.approx(float(box_loss(off_box, cells)), abs=1e-3)


def test_unknown_loss_kind_is_refused():
    with pytest.raises(TrainerError, match="relu-share"):
        box_loss(torch.zeros(1, 7, 7), _cells(slice(0, 1), slice(0, 1)), "mass")


def test_the_cam_of_a_lite0_averages_to_its_logit_and_the_box_loss_has_gradients():
    from trainer.model import create_model

    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", 4, "none", 0.0).eval()
    x = torch.randn(2, 3, 224, 224)
    labels = torch.tensor([1, 3])
    features = model.forward_features(x)
    cam = class_cam(features, model.get_classifier(), labels)
    assert cam.shape == (2, 7, 7)
    logits = model(x)
    torch.testing.assert_close(cam.mean(dim=(1, 2)), logits[torch.arange(2), labels], atol=1e-4, rtol=1e-4)
    masks = box_masks(torch.tensor([[20.0, 30.0, 60.0, 80.0], [float("nan")] * 4]), 224, 0.03)
    out, loss = logits_and_box_loss(model, x, labels, masks, "softmax")
    torch.testing.assert_close(out, logits)
    loss.backward()
    assert model.get_classifier().weight.grad is not None and float(model.get_classifier().weight.grad.abs().sum()) > 0


def test_masks_are_the_grown_boxes_and_none_without_a_box():
    masks = box_masks(torch.tensor([[10.0, 20.0, 30.0, 50.0], [float("nan")] * 4]), 64, margin=2 / 64)
    first = masks[0, 0].numpy()
    rows, cols = np.nonzero(first)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (18, 51, 8, 31)
    assert masks[1].sum() == 0
    cells = cell_masks(masks, (8, 8))  # 8 px cells
    assert cells[0].nonzero().tolist() == [[r, c] for r in range(2, 7) for c in range(1, 4)]


def _boxed_pictures(boxes: list[tuple[int, int, int, int]], side: int = 224) -> np.ndarray:
    """Black pictures with a white rectangle where each box lies."""
    pictures = np.zeros((len(boxes), side, side, 3), dtype=np.uint8)
    for picture, (x0, y0, x1, y1) in zip(pictures, boxes, strict=True):
        picture[y0:y1, x0:x1] = 255
    return pictures


def test_the_mask_follows_a_mirror_image():
    contract = FitConfig().contract()
    boxes = torch.tensor([[20.0, 40.0, 70.0, 100.0]])
    masks = box_masks(boxes, 224, 0.0)
    config = AugmentConfig(hflip=1.0, **STILL)
    _, moved = augment_batch_with_masks(_boxed_pictures([(20, 40, 70, 100)]), masks,
                                        contract, config, torch.Generator().manual_seed(1))
    expected = box_masks(torch.tensor([[224 - 70.0, 40.0, 224 - 20.0, 100.0]]), 224, 0.0)
    assert torch.equal(moved > 0.5, expected > 0.5)
    assert not torch.equal(moved > 0.5, masks > 0.5)


def test_the_mask_follows_rotation_zoom_shift_and_margin_and_the_pictures_do_not_change():
    contract = FitConfig().contract()
    box_list = [(30, 40, 90, 120), (120, 100, 200, 150), (60, 150, 110, 210), (10, 10, 60, 60)]
    pictures = _boxed_pictures(box_list)
    masks = box_masks(torch.tensor(box_list, dtype=torch.float32), 224, 0.0)
    config = AugmentConfig(hflip=0.5, rotate_deg=15, shift=0.06, zoom=0.1, margin=0.45, brightness=0.0, contrast=0.0)
    x, moved = augment_batch_with_masks(pictures, masks, contract, config, torch.Generator().manual_seed(3))
    plain = augment_batch(pictures, contract, config, torch.Generator().manual_seed(3))
    torch.testing.assert_close(x, plain)  # the masks draw no random numbers and change no picture
    white = x[:, 0] > 0.0  # the rectangle (normalised > 0) went where the mask went
    agree = (white == (moved[:, 0] > 0.5)).float().mean(dim=(1, 2))
    assert float(agree.min()) > 0.99
    assert not torch.equal(moved > 0.5, masks > 0.5)


def test_box_table_rows_land_on_the_right_pictures_padded_to_a_square(tmp_path):
    table = tmp_path / "training-boxes.csv"
    table.write_text(
        "path,class,figshare_id,x0,y0,x1,y1,width,height,match_error,outliers,mirrored\n"
        "glioma/a.jpg,glioma,12,10,20,30,40,200,100,1,0,0\n"
        "pituitary/b.jpg,pituitary,7,0,0,50,50,100,100,1,0,0\n"
    )
    paths = ["/d/Training/pituitary/b.jpg", "/d/Training/glioma/a.jpg", "/d/Training/notumor/c.jpg"]
    boxes = read_box_table(table, paths, 100)
    np.testing.assert_allclose(boxes[0], [0, 0, 50, 50])
    np.testing.assert_allclose(boxes[1], [5, 35, 15, 45])  # 200 x 100 padded to 200 x 200, halved
    assert np.isnan(boxes[2]).all()
    assert trained_figshare_ids(table, paths, np.array([1, 2])) == ["12"]
    with pytest.raises(TrainerError, match="match-boxes"):
        read_box_table(tmp_path / "missing.csv", paths, 100)


def test_the_boxcam_recipe_round_trips_and_the_loss_is_off_by_default(tmp_path):
    assert FitConfig().box_loss_weight == 0.0 and FitConfig().boxes is None
    config = resolve_config(load_yaml("lite0-224-boxcam.yaml"))
    assert config.box_loss_weight > 0 and config.boxes.endswith("training-boxes.csv") and config.dedup_mirrors
    save_resolved(config, tmp_path)
    again = resolve_config(load_yaml(tmp_path / "config.yaml"))
    assert again == config
    assert FitConfig.from_dict(config.as_dict()).resolved() == config
    with pytest.raises(TrainerError, match="needs boxes"):
        resolve_config({"box_loss_weight": 0.5})
    with pytest.raises(TrainerError, match="box_loss"):
        resolve_config({"box_loss": "peak"})


def test_an_epoch_with_boxes_reports_its_box_loss(real_paths):
    from trainer.data import load_pictures
    from trainer.device import Runtime
    from trainer.inference import pictures_tensor
    from trainer.model import create_model
    from trainer.training_loop import set_trainable, train_epoch, warmup_cosine

    config = resolve_config({"box_loss_weight": 0.5, "boxes": "unused.csv", "batch_size": 4, "weights": "none"})
    rt = Runtime(torch.device("cpu"), channels_last=False)
    model = create_model(config.architecture, 4, "none", 0.0)
    optimizer = torch.optim.AdamW(set_trainable(model, ("*",)), lr=1e-4)
    pictures = pictures_tensor(load_pictures(real_paths[:8], config.contract()), rt)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    boxes = torch.tensor([[60.0, 60.0, 120.0, 120.0]] * 4 + [[float("nan")] * 4] * 4)
    stats = train_epoch(model, optimizer, warmup_cosine(optimizer, 2, 0.05), pictures, labels, torch.arange(8), 2,
                        config, rt, torch.Generator().manual_seed(0), boxes=boxes)
    assert math.isfinite(stats["box_loss"]) and stats["box_loss"] > 0.0
    without = train_epoch(model, optimizer, warmup_cosine(optimizer, 1, 0.05), pictures, labels, torch.arange(8), 1,
                          config, rt, torch.Generator().manual_seed(0))
    assert "box_loss" not in without


def test_occluded_pairs_hide_the_box_and_a_place_on_the_head_away_from_it():
    from trainer.cam_box_loss import occluded_pairs, occlusion_rank_loss

    x = torch.full((2, 3, 224, 224), -1.0)  # black background in normalised units
    x[:, :, 32:192, 32:192] = 0.5  # the head
    masks = box_masks(torch.tensor([[100.0, 60.0, 140.0, 100.0], [float("nan")] * 4]), 224, 0.0)
    on_box, elsewhere, valid = occluded_pairs(x, masks, torch.full((3,), -1.0), torch.Generator().manual_seed(0))
    assert valid.tolist() == [True, False]
    hidden = (on_box[0, 0] != x[0, 0]).nonzero()
    assert hidden[:, 0].min() == 64 and hidden[:, 1].min() == 104 and len(hidden) == 32 * 32  # centred on the box
    other = (elsewhere[0, 0] != x[0, 0]).nonzero()
    assert len(other) > 0 and float(masks[0, 0][other[:, 0], other[:, 1]].sum()) == 0  # off the box, on the head
    assert float(occlusion_rank_loss(torch.tensor([0.0]), torch.tensor([5.0]), 1.0)) == 0.0
    assert float(occlusion_rank_loss(torch.tensor([5.0]), torch.tensor([0.0]), 1.0)) == 6.0


def test_an_epoch_with_the_occlusion_term_trains(real_paths):
    from trainer.data import load_pictures
    from trainer.device import Runtime
    from trainer.inference import pictures_tensor
    from trainer.model import create_model
    from trainer.training_loop import set_trainable, train_epoch, warmup_cosine

    config = resolve_config({"box_occlusion_weight": 0.5, "boxes": "unused.csv", "batch_size": 4, "weights": "none"})
    rt = Runtime(torch.device("cpu"), channels_last=False)
    model = create_model(config.architecture, 4, "none", 0.0)
    optimizer = torch.optim.AdamW(set_trainable(model, ("*",)), lr=1e-4)
    pictures = pictures_tensor(load_pictures(real_paths[:4], config.contract()), rt)
    boxes = torch.tensor([[80.0, 80.0, 140.0, 140.0]] * 4)
    stats = train_epoch(model, optimizer, warmup_cosine(optimizer, 1, 0.05), pictures, torch.tensor([0, 1, 2, 3]),
                        torch.arange(4), 1, config, rt, torch.Generator().manual_seed(0), boxes=boxes)
    assert math.isfinite(stats["box_loss"]) and stats["box_loss"] >= 0.0
