"""Mask-aware IoU head: rescores each returned mask from the mask itself.

SAM's IoU head reads one token (the IoU token) and predicts the IoU of every candidate from it, so it
judges the three candidates of a click without looking at them; a small model trained this way picks
the middle candidate nearly always. Mask Scoring R-CNN (Huang et al., 2019) scores a mask from the mask
and the image features under it. :class:`MaskScorer` does that for SAM's candidates: per candidate, the
image embedding pooled inside and outside the mask, a few statistics of its logits (area, stability,
confidence), its share of the largest candidate's area and the IoU token's prediction, into a small
MLP whose output corrects that prediction. Its last layer starts at zero, so an untrained scorer
returns the IoU token's prediction unchanged.

Frames: mask logits are ``B x M x L x L`` on the low-res grid over the padded input square (SAM's
``4h x 4w``); the image embedding ``1 x C x h x w`` or ``B x C x h x w`` covers the same square.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MLP

# Per-candidate statistics fed to the MLP besides the pooled embeddings (see MaskScorer.statistics).
NUM_STATISTICS = 7
# Logit offset of SAM's stability score (the area at logit > +1 over the area at logit > -1).
STABILITY_OFFSET = 1.0


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """SAM's stability score of ``... x H x W`` logits (``...``): the IoU between the masks thresholded at
    ``mask_threshold + offset`` and ``mask_threshold - offset``.

    The first is contained in the second, so the IoU is the ratio of their areas (NaN when both are empty).
    """
    inner = (logits > (mask_threshold + offset)).sum(dim=(-1, -2), dtype=torch.int32)
    outer = (logits > (mask_threshold - offset)).sum(dim=(-1, -2), dtype=torch.int32)
    return inner / outer


class MaskScorer(nn.Module):
    """Predicted IoU ``B x M`` of the ``M`` masks a prompt gets, from the masks and the image embedding."""

    def __init__(self, embed_dim: int, num_mask_tokens: int, hidden_dim: int = 128, depth: int = 3) -> None:
        """``embed_dim``: channels of the image embedding; ``num_mask_tokens``: the decoder's (4 for SAM),
        one-hot encoded so the scorer knows which output it judges."""
        super().__init__()
        self.num_mask_tokens = num_mask_tokens
        self.norm = nn.LayerNorm(2 * embed_dim)
        self.mlp = MLP(2 * embed_dim + NUM_STATISTICS + num_mask_tokens, hidden_dim, 1, depth)
        nn.init.zeros_(self.mlp.layers[-1].weight)
        nn.init.zeros_(self.mlp.layers[-1].bias)

    def forward(
        self,
        logits: torch.Tensor,
        image_embeddings: torch.Tensor,
        token_iou: torch.Tensor,
        tokens: Sequence[int],
    ) -> torch.Tensor:
        """
        Args:
            logits: ``B x M`` masks' low-res logits ``L x L`` (the answer, prompt prior included); they
                are read, not trained through (the scorer judges the masks, it does not shape them).
            image_embeddings: ``1 x C x h x w`` (shared by the prompts) or ``B x C x h x w``; ``L`` is a
                multiple of ``h``.
            token_iou: ``B x M`` the decoder's IoU-token predictions for these masks.
            tokens: the ``M`` mask-token indices the masks come from, in increasing order (``[0]``,
                ``[1, 2, 3]`` or all four for SAM). The single-mask output (token 0) and the multimask
                candidates are judged apart: a candidate is compared with the other candidates only.
        Returns:
            ``B x M`` predicted IoUs.
        """
        tokens = list(tokens)
        if tokens[0] == 0 and len(tokens) > 1:
            single = self._score(logits[:, :1], image_embeddings, token_iou[:, :1], tokens[:1])
            candidates = self._score(logits[:, 1:], image_embeddings, token_iou[:, 1:], tokens[1:])
            return torch.cat([single, candidates], dim=1)
        return self._score(logits, image_embeddings, token_iou, tokens)

    def _score(
        self, logits: torch.Tensor, image_embeddings: torch.Tensor, token_iou: torch.Tensor, tokens: list[int]
    ) -> torch.Tensor:
        """:meth:`forward` for masks of one group (the single mask, or candidates)."""
        logits = logits.detach().float()
        batch = logits.shape[0]
        embeddings = image_embeddings.float().expand(batch, -1, -1, -1)
        factor = logits.shape[-1] // embeddings.shape[-1]
        probability = torch.sigmoid(logits)
        inside = F.avg_pool2d(probability, factor)  # B x M x h x w, soft mask on the grid
        outside = 1 - inside
        pooled_in = torch.einsum("bmhw,bchw->bmc", inside, embeddings) / (
            inside.sum((-2, -1))[..., None] + 1e-3
        )
        pooled_out = torch.einsum("bmhw,bchw->bmc", outside, embeddings) / (
            outside.sum((-2, -1))[..., None] + 1e-3
        )
        pooled = self.norm(torch.cat([pooled_in, pooled_out], dim=-1))
        one_hot = torch.eye(self.num_mask_tokens, device=logits.device, dtype=pooled.dtype)[tokens]
        statistics = self.statistics(logits, probability, token_iou.float())
        features = torch.cat([pooled, statistics, one_hot.expand(batch, -1, -1)], dim=-1)
        correction = self.mlp(features)[..., 0]
        return (token_iou.float() + correction).to(token_iou.dtype)

    @staticmethod
    def statistics(logits: torch.Tensor, probability: torch.Tensor, token_iou: torch.Tensor) -> torch.Tensor:
        """``B x M x L x L`` logits, their sigmoid and ``B x M`` token IoUs -> ``B x M x NUM_STATISTICS``:
        the square root of the mask's area share, its stability score, its mean confidence inside, the
        square root of its soft area, its area over the largest candidate's, the token IoU and the token
        IoU less the best of the prompt's candidates."""
        positive = (logits > 0).float()
        area = positive.mean((-2, -1))
        stability = torch.nan_to_num(stability_score(logits, 0.0, STABILITY_OFFSET), nan=0.0)
        confidence = (probability * positive).sum((-2, -1)) / positive.sum((-2, -1)).clamp(min=1)
        soft_area = probability.mean((-2, -1))
        relative = area / area.amax(dim=1, keepdim=True).clamp(min=1e-6)
        best = token_iou.amax(dim=1, keepdim=True)
        return torch.stack(
            [area.sqrt(), stability, confidence, soft_area.sqrt(), relative, token_iou, token_iou - best],
            dim=-1,
        )
