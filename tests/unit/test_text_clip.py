"""CLIP through open_clip as SAM's text-image encoder: loaded from a local file, never downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segany.build import sam_from_config
from segany.errors import TextEncoderError
from segany.text import ClipTextImageEncoder, TextImageEncoder, check_pair, load_clip, load_text_encoder
from support import TINY, TINY_CLIP_NAME, tiny_clip

pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def test_loaded_clip_embeds_like_the_model_it_was_saved_from(clip_files) -> None:
    import open_clip

    weights, model = clip_files
    encoder = load_clip(weights, TINY_CLIP_NAME, device="cpu")
    assert isinstance(encoder, ClipTextImageEncoder) and isinstance(encoder, TextImageEncoder)
    assert (encoder.embed_dim, encoder.image_size) == (32, 32)

    phrases = ["a red triangle", "a blue circle", ""]
    text = encoder.encode_text(phrases)
    assert text.shape == (3, 32) and text.dtype == torch.float32
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(3))
    tokens = open_clip.get_tokenizer(TINY_CLIP_NAME)(phrases)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
    torch.testing.assert_close(text, expected)

    crops = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
    images = encoder.encode_images(crops)
    assert images.shape == (2, 32) and images.dtype == torch.float32
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(2))
    # CLIP's own normalisation: pixels on [0, 1], then OpenAI's mean and std.
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_image((crops / 255 - mean) / std), dim=-1)
    torch.testing.assert_close(images, expected)

    with pytest.raises(ValueError, match="N x 3 x 32 x 32"):
        encoder.encode_images(torch.zeros(1, 3, 16, 16))


def test_load_text_encoder_sends_other_files_to_clip(clip_files) -> None:
    weights, _ = clip_files
    encoder = load_text_encoder(weights, clip_model=TINY_CLIP_NAME, device="cpu")
    assert isinstance(encoder, ClipTextImageEncoder) and encoder.embed_dim == 32


def test_missing_unreadable_and_mismatched_weights_are_one_sentence(clip_files, tmp_path) -> None:
    weights, _ = clip_files
    for load in (load_clip, load_text_encoder):
        with pytest.raises(
            TextEncoderError, match=r"not found; download open_clip_pytorch_model\.bin"
        ) as info:
            load(tmp_path / "nope.bin")
        assert "--text-encoder" in str(info.value) and "\n" not in str(info.value)

    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"this is not a weights file")
    with pytest.raises(TextEncoderError, match=r"Cannot read CLIP weights .*garbage\.bin") as info:
        load_clip(garbage, TINY_CLIP_NAME)
    assert "\n" not in str(info.value)

    # The tiny model's weights are not ViT-B-32's.
    with pytest.raises(
        TextEncoderError, match=r"tiny_clip.bin do not fit open_clip model ViT-B-32; pass --clip-model"
    ):
        load_clip(weights, "ViT-B-32")

    with pytest.raises(TextEncoderError, match=r"Unknown CLIP model 'ViT-Q-99'; .*ViT-B-32"):
        load_clip(weights, "ViT-Q-99")
    with pytest.raises(TextEncoderError, match="downloads nothing"):
        load_clip(weights, "ViT-B-16-SigLIP")


def test_check_pair_needs_a_text_path_of_the_encoder_width(clip_files) -> None:
    weights, _ = clip_files
    encoder = load_clip(weights, TINY_CLIP_NAME, device="cpu")
    check_pair(sam_from_config(TINY.replace(text_embed_dim=32)), encoder)
    with pytest.raises(TextEncoderError, match="no text prompt path"):
        check_pair(sam_from_config(TINY), encoder)
    with pytest.raises(TextEncoderError, match=r"takes 64-wide text embeddings but .* gives 32"):
        check_pair(sam_from_config(TINY.replace(text_embed_dim=64)), encoder)


def test_load_text_encoder_opens_segany_encoders_and_sends_other_safetensors_to_clip(tmp_path) -> None:
    tiny = pytest.importorskip("segany.text.tiny_encoder")
    saved = tiny.TinyTextImageEncoder(
        tiny.TinyEncoderConfig(embed_dim=16, image_size=16, channels=(8, 8))
    ).eval()
    path = saved.save(tmp_path / "encoder.safetensors")
    loaded = load_text_encoder(path, device="cpu")
    assert isinstance(loaded, tiny.TinyTextImageEncoder) and loaded.embed_dim == 16
    torch.testing.assert_close(loaded.encode_text(["red triangle"]), saved.encode_text(["red triangle"]))

    # A SAM checkpoint is no text encoder: without the marker it is tried as CLIP, and refused as such.
    from segany.checkpoints import save_checkpoint

    sam_file = tmp_path / "sam.safetensors"
    save_checkpoint(sam_from_config(TINY), sam_file)
    with pytest.raises(TextEncoderError, match=r"sam\.safetensors do not fit open_clip model ViT-B-32"):
        load_text_encoder(sam_file)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(TextEncoderError, match=r"Cannot read text encoder .*broken\.safetensors"):
        load_text_encoder(broken)
