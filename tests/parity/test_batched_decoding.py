"""The batched fast path of the mask decoder equals the reference computation (several prompts, one image)."""

from __future__ import annotations

import pytest
import torch

import segany
from support import TINY, randomize_


@pytest.fixture(scope="module")
def model():
    return randomize_(segany.sam_from_config(TINY), seed=9).eval()


def _prompts(batch: int, size: int):
    gen = torch.Generator().manual_seed(1)
    coords = torch.rand(batch, 3, 2, generator=gen) * size
    labels = torch.randint(0, 2, (batch, 3), generator=gen, dtype=torch.int)
    boxes = torch.sort(torch.rand(batch, 2, 2, generator=gen) * size, dim=1).values.reshape(batch, 4)
    return coords, labels, boxes


@pytest.mark.parametrize("prompt", ["points", "boxes", "points+boxes"])
@pytest.mark.parametrize("multimask", [True, False])
@torch.no_grad()
def test_fast_path_equals_reference(model, prompt, multimask):
    coords, labels, boxes = _prompts(11, TINY.encoder.img_size)
    kwargs = {
        "points": (coords, labels) if "points" in prompt else None,
        "boxes": boxes if "boxes" in prompt else None,
    }
    embedding = torch.randn(1, 256, 16, 16)
    decoder = model.mask_decoder
    try:
        decoder.batched_fast_path = False
        reference = model.decode(embedding, multimask_output=multimask, **kwargs)
        decoder.batched_fast_path = True
        fast = model.decode(embedding, multimask_output=multimask, **kwargs)
    finally:
        decoder.batched_fast_path = True
    for a, b in zip(fast, reference, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= 1e-4


@torch.no_grad()
def test_prompts_with_their_own_mask_inputs_match_one_by_one(model):
    coords, labels, _ = _prompts(4, TINY.encoder.img_size)
    masks = torch.randn(4, 1, 64, 64)
    embedding = torch.randn(1, 256, 16, 16)
    together = model.decode(embedding, points=(coords, labels), masks=masks)
    for i in range(4):
        alone = model.decode(embedding, points=(coords[i : i + 1], labels[i : i + 1]), masks=masks[i : i + 1])
        assert (together[0][i] - alone[0][0]).abs().max().item() <= 1e-4
        assert (together[1][i] - alone[1][0]).abs().max().item() <= 1e-4


@torch.no_grad()
def test_min_iou_skips_only_prompts_that_cannot_pass(model):
    coords, labels, _ = _prompts(16, TINY.encoder.img_size)
    embedding = torch.randn(1, 256, 16, 16)
    full_masks, iou = model.decode(embedding, points=(coords, labels), multimask_output=True)
    threshold = float(iou.max(dim=1).values.median())
    masks, iou_again = model.decode(
        embedding, points=(coords, labels), multimask_output=True, min_iou=threshold
    )
    assert torch.equal(iou, iou_again)
    passing = (iou > threshold).any(dim=1)
    assert 0 < passing.sum() < 16
    assert torch.isnan(masks[~passing]).all()
    assert (masks[passing] - full_masks[passing]).abs().max().item() <= 1e-5
