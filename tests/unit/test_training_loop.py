"""The training loop: losses by hand, the optimiser's groups and schedule, exact resume, fine-tuning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from segany import build_sam, sam_from_config
from segany.training.interactive import SimulationConfig
from segany.training.losses import dice_loss, focal_loss, sam_loss
from segany.training.optim import WarmupStepDecay, parameter_groups
from segany.training.synthetic import Scene, SyntheticScenes
from segany.training.train_config import DataSource, TrainConfig, TrainConfigError, load_train_config
from segany.training.trainer import FINAL_WEIGHTS, LAST_STATE, Trainer
from support import TINY


class FiniteScenes:
    """A small fixed set of synthetic scenes (the loader permutes finite datasets per epoch)."""

    def __init__(self, count: int, size: int = 96, seed: int = 0) -> None:
        self.scenes = SyntheticScenes(seed, size, size)
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Scene:
        return self.scenes[index]


def test_focal_and_dice_match_hand_computed_values() -> None:
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 3.0]]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    p = torch.sigmoid(logits)
    # Focal per pixel: -alpha_t (1 - p_t)^2 log p_t, alpha = 0.25 for foreground, 0.75 for background.
    expected_focal = (
        -0.25 * (1 - p[0, 0, 0]) ** 2 * torch.log(p[0, 0, 0])
        - 0.75 * p[0, 0, 1] ** 2 * torch.log(1 - p[0, 0, 1])
        - 0.75 * p[0, 1, 0] ** 2 * torch.log(1 - p[0, 1, 0])
        - 0.25 * (1 - p[0, 1, 1]) ** 2 * torch.log(p[0, 1, 1])
    ) / 4
    assert focal_loss(logits, targets).item() == pytest.approx(expected_focal.item(), rel=1e-5)
    expected_dice = 1 - (2 * (p[0, 0, 0] + p[0, 1, 1]) + 1) / (p.sum() + 2 + 1)
    assert dice_loss(logits, targets).item() == pytest.approx(expected_dice.item(), rel=1e-5)


def test_sam_loss_trains_only_the_best_candidate_and_regresses_actual_iou() -> None:
    targets = torch.zeros(1, 4, 4, dtype=torch.bool)
    targets[0, :2, :2] = True  # 4 pixels
    good = torch.where(targets[0], 10.0, -10.0)
    half = good.clone()
    half[0, :2] = -10.0  # predicts 2 of the 4 pixels: IoU 0.5
    bad = -good
    logits = torch.stack([bad, good, half])[None].requires_grad_(True)
    iou_pred = torch.tensor([[0.3, 0.9, 0.5]], requires_grad=True)
    loss, parts = sam_loss(logits, iou_pred, targets)
    loss.backward()
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 2].abs().sum() == 0
    assert logits.grad[0, 1].abs().sum() > 0
    actual = torch.tensor([0.0, 1.0, 0.5])
    assert parts["iou_mse"].item() == pytest.approx(((iou_pred[0].detach() - actual) ** 2).mean().item())
    assert parts["iou"].item() == 1.0
    assert iou_pred.grad is not None and iou_pred.grad.abs().sum() > 0


def test_layer_decay_and_weight_decay_groups() -> None:
    model = sam_from_config(TINY)
    groups = parameter_groups(model, lr=1.0, weight_decay=0.1, layer_decay=0.5)
    depth = len(model.image_encoder.blocks)
    rate = {}
    decay = {}
    for group in groups:
        for param in group["params"]:
            rate[id(param)] = group["lr"]
            decay[id(param)] = group["weight_decay"]
    named = dict(model.named_parameters())
    assert rate[id(named["image_encoder.patch_embed.proj.weight"])] == 0.5 ** (depth + 1)
    assert rate[id(named["image_encoder.blocks.0.attn.qkv.weight"])] == 0.5**depth
    assert rate[id(named[f"image_encoder.blocks.{depth - 1}.mlp.lin1.weight"])] == 0.5
    assert rate[id(named["mask_decoder.iou_prediction_head.layers.0.weight"])] == 1.0
    assert decay[id(named["image_encoder.blocks.0.attn.qkv.weight"])] == 0.1
    for name in ("image_encoder.blocks.0.attn.qkv.bias", "image_encoder.pos_embed", "mask_decoder.iou_token.weight"):
        assert decay[id(named[name])] == 0.0, name
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_named_parts_can_learn_at_a_scaled_rate(tmp_path: Path) -> None:
    model = sam_from_config(TINY)
    groups = parameter_groups(
        model, lr=1.0, weight_decay=0.1, layer_decay=0.5, rate_scales={"mask_decoder.iou_prediction_head": 10.0}
    )
    rate = {id(param): group["lr"] for group in groups for param in group["params"]}
    named = dict(model.named_parameters())
    assert rate[id(named["mask_decoder.iou_prediction_head.layers.0.weight"])] == 10.0
    assert rate[id(named["mask_decoder.iou_prediction_head.layers.0.bias"])] == 10.0
    assert rate[id(named["mask_decoder.iou_token.weight"])] == 1.0
    assert sum(len(g["params"]) for g in groups) == len(named)
    with pytest.raises(TrainConfigError, match="new_parts_lr_scale must be positive, got 0"):
        _config(tmp_path, new_parts_lr_scale=0.0)


def test_warmup_then_step_decay() -> None:
    schedule = WarmupStepDecay(warmup=4, milestones=[10, 20], gamma=0.1)
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(9) == 1.0 and schedule(10) == pytest.approx(0.1) and schedule(20) == pytest.approx(0.01)


def _config(out_dir: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        data=(DataSource("in-memory"),),
        out_dir=str(out_dir),
        model=None,
        model_config=TINY,
        steps=4,
        warmup_steps=2,
        lr=1e-3,
        batch_size=2,
        masks_per_image=3,
        drop_path=0.2,  # exercises the global torch RNG
        simulation=SimulationConfig(iterations=3),
        precision="float32",
        save_every=2,
        log_every=1,
        seed=7,
    )
    return base.replace(**changes)


@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_bit_identical(tmp_path: Path) -> None:
    data = FiniteScenes(3)
    torch.set_num_threads(1)
    straight = Trainer(_config(tmp_path / "straight"), data=data)
    straight.run()

    first = Trainer(_config(tmp_path / "split"), data=data)
    first.run(stop_after=2)
    assert (tmp_path / "split" / LAST_STATE).exists()
    # Different global RNG state in the new process must not matter: it is restored from the file.
    torch.manual_seed(12345)
    second = Trainer(_config(tmp_path / "split"), data=data)
    assert second.resume()
    assert second.step == 2
    second.run()

    a, b = straight.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    assert straight.scheduler.get_last_lr() == second.scheduler.get_last_lr()
    # And training really changed the weights.
    fresh = Trainer(_config(tmp_path / "fresh"), data=data).model.state_dict()
    assert any(not torch.equal(fresh[k], a[k]) for k in a)


def test_a_run_resumed_with_more_steps_follows_the_new_schedule(tmp_path: Path) -> None:
    # 4 steps with the rate cut at 90% (step 4), then resumed with steps=40: the cut moves to step 36,
    # so the resumed run trains at the full rate again instead of the old cut-down one.
    data = FiniteScenes(2)
    first = Trainer(_config(tmp_path, milestones=(0.5,)), data=data)
    first.run()
    assert first.optimizer.param_groups[-1]["lr"] == pytest.approx(1e-4)
    longer = Trainer(_config(tmp_path, steps=40, milestones=(0.9,)), data=data)
    assert longer.resume() and longer.step == 4
    assert longer.optimizer.param_groups[-1]["lr"] == pytest.approx(1e-3)
    assert longer.train_step(longer.step)["lr"] == pytest.approx(1e-3)
    longer.scheduler.last_epoch = 35
    longer.scheduler.step()
    assert longer.optimizer.param_groups[-1]["lr"] == pytest.approx(1e-4)


def test_a_run_continues_on_a_fresh_machine_from_its_small_progress_file(tmp_path: Path) -> None:
    data = FiniteScenes(2)
    progress = tmp_path / "repo" / "run_progress.safetensors"
    first = Trainer(_config(tmp_path / "machine_a", progress=str(progress)), data=data)
    first.run(stop_after=2)
    assert progress.exists() and progress.stat().st_size < (tmp_path / "machine_a" / LAST_STATE).stat().st_size
    # Another machine: the repository's progress file but no OUT_DIR/last.pt.
    second = Trainer(_config(tmp_path / "machine_b", progress=str(progress)), data=data)
    assert second.resume() and second.step == 2
    for key, value in first.model.state_dict().items():
        expected = value.half().to(value.dtype) if value.is_floating_point() else value
        assert torch.equal(second.model.state_dict()[key], expected), key
    assert second.optimizer.param_groups[-1]["lr"] == first.optimizer.param_groups[-1]["lr"]
    second.run()
    assert second.step == 4 and (tmp_path / "machine_b" / FINAL_WEIGHTS).exists()
    # Without either file there is nothing to resume.
    assert not Trainer(_config(tmp_path / "machine_c"), data=data).resume()


def test_the_ranking_term_reaches_the_training_log(tmp_path: Path) -> None:
    # Every mask starts from a click (box_probability 0), so each first round ranks three candidates.
    simulation = SimulationConfig(iterations=2, box_probability=0.0)
    trainer = Trainer(_config(tmp_path, iou_rank_weight=1.0, simulation=simulation), data=FiniteScenes(1))
    figures = trainer.train_step(0)
    assert figures["iou_rank"] > 0 and math.isfinite(figures["loss"])
    plain = Trainer(_config(tmp_path / "plain", simulation=simulation), data=FiniteScenes(1))
    assert "iou_rank" not in plain.train_step(0)


def test_soft_targets_reach_the_mask_loss(tmp_path: Path) -> None:
    soft = Trainer(_config(tmp_path, soft_targets=True, mask_loss="bce_dice"), data=FiniteScenes(2))
    batch = soft.batches.get(0, 0)
    assert batch.coverage is not None and torch.equal(batch.coverage >= 0.5, batch.targets)
    assert ((batch.coverage > 0) & (batch.coverage < 1)).any(), "shapes' edges cut some cells"
    hard = Trainer(_config(tmp_path / "hard", mask_loss="bce_dice"), data=FiniteScenes(2))
    assert hard.batches.get(0, 0).coverage is None
    # The same weights, batch and draws: only the mask loss's target differs.
    soft_figures, hard_figures = soft.train_step(0), hard.train_step(0)
    assert math.isfinite(soft_figures["loss"]) and soft_figures["bce"] != hard_figures["bce"]
    with pytest.raises(TrainConfigError, match="soft_targets must be bool"):
        _config(tmp_path, soft_targets="yes")


def test_training_the_iou_head_alone_leaves_every_mask_as_it_was(tmp_path: Path) -> None:
    # Stage 7's freeze list: all but the IoU head, the IoU token too (the mask tokens attend to it).
    frozen = (
        "image_encoder",
        "prompt_encoder",
        "mask_decoder.transformer",
        "mask_decoder.iou_token",
        "mask_decoder.mask_tokens",
        "mask_decoder.output_upscaling",
        "mask_decoder.output_hypernetworks_mlps",
    )
    simulation = SimulationConfig(iterations=1, no_point_iterations=0, box_probability=0.0)
    config = _config(tmp_path, freeze=frozen, iou_rank_weight=1.0, simulation=simulation, drop_path=0.0)
    trainer = Trainer(config, data=FiniteScenes(1))
    model = trainer.model

    def decode() -> tuple[torch.Tensor, torch.Tensor]:
        model.eval()
        with torch.no_grad():
            image = torch.rand(1, 3, model.img_size, model.img_size, generator=torch.Generator().manual_seed(0))
            points = (torch.tensor([[[40.0, 50.0]]]), torch.tensor([[1]]))
            logits, iou = model.decode(model.embed_images(image), points=points, multimask_output=True)
        model.train()
        return logits, iou

    logits_before, iou_before = decode()
    for step in range(3):
        trainer.train_step(step)
    logits_after, iou_after = decode()
    torch.testing.assert_close(logits_after, logits_before, rtol=0, atol=0)
    assert not torch.equal(iou_after, iou_before)


@pytest.mark.slow
def test_training_lowers_the_loss_on_a_fixed_batch(tmp_path: Path) -> None:
    data = FiniteScenes(1)
    trainer = Trainer(_config(tmp_path, steps=30, lr=3e-3, drop_path=0.0, warmup_steps=1, milestones=()), data=data)
    losses = [trainer.train_step(step)["loss"] for step in range(30)]
    assert math.isfinite(losses[-1])
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


@pytest.mark.slow
def test_finetuning_an_official_checkpoint_with_a_frozen_encoder(tmp_path: Path) -> None:
    # An official-architecture vit_b with random weights, saved the official way (plain state dict).
    official = build_sam("vit_b", device="cpu")
    checkpoint = tmp_path / "sam_vit_b_random.pth"
    torch.save(official.state_dict(), checkpoint)
    config = _config(
        tmp_path / "run",
        model="vit_b",
        model_config=None,
        checkpoint=str(checkpoint),
        freeze=("image_encoder",),
        steps=1,
        batch_size=1,
        masks_per_image=2,
        drop_path=0.0,
    )
    trainer = Trainer(config, data=FiniteScenes(1, size=64))
    encoder_before = {k: v.clone() for k, v in trainer.model.image_encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in trainer.model.mask_decoder.state_dict().items()}
    trainer.run()
    after = trainer.model
    assert all(torch.equal(v, after.image_encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert any(not torch.equal(v, after.mask_decoder.state_dict()[k]) for k, v in decoder_before.items())
    reloaded = build_sam("vit_b", checkpoint=tmp_path / "run" / FINAL_WEIGHTS, device="cpu")
    for key, value in after.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    # The resumable state is itself a checkpoint build_sam reads.
    build_sam(checkpoint=tmp_path / "run" / LAST_STATE, device="cpu")


def test_config_file_paths_are_relative_to_it_and_typos_are_errors(tmp_path: Path) -> None:
    from segany.training.train_config import TrainConfigError

    path = tmp_path / "run.toml"
    path.write_text(
        'out_dir = "out"\nmodel = "vit_b"\nsteps = 3\n[simulation]\niterations = 4\n'
        '[[data]]\nspec = "coco/val2017"\nweight = 2\n[[data]]\nspec = "synthetic:seed=1"\n'
    )
    config = load_train_config(path)
    assert config.out_dir == str(tmp_path / "out")
    assert [d.spec for d in config.data] == [str(tmp_path / "coco/val2017"), "synthetic:seed=1"]
    assert config.data[0].weight == 2 and config.simulation.iterations == 4
    path.write_text('out_dir = "out"\nmodel = "vit_b"\nlearning_rate = 1\n[[data]]\nspec = "x"\n')
    with pytest.raises(TrainConfigError, match="Unknown training setting"):
        load_train_config(path)
    path.write_text('out_dir = "out"\n[[data]]\nspec = "x"\n')
    with pytest.raises(TrainConfigError, match="Say what to train"):
        load_train_config(path)
    # The command line's --out-dir overrides the file's out_dir, and fills it in where the file has none.
    path.write_text('model = "vit_b"\n[[data]]\nspec = "x"\n')
    with pytest.raises(TrainConfigError, match="names no out_dir"):
        load_train_config(path)
    assert load_train_config(path, {"out_dir": "elsewhere"}).out_dir == "elsewhere"


def test_a_vit_t_model_trains_too(tmp_path: Path) -> None:
    from support import TINY_T

    trainer = Trainer(
        _config(tmp_path, model_config=TINY_T, steps=1, layer_decay=0.5), data=FiniteScenes(1, size=64)
    )
    rates = {group["lr"] for group in trainer.optimizer.param_groups}
    assert rates == {1e-3 * 0.5}, "no layer-wise decay for encoders without a blocks list"  # warm-up step 1 of 2
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert math.isfinite(trainer.train_step(0)["loss"])
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("image_encoder."))
