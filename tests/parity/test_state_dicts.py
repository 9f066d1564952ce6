"""Official checkpoints load unchanged: same keys and shapes as the official models, both directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segany
from segany.checkpoints import infer_config
from segany.variants import VARIANTS
from support import TINY, official_sam, randomize_, sample_image


def _official_builder(name: str):
    from segment_anything import sam_model_registry as official_registry

    return official_registry[name]


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_state_dict_layout_matches_official(name):
    # Built on the meta device: the full vit_h layout is checked without allocating 2.5 GB.
    with torch.device("meta"):
        theirs = _official_builder(name)()
        ours = segany.sam_from_config(VARIANTS[name])
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert {k: tuple(v.shape) for k, v in ours_sd.items()} == {
        k: tuple(v.shape) for k, v in theirs_sd.items()
    }
    theirs.load_state_dict(ours_sd, strict=True, assign=True)
    ours.load_state_dict(theirs_sd, strict=True, assign=True)
    assert infer_config(theirs_sd) == VARIANTS[name]


def test_official_loads_segany_pth_and_segany_loads_official_pth(tmp_path):
    ours = randomize_(segany.sam_from_config(TINY), seed=7).eval()
    segany.save_checkpoint(ours, tmp_path / "ours.pth")
    theirs = official_sam(TINY)
    theirs.load_state_dict(torch.load(tmp_path / "ours.pth", weights_only=True), strict=True)

    torch.save(theirs.state_dict(), tmp_path / "theirs.pth")
    loaded = segany.build_sam(checkpoint=tmp_path / "theirs.pth", device="cpu")
    assert loaded.config == TINY
    image = sample_image()
    from segment_anything import SamPredictor as OfficialPredictor

    a, b = segany.SamPredictor(loaded), OfficialPredictor(theirs)
    a.set_image(image)
    b.set_image(image)
    point = np.array([[image.shape[1] / 2, image.shape[0] / 2]])
    ma, sa, la = a.predict(point, np.array([1]))
    mb, sb, lb = b.predict(point, np.array([1]))
    assert np.abs(sa - sb).max() <= 1e-4 and np.abs(la - lb).max() <= 1e-4
    assert (ma != mb).mean() <= 1e-5


@pytest.mark.slow
def test_registry_builds_the_official_variants_in_eval_mode(tmp_path):
    ours = randomize_(segany.sam_from_config(VARIANTS["vit_b"]), seed=3)
    path = tmp_path / "sam_vit_b.pth"
    segany.save_checkpoint(ours, path)
    model = segany.sam_model_registry["vit_b"](checkpoint=str(path))
    assert not model.training
    assert model.device == torch.device("cpu")
    key = "image_encoder.blocks.2.attn.rel_pos_h"
    assert torch.equal(model.state_dict()[key], ours.state_dict()[key])
    assert set(segany.sam_model_registry) == {"default", "vit_b", "vit_l", "vit_h", "vit_t"}
    official = _official_builder("vit_b")(checkpoint=str(path))
    assert torch.equal(official.state_dict()[key], ours.state_dict()[key])
