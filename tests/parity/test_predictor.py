"""Predictor parity: segany.SamPredictor against the official SamPredictor, same weights, same photo.

vit_b runs at full size (1024 input, 64 x 64 embedding); every prompt case of the official API is compared
on masks, scores and low-resolution logits (fp32, max abs difference <= 1e-4).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany import SamPredictor
from segany.variants import VIT_B
from support import TINY, sample_image, twin_models

TOL = 1e-4
pytestmark = pytest.mark.slow  # vit_b at full size: 30 s to build and embed


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return sample_image()


@pytest.fixture(scope="module")
def vit_b_predictors(image):
    from segment_anything import SamPredictor as OfficialPredictor

    torch.manual_seed(0)
    ours, theirs = twin_models(VIT_B, seed=2)
    a, b = SamPredictor(ours), OfficialPredictor(theirs)
    a.set_image(image)
    b.set_image(image)
    return a, b


def _assert_same(ours: tuple, theirs: tuple, logits: bool = False) -> None:
    masks_a, scores_a, low_a = ours
    masks_b, scores_b, low_b = theirs
    assert masks_a.shape == masks_b.shape
    assert masks_a.dtype == masks_b.dtype
    assert np.abs(scores_a - scores_b).max() <= TOL
    assert np.abs(low_a - low_b).max() <= TOL
    if logits:
        assert np.abs(masks_a - masks_b).max() <= TOL
    else:
        # Pixels can only flip where the official logit is within float noise of the threshold.
        assert (masks_a != masks_b).mean() <= 1e-5
        assert masks_a.any() or not masks_b.any()


def test_embedding_matches(vit_b_predictors, image):
    a, b = vit_b_predictors
    emb_a, emb_b = a.get_image_embedding(), b.get_image_embedding()
    assert emb_a.shape == (1, 256, 64, 64)
    assert (emb_a - emb_b).abs().max().item() <= TOL
    assert a.original_size == b.original_size == image.shape[:2]
    assert a.input_size == b.input_size


def _cases(image: np.ndarray) -> dict[str, dict]:
    h, w = image.shape[:2]
    box = np.array([0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h])
    one = np.array([[0.45 * w, 0.5 * h]])
    two = np.array([[0.45 * w, 0.5 * h], [0.1 * w, 0.1 * h]])
    return {
        "one point": dict(point_coords=one, point_labels=np.array([1])),
        "points pos+neg single": dict(
            point_coords=two, point_labels=np.array([1, 0]), multimask_output=False
        ),
        "box": dict(box=box, multimask_output=False),
        "points+box": dict(point_coords=two, point_labels=np.array([1, 0]), box=box, multimask_output=False),
        "box multimask": dict(box=box),
    }


@pytest.mark.parametrize("case", ["one point", "points pos+neg single", "box", "points+box", "box multimask"])
@pytest.mark.parametrize("return_logits", [False, True])
def test_predict_matches(vit_b_predictors, image, case, return_logits):
    a, b = vit_b_predictors
    kwargs = _cases(image)[case]
    _assert_same(
        a.predict(**kwargs, return_logits=return_logits),
        b.predict(**kwargs, return_logits=return_logits),
        return_logits,
    )


def test_mask_input_refinement_matches(vit_b_predictors, image):
    a, b = vit_b_predictors
    first = _cases(image)["one point"]
    _, scores, low = b.predict(**first)
    mask_input = low[np.argmax(scores)][None]
    h, w = image.shape[:2]
    kwargs = dict(
        point_coords=np.array([[0.45 * w, 0.5 * h], [0.6 * w, 0.4 * h]]),
        point_labels=np.array([1, 0]),
        mask_input=mask_input,
        multimask_output=False,
    )
    _assert_same(a.predict(**kwargs), b.predict(**kwargs))


def test_several_boxes_match_official_predict_torch(vit_b_predictors, image):
    a, b = vit_b_predictors
    h, w = image.shape[:2]
    boxes = np.array(
        [[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.9 * h], [0, 0, w - 1, h - 1]]
    )
    masks, scores, low = a.predict(box=boxes, multimask_output=False)
    assert masks.shape == (3, 1, h, w) and scores.shape == (3, 1) and low.shape == (3, 1, 256, 256)
    boxes_t = b.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), image.shape[:2])
    masks_b, scores_b, low_b = b.predict_torch(None, None, boxes=boxes_t, multimask_output=False)
    _assert_same((masks, scores, low), (masks_b.numpy(), scores_b.numpy(), low_b.numpy()))
    # Each row is the same answer as asking for that box alone.
    single = a.predict(box=boxes[1], multimask_output=False)
    assert np.abs(single[1] - scores[1]).max() <= TOL


def test_predict_torch_matches(vit_b_predictors, image):
    a, b = vit_b_predictors
    coords = torch.tensor([[[300.0, 400.0], [500.0, 200.0]], [[100.0, 100.0], [700.0, 600.0]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    out_a = a.predict_torch(coords, labels, multimask_output=True, return_logits=True)
    out_b = b.predict_torch(coords, labels, multimask_output=True, return_logits=True)
    for x, y in zip(out_a, out_b, strict=True):
        assert x.shape == y.shape
        assert (x - y).abs().max().item() <= TOL


def test_batch_api_matches_official_image_by_image():
    """set_image_batch + predict_batch (one encoder pass) equals the official predictor per image."""
    from segment_anything import SamPredictor as OfficialPredictor

    ours, theirs = twin_models(TINY, seed=5)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 255, (180, 240, 3), dtype=np.uint8),
        rng.integers(0, 255, (300, 200, 3), dtype=np.uint8),
    ]
    points = [np.array([[50.0, 60.0]]), np.array([[100.0, 150.0], [20.0, 30.0]])]
    labels = [np.array([1]), np.array([1, 0])]
    boxes = [None, np.array([10, 20, 150, 250])]
    a = SamPredictor(ours)
    a.set_image_batch(images)
    results = a.predict_batch(points, labels, boxes)
    b = OfficialPredictor(theirs)
    for image, point, label, box, result in zip(images, points, labels, boxes, results, strict=True):
        b.set_image(image)
        _assert_same(result, b.predict(point, label, box))
