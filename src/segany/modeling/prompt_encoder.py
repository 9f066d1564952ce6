"""Prompt encoder: points, boxes and masks to sparse and dense prompt embeddings.

Frames: point and box coordinates are in the model's input frame (pixels of the resized, unpadded
``img_size`` image, X then Y); mask prompts are ``B x 1 x 4h x 4w`` low-resolution logits, where
``h x w`` is the image-embedding grid (256 x 256 for the official models).

Text (paper section 7.5, appendix D.5): a model built with ``text_embed_dim = D > 0`` also takes a
``B x D`` embedding from a text-image encoder such as CLIP (of a phrase at inference, of the object's
crop in training), normalised to unit length and projected by a small MLP to one extra sparse token,
placed after the point and box tokens. The official models have no text path (``D = 0``) and keep
their exact parameter set.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..prompts import PIXEL_CENTER_OFFSET, PointLabel
from .layers import LayerNorm2d
from .versions import contents_key


class PromptEncoder(nn.Module):
    """Embeds prompts for the mask decoder (sparse tokens for points/boxes, a dense map for masks)."""

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
        text_embed_dim: int = 0,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # Learned embeddings, indexed by label: 0 negative point, 1 positive point,
        # 2 box top-left corner, 3 box bottom-right corner.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe_cache: tuple[Any, torch.Tensor, torch.Tensor] | None = None
        self.text_embed_dim = text_embed_dim
        self.text_projection: nn.Module | None = None
        if text_embed_dim > 0:
            self.text_projection = nn.Sequential(
                nn.Linear(text_embed_dim, embed_dim), activation(), nn.Linear(embed_dim, embed_dim)
            )

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid: ``1 x embed_dim x h x w``.

        Without autograd the result is kept and returned again (the same tensor) until the encoding's
        matrix changes, so that per-image caches downstream recognise it.
        """
        matrix = self.pe_layer.positional_encoding_gaussian_matrix
        contents = contents_key(matrix)
        if torch.is_grad_enabled() or torch.is_inference_mode_enabled() or contents is None:
            return self.pe_layer(self.image_embedding_size).unsqueeze(0)
        key = (contents, matrix.device, matrix.dtype)
        cached = self._dense_pe_cache
        if cached is None or cached[0] != key:
            cached = self._dense_pe_cache = (
                key,
                matrix,
                self.pe_layer(self.image_embedding_size).unsqueeze(0),
            )
        return cached[2]

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``B x N x 2`` points and ``B x N`` labels -> ``B x N(+1) x embed_dim`` tokens."""
        points = points + PIXEL_CENTER_OFFSET
        if pad:
            # Without a box the decoder still expects a token in the box slot: a padding point.
            padding_point = torch.zeros((points.shape[0], 1, 2), device=points.device, dtype=points.dtype)
            padding_label = torch.full(
                (labels.shape[0], 1), int(PointLabel.PADDING), device=labels.device, dtype=labels.dtype
            )
            points = torch.cat([points, padding_point], dim=1)
            labels = torch.cat([labels, padding_label], dim=1)
        return self.label_tokens(points, labels)

    def label_tokens(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Tokens of ``B x N x 2`` pixel centres (offset already added) with ``B x N`` labels (any
        numeric dtype; -1 padding, 0/1 background/foreground, 2/3 box corners) -> ``B x N x embed_dim``.
        Branch-free, so the ONNX decoder traces this same code."""
        embedding = self.pe_layer.forward_with_coords(points, self.input_image_size)
        is_padding = (labels == PointLabel.PADDING).unsqueeze(-1)
        embedding = torch.where(is_padding, self.not_a_point_embed.weight, embedding)
        for label, learned in enumerate(self.point_embeddings):
            embedding = embedding + (labels == label).unsqueeze(-1).to(embedding.dtype) * learned.weight
        return embedding

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``B x 4`` XYXY boxes -> ``B x 2 x embed_dim`` corner tokens."""
        corners = (boxes + PIXEL_CENTER_OFFSET).reshape(-1, 2, 2)
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_embed = torch.cat(
            [
                self.point_embeddings[PointLabel.BOX_TOP_LEFT].weight,
                self.point_embeddings[PointLabel.BOX_BOTTOM_RIGHT].weight,
            ]
        )
        return embedding + corner_embed

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        return self.mask_downscaling(masks)

    def _embed_text(self, text: torch.Tensor) -> torch.Tensor:
        """``B x D`` text or crop embeddings -> ``B x 1 x embed_dim`` tokens."""
        if self.text_projection is None:
            raise ValueError(
                "This model has no text prompt path (it was built with text_embed_dim = 0); "
                "use a model trained for text prompts."
            )
        if text.ndim != 2 or text.shape[1] != self.text_embed_dim:
            raise ValueError(
                f"Text embeddings must be B x {self.text_embed_dim} for this model, got {tuple(text.shape)}."
            )
        weight = self.no_mask_embed.weight
        unit = F.normalize(text.to(device=weight.device, dtype=torch.float32), dim=-1)
        return self.text_projection(unit.to(weight.dtype)).unsqueeze(1)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        text: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed any combination of prompts (all in the model-input frame).

        Args:
            points: ``(B x N x 2 coords, B x N labels)`` or None.
            boxes: ``B x 4`` XYXY boxes or None.
            masks: ``B x 1 x 4h x 4w`` mask logits or None.
            text: ``B x D`` text (or crop) embeddings or None; needs a model with a text path.
        Returns:
            sparse ``B x T x embed_dim`` tokens and dense ``B x embed_dim x h x w`` embeddings.
        """
        batch = _batch_size(points, boxes, masks, text)
        device = self.no_mask_embed.weight.device
        sparse = torch.empty((batch, 0, self.embed_dim), device=device, dtype=self.no_mask_embed.weight.dtype)
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if text is not None:
            sparse = torch.cat([sparse, self._embed_text(text)], dim=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)
        return sparse, dense


def _batch_size(
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    masks: torch.Tensor | None,
    text: torch.Tensor | None = None,
) -> int:
    if points is not None:
        return points[0].shape[0]
    if boxes is not None:
        return boxes.shape[0]
    if masks is not None:
        return masks.shape[0]
    if text is not None:
        return text.shape[0]
    return 1


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier-feature positional encoding (Tancik et al., 2020) of normalised coordinates."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def encode_normalized(self, coords: torch.Tensor) -> torch.Tensor:
        """``... x 2`` coordinates in [0, 1] -> ``... x 2F`` sin/cos features."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an ``h x w`` grid: ``2F x h x w``."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        y = (torch.arange(h, device=matrix.device, dtype=matrix.dtype) + 0.5) / h
        x = (torch.arange(w, device=matrix.device, dtype=matrix.dtype) + 0.5) / w
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # h x w x 2, (x, y)
        return self.encode_normalized(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode ``B x N x 2`` pixel coordinates (X, Y) in an image of ``image_size = (H, W)``."""
        size_xy = torch.tensor(
            [float(image_size[1]), float(image_size[0])], device=coords_input.device, dtype=torch.float32
        )
        return self.encode_normalized(coords_input.float() / size_xy)
