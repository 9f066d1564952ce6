"""Mask operations of the automatic generator: upsampling survivors, boxes, crops, holes (the stability
score is segany.modeling.mask_scorer's).

All masks here are ``N x H x W`` torch tensors; boxes are ``N x 4`` ``XYXY`` with inclusive ``x1, y1``
(the last foreground column/row, as the official generator reports them).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``N x H x W`` bool -> ``N x 4`` int64 ``XYXY`` inclusive boxes; an empty mask gives ``[0, 0, 0, 0]``."""
    if masks.numel() == 0:
        return torch.zeros((*masks.shape[:-2], 4), dtype=torch.int64, device=masks.device)
    h, w = masks.shape[-2:]
    rows = masks.any(dim=-1)  # N x H
    cols = masks.any(dim=-2)  # N x W
    row_idx = torch.arange(h, device=masks.device)
    col_idx = torch.arange(w, device=masks.device)
    bottom = torch.where(rows, row_idx, -1).amax(dim=-1)
    top = torch.where(rows, row_idx, h).amin(dim=-1)
    right = torch.where(cols, col_idx, -1).amax(dim=-1)
    left = torch.where(cols, col_idx, w).amin(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    empty = ~rows.any(dim=-1)
    return torch.where(empty[..., None], torch.zeros_like(boxes), boxes)


def box_near_crop_edge(
    boxes: torch.Tensor, crop_box: list[int], orig_box: list[int], atol: float = 20.0
) -> torch.Tensor:
    """``N`` bool: the box (crop frame) touches a crop edge that is not also an image edge."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes(boxes, crop_box).float()
    near_crop = torch.isclose(boxes, crop[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, orig[None, :], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def uncrop_boxes(boxes: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    x0, y0 = crop_box[0], crop_box[1]
    return boxes + torch.tensor([[x0, y0, x0, y0]], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    return points + torch.tensor([[crop_box[0], crop_box[1]]], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: list[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """Place crop-frame masks ``N x h x w`` into the original frame ``N x H x W`` (zeros outside)."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    return F.pad(masks, (x0, orig_w - x1, y0, orig_h - y1), value=0)


def xyxy_to_xywh(box: list[int] | np.ndarray | torch.Tensor) -> list:
    """``[x0, y0, x1, y1]`` -> ``[x0, y0, x1 - x0, y1 - y0]`` (the official records' convention)."""
    x0, y0, x1, y1 = (v.item() if hasattr(v, "item") else v for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``"islands"``) smaller than ``area_thresh`` pixels.

    8-connectivity. When every island is small, the largest is kept. Returns the mask and whether it
    changed.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}.")
    holes = mode == "holes"
    # Holes are the islands of the inverted mask.
    working = (mask ^ holes).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]  # label 0 is the background of `working`
    small = [i + 1 for i, size in enumerate(sizes) if size < area_thresh]
    if not small:
        return mask, False
    if holes:
        # Keep the mask's pixels (background of `working`) plus the small holes.
        keep = [0, *small]
    else:
        keep = [i for i in range(1, n_labels) if i not in set(small)]
        if not keep:
            keep = [int(np.argmax(sizes)) + 1]
    return np.isin(labels, keep), True
