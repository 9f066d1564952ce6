"""Crops of masked objects for a text-image encoder's image tower (paper appendix D.5).

In training, SAM's text prompt is the image embedding of the object's crop: the mask's bounding box,
expanded by a random factor in [1, 2], made square around its centre (so the object keeps its aspect
ratio), resized to the encoder's input size; half of the time the pixels outside the mask are zeroed,
so the model cannot lean on context that a phrase would not describe. Frames: image pixels, X right, Y
down; the parts of a crop beyond the image are zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropConfig:
    """How crops are taken: box expansion range and the chance of zeroing outside the mask."""

    min_expand: float = 1.0
    max_expand: float = 2.0
    zero_outside_probability: float = 0.5

    def __post_init__(self) -> None:
        if not 1.0 <= self.min_expand <= self.max_expand:
            raise ValueError(
                f"Crop expansion needs 1 <= min_expand <= max_expand, got {self.min_expand}, {self.max_expand}."
            )
        if not 0.0 <= self.zero_outside_probability <= 1.0:
            raise ValueError(
                f"zero_outside_probability must lie in [0, 1], got {self.zero_outside_probability}."
            )


def mask_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    expand: float = 1.0,
    zero_outside: bool = False,
) -> np.ndarray:
    """The square crop around a mask, resized to ``size x size``.

    Args:
        image: ``H x W x 3`` uint8 RGB.
        mask: ``H x W`` bool, not empty.
        size: side of the returned crop.
        expand: the square's side over the longer side of the mask's box (>= 1).
        zero_outside: zero the pixels outside the mask.
    Returns:
        ``size x size x 3`` uint8 RGB.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("Cannot crop around an empty mask.")
    pixels = np.where(mask[..., None], image, 0).astype(np.uint8) if zero_outside else image
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    side = max(x1 - x0, y1 - y0) * expand
    scale = size / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # Maps image pixel (x, y) to crop pixel ((x - cx) * scale + size / 2, ...), pixel centres aligned.
    matrix = np.array(
        [
            [scale, 0.0, size / 2 - cx * scale + 0.5 * (scale - 1)],
            [0.0, scale, size / 2 - cy * scale + 0.5 * (scale - 1)],
        ]
    )
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(
        np.ascontiguousarray(pixels),
        matrix,
        (size, size),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
    )


def random_crop(
    image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator, config: CropConfig | None = None
) -> np.ndarray:
    """:func:`mask_crop` with the training randomness of appendix D.5 drawn from ``rng``."""
    config = config or CropConfig()
    expand = float(rng.uniform(config.min_expand, config.max_expand))
    zero = bool(rng.random() < config.zero_outside_probability)
    return mask_crop(image, mask, size, expand=expand, zero_outside=zero)
