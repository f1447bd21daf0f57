"""Picture checks before the network: is a decoded frame the kind of picture the model knows?

Model-free and cheap (about 1 ms per frame): a frame that is blank or near-constant, mostly noise, that
holds almost no foreground (a head), or that is a Siemens EPI mosaic (many tiles in one frame) is out
of domain. Its probabilities are kept for research, but every output marks it. :func:`head_mask` is
also the mask against which the heat map's share outside the head is measured.

The bounds were chosen by measurement (``bench/picture_checks.py``; the figures beside each constant):
no picture of the Kaggle training set, the external yes/no set, the 512 px figshare originals or the
real midline sagittal DICOM slices is flagged, while constant, noise-only and tiny-blob frames are.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from brainscan.engine.input.frames import Frame

MASK_SIDE = 128  # the mask is computed on a picture shrunk to at most this side (cost, and size-independence)
# Measured with bench/picture_checks.py over every picture (minimum, 1st percentile; maximum for the noise share):
#   Kaggle Training 5,708 JPG (224 px)  grey std 20.8, 27.5   foreground 0.020, 0.218   noise share 0.589 (max)
#   brain-mri-yes-no 253 (150-1920 px)  grey std 30.1, 34.5   foreground 0.086, 0.106   noise share 0.458
#   figshare-boxes 2,450 (512 px)       grey std 20.9, 26.2   foreground 0.133, 0.250   noise share 0.386
#   sagittal-t1-brain 16 DICOM          grey std 39.1         foreground 0.528          noise share 0.297
# and frames that must be flagged: constant (std 0), faint noise 4 levels wide (std 1.1), uniform and Gaussian noise
# at 224 and 512 px (noise share 0.85-0.89), a 10 x 10 blob on black (foreground 0.002), the lateral edge slices of
# the sagittal series that hold only an ear (foreground 0.003-0.005). With these bounds none of the 8,411 pictures and
# 16 midline slices is flagged.
MIN_GREY_STD = 5.0  # grey standard deviation (0..255) below which a frame is blank or near-constant
MIN_FOREGROUND = 0.01  # share of the picture covered by the head mask below which there is almost no foreground
MAX_NOISE_SHARE = 0.75  # share of the variation a 5 x 5 Gaussian blur removes (on the shrunk picture) above which
# a frame is mostly noise
# Colourfulness (Hasler and Suesstrunk 2003, on the picture shrunk to MASK_SIDE) above which a picture is a colour
# photograph or drawing, not a grey MRI slice. Measured: Kaggle Training max 15.0 (99th percentile 1.3; a few
# tinted exports), brain-mri-yes-no max 16.3, figshare originals 0; everyday colour photographs lie far above
# ("moderately colourful" starts at 33 on that scale). Grey photographs are left to the model's domain guard.
MAX_COLOURFULNESS = 30.0
# A heat map with more than this share of its mass outside the head is a warning sign (the reports and the viewer).
# Measured on every 10th Kaggle Training JPG (571) with the shipped model 0.4.0, map of the predicted class:
# Head CAM (the default) median 0.35, 90th percentile 0.51, 99th 0.67, max 0.93 (16 above 0.6, 65 above 0.5);
# Grad-CAM median 0.23, 90th 0.40, 99th 0.56, max 0.94. The warning starts above both 99th percentiles.
HEAT_OUTSIDE_WARNING = 0.7

MOSAIC_TAG = "Mosaic"  # the key of Frame.tags that loading sets for a Siemens mosaic (its tile count, or "yes")


def grey_of(picture: np.ndarray) -> np.ndarray:
    """The 8-bit grey picture (H x W) of an RGB or grey picture."""
    if picture.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(picture), cv2.COLOR_RGB2GRAY)
    return np.asarray(picture, dtype=np.uint8)


def _small(grey: np.ndarray) -> np.ndarray:
    height, width = grey.shape
    scale = MASK_SIDE / max(height, width)
    if scale >= 1.0:
        return grey
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _noise_share(small: np.ndarray, blurred: np.ndarray) -> float:
    """The share of the picture's variation that a light blur removes: near 1 for noise, low for anatomy."""
    spread = float(small.std())
    if spread == 0.0:
        return 0.0
    return float((small.astype(np.float32) - blurred.astype(np.float32)).std()) / spread


def _mask_small(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """The head mask on the shrunk picture and the noise share (:func:`_noise_share`)."""
    shrunk = _small(grey)
    small = cv2.GaussianBlur(shrunk, (5, 5), 0)
    noise = _noise_share(shrunk, small)
    if int(small.max()) == int(small.min()):
        return np.zeros(small.shape, np.uint8), noise
    _, binary = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return np.zeros(small.shape, np.uint8), noise
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    component = np.where(labels == largest, 255, 0).astype(np.uint8)
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(component)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)  # holes filled
    return filled, noise


