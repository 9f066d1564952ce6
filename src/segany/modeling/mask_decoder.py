"""Mask decoder: a two-way transformer over prompt and output tokens, upscaling and hypernetwork heads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .batched_decoding import SharedImage, prepare_shared_image, two_way_shared_image, upscale_masks
from .detail import detail_blocks, detail_maps, split_detail
from .layers import MLP, LayerNorm2d
from .packed_linear import PackedConvTranspose2x2
from .transformer import TwoWayTransformer
from .versions import contents_key

# Prompts decoded together by the batched fast path (see MaskDecoder._predict_shared_image).
_PROMPTS_PER_CHUNK = 16


class MaskDecoder(nn.Module):
    """Predicts masks (``4h x 4w`` logits) and their IoU from image and prompt embeddings.

    One IoU token and ``num_multimask_outputs + 1`` mask tokens are prepended to the prompt tokens:
    mask token 0 answers unambiguous prompts, tokens 1.. give the multimask candidates.
    With ``detail_skips`` the image embedding also carries fine encoder features (:mod:`.detail`,
    ``B x 4C x h x w``), added to the output of each upscaling step.
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        batched_fast_path: bool = True,
        detail_skips: bool = False,
    ) -> None:
        """``batched_fast_path``: decode several prompts on one image with :mod:`.batched_decoding`
        (same results up to float rounding); False always runs the reference computation."""
        super().__init__()
        self.batched_fast_path = batched_fast_path
        self.detail_skips = detail_skips
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            PackedConvTranspose2x2(transformer_dim, transformer_dim // 4),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            PackedConvTranspose2x2(transformer_dim // 4, transformer_dim // 8),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        min_iou: float | None = None,
        image_cache: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embeddings: ``1 x C x h x w`` (shared by every prompt) or ``B x C x h x w``
                (``4C`` channels with detail skips).
            image_pe: ``1 x C x h x w`` positional encoding of the embedding grid.
            sparse_prompt_embeddings: ``B x T x C`` point/box tokens.
            dense_prompt_embeddings: ``B x C x h x w`` mask-prompt embedding.
            multimask_output: return the 3 candidate masks instead of the single one.
            min_iou: when given, the batched fast path skips upscaling for prompts none of whose returned
                candidates has a predicted IoU above it; their mask logits are NaN (the automatic
                generator discards them anyway). Other masks are unchanged.
            image_cache: a dict the caller keeps for one image embedding and one dense prompt (a
                predictor's image with no mask input): the batched fast path keeps there what the first
                layer computes from the image alone, so later calls on the same image skip it.
        Returns:
            mask logits ``B x M x 4h x 4w`` and predicted IoUs ``B x M`` (``M`` = 3 or 1).
        """
        selected = slice(1, None) if multimask_output else slice(0, 1)
        masks, iou_pred = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            keep=None if min_iou is None else (lambda iou: (iou[:, selected] > min_iou).any(dim=1)),
            image_cache=image_cache,
            outputs=selected,
        )
        return masks, iou_pred[:, selected]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        keep: Callable[[torch.Tensor], torch.Tensor] | None = None,
        image_cache: dict[str, Any] | None = None,
        outputs: slice = slice(None),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks ``B x M x 4h x 4w`` and IoUs ``B x num_mask_tokens``, before the multimask selection.

        ``keep`` maps the ``B x num_mask_tokens`` IoU predictions to a ``B`` bool of the prompts whose masks
        are needed (batched fast path only; the others are NaN). ``outputs`` selects the mask tokens whose
        masks are returned (default all, ``M = num_mask_tokens``); the fast path upscales only those.
        """
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

        if image_embeddings.shape[0] not in (1, batch):
            raise ValueError(
                f"image_embeddings has batch {image_embeddings.shape[0]}; expected 1 or the prompt batch {batch}."
            )
        detail = None
        if self.detail_skips:
            image_embeddings, *detail = split_detail(image_embeddings, self.transformer_dim)
        # One image and one dense embedding (no per-prompt mask input) shared by several prompts.
        dense_shared = dense_prompt_embeddings.shape[0] == 1 or dense_prompt_embeddings.stride(0) == 0
        if self.batched_fast_path and image_embeddings.shape[0] == 1 and dense_shared:
            blocks = None if detail is None else detail_blocks(*detail)
            return self._predict_shared_image(
                image_embeddings,
                dense_prompt_embeddings[:1],
                image_pe,
                tokens,
                keep,
                image_cache,
                outputs,
                blocks,
            )

        src = image_embeddings.expand(batch, -1, -1, -1) + dense_prompt_embeddings
        pos_src = image_pe.expand(batch, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)

        # Upscale the image embedding and dot it with each mask token's hypernetwork output.
        upscaled = self._upscale(src.transpose(1, 2).reshape(b, c, h, w), detail)
        hyper_in = self._hypernetworks(hs, range(self.num_mask_tokens))
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks[:, outputs], self.iou_prediction_head(hs[:, 0, :])

    def _upscale(self, x: torch.Tensor, detail: list[torch.Tensor] | None) -> torch.Tensor:
        """``output_upscaling`` of ``B x C x h x w`` image tokens -> ``B x C/8 x 4h x 4w``; with the
        packed detail maps (:func:`.detail.split_detail`), each step's output gets its map added."""
        if detail is None:
            return self.output_upscaling(x)
        conv1, norm, act1, conv2, act2 = self.output_upscaling
        stride8, stride4 = detail_maps(*detail)
        return act2(conv2(act1(norm(conv1(x) + stride8))) + stride4)

    def _shared_image(
        self,
        image_embeddings: torch.Tensor,
        dense: torch.Tensor,
        image_pe: torch.Tensor,
        image_cache: dict[str, Any] | None,
    ) -> SharedImage:
        """The first layer's image-only projections, from ``image_cache`` when it holds them for the
        same embedding tensor, weights and precision (and no gradient is being recorded)."""
        if image_cache is None or torch.is_grad_enabled():
            return prepare_shared_image(self.transformer, image_embeddings + dense, image_pe)
        first = self.transformer.layers[0]
        # Tensors are told apart by their memory and version counter (segany.modeling.versions); the entry holds references to
        # them, so their memory cannot be freed and reused by other tensors while it is cached.
        inputs = (
            image_embeddings,
            dense,
            image_pe,
            *first.cross_attn_token_to_image.parameters(),
            *first.cross_attn_image_to_token.parameters(),
        )
        contents = [contents_key(t) for t in inputs]
        if None in contents:  # an inference tensor: nothing tells its later contents apart
            return prepare_shared_image(self.transformer, image_embeddings + dense, image_pe)
        key = (
            torch.is_autocast_enabled(image_embeddings.device.type),
            tuple((c, t.dtype, tuple(t.shape), t.stride()) for c, t in zip(contents, inputs, strict=True)),
        )
        cached = image_cache.get("shared_image")
        if cached is not None and cached[0] == key:
            return cached[2]
        image = prepare_shared_image(self.transformer, image_embeddings + dense, image_pe)
        image_cache["shared_image"] = (key, inputs, image)
        return image

    def _predict_shared_image(
        self,
        image_embeddings: torch.Tensor,
        dense: torch.Tensor,
        image_pe: torch.Tensor,
        tokens: torch.Tensor,
        keep: Callable[[torch.Tensor], torch.Tensor] | None,
        image_cache: dict[str, Any] | None = None,
        outputs: slice = slice(None),
        detail: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batched fast path, a few prompts at a time: their per-prompt image tensors (4 MiB each
        for the official size) then stay in the CPU's cache between operations. ``detail``: the
        detail maps in block layout (:func:`.detail.detail_blocks`)."""
        batch = tokens.shape[0]
        h, w = image_embeddings.shape[-2:]
        image = self._shared_image(image_embeddings, dense, image_pe, image_cache)  # once for all chunks
        dtype = image.keys.dtype
        chosen = list(range(self.num_mask_tokens)[outputs])
        rows = [0, *(1 + i for i in chosen)]  # the IoU token and the returned masks' tokens
        shape = (batch, len(chosen), 4 * h, 4 * w)
        if keep is None:  # every mask is written
            masks = torch.empty(shape, device=tokens.device, dtype=dtype)
        else:  # those of prompts not kept stay NaN
            masks = torch.full(shape, float("nan"), device=tokens.device, dtype=dtype)
        ious = []
        for start in range(0, batch, _PROMPTS_PER_CHUNK):
            hs, keys = two_way_shared_image(
                self.transformer, image, tokens[start : start + _PROMPTS_PER_CHUNK], rows
            )
            iou_pred = self.iou_prediction_head(hs[:, 0, :])
            ious.append(iou_pred)
            # Every prompt: a slice (views, no gathered copies); else the indices of those kept.
            needed = slice(None) if keep is None else torch.nonzero(keep(iou_pred)).flatten()
            if keep is not None and not len(needed):
                continue
            hyper = self._hypernetworks(hs[needed], chosen)
            if keep is not None:
                upscaled = upscale_masks(self.output_upscaling, keys[needed], hyper, (h, w), detail=detail)
                masks[start + needed] = upscaled.to(masks.dtype)
            elif torch.jit.is_tracing():  # writes through views are not traced: assign the result
                masks[start : start + len(hs)] = upscale_masks(
                    self.output_upscaling, keys, hyper, (h, w), detail=detail
                )
            else:  # straight into the result, no intermediate copy
                upscale_masks(
                    self.output_upscaling,
                    keys,
                    hyper,
                    (h, w),
                    out=masks[start : start + len(hs)],
                    detail=detail,
                )
        return masks, torch.cat(ious)

    def _hypernetworks(self, hs: torch.Tensor, chosen: Sequence[int]) -> torch.Tensor:
        """Mask-token outputs -> per-mask weights over the upscaled channels ``B x M x C/8``.

        ``hs``: ``B x T x C`` transformer output tokens, the IoU token's in row 0 and then those of the
        mask tokens ``chosen`` (``M`` of them), in that order.
        """
        return torch.stack(
            [self.output_hypernetworks_mlps[i](hs[:, 1 + j, :]) for j, i in enumerate(chosen)], dim=1
        )
