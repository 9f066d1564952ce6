"""Building SAM models from configs, variant names and checkpoints; the official-style registry."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from .checkpoints import check_fits, infer_config, load_weights, read_checkpoint
from .config import EfficientNetLiteConfig, EncoderConfig, ImageEncoderConfig, SamConfig
from .modeling import (
    EfficientNetLiteEncoder,
    ImageEncoderViT,
    MaskDecoder,
    MaskScorer,
    PromptEncoder,
    Sam,
    TinyViT,
    TwoWayTransformer,
)
from .runtime import resolve_device, resolve_dtype
from .variants import VARIANTS, bundled_checkpoint, resolve_variant


def image_encoder_from_config(e: EncoderConfig) -> ImageEncoderViT | TinyViT | EfficientNetLiteEncoder:
    """The image encoder ``e`` describes: SAM's ViT, MobileSAM's TinyViT or an EfficientNet-Lite."""
    if isinstance(e, EfficientNetLiteConfig):
        return EfficientNetLiteEncoder(
            img_size=e.img_size,
            variant=e.variant,
            out_stride=e.out_stride,
            neck_dim=e.neck_dim,
            out_chans=e.out_chans,
            detail_skips=e.detail_skips,
        )
    if isinstance(e, ImageEncoderConfig):
        return ImageEncoderViT(
            img_size=e.img_size,
            patch_size=e.patch_size,
            embed_dim=e.embed_dim,
            depth=e.depth,
            num_heads=e.num_heads,
            mlp_ratio=e.mlp_ratio,
            out_chans=e.out_chans,
            qkv_bias=e.qkv_bias,
            use_abs_pos=e.use_abs_pos,
            use_rel_pos=e.use_rel_pos,
            window_size=e.window_size,
            global_attn_indexes=e.global_attn_indexes,
        )
    return TinyViT(
        img_size=e.img_size,
        embed_dims=e.embed_dims,
        depths=e.depths,
        num_heads=e.num_heads,
        window_sizes=e.window_sizes,
        mlp_ratio=e.mlp_ratio,
        mbconv_expand_ratio=e.mbconv_expand_ratio,
        local_conv_size=e.local_conv_size,
        out_chans=e.out_chans,
        num_classes=e.num_classes,
    )


def sam_from_config(config: SamConfig) -> Sam:
    """An untrained :class:`Sam` with the architecture of ``config`` (PyTorch default initialisation)."""
    e = config.encoder
    grid = e.embedding_grid
    image_encoder = image_encoder_from_config(e)
    prompt_encoder = PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(e.img_size, e.img_size),
        mask_in_chans=config.mask_in_chans,
        text_embed_dim=config.text_embed_dim,
    )
    mask_decoder = MaskDecoder(
        transformer_dim=config.prompt_embed_dim,
        transformer=TwoWayTransformer(
            depth=config.decoder_depth,
            embedding_dim=config.prompt_embed_dim,
            num_heads=config.decoder_num_heads,
            mlp_dim=config.decoder_mlp_dim,
        ),
        num_multimask_outputs=config.num_multimask_outputs,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
        detail_skips=config.detail_skips,
    )
    if config.prompt_prior != "none":
        # A model with a prior starts from it: the hypernetworks' last layers at zero make every mask
        # logit 0 before training, so a prompt answers the prior itself and training learns corrections.
        for mlp in mask_decoder.output_hypernetworks_mlps:
            nn.init.zeros_(mlp.layers[-1].weight)
            nn.init.zeros_(mlp.layers[-1].bias)
    mask_scorer = None
    if config.mask_scorer:
        mask_scorer = MaskScorer(config.prompt_embed_dim, config.num_multimask_outputs + 1)
    return Sam(
        image_encoder,
        prompt_encoder,
        mask_decoder,
        config.pixel_mean,
        config.pixel_std,
        config=config,
        mask_scorer=mask_scorer,
    )


def build_sam(
    name: str | SamConfig | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> Sam:
    """Build a SAM model in eval mode.

    Args:
        name: a variant (``vit_b``, ``vit_l``, ``vit_h``, ``vit_t`` = MobileSAM, ``default`` = ``vit_h``),
            a :class:`SamConfig`, or None. With a checkpoint and no name, the architecture comes from the
            checkpoint (its carried config, else its tensor shapes); with a name, a checkpoint of another
            variant is refused with a message naming the variant it fits.
        checkpoint: official ``.pth``, ``.safetensors``, a segany or training checkpoint, a Hugging
            Face ``transformers`` SAM checkpoint, or MobileSAM's ``mobile_sam.pt`` (``vit_t``). Without
            a name and a checkpoint: segany's bundled model (trained weights, no download); with a name
            only, untrained weights.
        device: where to put the model (default: see :func:`segany.runtime.resolve_device`).
        dtype: compute precision of predictions, ``float32`` (default, exact) or ``bfloat16`` (autocast;
            weights stay float32); kept as ``model.compute_dtype`` and used by the predictor and generator.
    """
    if name is None and checkpoint is None:
        checkpoint = bundled_checkpoint()
    state_dict = None
    if checkpoint is not None:
        state_dict, carried = read_checkpoint(checkpoint)
        found = carried or infer_config(state_dict)
    if isinstance(name, SamConfig):
        config = name
    elif name is not None:
        variant = resolve_variant(name)
        if state_dict is not None:
            check_fits(found, variant, checkpoint)  # type: ignore[arg-type]
        config = VARIANTS[variant]
    elif state_dict is not None:
        config = found
    else:
        config = VARIANTS[resolve_variant("default")]
    sam = sam_from_config(config)
    if state_dict is not None:
        load_weights(sam, state_dict, str(checkpoint))
    sam.compute_dtype = resolve_dtype(dtype)
    return sam.to(resolve_device(device)).eval()


def _registry_entry(variant: str, checkpoint: str | os.PathLike[str] | None = None) -> Sam:
    # Like the official registry: the model stays on the CPU until the caller moves it.
    return build_sam(variant, checkpoint=checkpoint, device="cpu")


sam_model_registry: dict[str, Callable[..., nn.Module]] = {
    name: partial(_registry_entry, name) for name in ("default", *VARIANTS)
}
"""Official-style registry: ``sam_model_registry["vit_b"](checkpoint="sam_vit_b_01ec64.pth")``."""
