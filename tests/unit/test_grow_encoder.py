"""Growing a trained encoder keeps the model's answers, and the new blocks train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany import SamPredictor, build_sam
from segany.training.grow import grow_encoder
from support import TINY, randomize_


def _model() -> torch.nn.Module:
    return randomize_(build_sam(TINY, device="cpu"), seed=3)


def test_grown_model_gives_the_same_masks_and_scores() -> None:
    model = _model()
    grown = grow_encoder(model, after=[0, 1, 2, 3], global_new=[3])
    encoder = grown.config.encoder
    assert encoder.depth == 8 and encoder.global_attn_indexes == (2, 6, 7)
    assert len(grown.image_encoder.blocks) == 8
    image = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    answers = []
    for sam in (model, grown):
        predictor = SamPredictor(sam)
        predictor.set_image(image)
        answers.append(predictor.predict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1])))
    (masks, scores, logits), (grown_masks, grown_scores, grown_logits) = answers
    assert np.array_equal(masks, grown_masks)
    np.testing.assert_allclose(grown_scores, scores, atol=1e-5)
    np.testing.assert_allclose(grown_logits, logits, atol=1e-4)


def test_new_blocks_learn() -> None:
    grown = grow_encoder(_model(), after=[1]).train()
    new = grown.image_encoder.blocks[2]
    assert torch.count_nonzero(new.attn.proj.weight) == 0 and torch.count_nonzero(new.mlp.lin2.weight) == 0
    out = grown.image_encoder(torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)))
    out.square().mean().backward()
    # The zeroed output layers get a gradient first; the rest of the block follows once they move.
    assert new.attn.proj.weight.grad.abs().sum() > 0 and new.mlp.lin2.weight.grad.abs().sum() > 0


def test_bad_indices_are_refused() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"0\.\.3"):
        grow_encoder(model, after=[4])
    with pytest.raises(ValueError, match="new block indices"):
        grow_encoder(model, after=[0], global_new=[1])
