"""Detail skips: the encoder's stride-8 and stride-4 features carried in the embedding and added to the
decoder's upscaling (segany.modeling.detail)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segany
from segany.checkpoints import load_weights
from segany.config import EfficientNetLiteConfig
from segany.errors import PromptError
from segany.modeling.detail import detail_blocks, detail_maps, pack_detail, split_detail
from support import SMALL_EFFICIENTNET as SMALL
from support import sample_image
from support import small_efficientnet_model as small_model

DETAIL = SMALL.replace(encoder={"detail_skips": True}, prior_as_mask_prompt=True)


def _trained_like(model: segany.Sam) -> segany.Sam:
    """``model`` with random hypernetwork heads instead of their zero start (else every mask is the prior)."""
    torch.manual_seed(1)
    for mlp in model.mask_decoder.output_hypernetworks_mlps:
        torch.nn.init.normal_(mlp.layers[-1].weight, std=0.1)
    return model


def _with_projections(model: segany.Sam, seed: int = 3) -> segany.Sam:
    """``model`` with its detail projections set to random (trained-like) weights instead of zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in (model.image_encoder.detail4, model.image_encoder.detail8):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.2)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.2)
    return model


def test_packed_maps_come_back_whole_and_blocks_hold_each_pixel_where_the_upscaling_puts_it() -> None:
    c, h, w = 16, 3, 5
    embedding = torch.randn(2, c, h, w)
    stride8, stride4 = torch.randn(2, c // 4, 2 * h, 2 * w), torch.randn(2, c // 8, 4 * h, 4 * w)
    packed = pack_detail(embedding, stride8, stride4)
    assert packed.shape == (2, 4 * c, h, w)
    same, *maps = split_detail(packed, c)
    assert torch.equal(same, embedding)
    back8, back4 = detail_maps(*maps)
    assert torch.equal(back8, stride8) and torch.equal(back4, stride4)
    blocks8, blocks4 = detail_blocks(*maps)
    # Cell (i, j) = (1, 2), sub-pixel (a1, b1) = (1, 0), sub-sub-pixel (a2, b2) = (0, 1), channel 1.
    i, j, a1, b1, a2, b2 = 1, 2, 1, 0, 0, 1
    assert blocks8[1, i * w + j, 2 * a1 + b1, 1] == stride8[1, 1, 2 * i + a1, 2 * j + b1]
    assert (
        blocks4[1, i * w + j, 2 * a1 + b1, 2 * a2 + b2, 1]
        == stride4[1, 1, 4 * i + 2 * a1 + a2, 4 * j + 2 * b1 + b2]
    )
    with pytest.raises(ValueError, match="has 64 channels, got 48"):
        split_detail(packed[:, :48], c)


def test_detail_skips_need_the_stride_16_grid() -> None:
    with pytest.raises(ValueError, match="detail_skips needs out_stride 16, got 8"):
        EfficientNetLiteConfig(out_stride=8, detail_skips=True)


def test_zero_projections_give_the_masks_of_the_model_without_and_trained_ones_change_them() -> None:
    plain = _trained_like(small_model(SMALL.replace(prior_as_mask_prompt=True)).eval())
    detail = small_model(DETAIL).eval()
    weights = plain.state_dict()
    fresh = {k: v for k, v in detail.state_dict().items() if k not in weights}
    assert sorted(fresh) == [
        "image_encoder.detail4.bias",
        "image_encoder.detail4.weight",
        "image_encoder.detail8.bias",
        "image_encoder.detail8.weight",
    ]
    load_weights(detail, {**weights, **fresh}, "plain")
    image = torch.rand(1, 3, 256, 256) * 255
    box = torch.tensor([[30.0, 40.0, 150.0, 120.0]])
    click = (torch.tensor([[[60.0, 70.0]]]), torch.tensor([[1]]))
    with torch.no_grad():
        embedding = detail.embed_images(image)
        assert embedding.shape == (1, 4 * 64, 16, 16)
        for prompt in ({"boxes": box}, {"points": click}):
            assert torch.equal(
                detail.decode(embedding, **prompt)[0], plain.decode(plain.embed_images(image), **prompt)[0]
            )
        _with_projections(detail)
        changed = detail.decode(detail.embed_images(image), boxes=box)[0]
    assert (changed - plain.decode(plain.embed_images(image), boxes=box)[0]).abs().max() > 0.1


def test_the_batched_fast_path_adds_the_detail_as_the_reference_path_does() -> None:
    model = _with_projections(_trained_like(small_model(DETAIL).eval()))
    decoder = model.mask_decoder
    points = (
        torch.tensor([[[60.0, 70.0]], [[200.0, 30.0]], [[120.0, 120.0]]]),
        torch.tensor([[1], [1], [0]]),
    )
    with torch.no_grad():
        embedding = model.embed_images(torch.rand(1, 3, 256, 256) * 255)
        sparse, dense = model.prompt_encoder(points=points, boxes=None, masks=None)
        answers = []
        for fast in (True, False):
            decoder.batched_fast_path = fast
            answers.append(decoder(embedding, model.prompt_encoder.get_dense_pe(), sparse, dense[:1], True))
    (fast_masks, fast_iou), (masks, iou) = answers
    assert masks.abs().max() > 1
    assert torch.allclose(fast_masks, masks, atol=1e-4) and torch.allclose(fast_iou, iou, atol=1e-5)


def test_gradients_reach_the_detail_projections() -> None:
    model = _trained_like(small_model(DETAIL)).train()
    embedding = model.embed_images(torch.rand(1, 3, 256, 256) * 255)
    low_res, _ = model.decode(embedding, boxes=torch.tensor([[30.0, 40.0, 150.0, 120.0]]))
    low_res.square().mean().backward()
    for conv in (model.image_encoder.detail4, model.image_encoder.detail8):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_the_predictor_keeps_and_takes_back_the_whole_embedding() -> None:
    model = _with_projections(_trained_like(small_model(DETAIL).eval()))
    predictor = segany.SamPredictor(model)
    image = sample_image()
    predictor.set_image(image)
    click = {"point_coords": np.array([[100, 80]]), "point_labels": np.array([1])}
    masks, scores, _ = predictor.predict(**click)
    features = predictor.get_image_embedding()
    assert features.shape == (1, 256, 16, 16)
    other = segany.SamPredictor(model)
    other.set_embedding(features, image.shape[:2])
    again, again_scores, _ = other.predict(**click)
    assert np.array_equal(again, masks) and np.allclose(again_scores, scores)
    with pytest.raises(
        PromptError, match=r"features must be 1 x 256 x 16 x 16 for this model, got \(1, 64, 16, 16\)"
    ):
        other.set_embedding(features[:, :64], image.shape[:2])
