"""Synthetic scenes are reproducible and well formed; the paper's losses reward the right masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany.training.losses import dice_loss, focal_loss, iou_rank_loss, mask_iou, sam_loss
from segany.training.synthetic import SceneConfig, SyntheticScenes, make_scene


@pytest.mark.parametrize(("height", "width"), [(256, 256), (200, 300), (96, 64)])
def test_scene_shapes_dtypes_and_masks(height: int, width: int) -> None:
    config = SceneConfig()
    for seed in range(4):
        scene = make_scene(np.random.default_rng(seed), height, width, config)
        assert scene.image.shape == (height, width, 3) and scene.image.dtype == np.uint8
        assert scene.masks.ndim == 3 and scene.masks.shape[1:] == (height, width)
        assert scene.masks.dtype == np.bool_
        assert 1 <= len(scene.masks) <= config.max_shapes
        assert scene.masks.sum(axis=0).max() <= 1, "instance masks overlap"
        assert scene.masks.sum(axis=(1, 2)).min() >= config.min_visible


def test_scenes_usually_hold_three_to_ten_shapes() -> None:
    counts = [len(make_scene(np.random.default_rng(seed), 256, 256).masks) for seed in range(12)]
    assert min(counts) >= 3 and max(counts) <= 10 and len(set(counts)) > 2


def test_scenes_are_deterministic() -> None:
    a = make_scene(np.random.default_rng(7), 128, 160)
    b = make_scene(np.random.default_rng(7), 128, 160)
    c = make_scene(np.random.default_rng(8), 128, 160)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, c.image)
    scenes = SyntheticScenes(seed=3, height=128, width=128)
    assert np.array_equal(scenes[5].image, scenes[5].image)
    assert not np.array_equal(scenes[5].image, scenes[6].image)


def test_scene_background_is_the_complement() -> None:
    scene = make_scene(np.random.default_rng(1), 128, 128)
    assert np.array_equal(scene.background, ~scene.masks.any(axis=0))


def _square_targets() -> torch.Tensor:
    targets = torch.zeros(2, 32, 32, dtype=torch.bool)
    targets[0, 4:20, 6:22] = True
    targets[1, 10:30, 2:12] = True
    return targets


def _logits(masks: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    return (masks.float() * 2 - 1) * scale


def test_losses_are_near_zero_for_perfect_logits_and_larger_for_wrong_ones() -> None:
    targets = _square_targets()
    perfect, wrong = _logits(targets), _logits(~targets)
    assert focal_loss(perfect, targets).shape == (2,)
    assert focal_loss(perfect, targets).max() < 1e-6
    assert dice_loss(perfect, targets).max() < 1e-6
    assert (focal_loss(wrong, targets) > 1.0).all()
    assert (dice_loss(wrong, targets) > 0.9).all()
    assert torch.equal(mask_iou(perfect, targets), torch.ones(2))
    assert torch.equal(mask_iou(wrong, targets), torch.zeros(2))


def test_sam_loss_trains_only_the_best_candidate() -> None:
    targets = _square_targets()
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = noise.clone()
    logits[:, 1] = _logits(targets)  # candidate 1 is perfect for both prompts
    logits.requires_grad_(True)
    iou_pred = torch.full((2, 3), 0.5, requires_grad=True)
    loss, parts = sam_loss(logits, iou_pred, targets)
    assert torch.isfinite(loss) and parts["mask"] < 1e-5 and parts["iou"] == 1.0
    loss.backward()
    # Candidates 0 and 2 get no mask gradient (their IoU only trains the IoU head).
    assert logits.grad[:, [0, 2]].abs().max() == 0
    assert torch.isfinite(iou_pred.grad).all() and iou_pred.grad.abs().sum() > 0


def test_sam_loss_picks_the_lowest_loss_candidate_per_prompt() -> None:
    targets = _square_targets()
    # Candidate 0 is wrong; 1 and 2 are right with different confidence, so their losses differ.
    logits = torch.stack([_logits(~targets), _logits(targets, 1.0), _logits(targets, 0.5)], dim=1)
    logits[1, 2] = _logits(targets[1], 3.0)  # prompt 1's best is candidate 2, prompt 0's is candidate 1
    logits.requires_grad_(True)
    loss, parts = sam_loss(logits, torch.zeros(2, 3), targets)
    loss.backward()
    trained = logits.grad.abs().sum(dim=(2, 3)) > 0
    assert trained.tolist() == [[False, True, False], [False, False, True]]
    assert parts["iou"] == 1.0


def test_iou_target_is_detached_from_the_mask_logits() -> None:
    targets = _square_targets()
    logits = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
    iou_pred = torch.rand(2, 1, generator=torch.Generator().manual_seed(2), requires_grad=True)
    total, parts = sam_loss(logits, iou_pred, targets)
    (grad_total,) = torch.autograd.grad(total, logits)
    # The logits' gradient is the mask loss's alone: the IoU regression adds nothing to it.
    mask_only = (20 * focal_loss(logits, targets[:, None]) + dice_loss(logits, targets[:, None])).mean()
    (grad_mask,) = torch.autograd.grad(mask_only, logits)
    torch.testing.assert_close(grad_total, grad_mask)
    # Nor does it depend on what the IoU head predicted.
    other, _ = sam_loss(logits, iou_pred.detach() + 0.3, targets)
    torch.testing.assert_close(torch.autograd.grad(other, logits)[0], grad_total)
    (grad_iou,) = torch.autograd.grad(sam_loss(logits, iou_pred, targets)[0], iou_pred)
    assert torch.isfinite(grad_total).all() and torch.isfinite(grad_iou).all() and grad_iou.abs().sum() > 0
    assert parts["iou_mse"] > 0


def test_iou_weight_scales_only_the_iou_heads_share() -> None:
    targets = _square_targets()
    logits = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3), requires_grad=True)
    iou_pred = torch.rand(2, 3, generator=torch.Generator().manual_seed(4), requires_grad=True)
    plain, parts = sam_loss(logits, iou_pred, targets, "bce_dice")
    heavy, _ = sam_loss(logits, iou_pred, targets, "bce_dice", iou_weight=4.0)
    torch.testing.assert_close(heavy, parts["mask"] + 4.0 * parts["iou_mse"])
    torch.testing.assert_close(plain, parts["mask"] + parts["iou_mse"])
    # The mask logits learn the same either way; the IoU head learns four times as fast.
    torch.testing.assert_close(torch.autograd.grad(heavy, logits)[0], torch.autograd.grad(plain, logits)[0])
    torch.testing.assert_close(
        torch.autograd.grad(heavy, iou_pred)[0], 4.0 * torch.autograd.grad(plain, iou_pred)[0]
    )


def test_rank_loss_teaches_the_order_of_a_prompts_candidates() -> None:
    actual = torch.tensor([[0.9, 0.5, 0.2], [0.3, 0.6, 0.4]])
    # Predictions in the wrong order: a step down the gradient raises the best candidate's prediction
    # above the others, whatever the squared error says.
    pred = torch.tensor([[0.4, 0.6, 0.5], [0.5, 0.4, 0.45]], requires_grad=True)
    (grad,) = torch.autograd.grad(iou_rank_loss(pred, actual), pred)
    stepped = pred.detach() - 0.5 * grad
    assert (stepped.argmax(dim=1) == actual.argmax(dim=1)).all()
    # Only the order and the gaps count: a constant per prompt changes nothing, and predictions whose
    # gaps match the actual ones cost nothing.
    shifted = pred.detach() + torch.tensor([[0.3], [-0.2]])
    torch.testing.assert_close(iou_rank_loss(shifted, actual), iou_rank_loss(pred.detach(), actual))
    assert iou_rank_loss(actual - 0.1, actual) < 1e-6 < iou_rank_loss(pred.detach(), actual)
    # One candidate per prompt: nothing to rank.
    assert iou_rank_loss(pred[:, :1], actual[:, :1]) == 0


def test_rank_weight_adds_the_ranking_term_to_the_iou_head_only() -> None:
    targets = _square_targets()
    logits = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5), requires_grad=True)
    iou_pred = torch.rand(2, 3, generator=torch.Generator().manual_seed(6), requires_grad=True)
    plain, parts = sam_loss(logits, iou_pred, targets, "bce_dice")
    ranked, ranked_parts = sam_loss(logits, iou_pred, targets, "bce_dice", rank_weight=2.0)
    assert "iou_rank" not in parts and ranked_parts["iou_rank"] > 0
    torch.testing.assert_close(ranked, plain + 2.0 * ranked_parts["iou_rank"])
    torch.testing.assert_close(torch.autograd.grad(ranked, logits)[0], torch.autograd.grad(plain, logits)[0])


def test_sam_loss_rejects_mismatched_targets() -> None:
    with pytest.raises(ValueError, match="B x h x w"):
        sam_loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3), torch.zeros(2, 4, 4))


def test_soft_targets_teach_the_share_of_a_cell_and_count_it_by_half_in_the_iou() -> None:
    shares = torch.tensor([[[0.1, 0.25, 0.75, 0.9]]])  # 1 x 1 x 4: one row of cells across an edge

    def cross_entropy(logits: torch.Tensor) -> float:
        _, parts = sam_loss(logits[None, None], torch.zeros(1, 1), shares, mask_loss="bce_dice")
        return float(parts["bce"])

    # The cross-entropy is least at each share's log-odds, not further out towards the thresholded
    # cell (0 or 1) nor back towards undecided.
    odds = torch.logit(shares[0])
    assert cross_entropy(odds) < cross_entropy(1.5 * odds) and cross_entropy(odds) < cross_entropy(0.5 * odds)
    hard = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])
    guess = torch.tensor([[[[-1.0, 1.0, 1.0, 1.0]]]])
    assert (
        mask_iou(guess, shares).item() == pytest.approx(mask_iou(guess, hard).item()) == pytest.approx(2 / 3)
    )
