"""The offline text-prompt demonstration (paper section 7.5): labelled scenes, the tiny encoder, and the
committed demo weights answering phrases on unseen scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segany.errors import DatasetError, TextEncoderError
from segany.text.encoder import TextImageEncoder
from segany.text.tiny_encoder import METADATA_KEY, TinyEncoderConfig, TinyTextImageEncoder, load_tiny_encoder
from segany.training.datasets import open_dataset
from segany.training.text_scenes import PHRASE_FORMS, TextScenes, unique_phrase

DEMO = Path(__file__).resolve().parents[2] / "examples" / "text_demo"
# Scenes of this seed were used neither to train the encoder (seed 0), nor SAM (seed 1), nor for the
# README's table (seed 1000).
UNSEEN_SEED = 4242
# examples/text_demo/README.md gives the figures measured on these 60 scenes (full phrase 0.371, its
# wrong-phrase control 0.111, the one word "small"/"large" 0.775, box 0.911); the thresholds sit below.
# The model has learnt to use size words, not yet colours or kinds, so the shortest unique phrase
# ("triangle") is not asserted: see the README.
TEST_SCENES = 60
MIN_FULL_PHRASE_MIOU = 0.28
MIN_MARGIN_OVER_WRONG_PHRASE = 0.15
MIN_SIZE_WORD_MIOU = 0.6
MIN_BOX_MIOU = 0.8


def test_scenes_are_deterministic_with_disjoint_labelled_masks() -> None:
    scenes = TextScenes(seed=5, height=128, width=160, length=8)
    again = TextScenes(seed=5, height=128, width=160, length=8)
    for index in range(len(scenes)):
        a, b = scenes[index], again[index]
        assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks) and a.labels == b.labels
        assert a.image.shape == (128, 160, 3) and a.image.dtype == np.uint8
        assert len(a.labels) == len(a.masks) >= 1
        assert a.masks.reshape(len(a.masks), -1).any(axis=1).all()
        assert a.masks.sum(axis=0).max() == 1, "objects overlap"
    assert not np.array_equal(scenes[0].image, TextScenes(seed=6, height=128, width=160)[0].image)


def test_asked_phrases_name_exactly_one_object_and_are_the_shortest() -> None:
    asked = 0
    for scene in TextScenes(seed=3, length=40):
        for index, label in enumerate(scene.labels):
            phrase = unique_phrase(scene.labels, index)
            if phrase is None:
                # Only an identical twin makes an object unnameable.
                assert any(other == label for i, other in enumerate(scene.labels) if i != index)
                continue
            asked += 1
            assert [other.matches(phrase) for other in scene.labels].count(True) == 1
            assert label.matches(phrase)
            shorter = [label.phrase(form) for form in PHRASE_FORMS[: label.phrases().index(phrase)]]
            assert all(sum(other.matches(text) for other in scene.labels) > 1 for text in shorter)
    assert asked > 80


def test_text_scenes_spec() -> None:
    dataset = open_dataset("text_scenes:seed=2,count=3,size=64")
    assert isinstance(dataset, TextScenes) and len(dataset) == 3
    assert np.array_equal(dataset[1].image, TextScenes(2, 64, 64)[1].image)
    with pytest.raises(DatasetError, match="Bad text_scenes dataset option"):
        open_dataset("text_scenes:colour=red")
    with pytest.raises(DatasetError, match="at least 32 x 32"):
        open_dataset("text_scenes:size=16")


def test_tiny_encoder_round_trips_with_identical_embeddings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = TinyTextImageEncoder(TinyEncoderConfig(embed_dim=24, image_size=32, channels=(8, 16)))
    assert isinstance(encoder, TextImageEncoder)
    path = encoder.save(tmp_path / "encoder.safetensors")
    loaded = load_tiny_encoder(path)
    assert loaded.config == encoder.config and loaded.embed_dim == 24 and loaded.image_size == 32
    encoder.eval()
    phrases = ["large blue ellipse", "Triangle!", "a red thing", "zebra"]
    crops = torch.randint(0, 256, (3, 3, 32, 32)).float()
    with torch.no_grad():
        assert torch.equal(encoder.encode_text(phrases), loaded.encode_text(phrases))
        assert torch.equal(encoder.encode_images(crops), loaded.encode_images(crops))
        text = loaded.encode_text(phrases)
    assert text.shape == (4, 24) and text.dtype == torch.float32
    torch.testing.assert_close(text.norm(dim=1), torch.ones(4))
    # Unknown words add nothing: "a red thing" is "red", and a phrase of unknown words is the empty one.
    torch.testing.assert_close(text[2], loaded.encode_text(["red"])[0])
    torch.testing.assert_close(text[3], loaded.encode_text([""])[0])
    with pytest.raises(ValueError, match="N x 3 x 32 x 32"):
        loaded.encode_images(torch.zeros(1, 3, 16, 16))


def test_loading_refuses_missing_and_wrong_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(TextEncoderError, match="not found"):
        load_tiny_encoder(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(TextEncoderError, match="not a readable safetensors"):
        load_tiny_encoder(garbage)
    plain = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2)}, str(plain))
    with pytest.raises(TextEncoderError, match="not a segany text encoder"):
        load_tiny_encoder(plain)
    wrong = tmp_path / "wrong.safetensors"
    config = json.dumps({"embed_dim": 8, "image_size": 32, "channels": [8, 16]})
    save_file({"weight": torch.zeros(2)}, str(wrong), metadata={METADATA_KEY: config})
    with pytest.raises(TextEncoderError, match="does not match") as info:
        load_tiny_encoder(wrong)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_the_demo_model_answers_phrases_on_unseen_scenes() -> None:
    from segany import build_sam
    from segany.training.text_config import TextEvalConfig
    from segany.training.text_evaluate import evaluate_text

    torch.set_num_threads(1)
    model = build_sam(checkpoint=DEMO / "sam.safetensors", device="cpu")
    encoder = load_tiny_encoder(DEMO / "text_encoder.safetensors")
    assert model.prompt_encoder.text_embed_dim == encoder.embed_dim
    scenes = TextScenes(UNSEEN_SEED, 256, 256, length=TEST_SCENES)
    result = evaluate_text(model, encoder, scenes, TextEvalConfig(baselines=True))
    assert result.objects >= 150
    assert result.full_wrong_phrase_miou is not None and result.word_miou is not None
    assert result.box_miou is not None and result.box_miou >= MIN_BOX_MIOU, result
    assert result.full_phrase_miou >= MIN_FULL_PHRASE_MIOU, result
    assert result.full_phrase_miou - result.full_wrong_phrase_miou >= MIN_MARGIN_OVER_WRONG_PHRASE, result
    assert result.word_miou["size"] >= MIN_SIZE_WORD_MIOU, result


def test_the_commands_refuse_bad_input_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segany.cli import main

    assert main(["train-text-encoder", "--out", str(tmp_path / "encoder.txt"), "--steps", "1"]) == 1
    assert main(["train-text-encoder", "--out", str(tmp_path / "e.safetensors"), "--steps", "0"]) == 1
    sam = str(DEMO / "sam.safetensors")
    assert main(["eval-text", "synthetic:count=2", "--checkpoint", sam, "--text-encoder", sam]) == 1
    missing = str(tmp_path / "missing.safetensors")
    assert main(["eval-text", "text_scenes:count=2", "--checkpoint", sam, "--text-encoder", missing]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("segany: error:")]
    assert len(errors) == 4, errors
    assert ".safetensors file" in errors[0] and "steps must be at least 1" in errors[1]
    assert "labelled scenes" in errors[2] and "not found" in errors[3]


def test_eval_text_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    from segany.cli import main

    torch.set_num_threads(1)
    code = main(
        [
            "eval-text",
            f"text_scenes:seed={UNSEEN_SEED},count=2",
            "--checkpoint",
            str(DEMO / "sam.safetensors"),
            "--text-encoder",
            str(DEMO / "text_encoder.safetensors"),
            "--device",
            "cpu",
            "--no-baselines",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "text (shortest unique phrase)" in out and "box" not in out
