"""Hugging Face ``transformers`` SAM checkpoints convert to the official layout and give the same numbers."""

from __future__ import annotations

import pytest
import torch

import segany
from support import TINY

transformers = pytest.importorskip("transformers", reason="needs transformers (test extra)")


def _hf_model():
    from transformers import SamConfig, SamMaskDecoderConfig, SamModel, SamVisionConfig

    e = TINY.encoder
    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=e.embed_dim,
            num_hidden_layers=e.depth,
            num_attention_heads=e.num_heads,
            image_size=e.img_size,
            patch_size=e.patch_size,
            window_size=e.window_size,
            global_attn_indexes=list(e.global_attn_indexes),
            output_channels=e.out_chans,
            mlp_dim=int(e.embed_dim * e.mlp_ratio),
        ),
        mask_decoder_config=SamMaskDecoderConfig(mlp_dim=TINY.decoder_mlp_dim),
    )
    config.prompt_encoder_config.image_size = e.img_size
    config.prompt_encoder_config.image_embedding_size = e.img_size // e.patch_size
    model = SamModel(config).eval()
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=gen)
                scale = 1.0 if tensor.ndim < 2 or "embed" in name else tensor.shape[1] ** -0.5
                tensor.copy_(noise * (0.3 if tensor.ndim == 1 else scale))
    return model


@torch.no_grad()
def test_hf_checkpoint_loads_and_matches(tmp_path):
    hf = _hf_model()
    hf.save_pretrained(tmp_path / "hf")
    ours = segany.build_sam(checkpoint=tmp_path / "hf" / "model.safetensors", device="cpu")
    assert ours.config.encoder == TINY.encoder

    pixels = torch.randn(1, 3, 256, 256)
    emb_hf = hf.get_image_embeddings(pixels)
    emb = ours.image_encoder(pixels)
    assert emb.shape == emb_hf.shape == (1, 256, 16, 16)
    assert (emb - emb_hf).abs().max().item() <= 1e-4

    points = torch.tensor([[[[60.0, 80.0], [200.0, 30.0]]]])  # 1 image x 1 prompt x 2 points x (X, Y)
    labels = torch.tensor([[[1, 0]]])
    out_hf = hf(image_embeddings=emb_hf, input_points=points, input_labels=labels, multimask_output=True)
    low, iou = ours.decode(emb, points=(points[0], labels[0]), multimask_output=True)
    assert (low - out_hf.pred_masks[0]).abs().max().item() <= 1e-4
    assert (iou - out_hf.iou_scores[0]).abs().max().item() <= 1e-4
