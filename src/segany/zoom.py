"""Zoom-in refinement for small objects: a second pass on a crop around the first answer.

A small model sees a small object as a few embedding cells, so its mask follows a coarse grid. Interactive
segmentation models (RITM, Sofiiuk et al., 2022; FocalClick, Chen et al., 2022) answer this by cropping
the image around the object, segmenting the crop at the model's full input size and pasting the result
back. Here the crop is a square ``zoom_context`` times the object's longest side (its box prompt, else
its first mask and clicks), centred on the object and kept inside the image; it is taken only when it
magnifies by at least ``MIN_ZOOM``.

Frames: boxes are ``XYXY`` in original-image pixels; a crop window is ``(x0, y0, side_w, side_h)`` in the
same pixels. Low-res logits live on SAM's ``L x L`` grid over the padded input square of their image
(see :mod:`segany.modeling.sam`); :func:`resample_low_res` moves them from one image's grid to another's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# A crop is worth a second encoder pass only when it magnifies at least this much.
MIN_ZOOM = 1.5
# The smallest crop side, in original pixels (a click's first mask may be nearly empty).
MIN_CROP_SIDE = 24


def crop_window(
    extent: torch.Tensor, image_size: tuple[int, int], context: float, img_size: int
) -> tuple[int, int, int, int] | None:
    """The square crop around ``extent`` (``4`` XYXY, original pixels), or None when it would not zoom.

    ``image_size`` is ``(H, W)``; the side is ``context`` x the extent's longest side (at least
    ``MIN_CROP_SIDE``), shifted to lie inside the image and cut where the image is smaller. None when
    the crop would magnify less than ``MIN_ZOOM`` at the model's input side ``img_size``.
    """
    height, width = image_size
    x0, y0, x1, y1 = (float(v) for v in extent)
    side = max(x1 - x0, y1 - y0, 1.0) * context
    side = max(side, MIN_CROP_SIDE)
    if img_size / side < MIN_ZOOM * img_size / max(height, width):
        return None
    side_w, side_h = min(math.ceil(side), width), min(math.ceil(side), height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(min(max(round(cx - side_w / 2), 0), width - side_w))
    top = int(min(max(round(cy - side_h / 2), 0), height - side_h))
    return left, top, side_w, side_h


def resample_low_res(
    logits: torch.Tensor,
    source: tuple[tuple[int, int], tuple[int, int], int, int],
    target: tuple[tuple[int, int], tuple[int, int], int, int],
    fill: float,
) -> torch.Tensor:
    """Move ``B x C x L x L`` low-res logits of one image frame onto the low-res grid of another.

    ``source`` and ``target`` are ``(origin, size, img_size, low_res)``: where the frame's image sits in
    the full original image (``(x, y)`` of its top-left pixel), its ``(H, W)``, the model's input side
    and the low-res grid side. Cells of the target that the source does not cover get ``fill``.
    """
    (sx, sy), (s_h, s_w), img_size, _ = source  # grid_sample needs no grid side: it normalises
    (tx, ty), (t_h, t_w), _, t_low = target
    s_scale = img_size / max(s_h, s_w)  # original pixels -> source input pixels
    t_scale = img_size / max(t_h, t_w)
    centres = (torch.arange(t_low, dtype=torch.float32, device=logits.device) + 0.5) * (img_size / t_low)
    # Target cell centre -> original pixels -> source input pixels -> normalised source grid [-1, 1].
    xs = ((centres / t_scale + tx - sx) * s_scale) / img_size * 2 - 1
    ys = ((centres / t_scale + ty - sy) * s_scale) / img_size * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)  # L x L x (x, y)
    grid = grid.expand(logits.shape[0], -1, -1, -1)
    moved = F.grid_sample(logits.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Outside the source image (its padding included) there is nothing to move.
    inside_x = (centres / t_scale + tx >= sx) & (centres / t_scale + tx < sx + s_w)
    inside_y = (centres / t_scale + ty >= sy) & (centres / t_scale + ty < sy + s_h)
    inside = inside_y[:, None] & inside_x[None, :]
    return torch.where(inside, moved, torch.full_like(moved, fill))
