"""The predictor keeps the decoder's image-only work between clicks; answers must not change."""

from __future__ import annotations

import numpy as np
import torch

from segany import SamPredictor
from segany.build import sam_from_config
from support import TINY, randomize_, sample_image


def _fresh_answer(model: torch.nn.Module, image: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, ...]:
    predictor = SamPredictor(model)
    predictor.set_image(image)
    return predictor.predict(point_coords=point, point_labels=np.array([1]), return_logits=True)


def test_repeated_clicks_equal_fresh_predictors_and_follow_weight_changes() -> None:
    torch.manual_seed(0)
    model = randomize_(sam_from_config(TINY)).eval()
    image, other = sample_image(120, 160, seed=1), sample_image(120, 160, seed=2)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    clicks = [np.array([[30.0, 40.0]]), np.array([[100.0, 70.0]]), np.array([[30.0, 40.0]])]
    for point in clicks:
        masks, scores, _ = predictor.predict(point_coords=point, point_labels=np.array([1]), return_logits=True)
        expected = _fresh_answer(model, image, point)
        np.testing.assert_array_equal(masks, expected[0])
        np.testing.assert_array_equal(scores, expected[1])

    # Weights changed in place between clicks (e.g. fine-tuning): the cached work is not reused.
    with torch.no_grad():
        model.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.mul_(1.5)
        model.prompt_encoder.no_mask_embed.weight.add_(0.3)
    masks, scores, _ = predictor.predict(point_coords=clicks[0], point_labels=np.array([1]), return_logits=True)
    expected = _fresh_answer(model, image, clicks[0])
    np.testing.assert_array_equal(masks, expected[0])
    np.testing.assert_array_equal(scores, expected[1])

    # A new image: new work.
    predictor.set_image(other)
    masks, _, _ = predictor.predict(point_coords=clicks[1], point_labels=np.array([1]), return_logits=True)
    np.testing.assert_array_equal(masks, _fresh_answer(model, other, clicks[1])[0])
