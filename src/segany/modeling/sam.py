"""``Sam``: image encoder + prompt encoder + mask decoder, with pre- and post-processing.

Frames: ``original`` is the user's ``H x W`` image; ``input`` is that image resized so its longest side
is ``img_size`` (``h' x w'``, unpadded); the encoder sees it padded at the bottom/right to
``img_size x img_size``. Low-resolution masks are ``4h x 4w`` (256 x 256) over the padded square.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SamConfig
from .detail import PACKED_FACTOR
from .efficientnet_lite import EfficientNetLiteEncoder
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .mask_resize import resize_exact, resize_fast
from .mask_scorer import MaskScorer
from .prompt_encoder import PromptEncoder
from .prompt_prior import prompt_prior_logits
from .tiny_vit import TinyViT


class Sam(nn.Module):
    """The Segment Anything model. Differentiable end to end: training uses it as it is."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: ImageEncoderViT | TinyViT | EfficientNetLiteEncoder,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: Sequence[float] = (123.675, 116.28, 103.53),
        pixel_std: Sequence[float] = (58.395, 57.12, 57.375),
        config: SamConfig | None = None,
        mask_scorer: MaskScorer | None = None,
    ) -> None:
        """``config``, when given, is the configuration the modules were built from (kept for saving).
        ``mask_scorer``: rescores the decoder's masks (``SamConfig.mask_scorer``); None keeps the IoU
        token's predictions, as the official models do."""
        super().__init__()
        self.config = config
        # Precision the predictor and generator compute in (see segany.runtime.compute_context).
        self.compute_dtype = torch.float32
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.mask_scorer = mask_scorer
        # Not persistent: official checkpoints do not store them.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def embedding_channels(self) -> int:
        """Channels ``C`` of an image embedding: the prompt width, or with detail skips
        (:mod:`.detail`) that times ``PACKED_FACTOR``."""
        width = self.prompt_encoder.embed_dim
        return width * PACKED_FACTOR if self.mask_decoder.detail_skips else width

    @property
    def img_size(self) -> int:
        """Side of the square the image encoder takes (1024 for the official models)."""
        return self.image_encoder.img_size

    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        """Predict masks end to end for a batch of images (the official ``Sam.forward`` contract).

        Each record holds ``image`` (``3 x h' x w'`` uint8/float tensor, already resized so the longest
        side is ``img_size``), ``original_size`` ``(H, W)`` and optionally ``point_coords`` (``B x N x 2``),
        ``point_labels`` (``B x N``), ``boxes`` (``B x 4``), ``mask_inputs`` (``B x 1 x 256 x 256``), all in
        the input frame, and ``text_embeddings`` (``B x D``, models with a text path). Returns per image ``masks`` (``B x M x H x W`` bool), ``iou_predictions``
        (``B x M``) and ``low_res_logits`` (``B x M x 256 x 256``).
        """
        image_embeddings = self.embed_images([record["image"] for record in batched_input])
        outputs = []
        for record, embedding in zip(batched_input, image_embeddings, strict=True):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            low_res_masks, iou_predictions = self.decode(
                embedding.unsqueeze(0),
                points=points,
                boxes=record.get("boxes"),
                masks=record.get("mask_inputs"),
                multimask_output=multimask_output,
                text=record.get("text_embeddings"),
            )
            masks = self.postprocess_masks(
                low_res_masks,
                input_size=tuple(record["image"].shape[-2:]),
                original_size=record["original_size"],
            )
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou_predictions,
                    "low_res_logits": low_res_masks,
                }
            )
        return outputs

    def embed_images(
        self, images: Sequence[torch.Tensor] | torch.Tensor, encoder: Callable | None = None
    ) -> torch.Tensor:
        """Image embeddings ``B x C x h x w`` of resized ``3 x h' x w'`` images (0-255, not normalised).

        Images may differ in size (each is padded to the ``img_size`` square); one encoder pass for all.
        ``encoder``: a stand-in for ``self.image_encoder`` (e.g. its ``torch.compile`` version).
        """
        batch = torch.stack([self.preprocess(image) for image in images], dim=0)
        return (self.image_encoder if encoder is None else encoder)(batch)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        multimask_output: bool = True,
        min_iou: float | None = None,
        text: torch.Tensor | None = None,
        image_cache: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt-encode and decode: low-res mask logits ``B x M x 4h x 4w`` and IoU predictions ``B x M``.

        ``image_embeddings`` is ``1 x C x h x w`` (shared by the ``B`` prompts) or ``B x C x h x w``;
        prompts are in the input frame (see :class:`PromptEncoder`). ``min_iou``: see
        :meth:`MaskDecoder.forward` (masks that cannot pass an IoU filter may be left uncomputed, NaN).
        ``text``: ``B x D`` text or crop embeddings, for a model with a text path. ``image_cache``: a
        dict kept by the caller for one image embedding (a predictor's current image), where the decoder
        keeps image-only work between calls; used only for prompts without a mask input. A model with
        a mask scorer rescores the returned masks (prior included) and decodes every mask in full.
        """
        prior = None
        if self.prompt_prior == "geometric":
            prior = prompt_prior_logits(points, boxes, 4 * image_embeddings.shape[-1], self.img_size)
        if (
            masks is None
            and prior is not None
            and self.config is not None
            and self.config.prior_as_mask_prompt
        ):
            masks = prior.to(image_embeddings.dtype)
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=masks, text=text)
        low_res, iou = self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            # A scorer's IoU needs the masks: none may be skipped.
            min_iou=min_iou if self.mask_scorer is None else None,
            image_cache=image_cache if masks is None else None,
        )
        if prior is not None:
            low_res = low_res + prior.to(low_res.dtype)
        if self.mask_scorer is not None:
            tokens = range(1, low_res.shape[1] + 1) if multimask_output else range(1)
            embedding = image_embeddings[:, : self.prompt_encoder.embed_dim]  # without detail skips
            iou = self.mask_scorer(low_res, embedding, iou, tokens)
        return low_res, iou

    @property
    def zoom_context(self) -> float:
        """``SamConfig.zoom_context``: > 0 when predictions on small objects take a zoomed-in second pass."""
        return self.config.zoom_context if self.config is not None else 0.0

    @property
    def prompt_prior(self) -> str:
        """The prior the masks start from (``SamConfig.prompt_prior``; "none" for official models)."""
        return self.config.prompt_prior if self.config is not None else "none"

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
        exact: bool = True,
        threshold: float | None = None,
    ) -> torch.Tensor:
        """``B x M x 4h x 4w`` logits -> ``B x M x H x W`` logits in the original frame (bool masks
        ``logits > threshold`` when ``threshold`` is given).

        Upsample to the padded square, cut the padding (``input_size`` = ``(h', w')``), then resize to
        ``original_size`` = ``(H, W)``; bilinear, ``align_corners=False`` both times (the official
        definition). Computed without the padded part: only the low-res rows and columns that reach the
        unpadded area are upsampled, with the same scale factor, so every output pixel has the same
        source pixels and weights (bit-identical results); the second resize is skipped when it is the
        identity. ``exact=False`` resizes with OpenCV on the CPU (see
        :func:`~segany.modeling.mask_resize.resize_fast`: 3-8x faster, logits within ~1e-4 of these).
        """
        resize = resize_exact if exact else resize_fast
        low_h, low_w = masks.shape[-2:]
        factor = self.img_size // low_h
        rows = min(low_h, math.ceil(input_size[0] / factor) + 1)
        cols = min(low_w, math.ceil(input_size[1] / factor) + 1)
        masks = resize(masks[..., :rows, :cols], (rows * factor, cols * factor))
        masks = masks[..., : input_size[0], : input_size[1]]
        if tuple(input_size) != tuple(original_size):
            if not exact:  # compares each plane with the threshold as it goes (no full-size logits)
                return resize_fast(masks, tuple(original_size), threshold)
            masks = resize_exact(masks, tuple(original_size))
        return masks if threshold is None else masks > threshold

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a ``3 x h' x w'`` (or ``B x 3 x h' x w'``) image and pad it to ``img_size`` square."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))
