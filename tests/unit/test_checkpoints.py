"""Checkpoint reading, writing and every bad checkpoint's message."""

from __future__ import annotations

import pickle

import pytest
import torch

import segany
from segany import CheckpointError
from segany.checkpoints import check_fits, infer_config, read_checkpoint
from segany.variants import VARIANTS
from support import TINY, randomize_


@pytest.fixture(scope="module")
def model():
    return randomize_(segany.sam_from_config(TINY), seed=4).eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_safetensors_carries_its_config(tmp_path, model):
    config = TINY.replace(decoder_num_heads=4)  # a value tensor shapes cannot tell
    custom = randomize_(segany.sam_from_config(config))
    path = segany.save_checkpoint(custom, tmp_path / "m.safetensors", config=config)
    loaded = segany.build_sam(checkpoint=path, device="cpu")
    assert loaded.config == config
    assert loaded.mask_decoder.transformer.num_heads == 4
    assert _same_weights(loaded, custom)


def test_pth_roundtrip_infers_the_config(tmp_path, model):
    path = segany.save_checkpoint(model, tmp_path / "m.pth")
    assert set(torch.load(path, weights_only=True)) == set(model.state_dict())  # plain official layout
    loaded = segany.build_sam(checkpoint=path, device="cpu")
    assert loaded.config == TINY and _same_weights(loaded, model)


def test_wrapped_pth_with_config_and_training_checkpoints(tmp_path, model):
    path = segany.save_checkpoint(model, tmp_path / "w.pth", config=TINY, official_format=False)
    state_dict, config = read_checkpoint(path)
    assert config == TINY and set(state_dict) == set(model.state_dict())
    ddp = {"model": {"module." + k: v for k, v in model.state_dict().items()}, "step": 3}
    torch.save(ddp, tmp_path / "train.pth")
    assert _same_weights(segany.build_sam(checkpoint=tmp_path / "train.pth", device="cpu"), model)


def test_half_precision_checkpoint_loads(tmp_path, model):
    torch.save({k: v.half() for k, v in model.state_dict().items()}, tmp_path / "h.pth")
    loaded = segany.build_sam(checkpoint=tmp_path / "h.pth", device="cpu")
    assert loaded.image_encoder.pos_embed.dtype == torch.float32


def test_infer_config_recognises_every_variant():
    for name, config in VARIANTS.items():
        with torch.device("meta"):
            state_dict = segany.sam_from_config(config).state_dict()
        assert infer_config(state_dict) == config, name


def _variant_shaped_file(path, name: str):
    """A real checkpoint file with ``name``'s keys and shapes but almost no bytes (zero-stride tensors)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in segany.sam_from_config(VARIANTS[name]).state_dict().items()}
    torch.save({k: torch.zeros(1).expand(shape) for k, shape in shapes.items()}, path)
    return path


def test_checkpoint_of_another_variant_names_the_one_it_fits(tmp_path):
    path = _variant_shaped_file(tmp_path / "sam_vit_l.pth", "vit_l")
    assert path.stat().st_size < 1_000_000
    with pytest.raises(CheckpointError, match=r"is a vit_l checkpoint, not vit_b; use model 'vit_l'"):
        segany.build_sam("vit_b", checkpoint=path)
    with pytest.raises(CheckpointError, match=r"is a vit_l checkpoint, not vit_h"):
        segany.sam_model_registry["default"](checkpoint=path)
    check_fits(VARIANTS["vit_l"], "vit_l", path)  # the right variant passes


def test_custom_checkpoint_under_a_variant_name(tmp_path, model):
    path = segany.save_checkpoint(model, tmp_path / "m.pth")
    with pytest.raises(
        CheckpointError, match=r"holds a custom model \(embed_dim=64, depth=4, img_size=256\), not vit_b"
    ):
        segany.build_sam("vit_b", checkpoint=path)


def test_missing_and_unexpected_keys_are_listed(tmp_path, model):
    state_dict = dict(model.state_dict())
    del state_dict["mask_decoder.iou_token.weight"]
    state_dict["mask_decoder.extra.weight"] = torch.zeros(2)
    torch.save(state_dict, tmp_path / "k.pth")
    with pytest.raises(CheckpointError) as info:
        segany.build_sam(TINY, checkpoint=tmp_path / "k.pth")
    message = str(info.value)
    assert "missing 1 key(s) such as mask_decoder.iou_token.weight" in message
    assert "unexpected 1 key(s) such as mask_decoder.extra.weight" in message


def test_shape_mismatch_is_named(tmp_path, model):
    state_dict = dict(model.state_dict())
    state_dict["mask_decoder.iou_token.weight"] = torch.zeros(1, 8)
    torch.save(state_dict, tmp_path / "s.pth")
    with pytest.raises(
        CheckpointError, match=r"mask_decoder.iou_token.weight has shape \(1, 8\), expected \(1, 256\)"
    ):
        segany.build_sam(TINY, checkpoint=tmp_path / "s.pth")


class _Payload:
    pass


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "Checkpoint not found"),
        (lambda p: p.write_bytes(b"\x00garbage" * 10), "is truncated or corrupt"),
        (lambda p: p.write_bytes(b""), "is truncated or corrupt"),
        (lambda p: p.write_text("hello\n"), "is not a PyTorch checkpoint"),
        (
            lambda p: torch.save({"fc.weight": torch.zeros(3, 3)}, p),
            "is not a SAM checkpoint: none of its 1 tensors",
        ),
        (lambda p: torch.save([1, 2, 3], p), "is not a SAM checkpoint: it holds a list"),
        (lambda p: torch.save({"step": 4}, p), "is not a SAM checkpoint: it holds no tensors"),
        (lambda p: torch.save({"x": _Payload()}, p, pickle_module=pickle), "refuses to load for safety"),
    ],
    ids=["missing", "garbage", "empty", "text", "not-sam", "list", "no-tensors", "pickled-object"],
)
def test_bad_pth_files(tmp_path, make, message):
    path = tmp_path / "bad.pth"
    make(path)
    with pytest.raises(CheckpointError, match=message):
        segany.build_sam(checkpoint=path)


def test_truncated_files(tmp_path, model):
    for suffix in (".pth", ".safetensors"):
        good = segany.save_checkpoint(model, tmp_path / f"good{suffix}", config=TINY)
        data = good.read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=r"is truncated or corrupt.*download it again"):
            segany.build_sam(checkpoint=cut)


def test_directory_and_unknown_variant(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        segany.build_sam(checkpoint=tmp_path)
    with pytest.raises(
        ValueError, match="Unknown model 'vit_x'; choose one of: default, vit_b, vit_h, vit_l"
    ):
        segany.build_sam("vit_x")


def test_save_is_atomic(tmp_path, model, monkeypatch):
    path = segany.save_checkpoint(model, tmp_path / "m.pth")
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        segany.save_checkpoint(model, path)
    assert path.read_bytes() == before
