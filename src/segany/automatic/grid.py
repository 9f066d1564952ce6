"""Where the automatic generator prompts: point grids and the crop boxes of zoomed-in layers.

Frames: point grids are normalised ``(X, Y)`` in [0, 1] over a crop; crop boxes are ``XYXY`` integer
pixels of the original image (``x1``/``y1`` exclusive).
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``n^2 x 2`` cell centres of an ``n x n`` grid over [0, 1]^2, X varying fastest."""
    offset = 1.0 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer; layer ``i`` has ``n_per_side / scale_per_layer**i`` points per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (``XYXY``) and their layer index: the whole image, then ``(2^i)^2`` overlapping crops
    in layer ``i`` (``i = 1..n_layers``), overlapping by ``overlap_ratio`` of the short side (scaled down
    with the crop count)."""
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = _crop_len(im_w, per_side, overlap)
        crop_h = _crop_len(im_h, per_side, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(per_side)]
        # X-major order, as the official generator (it changes which duplicate NMS keeps on ties).
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer)
    return boxes, layers


def _crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
    return math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops)
