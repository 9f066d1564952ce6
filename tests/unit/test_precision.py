"""The precision policy: bfloat16 predictions checked against float32 as a user would (mask IoU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segany
from segany.runtime import compute_context, resolve_dtype
from support import FIXTURE_PATH, fixture_model, sample_image

pytestmark = pytest.mark.skipif(not FIXTURE_PATH.exists(), reason="fixture model missing")


def test_bfloat16_predictions_agree_with_float32():
    model = fixture_model()
    exact, fast = segany.SamPredictor(model), segany.SamPredictor(model, dtype="bfloat16")
    image = sample_image()
    exact.set_image(image)
    fast.set_image(image)
    assert fast.get_image_embedding().dtype == torch.float32
    rng = np.random.default_rng(0)
    h, w = image.shape[:2]
    ious = []
    for _ in range(12):
        point = np.array([[rng.uniform(0, w), rng.uniform(0, h)]])
        a = exact.predict(point, np.array([1]), multimask_output=False)
        b = fast.predict(point, np.array([1]), multimask_output=False)
        assert b[1].dtype == np.float32 and b[2].dtype == np.float32
        assert abs(float(a[1][0] - b[1][0])) < 0.05
        ious.append((a[0] & b[0]).sum() / max((a[0] | b[0]).sum(), 1))
    assert np.mean(ious) >= 0.95


def test_build_sam_dtype_and_generator(tmp_path):
    model = segany.build_sam(checkpoint=FIXTURE_PATH, device="cpu", dtype="bf16")
    assert model.compute_dtype == torch.bfloat16
    assert model.image_encoder.pos_embed.dtype == torch.float32  # weights stay float32 under autocast
    records = segany.SamAutomaticMaskGenerator(model, points_per_side=8).generate(sample_image()[:200, :300])
    assert records and all(isinstance(r["predicted_iou"], float) for r in records)


def test_bad_precision_is_refused():
    with pytest.raises(ValueError, match="Unsupported precision 'float16'; use 'float32'"):
        resolve_dtype("float16")
    assert resolve_dtype(None) == torch.float32
    with compute_context(torch.device("cpu"), torch.float32):
        assert not torch.is_autocast_enabled("cpu")
