"""Training with text prompts (paper appendix D.5): the [text] section, crop embeddings as first prompts,
adding a text path to a checkpoint trained without one, and the tiny encoder's contrastive training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from segany import build_sam, sam_from_config, save_checkpoint
from segany.errors import CheckpointError, TextEncoderError
from segany.text.tiny_encoder import TinyEncoderConfig, TinyTextImageEncoder
from segany.training.interactive import SimulationConfig
from segany.training.text_config import EncoderTrainConfig, TextPromptConfig
from segany.training.text_encoder_training import contrastive_loss, train_encoder
from segany.training.train_config import DataSource, TrainConfig, TrainConfigError, load_train_config
from segany.training.trainer import Trainer
from support import TINY

WIDTH = 16
TEXTY = TINY.replace(text_embed_dim=WIDTH)
DATA = "text_scenes:seed=1,count=20,size=96"


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    encoder = TinyTextImageEncoder(TinyEncoderConfig(embed_dim=WIDTH, image_size=32, channels=(8, 16)))
    return encoder.save(tmp_path_factory.mktemp("encoder") / "encoder.safetensors")


def _config(out_dir: Path, encoder: Path | None, **changes: object) -> TrainConfig:
    base = TrainConfig(
        data=(DataSource(DATA),),
        out_dir=str(out_dir),
        model_config=TEXTY,
        steps=2,
        warmup_steps=1,
        lr=1e-3,
        batch_size=2,
        masks_per_image=3,
        simulation=SimulationConfig(iterations=2),
        precision="float32",
        save_every=1,
        log_every=1,
        seed=3,
        text=TextPromptConfig(str(encoder), probability=1.0) if encoder is not None else None,
    )
    return base.replace(**changes)


def test_the_text_section_is_read_with_its_path_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    head = 'out_dir = "out"\nmodel = "vit_b"\n[[data]]\nspec = "text_scenes:seed=1"\n'
    path.write_text(head + '[text]\nencoder = "enc.safetensors"\nprobability = 0.25\n')
    config = load_train_config(path)
    assert config.text == TextPromptConfig(str(tmp_path / "enc.safetensors"), 0.25)
    assert load_train_config(path).to_dict()["text"]["probability"] == 0.25
    path.write_text(head + '[text]\nencoder = "enc.safetensors"\nchance = 0.25\n')
    with pytest.raises(TrainConfigError, match="chance"):
        load_train_config(path)
    path.write_text(head + '[text]\nencoder = "enc.safetensors"\nprobability = 2\n')
    with pytest.raises(TrainConfigError, match=r"\[0, 1\]"):
        load_train_config(path)


def test_text_prompts_train_the_text_projection(tmp_path: Path, encoder_file: Path) -> None:
    torch.set_num_threads(1)
    trainer = Trainer(_config(tmp_path, encoder_file))
    batch = trainer.batches.get(0, 0)
    assert batch.crops is not None and batch.crops.shape == (batch.num_masks, 3, 32, 32)
    assert batch.crops.dtype == torch.uint8
    figures = trainer.accumulate_gradients(0)
    assert math.isfinite(figures["loss"])
    grad = trainer.model.prompt_encoder.text_projection[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # The frozen encoder is an input, not a part being trained.
    assert all(not p.requires_grad for p in trainer.text_encoder.parameters())
    before = {k: v.clone() for k, v in trainer.model.prompt_encoder.text_projection.state_dict().items()}
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.run()
    after = trainer.model.prompt_encoder.text_projection.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_without_crop_embeddings_the_text_projection_gets_no_gradient(
    tmp_path: Path, encoder_file: Path
) -> None:
    # probability 0: crops are embedded but never used, so the text path stays untouched.
    trainer = Trainer(_config(tmp_path, encoder_file, text=TextPromptConfig(str(encoder_file), 0.0)))
    trainer.accumulate_gradients(0)
    assert trainer.model.prompt_encoder.text_projection[0].weight.grad is None
    # And without a [text] section the batches carry no crops at all.
    plain = Trainer(_config(tmp_path / "plain", None))
    batch = plain.batches.get(0, 0)
    assert batch.crops is None and batch.text is None


def test_a_run_with_text_prompts_resumes_bit_identical(tmp_path: Path, encoder_file: Path) -> None:
    torch.set_num_threads(1)
    config = _config(
        tmp_path / "straight", encoder_file, steps=3, text=TextPromptConfig(str(encoder_file), 0.5)
    )
    straight = Trainer(config)
    straight.run()
    first = Trainer(config.replace(out_dir=str(tmp_path / "split")))
    first.run(stop_after=1)
    torch.manual_seed(999)
    second = Trainer(config.replace(out_dir=str(tmp_path / "split")))
    assert second.resume() and second.step == 1
    second.run()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key


def test_the_model_and_encoder_must_fit(tmp_path: Path, encoder_file: Path) -> None:
    with pytest.raises(TextEncoderError, match="text_embed_dim"):
        Trainer(_config(tmp_path, encoder_file, model_config=TINY))
    with pytest.raises(TextEncoderError, match=f"{WIDTH}-wide"):
        Trainer(_config(tmp_path, encoder_file, model_config=TINY.replace(text_embed_dim=WIDTH + 1)))
    with pytest.raises(TextEncoderError, match="not found"):
        Trainer(_config(tmp_path, tmp_path / "missing.safetensors"))


def test_new_parts_add_a_text_path_to_a_checkpoint_without_one(tmp_path: Path) -> None:
    checkpoint = save_checkpoint(sam_from_config(TINY), tmp_path / "plain.safetensors", config=TINY)
    config = _config(
        tmp_path / "run", None, checkpoint=str(checkpoint), new_parts=("prompt_encoder.text_projection",)
    )
    trainer = Trainer(config)
    plain = build_sam(checkpoint=checkpoint, device="cpu").state_dict()
    ours = trainer.model.state_dict()
    assert all(torch.equal(value, ours[key]) for key, value in plain.items())
    assert trainer.model.prompt_encoder.text_embed_dim == WIDTH
    # new_parts_lr_scale: the new part learns at that multiple of the others' rate.
    faster = Trainer(config.replace(new_parts_lr_scale=10.0))
    named = dict(faster.model.named_parameters())
    rate = {id(p): group["lr"] for group in faster.optimizer.param_groups for p in group["params"]}
    base = rate[id(named["mask_decoder.iou_token.weight"])]
    projections = [
        rate[id(p)] for name, p in named.items() if name.startswith("prompt_encoder.text_projection.")
    ]
    assert projections and all(r == pytest.approx(10 * base) for r in projections)
    # Without new_parts the missing text path is refused, as any mismatch is.
    with pytest.raises(CheckpointError, match="text_projection"):
        Trainer(config.replace(new_parts=()))
    with pytest.raises(TrainConfigError, match="checkpoint"):
        config.replace(checkpoint=None)


def test_contrastive_loss_counts_every_matching_phrase_as_positive() -> None:
    image = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]]), dim=1)
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05], [0.0, 1.0]]), dim=1)
    # Phrase 0 ("triangle") fits crops 0 and 2, phrase 1 fits crop 1.
    matches = torch.tensor([[True, False, True], [False, True, False]])
    scale = torch.tensor(math.log(20.0))
    good = contrastive_loss(image, text, matches, scale)
    swapped = contrastive_loss(image, text.flip(0), matches, scale)
    assert good < swapped
    logits = 20.0 * text @ image.T
    expected_t2i = -(torch.log_softmax(logits, 1)[0, [0, 2]].mean() + torch.log_softmax(logits, 1)[1, 1]) / 2
    expected_i2t = (
        -(
            torch.log_softmax(logits, 0)[0, 0]
            + torch.log_softmax(logits, 0)[1, 1]
            + torch.log_softmax(logits, 0)[0, 2]
        )
        / 3
    )
    torch.testing.assert_close(good, (expected_t2i + expected_i2t) / 2)


def test_encoder_training_lowers_the_loss() -> None:
    torch.set_num_threads(1)
    losses: list[float] = []
    config = EncoderTrainConfig(
        steps=40, scenes_per_step=4, scene_size=96, embed_dim=16, image_size=32, lr=3e-3
    )
    encoder = train_encoder(config, lambda step, figures: losses.append(figures["loss"]))
    assert not encoder.training and len(losses) == 40
    assert sum(losses[-8:]) / 8 < 0.85 * sum(losses[:8]) / 8, losses
