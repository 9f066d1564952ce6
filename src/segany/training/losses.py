"""SAM's training losses (Kirillov et al., 2023, section 3 and appendix A).

Masks are supervised with a 20:1 mix of focal and dice loss; with several candidate masks per prompt
only the candidate with the lowest loss is trained, so each output token can specialise on one reading
of an ambiguous prompt. The IoU head regresses, with mean squared error, the IoU each candidate
actually reaches. Optionally (``rank_weight``) a listwise ranking term teaches it which of a prompt's
candidates is best, which is what the predictor's choice among them uses.

Every function takes mask logits ``... x H x W`` and targets of the same trailing shape: bool, 0/1
floats, or soft floats in ``[0, 1]`` (the share of each low-res cell a mask covers; IoUs count a cell
as the mask's when at least half of it is); per-mask functions reduce over the last two dimensions only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
# The mask losses ``sam_loss`` offers: the paper's 20:1 focal + dice, or plain binary cross-entropy +
# dice 1:1, which gives foreground pixels their full weight from the first step (a small model trained
# briefly with the focal mix first learns to predict background everywhere).
MASK_LOSSES = ("focal_dice", "bce_dice")
# The softness of the ranking term's candidate distributions: IoU differences of about this size count.
RANK_TEMPERATURE = 0.1


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al., 2017) averaged over pixels: ``... x H x W`` -> ``...``.

    ``alpha`` weighs foreground pixels (``1 - alpha`` background); a negative ``alpha`` disables the
    weighting.
    """
    targets = targets.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    prob = logits.sigmoid()
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss ``1 - (2 |P T| + s) / (|P| + |T| + s)`` on sigmoid probabilities: ``... x H x W`` -> ``...``.

    ``smooth`` keeps the loss defined (and 0) when both prediction and target are empty.
    """
    prob = logits.sigmoid().flatten(-2)
    targets = targets.to(logits.dtype).flatten(-2)
    overlap = (prob * targets).sum(-1)
    return 1 - (2 * overlap + smooth) / (prob.sum(-1) + targets.sum(-1) + smooth)


@torch.no_grad()
def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with ``targets`` per mask: ``... x H x W`` -> ``...`` (1 when both are empty).

    Thresholded, so it carries no gradient.
    """
    pred = (logits > 0).flatten(-2)
    truth = (targets >= 0.5 if targets.is_floating_point() else targets.bool()).flatten(-2)
    inter = (pred & truth).sum(-1).to(logits.dtype)
    union = (pred | truth).sum(-1).to(logits.dtype)
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sam_loss(
    low_res_logits: torch.Tensor,
    iou_pred: torch.Tensor,
    targets: torch.Tensor,
    mask_loss: str = "focal_dice",
    iou_weight: float = 1.0,
    rank_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The paper's loss for one prediction per prompt.

    Args:
        low_res_logits: ``B x M x h x w`` mask logits, ``M`` candidates per prompt (1 or 3).
        iou_pred: ``B x M`` predicted IoUs.
        targets: ``B x h x w`` ground-truth masks (bool or 0/1), in the frame of the logits.
        mask_loss: ``focal_dice`` (the paper's) or ``bce_dice`` (see ``MASK_LOSSES``).
        iou_weight: the IoU head's share, ``mask + iou_weight * iou_mse`` (the paper's is 1).
        rank_weight: the share of :func:`iou_rank_loss` (0, the paper's, leaves it out); it only acts when
            ``M > 1``.
    Returns:
        the scalar loss ``mask + iou_weight * iou_mse + rank_weight * iou_rank`` (mean over the batch),
        and detached scalar parts for logging: ``mask`` (the mask loss of the best candidate), ``focal``
        (or ``bce``), ``dice``, ``iou_mse``, ``iou_rank`` (when ``rank_weight > 0``) and ``iou`` (the best
        candidate's actual IoU).
    """
    if mask_loss not in MASK_LOSSES:
        raise ValueError(f"mask_loss must be one of {', '.join(MASK_LOSSES)}, got {mask_loss!r}.")
    if low_res_logits.ndim != 4 or targets.shape != (low_res_logits.shape[0], *low_res_logits.shape[2:]):
        raise ValueError(
            f"Expected logits B x M x h x w and targets B x h x w, got {tuple(low_res_logits.shape)} "
            f"and {tuple(targets.shape)}."
        )
    expanded = targets.unsqueeze(1).expand_as(low_res_logits)
    if mask_loss == "focal_dice":
        pixel_name, weight = "focal", FOCAL_WEIGHT
        pixel = focal_loss(low_res_logits, expanded)
    else:
        pixel_name, weight = "bce", 1.0
        bce = F.binary_cross_entropy_with_logits(
            low_res_logits, expanded.to(low_res_logits.dtype), reduction="none"
        )
        pixel = bce.flatten(-2).mean(-1)
    dice = dice_loss(low_res_logits, expanded)
    per_candidate = weight * pixel + DICE_WEIGHT * dice  # B x M
    # Only the best candidate is trained, so the others stay free to answer other readings.
    best = per_candidate.detach().argmin(dim=1, keepdim=True)
    mask_loss = per_candidate.gather(1, best).mean()

    # The IoU head learns the quality of every candidate; the target is a measurement, not a path
    # for gradients into the mask logits.
    actual_iou = mask_iou(low_res_logits.detach(), expanded)
    iou_mse = F.mse_loss(iou_pred, actual_iou)

    total = mask_loss + iou_weight * iou_mse
    parts = {
        "mask": mask_loss.detach(),
        pixel_name: pixel.gather(1, best).mean().detach(),
        "dice": dice.gather(1, best).mean().detach(),
        "iou_mse": iou_mse.detach(),
        "iou": actual_iou.gather(1, best).mean(),
    }
    if rank_weight > 0:
        rank = iou_rank_loss(iou_pred, actual_iou)
        total = total + rank_weight * rank
        parts["iou_rank"] = rank.detach()
    return total, parts


def iou_rank_loss(
    iou_pred: torch.Tensor, actual_iou: torch.Tensor, temperature: float = RANK_TEMPERATURE
) -> torch.Tensor:
    """Listwise ranking loss of predicted IoUs among each prompt's candidates: ``B x M`` -> scalar.

    The cross-entropy of ``softmax(iou_pred / T)`` against ``softmax(actual_iou / T)``, minus the
    targets' entropy (so 0 when the predictions' differences match the actual ones). A constant added
    to a prompt's predictions changes nothing: only their order and gaps are trained, which the
    squared error leaves to chance when its residuals are larger than the gaps between candidates.
    0 when ``M == 1``.
    """
    if iou_pred.shape[-1] < 2:
        return iou_pred.new_zeros(())
    target = torch.softmax(actual_iou.detach() / temperature, dim=-1)
    log_pred = torch.log_softmax(iou_pred / temperature, dim=-1)
    return F.kl_div(log_pred, target, reduction="batchmean")
