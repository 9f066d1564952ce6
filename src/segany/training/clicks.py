"""Prompt simulation for interactive training (Kirillov et al., 2023, appendix A, "Training algorithm").

The first prompt of a mask is, with equal probability, a foreground point drawn uniformly from the
mask or its tight box with noise (each side moved by a normal draw with standard deviation 10% of the
box side, at most 20 pixels). Later points are drawn uniformly from the error region of the previous
prediction: positive where the mask was missed (false negative), negative where the prediction spilled
over (false positive). A share of first points may instead sit on the mask's interior-most cell
(:func:`first_clicks`), where ``segany eval`` clicks first, and a share of later points on the
interior-most cell of the deepest error region (:func:`error_clicks`), where its next clicks go.

Frames: masks here are on the low-resolution grid of the mask decoder's logits (``h x w``, 4x the
image-embedding grid, covering the padded ``img_size`` square); points and boxes are returned in the
model's input frame (pixels of the resized, unpadded image), where one low-res cell is ``scale`` pixels
wide. Every draw comes from the ``torch.Generator`` passed in, so a step is reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BOX_NOISE_FRACTION = 0.1
BOX_NOISE_MAX_PX = 20.0


def sample_points(region: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """One point drawn uniformly from each region: ``B x h x w`` bool -> ``B x 2`` XY in the input frame.

    A cell is chosen uniformly among the region's cells, then a spot uniformly inside that cell (so a
    point can fall anywhere, as a user's click does). An empty region gives the centre of cell (0, 0);
    callers avoid passing them.
    """
    batch, _, width = region.shape
    # Uniform choice among the region's cells: the region cell with the largest random score.
    scores = torch.rand(region.shape, generator=generator, device=region.device)
    flat = torch.where(region, scores, torch.full_like(scores, -1.0)).flatten(1).argmax(dim=1)
    cells = torch.stack([flat % width, flat // width], dim=1).to(torch.float32)
    jitter = torch.rand((batch, 2), generator=generator, device=region.device)
    return (cells + jitter) * scale


def interior_cells(region: torch.Tensor) -> torch.Tensor:
    """The interior-most cells of each region: ``B x h x w`` bool -> ``B x h x w`` bool.

    The cells left last when the region is eroded step by step with a 3 x 3 square (the grid's border
    counts as outside): those farthest from the background in chessboard distance, the grid's version
    of the interior-most point ``segany eval`` puts a first click on. An empty region stays empty.
    """
    return _deepest_cells(region)[0]


def _deepest_cells(region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`interior_cells` of ``B x h x w`` bool regions and their depths, ``B`` int64: how many
    erosions the region survives (0 for a region one cell thin, -1 for an empty one)."""
    current = region[:, None].float()
    last = current
    depth = torch.where(region.flatten(1).any(dim=1), 0, -1)
    for _ in range((max(region.shape[-2:]) + 1) // 2):
        current = -F.max_pool2d(-F.pad(current, (1, 1, 1, 1)), 3, stride=1)
        alive = current.flatten(1).any(dim=1)
        if not alive.any():
            break
        last = torch.where(alive[:, None, None, None], current, last)
        depth = depth + alive.long()
    return last[:, 0] > 0, depth


def first_clicks(
    targets: torch.Tensor, scale: float, generator: torch.Generator, interior_share: float = 0.0
) -> torch.Tensor:
    """The first click of each mask: ``B x h x w`` bool -> ``B x 2`` XY in the input frame.

    With probability ``interior_share`` a mask's click is drawn from its interior-most cells
    (:func:`interior_cells`, where ``segany eval`` clicks first), else uniformly from the whole mask
    (the paper's). With ``interior_share = 0`` no extra random numbers are drawn.
    """
    if interior_share > 0:
        draw = torch.rand(len(targets), generator=generator, device=targets.device)
        interior = (draw < interior_share)[:, None, None]
        targets = torch.where(interior, interior_cells(targets), targets)
    return sample_points(targets, scale, generator)


def error_clicks(
    predicted: torch.Tensor,
    target: torch.Tensor,
    scale: float,
    generator: torch.Generator,
    interior_share: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next corrective click for each mask, drawn uniformly from its error region.

    With probability ``interior_share`` a mask's click goes instead where ``segany eval`` puts it (the
    RITM protocol): on the interior-most cells of the deepest error region, the misses when they lie
    at least as deep as the spills (:func:`interior_cells`). With ``interior_share = 0`` no extra
    random numbers are drawn.

    Args:
        predicted: ``B x h x w`` bool, the previous prediction.
        target: ``B x h x w`` bool, the ground truth on the same grid.
        scale: input-frame pixels per low-res cell.
    Returns:
        ``B x 2`` XY points in the input frame and ``B`` int64 labels: 1 where the point lies in a
        false negative, 0 in a false positive. A prediction with no error gets a positive point inside
        the target (one more confirmation of the object).
    """
    error = predicted ^ target
    perfect = ~error.flatten(1).any(dim=1)
    region = torch.where(perfect[:, None, None], target, error)
    if interior_share > 0:
        deep = torch.rand(len(target), generator=generator, device=target.device) < interior_share
        missed, missed_depth = _deepest_cells(target & ~predicted)
        spilled, spilled_depth = _deepest_cells(predicted & ~target)
        deepest = torch.where((missed_depth >= spilled_depth)[:, None, None], missed, spilled)
        region = torch.where((deep & ~perfect)[:, None, None], deepest, region)
    points = sample_points(region, scale, generator)
    cells = (points / scale).floor().long()
    width = target.shape[-1]
    flat = cells[:, 1] * width + cells[:, 0]
    labels = target.flatten(1).gather(1, flat[:, None])[:, 0].long()
    return points, labels


def noisy_boxes(
    boxes: torch.Tensor,
    generator: torch.Generator,
    bounds: tuple[float, float],
    fraction: float = BOX_NOISE_FRACTION,
    max_px: float = BOX_NOISE_MAX_PX,
) -> torch.Tensor:
    """Jitter tight ``B x 4`` XYXY boxes: each side moves by N(0, ``fraction`` x the box side), clipped to
    ``max_px`` pixels, then the box is kept inside ``bounds`` = ``(height, width)`` and non-inverted.
    """
    sides = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1).repeat(1, 2)
    noise = torch.randn(boxes.shape, generator=generator, device=boxes.device) * fraction * sides
    moved = boxes + noise.clamp(-max_px, max_px)
    height, width = bounds
    upper = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    moved = torch.minimum(moved.clamp(min=0), upper)
    return torch.cat([moved[:, :2], torch.maximum(moved[:, 2:], moved[:, :2])], dim=1)


def new_point_schedule(
    iterations: int, generator: torch.Generator, no_point_iterations: int = 2
) -> list[bool]:
    """Which of the iterations after the first add a click: ``iterations - 1`` flags.

    The paper's 11 iterations are the first prompt, 8 sampled clicks and 2 iterations with no new
    point, which only refine the previous mask prompt: one always at the end, the others inserted at
    random among the clicks.
    """
    later = iterations - 1
    if later <= 0:
        return []
    quiet = min(no_point_iterations, later)
    flags = [True] * later
    if quiet == 0:
        return flags
    flags[-1] = False
    if quiet > 1 and later > 1:
        chosen = torch.randperm(later - 1, generator=generator)[: quiet - 1]
        for index in chosen.tolist():
            flags[index] = False
    return flags
