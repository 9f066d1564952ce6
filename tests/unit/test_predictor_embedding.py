"""The predictor's public methods for callers that keep embeddings or decode many prompts at once
(the annotation app, the automatic generator): same answers as the plain calls, at the predictor's
precision, and one clear sentence for a wrong embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany import SamPredictor
from segany.automatic import SamAutomaticMaskGenerator
from segany.errors import ImageNotSetError, PromptError
from segany.training.synthetic import make_scene
from support import FIXTURE_PATH, fixture_model

pytestmark = pytest.mark.skipif(not FIXTURE_PATH.exists(), reason="fixture model missing")


@pytest.fixture(scope="module")
def model():
    return fixture_model()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return make_scene(np.random.default_rng(3), 180, 240).image


def test_restored_embedding_answers_as_set_image(model, image):
    fresh = SamPredictor(model)
    fresh.set_image(image)
    stored = fresh.get_image_embedding().clone()
    restored = SamPredictor(model)
    with torch.inference_mode():  # an embedding saved by a script under inference mode
        restored.set_embedding(stored.clone(), image.shape[:2])
    assert restored.input_size == fresh.input_size and restored.original_size == fresh.original_size
    point = (np.array([[120.0, 90.0]]), np.array([1]))
    for a, b in zip(fresh.predict(*point), restored.predict(*point), strict=True):
        np.testing.assert_array_equal(a, b)


def test_wrong_embeddings_are_refused_in_one_sentence(model, image):
    predictor = SamPredictor(model)
    grid = model.prompt_encoder.image_embedding_size
    with pytest.raises(PromptError, match="features must be 1 x"):
        predictor.set_embedding(torch.zeros(1, 3, *grid), image.shape[:2])
    good = torch.zeros(1, model.prompt_encoder.embed_dim, *grid)
    with pytest.raises(PromptError, match="positive sides"):
        predictor.set_embedding(good, (0, 10))
    with pytest.raises(PromptError, match="original_size says"):
        predictor.set_embedding(good, (10, 10), image=image)
    with pytest.raises(ImageNotSetError):
        predictor.predict_low_res(None, None, boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0]]))


def test_low_res_then_upscale_equals_predict_torch(model, image):
    predictor = SamPredictor(model)
    predictor.set_image(image)
    coords = torch.as_tensor(
        predictor.transform.apply_coords(np.array([[50.0, 60.0], [200.0, 100.0]]), image.shape[:2])
    )
    points = (coords[:, None].float(), torch.ones(2, 1, dtype=torch.int))
    low, iou = predictor.predict_low_res(*points)
    masks, scores, low_ref = predictor.predict_torch(*points, return_logits=True)
    torch.testing.assert_close(low, low_ref)
    torch.testing.assert_close(iou, scores)
    torch.testing.assert_close(predictor.upscale_masks(low), masks)
    assert torch.equal(predictor.upscale_masks(low, threshold=0.0), masks > 0)


def test_automatic_decoding_runs_at_the_predictor_precision(model, image):
    seen: list[bool] = []
    hook = model.mask_decoder.register_forward_pre_hook(
        lambda *_: seen.append(torch.is_autocast_enabled("cpu"))
    )
    try:
        generator = SamAutomaticMaskGenerator(model, points_per_side=4)
        generator.predictor = SamPredictor(model, dtype="bfloat16")
        generator.generate(image)
    finally:
        hook.remove()
    assert seen and all(seen)


def test_a_restored_embedding_reads_the_photo_only_for_a_zoom_in_pass() -> None:
    from segany import build_sam
    from support import sample_image

    model = build_sam(device="cpu")  # the bundled model zooms in on small objects
    assert model.zoom_context > 0
    photo = sample_image()
    height, width = photo.shape[:2]
    direct = SamPredictor(model)
    direct.set_image(photo)
    reads = []

    def read() -> np.ndarray:
        reads.append(1)
        return photo

    restored = SamPredictor(model)
    restored.set_embedding(direct.get_image_embedding(), (height, width), image=read)
    whole = np.array([0, 0, width, height])  # too large to zoom in on: one pass
    np.testing.assert_array_equal(restored.predict(box=whole)[0], direct.predict(box=whole)[0])
    assert reads == []
    small = np.array([width // 2, height // 2, width // 2 + 40, height // 2 + 30])
    for a, b in zip(restored.predict(box=small), direct.predict(box=small), strict=True):
        np.testing.assert_array_equal(a, b)
    restored.predict(box=small)
    assert reads == [1]  # read once, when the first prompt needed it
