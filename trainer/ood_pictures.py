"""Pictures that are not brain MRI, drawn in numpy: what the domain guard must flag.

Three kinds the issue names, made so that each draw differs (sizes, intensities, layout):

- ``phantom``: a quality-assurance phantom slice, a bright disc with a few inserts, scanner noise;
- ``photograph``: an everyday scene, a sky-to-ground gradient with coloured objects, in colour or
  grey;
- ``smooth_noise``: smoothed noise filling the frame (a noise-only or badly reconstructed slice).

They are 8-bit RGB like every picture the engine feeds the model; torch-free (numpy and OpenCV).
"""

from __future__ import annotations

import cv2
import numpy as np


def _rgb(picture: np.ndarray) -> np.ndarray:
    return picture if picture.ndim == 3 else np.repeat(picture[..., None], 3, axis=2)


def phantom(rng: np.random.Generator, side: int = 256) -> np.ndarray:
    canvas = np.zeros((side, side), np.float32)
    centre = (side // 2 + int(rng.integers(-side // 25, side // 25)), side // 2)
    cv2.circle(canvas, centre, int(rng.integers(side * 0.31, side * 0.45)), float(rng.uniform(80, 200)), -1)
    for _ in range(int(rng.integers(0, 7))):
        spot = tuple(int(v) for v in rng.integers(side * 0.27, side * 0.73, 2))
        cv2.circle(canvas, spot, int(rng.integers(side * 0.02, side * 0.08)), float(rng.uniform(0, 255)), -1)
    canvas += rng.normal(0, rng.uniform(1, 10), canvas.shape)
    return _rgb(np.clip(canvas, 0, 255).astype(np.uint8))


def photograph(rng: np.random.Generator, height: int = 300, width: int = 400) -> np.ndarray:
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    canvas = np.broadcast_to(top + (bottom - top) * ramp, (height, width, 3)).astype(np.float32).copy()
    for _ in range(int(rng.integers(3, 12))):
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            corner_a = tuple(int(v) for v in rng.integers(0, width, 2))
            corner_b = tuple(int(v) for v in rng.integers(0, width, 2))
            cv2.rectangle(canvas, corner_a, corner_b, colour, -1)
        else:
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(canvas, centre, int(rng.integers(10, 80)), colour, -1)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 1.5) + rng.normal(0, 4, canvas.shape)
    picture = np.clip(canvas, 0, 255).astype(np.uint8)
    return _rgb(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)) if rng.random() < 0.5 else picture


def smooth_noise(rng: np.random.Generator, side: int = 224) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), float(rng.uniform(2, 12)))
    noise = (noise - noise.min()) / (noise.max() - noise.min() + 1e-6) * 255
    return _rgb(noise.astype(np.uint8))


KINDS = {"phantom": phantom, "photograph": photograph, "smooth_noise": smooth_noise}


def ood_pictures(count: int = 40, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """``count`` pictures of each kind, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return {name: [draw(rng) for _ in range(count)] for name, draw in KINDS.items()}
