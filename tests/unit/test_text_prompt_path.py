"""The text path of the prompt encoder (paper section 7.5): one extra sparse token per prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segany.build import build_sam, sam_from_config
from segany.checkpoints import save_checkpoint
from segany.text import CropConfig, mask_crop, random_crop
from support import TINY


def test_official_models_keep_their_parameter_set() -> None:
    names = set(sam_from_config(TINY).state_dict())
    assert not any("text" in name for name in names)
    texty = set(sam_from_config(TINY.replace(text_embed_dim=32)).state_dict())
    assert names < texty and all(name.startswith("prompt_encoder.text_projection.") for name in texty - names)


def test_text_adds_one_token_after_points_and_boxes_and_changes_the_mask() -> None:
    torch.manual_seed(0)
    model = sam_from_config(TINY.replace(text_embed_dim=32)).eval()
    encoder = model.prompt_encoder
    points = (torch.tensor([[[10.0, 20.0]]]).repeat(2, 1, 1), torch.ones(2, 1, dtype=torch.int64))
    boxes = torch.tensor([[5.0, 5.0, 60.0, 70.0]]).repeat(2, 1)
    text = torch.randn(2, 32)
    sparse, _ = encoder(points, boxes, None)
    with_text, _ = encoder(points, boxes, None, text=text)
    assert with_text.shape == (2, sparse.shape[1] + 1, sparse.shape[2])
    assert torch.equal(with_text[:, :-1], sparse)
    # Only the direction of an embedding counts (CLIP embeddings are compared by angle).
    scaled, _ = encoder(points, boxes, None, text=3 * text)
    torch.testing.assert_close(scaled, with_text)
    only_text, _ = encoder(None, None, None, text=text)
    assert only_text.shape == (2, 1, sparse.shape[2])

    image = torch.randint(0, 255, (3, 256, 256)).float()
    embedding = model.embed_images([image])
    with torch.no_grad():
        a, _ = model.decode(embedding, text=text[:1], multimask_output=False)
        b, _ = model.decode(embedding, text=-text[:1], multimask_output=False)
    assert a.shape == (1, 1, 64, 64) and not torch.equal(a, b)


def test_text_on_a_model_without_a_text_path_is_one_clear_error() -> None:
    model = sam_from_config(TINY)
    with pytest.raises(ValueError, match="no text prompt path"):
        model.prompt_encoder(None, None, None, text=torch.randn(1, 32))
    texty = sam_from_config(TINY.replace(text_embed_dim=32))
    with pytest.raises(ValueError, match="B x 32"):
        texty.prompt_encoder(None, None, None, text=torch.randn(1, 16))


def test_a_text_model_saves_and_loads_with_its_text_path(tmp_path: Path) -> None:
    model = sam_from_config(TINY.replace(text_embed_dim=32))
    # With the config in the file, and as a plain state dict whose shapes tell the text width.
    for path, config in ((tmp_path / "texty.safetensors", model.config), (tmp_path / "texty.pth", None)):
        save_checkpoint(model, path, config=config)
        loaded = build_sam(checkpoint=path)
        assert loaded.config is not None and loaded.config.text_embed_dim == 32
        for key, value in model.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key]), key


def test_mask_crop_is_square_around_the_box_and_zeroes_outside_on_request() -> None:
    image = np.full((100, 200, 3), 90, np.uint8)
    mask = np.zeros((100, 200), bool)
    mask[20:40, 50:90] = True  # a 40 x 20 box
    image[mask] = 255
    crop = mask_crop(image, mask, 32)
    bright = np.argwhere(crop[..., 0] > 200)
    # The longer side fills the crop; the shorter one is centred.
    assert bright[:, 1].min() == 0 and bright[:, 1].max() == 31
    assert bright[:, 0].min() == 8 and bright[:, 0].max() == 23
    wide = mask_crop(image, mask, 32, expand=2.0)
    assert np.argwhere(wide[..., 0] > 200)[:, 1].tolist()[0] >= 7
    zeroed = mask_crop(image, mask, 32, expand=2.0, zero_outside=True)
    assert zeroed[16, 1].tolist() == [0, 0, 0] and wide[16, 1].tolist() == [90, 90, 90]
    rng = np.random.default_rng(0)
    assert random_crop(image, mask, 16, rng, CropConfig()).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="empty mask"):
        mask_crop(image, np.zeros_like(mask), 32)
