"""Every bad prompt gets a clear ValueError naming the argument; good prompt shapes give the documented outputs."""

from __future__ import annotations

import numpy as np
import pytest

import segany
from segany import ImageNotSetError, PromptError, SamPredictor
from support import TINY, randomize_


@pytest.fixture(scope="module")
def predictor() -> SamPredictor:
    p = SamPredictor(randomize_(segany.sam_from_config(TINY)).eval())
    p.set_image(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return p


POINT = np.array([[10.0, 20.0]])
LABEL = np.array([1])

BAD = [
    (dict(point_coords=POINT), "point_labels"),
    (dict(point_labels=LABEL), "point_coords"),
    (dict(point_coords=np.array([10.0, 20.0]), point_labels=LABEL), "point_coords must have shape N x 2"),
    (
        dict(point_coords=np.zeros((2, 3)), point_labels=np.array([1, 1])),
        "point_coords must have shape N x 2",
    ),
    (dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0)), "point_coords is empty"),
    (dict(point_coords=POINT, point_labels=np.array([1, 0])), "point_labels must have shape"),
    (dict(point_coords=POINT, point_labels=np.array([5])), "point_labels contains [5]"),
    (dict(point_coords=POINT, point_labels=np.array([0.5])), "point_labels must be whole numbers"),
    (dict(point_coords=POINT, point_labels=np.array(["a"])), "point_labels must be integers"),
    (
        dict(point_coords=np.array([[np.nan, 3.0]]), point_labels=LABEL),
        "point_coords contains NaN or infinite",
    ),
    (
        dict(point_coords=np.array([[np.inf, 3.0]]), point_labels=LABEL),
        "point_coords contains NaN or infinite",
    ),
    (dict(point_coords=[["x", "y"]], point_labels=LABEL), "point_coords must be numeric"),
    (dict(box=np.array([1.0, 2.0, 3.0])), "box must have shape 4 or B x 4"),
    (dict(box=np.array([50.0, 2.0, 3.0, 40.0])), "box must be XYXY with x0 <= x1"),
    (dict(box=np.array([0.0, 0.0, np.nan, 4.0])), "box contains NaN"),
    (dict(mask_input=np.zeros((256, 256))), "mask_input must have shape 1 x 64 x 64"),
    (dict(mask_input=np.zeros((1, 32, 32))), "mask_input must have shape 1 x 64 x 64"),
    (dict(mask_input=np.full((1, 64, 64), np.nan)), "mask_input contains NaN"),
    (
        dict(point_coords=np.zeros((3, 1, 2)), point_labels=np.ones((3, 1)), box=np.zeros((2, 4))),
        "Prompts disagree on the number of boxes",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_prompt_is_a_clear_value_error(predictor, kwargs, message):
    with pytest.raises(ValueError) as info:
        predictor.predict(**kwargs)
    assert isinstance(info.value, PromptError)
    assert message in str(info.value)
    assert str(info.value).endswith(".")


def test_box_corner_labels_are_accepted(predictor):
    masks, scores, _ = predictor.predict(
        np.array([[10.0, 10.0], [90.0, 80.0]]), np.array([2, 3]), multimask_output=False
    )
    assert masks.shape == (1, 120, 160) and scores.shape == (1,)


def test_predict_before_set_image():
    p = SamPredictor(segany.sam_from_config(TINY).eval())
    for call in (lambda: p.predict(POINT, LABEL), p.get_image_embedding, lambda: p.predict_torch(None, None)):
        with pytest.raises(ImageNotSetError, match="set_image") as info:
            call()
        # Both the official RuntimeError and a ValueError, so either kind of handler catches it.
        assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    with pytest.raises(ImageNotSetError, match="set_image_batch"):
        p.predict_batch([POINT], [LABEL])


def test_reset_image_forgets_the_image(predictor):
    p = SamPredictor(predictor.model)
    p.set_image(np.zeros((50, 60, 3), dtype=np.uint8))
    assert p.is_image_set
    p.reset_image()
    assert not p.is_image_set
    with pytest.raises(ImageNotSetError):
        p.predict(POINT, LABEL)


def test_predict_after_batch_needs_predict_batch(predictor):
    p = SamPredictor(predictor.model)
    p.set_image_batch([np.zeros((50, 60, 3), dtype=np.uint8)] * 2)
    with pytest.raises(ImageNotSetError, match="predict_batch"):
        p.predict(POINT, LABEL)
    with pytest.raises(PromptError, match="one entry per image"):
        p.predict_batch([POINT], [LABEL])
    assert p.get_image_embedding().shape[0] == 2


def test_output_shapes(predictor):
    masks, scores, low = predictor.predict(POINT, LABEL)
    assert masks.shape == (3, 120, 160) and masks.dtype == bool
    assert scores.shape == (3,) and low.shape == (3, 64, 64)
    masks, scores, low = predictor.predict(POINT, LABEL, multimask_output=False, return_logits=True)
    assert masks.shape == (1, 120, 160) and masks.dtype == np.float32
    boxes = np.array([[0, 0, 50, 50], [10, 10, 100, 90], [5, 5, 6, 6]])
    masks, scores, low = predictor.predict(box=boxes, multimask_output=False)
    assert masks.shape == (3, 1, 120, 160) and scores.shape == (3, 1) and low.shape == (3, 1, 64, 64)
    # One point set shared by every box, and one point set per box.
    shared = predictor.predict(POINT, LABEL, box=boxes)
    per_box = predictor.predict(np.repeat(POINT[None], 3, 0), np.repeat(LABEL[None], 3, 0), box=boxes)
    assert np.allclose(shared[1], per_box[1])
    # A single box given as 1 x 4 is the official unbatched form.
    masks, scores, _ = predictor.predict(box=boxes[:1])
    assert masks.shape == (3, 120, 160)
