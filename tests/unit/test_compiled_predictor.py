"""The torch.compile path of the predictor answers like the eager one."""

from __future__ import annotations

import numpy as np
import pytest

import segany
from support import FIXTURE_PATH, fixture_model, sample_image

pytestmark = pytest.mark.skipif(not FIXTURE_PATH.exists(), reason="fixture model missing")


@pytest.mark.slow
def test_compiled_encoder_gives_the_eager_embedding_and_masks():
    model = fixture_model()
    eager, compiled = segany.SamPredictor(model), segany.SamPredictor(model, compile=True)
    image = sample_image()
    eager.set_image(image)
    compiled.set_image(image)  # builds the compiled encoder (about 20 s here)
    assert (eager.get_image_embedding() - compiled.get_image_embedding()).abs().max() <= 1e-4
    point = np.array([[320.0, 240.0]])
    a, b = eager.predict(point, np.array([1])), compiled.predict(point, np.array([1]))
    assert np.abs(a[1] - b[1]).max() <= 1e-4
    assert (a[0] != b[0]).mean() <= 1e-4


def test_compile_needs_the_torch_backend():
    with pytest.raises(ValueError, match="compile=True needs backend='torch'"):
        segany.SamPredictor(fixture_model(), backend="onnxruntime", compile=True)
