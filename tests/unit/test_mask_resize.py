"""Mask-logit resizing: the exact (official) numbers, and the fast OpenCV path close to them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segany.modeling.mask_resize import resize_exact, resize_fast


def _logits() -> torch.Tensor:
    torch.manual_seed(0)
    # Smooth logits with a boundary, like a decoder's: a blurred random field.
    field = F.avg_pool2d(torch.randn(2, 3, 200, 260), 9, stride=1, padding=4) * 5
    return field[..., :172, :256]  # a cropped (strided) view, as the post-processing passes


@pytest.mark.parametrize("size", [(688, 1024), (800, 1200), (100, 90)])
def test_exact_resize_is_the_official_call(size):
    masks = _logits()
    expected = F.interpolate(masks.contiguous(), size, mode="bilinear", align_corners=False)
    assert torch.equal(resize_exact(masks, size), expected)


@pytest.mark.parametrize("size", [(688, 1024), (800, 1200), (100, 90)])
def test_fast_resize_stays_close_to_the_exact_one(size):
    masks = _logits()
    exact = resize_exact(masks, size)
    fast = resize_fast(masks, size)
    assert fast.shape == exact.shape == (2, 3, *size)
    assert (fast - exact).abs().max() <= 1e-3 * exact.abs().max()
    flipped = ((fast > 0) != (exact > 0)).float().mean()
    assert flipped < 1e-4


def test_fast_resize_falls_back_where_opencv_does_not_apply():
    masks = _logits().double()
    assert torch.equal(resize_fast(masks, (50, 60)), resize_exact(masks, (50, 60)))


def test_postprocess_masks_fast_mode_stays_close_to_the_exact_one():
    from support import fixture_model

    model = fixture_model()
    low = F.interpolate(_logits().contiguous(), (64, 64), mode="bilinear", align_corners=False)
    exact = model.postprocess_masks(low, (48, 64), (300, 410))
    fast = model.postprocess_masks(low, (48, 64), (300, 410), exact=False)
    assert fast.shape == exact.shape == (2, 3, 300, 410)
    assert not torch.equal(fast, exact)  # OpenCV ran: its rounding differs
    assert (fast - exact).abs().max() <= 1e-3 * exact.abs().max()


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("original", [(300, 410), (48, 64)])
def test_postprocess_masks_thresholds_like_comparing_the_logits(exact, original):
    from support import fixture_model

    model = fixture_model()
    low = F.interpolate(_logits().contiguous(), (64, 64), mode="bilinear", align_corners=False)
    logits = model.postprocess_masks(low, (48, 64), original, exact=exact)
    masks = model.postprocess_masks(low, (48, 64), original, exact=exact, threshold=0.25)
    assert masks.dtype == torch.bool and masks.shape == logits.shape
    assert torch.equal(masks, logits > 0.25)
    assert 0 < masks.sum() < masks.numel()


def test_predictor_resizes_exactly_only_in_float32():
    from segany import SamPredictor
    from support import fixture_model

    model = fixture_model()
    assert SamPredictor(model).exact
    assert not SamPredictor(model, dtype="bfloat16").exact
