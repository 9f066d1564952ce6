"""Module-level parity with the official package: same weights, same inputs, same numbers (fp32)."""

from __future__ import annotations

import pytest
import torch

from support import TINY, twin_models

TOL = 1e-4


@pytest.fixture(scope="module")
def twins():
    torch.manual_seed(0)
    return twin_models(TINY, seed=1)


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item() if a.numel() else 0.0


@torch.no_grad()
def test_image_encoder_matches(twins):
    ours, theirs = twins
    images = torch.rand(2, 3, 256, 256) * 255
    a = ours.image_encoder(ours.preprocess(images))
    b = theirs.image_encoder(theirs.preprocess(images))
    assert a.shape == (2, 256, 16, 16)
    assert a.abs().max() > 0.5  # signal, not a trivially zero output
    assert _close(a, b) <= TOL


@torch.no_grad()
def test_reference_attention_path_equals_fused_path(twins):
    ours, _ = twins
    images = ours.preprocess(torch.rand(1, 3, 256, 256) * 255)
    fused = ours.image_encoder(images)
    for block in ours.image_encoder.blocks:
        block.attn.use_sdpa = False
    try:
        reference = ours.image_encoder(images)
    finally:
        for block in ours.image_encoder.blocks:
            block.attn.use_sdpa = True
    assert _close(fused, reference) <= 1e-5


def _prompts(batch: int = 3):
    gen = torch.Generator().manual_seed(3)
    coords = torch.rand(batch, 4, 2, generator=gen) * 256
    labels = torch.tensor([[1, 0, 1, -1], [1, 1, 0, 0], [0, 1, -1, 1]])[:batch]
    corners = torch.sort(torch.rand(batch, 2, 2, generator=gen) * 256, dim=1).values
    boxes = corners.reshape(batch, 4)
    masks = torch.randn(batch, 1, 64, 64, generator=gen) * 4
    return coords, labels, boxes, masks


CASES = {
    "points": dict(points=True),
    "box": dict(boxes=True),
    "points+box": dict(points=True, boxes=True),
    "mask": dict(masks=True),
    "points+mask": dict(points=True, masks=True),
    "all": dict(points=True, boxes=True, masks=True),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("multimask", [True, False])
@torch.no_grad()
def test_prompt_encoder_and_decoder_match(twins, case, multimask):
    ours, theirs = twins
    coords, labels, boxes, masks = _prompts()
    use = CASES[case]
    kwargs = dict(
        points=(coords, labels) if use.get("points") else None,
        boxes=boxes if use.get("boxes") else None,
        masks=masks if use.get("masks") else None,
    )
    sparse_a, dense_a = ours.prompt_encoder(**kwargs)
    sparse_b, dense_b = theirs.prompt_encoder(**kwargs)
    assert _close(sparse_a, sparse_b) <= TOL
    assert _close(dense_a, dense_b) <= TOL
    assert _close(ours.prompt_encoder.get_dense_pe(), theirs.prompt_encoder.get_dense_pe()) <= TOL

    embedding = torch.randn(1, 256, 16, 16)
    out_a = ours.mask_decoder(embedding, ours.prompt_encoder.get_dense_pe(), sparse_a, dense_a, multimask)
    out_b = theirs.mask_decoder(embedding, theirs.prompt_encoder.get_dense_pe(), sparse_b, dense_b, multimask)
    masks_out, iou_out = out_a
    assert masks_out.shape == (3, 3 if multimask else 1, 64, 64)
    assert iou_out.shape == (3, 3 if multimask else 1)
    assert _close(out_a[0], out_b[0]) <= TOL
    assert _close(out_a[1], out_b[1]) <= TOL


@torch.no_grad()
def test_sam_forward_matches(twins):
    ours, theirs = twins
    coords, labels, boxes, masks = _prompts(2)
    batched = [
        {
            "image": torch.rand(3, 256, 192) * 255,
            "original_size": (400, 300),
            "point_coords": coords,
            "point_labels": labels,
        },
        {
            "image": torch.rand(3, 200, 256) * 255,
            "original_size": (250, 320),
            "boxes": boxes,
            "mask_inputs": masks,
        },
    ]
    out_a = ours(batched, multimask_output=True)
    out_b = theirs(batched, multimask_output=True)
    for a, b in zip(out_a, out_b, strict=True):
        assert a["masks"].shape == b["masks"].shape
        assert a["masks"].dtype == torch.bool
        assert _close(a["iou_predictions"], b["iou_predictions"]) <= TOL
        assert _close(a["low_res_logits"], b["low_res_logits"]) <= TOL
        # Thresholded masks agree except where the logit is within float noise of the threshold.
        assert (a["masks"] != b["masks"]).float().mean() < 1e-4


@pytest.mark.own_autograd_mode
def test_model_is_differentiable(twins):
    ours, _ = twins
    ours.zero_grad()
    coords, labels, _, _ = _prompts(1)
    out = ours(
        [
            {
                "image": torch.rand(3, 256, 256) * 255,
                "original_size": (256, 256),
                "point_coords": coords,
                "point_labels": labels,
            }
        ],
        multimask_output=False,
    )
    out[0]["low_res_logits"].sum().backward()
    grads = {name: p.grad for name, p in ours.named_parameters()}
    assert grads["image_encoder.patch_embed.proj.weight"] is not None
    assert grads["image_encoder.patch_embed.proj.weight"].abs().sum() > 0
    assert grads["mask_decoder.mask_tokens.weight"].abs().sum() > 0
    ours.zero_grad()
