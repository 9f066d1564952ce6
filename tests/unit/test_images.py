"""Image inputs: grayscale, RGBA, PIL and BGR are converted; unusable images get one clear sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import segany
from segany import ImageError, SamPredictor
from segany.images import load_image, to_rgb_array
from support import TINY, randomize_


@pytest.fixture(scope="module")
def predictor() -> SamPredictor:
    return SamPredictor(randomize_(segany.sam_from_config(TINY)).eval())


RGB = np.random.default_rng(1).integers(0, 255, (90, 130, 3), dtype=np.uint8)


def _embedding(predictor: SamPredictor, image, **kwargs) -> torch.Tensor:
    predictor.set_image(image, **kwargs)
    return predictor.get_image_embedding().clone()


def test_conversions_give_the_same_embedding(predictor):
    reference = _embedding(predictor, RGB)
    rgba = np.concatenate([RGB, np.full((90, 130, 1), 7, np.uint8)], axis=2)
    assert torch.equal(_embedding(predictor, rgba), reference)
    assert torch.equal(_embedding(predictor, Image.fromarray(RGB)), reference)
    assert torch.equal(_embedding(predictor, RGB[..., ::-1].copy(), image_format="BGR"), reference)
    gray = RGB[..., 0]
    assert torch.equal(_embedding(predictor, gray), _embedding(predictor, np.repeat(gray[..., None], 3, 2)))
    assert torch.equal(_embedding(predictor, Image.fromarray(gray)), _embedding(predictor, gray))


BAD = [
    (np.zeros((10, 10, 2), np.uint8), "image must have shape H x W x 3"),
    (np.zeros((2, 10, 10, 3), np.uint8), "image must have shape H x W x 3"),
    (np.zeros((0, 10, 3), np.uint8), "image is empty"),
    (np.zeros((10, 10, 3), np.float32), "image must be uint8 RGB, got dtype float32"),
    (np.full((10, 10, 3), 300, np.int32), "image values must lie in [0, 255]"),
    ("photo.jpg", "image must be a numpy array or PIL image"),
]


@pytest.mark.parametrize(("image", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_image_arrays(predictor, image, message):
    with pytest.raises(ImageError) as info:
        predictor.set_image(image)
    assert message in str(info.value)


def test_bad_image_format(predictor):
    with pytest.raises(ValueError, match="image_format must be 'RGB' or 'BGR'"):
        predictor.set_image(RGB, image_format="HSV")


def test_integer_arrays_in_range_are_accepted():
    assert to_rgb_array(RGB.astype(np.int64)).dtype == np.uint8


def test_load_image_files(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), RGB)
    Image.fromarray(RGB).convert("L").save(tmp_path / "gray.png")
    assert load_image(tmp_path / "gray.png").shape == (90, 130, 3)
    Image.fromarray(RGB).convert("P").save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").shape == (90, 130, 3)
    with pytest.raises(ImageError, match="Image not found"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="Cannot read"):
        load_image(tmp_path / "text.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="Cannot read"):
        load_image(tmp_path / "cut.png")
