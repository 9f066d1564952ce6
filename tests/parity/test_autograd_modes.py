"""The official usage patterns under every autograd mode: plain, ``torch.no_grad()`` and
``torch.inference_mode()`` (the one most scripts use), for the predictor and the automatic generator, in
parity with the official package called the same way.

Uses the trained fixture model (tests/data/amg_fixture.safetensors), so that masks are not the one-blob
case of random weights.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from segany import SamPredictor
from segany.automatic import SamAutomaticMaskGenerator
from segany.training.synthetic import make_scene
from support import FIXTURE_PATH

pytestmark = pytest.mark.skipif(not FIXTURE_PATH.exists(), reason="fixture model missing")

TOL = 1e-4
MODES = {
    "plain": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return make_scene(np.random.default_rng(7), 200, 300).image


def _close(a, b) -> None:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == b.shape
    if a.dtype == bool:
        assert (a != b).mean() <= 1e-4
    else:
        # Scaled to the values' range: the fixture's logits reach ~170, where float32 sums in another
        # order differ by ~5e-4.
        assert np.abs(a - b).max() <= TOL * max(1.0, np.abs(b).max() / 10)


@pytest.mark.parametrize("mode", list(MODES))
def test_predictor_calls_in_every_mode(fixture_twins, image, mode):
    from segment_anything import SamPredictor as OfficialPredictor

    ours, theirs = SamPredictor(fixture_twins[0]), OfficialPredictor(fixture_twins[1])
    point = (np.array([[150.0, 100.0]]), np.array([1]))
    box = np.array([60.0, 40.0, 240.0, 170.0])
    for _ in range(2):  # the second round answers from the decoder's per-image cache
        results = []
        for predictor in (ours, theirs):
            with MODES[mode]():
                predictor.set_image(image)
                masks, scores, low = predictor.predict(*point, multimask_output=True)
                refined = predictor.predict(*point, mask_input=low[np.argmax(scores)][None])
                boxed = predictor.predict(box=box, multimask_output=False, return_logits=True)
                coords = torch.as_tensor(predictor.transform.apply_coords(point[0], image.shape[:2]))
                batched = predictor.predict_torch(
                    coords[None].float(),
                    torch.as_tensor(point[1])[None],
                    boxes=torch.as_tensor(
                        predictor.transform.apply_boxes(box[None], image.shape[:2])
                    ).float(),
                )
                embedding = predictor.get_image_embedding()
            results.append([masks, scores, low, *refined, *boxed, *batched, embedding])
        for a, b in zip(*results, strict=True):
            _close(a, b)


@pytest.mark.parametrize("mode", list(MODES))
def test_generator_in_every_mode(fixture_twins, image, mode):
    from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator

    settings = {"points_per_side": 8, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.5}
    ours = SamAutomaticMaskGenerator(fixture_twins[0], **settings)
    theirs = OfficialGenerator(fixture_twins[1], **settings)
    with MODES[mode]():
        records = ours.generate(image), theirs.generate(image)
    assert len(records[0]) == len(records[1]) > 0
    for a, b in zip(*(sorted(r, key=lambda r: (r["area"], r["bbox"])) for r in records), strict=True):
        assert a["area"] == b["area"] and a["bbox"] == b["bbox"]
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-3
