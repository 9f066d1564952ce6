"""Deterministic prompts for evaluating promptable segmentation: tight boxes and simulated clicks.

Training draws its prompts at random (:mod:`segany.training.clicks`); evaluation must score every model
on the same prompts, so here each prompt is a pure function of the masks, following the usual
interactive-segmentation protocol (Xu et al., 2016; RITM, Sofiiuk et al., 2022; SAM's appendix D.1):

* the box is the tight box of the ground-truth mask;
* the first click is the mask's interior-most point: the maximum of its distance transform, the image
  border counting as boundary;
* each next click is the interior-most point of the largest error region of the previous prediction,
  positive in a false negative, negative in a false positive.

Frames: masks are ``H x W`` bool in the original image frame. Points are ``(X, Y)`` pixel indices
(column, row) in that frame and boxes are ``XYXY`` inclusive pixel indices, as
:meth:`segany.SamPredictor.predict` takes them (the prompt encoder adds the half-pixel shift).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..automatic.mask_ops import masks_to_boxes
from ..prompts import PointLabel

# Distances closer than this are ties (the precise transform is exact only up to float32 rounding).
_TIE_TOLERANCE = 1e-4


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of ``N x H x W`` bool masks: ``N x 4`` float64 ``XYXY`` inclusive pixel indices.

    An empty mask gives ``[0, 0, 0, 0]``; callers skip empty masks.
    """
    boxes = masks_to_boxes(torch.from_numpy(np.ascontiguousarray(masks, dtype=bool)))
    return boxes.numpy().astype(np.float64)


def box_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Filled boxes: ``N x 4`` ``XYXY`` inclusive pixel indices -> ``N x H x W`` bool (the box-as-mask floor)."""
    filled = np.zeros((len(boxes), height, width), dtype=bool)
    for mask, box in zip(filled, np.rint(boxes).astype(np.int64), strict=True):
        x0, y0, x1, y1 = box
        mask[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    return filled


def ellipse_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The ellipses inscribed in boxes: ``N x 4`` ``XYXY`` inclusive pixel indices -> ``N x H x W`` bool.

    A pixel belongs to the ellipse when its centre lies inside the ellipse through the box's outer edges
    (the box ``[x0, x1 + 1) x [y0, y1 + 1)`` in continuous coordinates); the ellipse-in-the-box floor.
    """
    filled = np.zeros((len(boxes), height, width), dtype=bool)
    rows = np.arange(height, dtype=np.float64)[:, None] + 0.5
    cols = np.arange(width, dtype=np.float64)[None, :] + 0.5
    for mask, (x0, y0, x1, y1) in zip(filled, np.rint(boxes), strict=True):
        half_w, half_h = (x1 + 1 - x0) / 2, (y1 + 1 - y0) / 2
        cx, cy = x0 + half_w, y0 + half_h
        mask[:] = ((cols - cx) / half_w) ** 2 + ((rows - cy) / half_h) ** 2 <= 1.0
    return filled


def distance_to_boundary(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel of ``region`` to the nearest pixel outside it.

    ``region`` is ``H x W`` bool; returns ``H x W`` float32, 0 outside the region. Pixels beyond the
    image border count as outside (the mask is padded with a zero border first), so a pixel on the
    border is at distance 1, never the deepest point of an object cut by the frame.
    """
    padded = np.pad(region.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance[1:-1, 1:-1]


def interior_point(region: np.ndarray) -> np.ndarray:
    """The interior-most pixel of a non-empty ``H x W`` bool region: ``2`` float64 ``(X, Y)``.

    It is a maximum of :func:`distance_to_boundary`. Maxima often tie (every pixel on the middle line
    of a rectangle); the one nearest their mean is taken, so a rectangle gives its centre, and any tie
    left goes to the first in raster order.
    """
    return _deepest(distance_to_boundary(region))


def corrective_click(target: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The next click correcting ``predicted`` towards ``target`` (both ``H x W`` bool), or None if equal.

    The error regions are the connected components of the false negatives (``target & ~predicted``)
    and of the false positives (``predicted & ~target``); the largest is the one whose interior-most
    point lies deepest, i.e. by the maximum of the distance transform rather than by area, since a
    thin sliver along the boundary is large in area but no user would click it. The component holding
    the deepest point of all false negatives (or false positives) is that one, so no labelling is
    needed. A tie between the two goes to the false negatives.

    Returns:
        ``(point, label)``: ``2`` float64 ``(X, Y)`` at the interior-most pixel of that region, and
        ``1`` (positive) in a false negative or ``0`` (negative) in a false positive.
    """
    missed = distance_to_boundary(target & ~predicted)
    spilled = distance_to_boundary(predicted & ~target)
    deepest_missed, deepest_spilled = float(missed.max()), float(spilled.max())
    if deepest_missed == 0.0 and deepest_spilled == 0.0:
        return None
    if deepest_missed >= deepest_spilled:
        return _deepest(missed), int(PointLabel.POSITIVE)
    return _deepest(spilled), int(PointLabel.NEGATIVE)


def _deepest(distance: np.ndarray) -> np.ndarray:
    """``(X, Y)`` of the maximum of ``distance`` (``H x W``), ties broken towards the maxima's mean."""
    peak = float(distance.max())
    if peak <= 0.0:
        raise ValueError("The region is empty; an interior point needs at least one pixel.")
    rows, cols = np.nonzero(distance >= peak - _TIE_TOLERANCE)
    centre_row, centre_col = rows.mean(), cols.mean()
    nearest = int(np.argmin((rows - centre_row) ** 2 + (cols - centre_col) ** 2))
    return np.array([cols[nearest], rows[nearest]], dtype=np.float64)
