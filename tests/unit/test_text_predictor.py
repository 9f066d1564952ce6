"""``SamPredictor`` with text prompts: the phrase's embedding reaches the prompt encoder, alone or with
other prompts, in the single, batched-box and multi-image paths; misuse is one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany import SamPredictor
from segany.build import sam_from_config
from segany.errors import PromptError, TextEncoderError
from support import TINY, ColourTextEncoder, randomize_, sample_image


@pytest.fixture(scope="module")
def model():
    return randomize_(sam_from_config(TINY.replace(text_embed_dim=32)), seed=1).eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return sample_image(120, 160)[:120, :160]


@pytest.fixture()
def predictor(model, image) -> SamPredictor:
    predictor = SamPredictor(model, text_encoder=ColourTextEncoder())
    predictor.set_image(image)
    return predictor


def test_text_alone_is_a_prompt_and_the_phrase_decides_the_mask(predictor, image) -> None:
    masks, scores, low_res = predictor.predict(text="red")
    assert masks.shape == (3, *image.shape[:2]) and masks.dtype == bool
    assert scores.shape == (3,) and low_res.shape == (3, 64, 64)
    # The same as handing the encoder's embedding to predict_torch.
    embedding = predictor.text_encoder.encode_text(["red"])
    _, t_scores, t_low = predictor.predict_torch(None, None, text_embeddings=embedding)
    np.testing.assert_allclose(low_res, t_low[0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores, t_scores[0].numpy(), rtol=0, atol=1e-6)
    _, _, other = predictor.predict(text="blue")
    assert not np.allclose(low_res, other)


def test_text_joins_points_and_boxes(predictor) -> None:
    points, labels = np.array([[40.0, 50.0]]), np.array([1])
    without = predictor.predict(points, labels, multimask_output=False)[2]
    with_text = predictor.predict(points, labels, multimask_output=False, text="green")[2]
    assert with_text.shape == (1, 64, 64) and not np.allclose(without, with_text)

    # Two boxes share one phrase: each row is that box's own prediction with the phrase.
    boxes = np.array([[10.0, 10.0, 80.0, 90.0], [60.0, 20.0, 150.0, 110.0]])
    masks, scores, low = predictor.predict(box=boxes, text="green", multimask_output=False)
    assert masks.shape == (2, 1, 120, 160) and scores.shape == (2, 1)
    for i, box in enumerate(boxes):
        single = predictor.predict(box=box, text="green", multimask_output=False)[2]
        np.testing.assert_allclose(low[i], single, rtol=0, atol=1e-5)

    # predict_torch broadcasts one 1 x D embedding over the B prompts, or takes B of them.
    box_t = torch.as_tensor(
        predictor.transform.apply_boxes(boxes, predictor.original_size), dtype=torch.float
    )
    text = predictor.text_encoder.encode_text(["green"])
    shared = predictor.predict_torch(None, None, box_t, text_embeddings=text, multimask_output=False)[2]
    np.testing.assert_allclose(shared.numpy(), low, rtol=0, atol=1e-5)
    rows = predictor.predict_torch(
        None, None, box_t, text_embeddings=text.expand(2, -1), multimask_output=False
    )
    torch.testing.assert_close(rows[2], shared)


def test_text_per_image_in_a_batch(model, image) -> None:
    predictor = SamPredictor(model, text_encoder=ColourTextEncoder())
    predictor.set_image_batch([image, image[::-1].copy()])
    results = predictor.predict_batch(text=["red", None], box=[None, np.array([5.0, 5.0, 90.0, 90.0])])
    single = SamPredictor(model, text_encoder=ColourTextEncoder())
    single.set_image(image)
    np.testing.assert_allclose(results[0][2], single.predict(text="red")[2], rtol=0, atol=1e-5)
    assert results[1][0].shape == (3, 120, 160)


def test_text_misuse_is_one_clear_error(model, image) -> None:
    predictor = SamPredictor(model)
    predictor.set_image(image)
    with pytest.raises(TextEncoderError, match="needs a text encoder; pass text_encoder="):
        predictor.predict(text="red")
    predictor.text_encoder = ColourTextEncoder()  # settable after construction
    assert predictor.predict(text="red")[0].shape == (3, 120, 160)
    with pytest.raises(PromptError, match="non-empty phrase"):
        predictor.predict(text="  ")
    with pytest.raises(PromptError, match="text_embeddings must be B x 32"):
        predictor.predict_torch(None, None, text_embeddings=torch.zeros(1, 16))
    with pytest.raises(PromptError, match="3 rows but the other prompts have B = 2"):
        predictor.predict_torch(None, None, torch.zeros(2, 4), text_embeddings=torch.zeros(3, 32))

    narrow = SamPredictor(model, text_encoder=ColourTextEncoder(embed_dim=16))
    narrow.set_image(image)
    with pytest.raises(TextEncoderError, match="takes 32-wide text embeddings but the text encoder gives 16"):
        narrow.predict(text="red")

    official = SamPredictor(sam_from_config(TINY).eval(), text_encoder=ColourTextEncoder())
    official.set_image(image)
    for call in (
        lambda: official.predict(text="red"),
        lambda: official.predict_torch(None, None, text_embeddings=torch.zeros(1, 32)),
    ):
        with pytest.raises(TextEncoderError, match="no text prompt path"):
            call()
    # Without text the official API answers as before.
    assert official.predict(np.array([[10.0, 10.0]]), np.array([1]))[0].shape == (3, 120, 160)
