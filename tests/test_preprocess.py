from __future__ import annotations

import numpy as np

from brainscan.engine.model.preprocess import normalize, pad_to_square, resize_for_model, to_model_input
from tiny_models import tiny_contract


def test_padding_centres_a_wide_picture_on_black():
    picture = np.full((10, 30, 3), 200, dtype=np.uint8)
    square = pad_to_square(picture)
    assert square.shape == (30, 30, 3)
    assert (square[10:20] == 200).all()
    assert (square[:10] == 0).all() and (square[20:] == 0).all()


def test_resize_reaches_the_contract_size_and_stays_uint8():
    contract = tiny_contract(input_size=(64, 64))
    out = resize_for_model(np.zeros((100, 37, 3), dtype=np.uint8), contract)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_normalisation_maps_0_and_255_to_minus_one_and_one_with_half_mean_and_std():
    batch = np.stack([np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)])
    tensor = normalize(batch, tiny_contract())
    assert tensor.shape == (2, 3, 64, 64) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], -1.0, atol=1e-6)
    np.testing.assert_allclose(tensor[1], 1.0, atol=1e-6)


def test_channel_order_is_kept():
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[..., 0] = 255  # red
    tensor = to_model_input([picture], tiny_contract())
    assert tensor[0, 0].mean() > 0.99 and tensor[0, 1].mean() < -0.99