def head_mask(picture: np.ndarray) -> np.ndarray:
    """The foreground (head) of a picture as a boolean H x W mask at the picture's size.

    Otsu's threshold on the lightly blurred grey picture (shrunk to at most :data:`MASK_SIDE`), its
    largest connected component, holes filled.
    """
    grey = grey_of(picture)
    small, _ = _mask_small(grey)
    if small.shape != grey.shape:
        small = cv2.resize(small, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_NEAREST)
    return small > 0


@dataclass(frozen=True)
class PictureFacts:
    """What the checks judge, measured once per frame: grey standard deviation, foreground fraction,
    noise share, colourfulness, and the head mask at the shrunk size (for :func:`heat_outside`)."""

    grey_std: float
    foreground: float
    noise: float
    mask: np.ndarray  # bool, at most MASK_SIDE a side
    colourfulness: float = 0.0

    def statistics(self) -> dict[str, float]:
        return {"grey_std": self.grey_std, "foreground": self.foreground, "noise": self.noise,
                "colourfulness": self.colourfulness}


def colourfulness(picture: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness of an RGB picture (0 for grey), on a copy shrunk to MASK_SIDE."""
    if picture.ndim != 3 or picture.shape[2] < 3:
        return 0.0
    height, width = picture.shape[:2]
    scale = MASK_SIDE / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        picture = cv2.resize(np.ascontiguousarray(picture[..., :3]), size, interpolation=cv2.INTER_AREA)
    red, green, blue = (picture[..., i].astype(np.float32) for i in range(3))
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def picture_facts(picture: np.ndarray) -> PictureFacts:
    """Measure a picture once for the checks and the heat-outside share."""
    grey = grey_of(picture)
    mask, noise = _mask_small(grey)
    return PictureFacts(float(grey.std()), float(np.count_nonzero(mask)) / mask.size, noise, mask > 0,
                        colourfulness(picture))


def picture_statistics(picture: np.ndarray) -> dict[str, float]:
    """The figures the checks judge: grey standard deviation, foreground fraction, noise share."""
    return picture_facts(picture).statistics()


def foreground_fraction(picture: np.ndarray) -> float:
    """The share of the picture covered by :func:`head_mask` (0..1)."""
    return picture_facts(picture).foreground


def check_picture(frame: Frame, facts: PictureFacts | None = None) -> tuple[bool, str]:
    """Whether a frame is in domain, and why not (one line; "" when it is)."""
    mosaic = frame.tags.get(MOSAIC_TAG)
    if mosaic:
        tiles = f" of {mosaic} tiles" if mosaic.isdigit() else ""
        return False, f"a Siemens mosaic{tiles} (many slices in one frame), not one slice"
    return check_statistics((facts or picture_facts(frame.picture)).statistics())


def check_statistics(figures: dict[str, float]) -> tuple[bool, str]:
    """The verdict of :func:`check_picture` on a picture's :func:`picture_statistics`."""
    if figures["grey_std"] < MIN_GREY_STD:
        return False, f"blank or near-constant picture (grey standard deviation {figures['grey_std']:.1f})"
    if figures["foreground"] < MIN_FOREGROUND:
        return False, f"almost no foreground ({100 * figures['foreground']:.1f} % of the picture)"
    if figures["noise"] > MAX_NOISE_SHARE:
        return False, f"mostly noise (a light blur removes {100 * figures['noise']:.0f} % of its variation)"
    if figures.get("colourfulness", 0.0) > MAX_COLOURFULNESS:
        return False, f"a colour picture (colourfulness {figures['colourfulness']:.0f}), not a grey MRI slice"
    return True, ""


def heat_outside(heat: np.ndarray, mask: np.ndarray) -> float:
    """The share of the heat map's mass outside ``mask`` (0..1; NaN for a heat map without mass).

    A mask smaller than the heat map (the shrunk one of :class:`PictureFacts`) is compared with the
    heat map averaged down to its size, so no full-size mask is made for a large picture.
    """
    heat = np.asarray(heat, dtype=np.float32)
    if mask.shape != heat.shape:
        heat = cv2.resize(heat, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_AREA)
    total = float(heat.sum(dtype=np.float64))
    if not np.isfinite(total) or total <= 0.0:
        return float("nan")
    return float(heat[~mask].sum(dtype=np.float64)) / total
