"""``vit_t`` as a variant: its config, checkpoint recognition and refusals, and no stale attention-bias cache."""

from __future__ import annotations

import argparse

import pytest
import torch

import segany
from segany.checkpoints import check_fits, infer_config
from segany.config import ImageEncoderConfig, SamConfig, TinyViTConfig
from segany.errors import CheckpointError, DownloadError
from segany.variants import VARIANTS, VIT_B, VIT_T
from support import TINY, TINY_T, randomize_


def test_config_round_trips_with_its_kind():
    data = VIT_T.to_dict()
    assert data["encoder"]["kind"] == "tiny_vit" and VIT_B.to_dict()["encoder"]["kind"] == "vit"
    assert SamConfig.from_dict(data) == VIT_T
    assert SamConfig.from_json(TINY_T.to_json()) == TINY_T
    assert SamConfig.from_json(VIT_B.to_json()) == VIT_B
    # Configs written before TinyViT existed carry no kind: they are ViTs.
    legacy = VIT_B.to_dict()
    del legacy["encoder"]["kind"]
    assert SamConfig.from_dict(legacy) == VIT_B
    assert VIT_T.replace(encoder={"img_size": 512}).encoder.embedding_grid == 32


def test_bad_encoder_configs_are_refused():
    data = VIT_T.to_dict()
    data["encoder"]["kind"] = "swin"
    with pytest.raises(ValueError, match="Unknown encoder kind 'swin'; choose one of: vit, tiny_vit"):
        SamConfig.from_dict(data)
    with pytest.raises(ValueError, match="one equal length >= 2"):
        TinyViTConfig(depths=(2, 2, 6))
    with pytest.raises(ValueError, match="must equal prompt_embed_dim"):
        SamConfig(TinyViTConfig(out_chans=128))


def test_vit_t_is_mobilesams_architecture():
    assert VARIANTS["vit_t"] == VIT_T and VIT_T.encoder.embedding_grid == 64
    with torch.device("meta"):
        model = segany.sam_from_config(VIT_T)
    # MobileSAM's encoder: 6.07 M parameters, the unused 1000-class head included.
    assert sum(p.numel() for p in model.image_encoder.parameters()) == 6_065_532
    assert "image_encoder.layers.2.blocks.5.attn.attention_biases" in model.state_dict()
    assert not any("attention_bias_idxs" in key for key in model.state_dict())


def test_encoder_output_frame():
    model = randomize_(segany.sam_from_config(TINY_T)).eval()
    with torch.no_grad():
        out = model.image_encoder(torch.randn(2, 3, 256, 256))
    assert out.shape == (2, 256, 16, 16) and torch.isfinite(out).all()


def test_infer_config_recognises_tiny_vit():
    with torch.device("meta"):
        assert infer_config(segany.sam_from_config(VIT_T).state_dict()) == VIT_T
        # The input size leaves no trace in the weights: it comes from the base config.
        assert infer_config(segany.sam_from_config(TINY_T).state_dict(), base=TINY_T) == TINY_T
        custom = TINY_T.replace(encoder={"depths": (1, 2, 3, 1), "num_classes": 0})
        assert infer_config(segany.sam_from_config(custom).state_dict(), base=TINY_T) == custom


def _variant_shaped_file(path, config: SamConfig):
    """A checkpoint with ``config``'s keys, shapes and dtypes but almost no bytes (zero-stride tensors)."""
    with torch.device("meta"):
        tensors = segany.sam_from_config(config).state_dict()
    torch.save({k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in tensors.items()}, path)
    return path


def test_vit_t_and_vit_b_files_name_each_other(tmp_path):
    mobile = _variant_shaped_file(tmp_path / "mobile_sam.pt", VIT_T)
    with pytest.raises(CheckpointError, match=r"is a vit_t checkpoint, not vit_b; use model 'vit_t'"):
        segany.sam_model_registry["vit_b"](checkpoint=mobile)
    with pytest.raises(CheckpointError, match=r"is a vit_t checkpoint, not vit_h"):
        segany.build_sam("default", checkpoint=mobile)
    vit_b = _variant_shaped_file(tmp_path / "sam_vit_b.pth", VIT_B)
    with pytest.raises(CheckpointError, match=r"is a vit_b checkpoint, not vit_t; use model 'vit_b'"):
        segany.sam_model_registry["vit_t"](checkpoint=vit_b)
    check_fits(VIT_T, "vit_t", mobile)
    custom = _variant_shaped_file(tmp_path / "small.pt", TINY_T.replace(encoder={"depths": (1, 1, 1, 1)}))
    with pytest.raises(CheckpointError, match=r"holds a custom TinyViT model \(embed_dims=\(64, 128, 160"):
        segany.build_sam("vit_t", checkpoint=custom)


def test_registry_loads_a_mobile_sam_file_unchanged(tmp_path):
    """A plain state dict with MobileSAM's keys (what ``mobile_sam.pt`` is) loads strictly, without a name too."""
    ours = randomize_(segany.sam_from_config(VIT_T), seed=1)
    path = tmp_path / "mobile_sam.pt"
    torch.save(ours.state_dict(), path)
    for model in (
        segany.sam_model_registry["vit_t"](checkpoint=str(path)),
        segany.build_sam(checkpoint=path),
    ):
        assert not model.training and model.config == VIT_T
        for key, value in ours.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key


def test_weights_loaded_or_changed_after_eval_take_effect():
    """MobileSAM caches its bias table in ``.eval()``; segany gathers it every call, so nothing goes stale."""
    x = torch.randn(1, 3, 256, 256)
    model = segany.sam_from_config(TINY_T).eval()
    with torch.no_grad():
        model.image_encoder(x)  # an embedding with the old weights, as a cache would hold
        weights = randomize_(segany.sam_from_config(TINY_T), seed=3).state_dict()
        model.load_state_dict(weights)
        fresh = segany.sam_from_config(TINY_T)
        fresh.load_state_dict(weights)
        expected = fresh.eval().image_encoder(x)
        assert torch.equal(model.image_encoder(x), expected)
        # An in-place change of the biases alone changes the output (a constant shift would not: softmax).
        biases = model.image_encoder.layers[1].blocks[0].attn.attention_biases
        biases.add_(torch.randn(biases.shape, generator=torch.Generator().manual_seed(0)))
        assert (model.image_encoder(x) - expected).abs().max() > 1e-3


def test_no_download_but_a_pointer_to_mobilesam(tmp_path, monkeypatch):
    from segany.cli.common import load_model
    from segany.download import cached_checkpoint, download_checkpoint

    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path))
    assert cached_checkpoint("vit_t") is None
    with pytest.raises(DownloadError, match=r"no download for vit_t: get mobile_sam\.pt from MobileSAM's"):
        download_checkpoint("vit_t")
    args = argparse.Namespace(model="vit_t", checkpoint=None, device="cpu", precision="float32")
    with pytest.raises(
        CheckpointError, match=r"vit_t has no download; get mobile_sam.pt .* --checkpoint PATH"
    ):
        load_model(args)


def test_vit_configs_are_unaffected():
    assert isinstance(TINY.encoder, ImageEncoderConfig) and TINY.to_dict()["encoder"]["window_size"] == 7
