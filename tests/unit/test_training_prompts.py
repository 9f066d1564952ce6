"""The training prompt simulation: clicks land where the paper says, boxes stay within their noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany.training.clicks import error_clicks, new_point_schedule, noisy_boxes, sample_points
from segany.training.samples import MaskFilter, collate, prepare_sample
from segany.training.synthetic import Scene

SCALE = 4.0  # input-frame pixels per low-res cell


def _cells(points: torch.Tensor) -> torch.Tensor:
    return (points / SCALE).floor().long()


def test_sampled_points_fall_inside_their_region_and_cover_it() -> None:
    region = torch.zeros(2, 16, 16, dtype=torch.bool)
    region[0, 2:5, 3:9] = True
    region[1, 10, 12] = True
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(300):
        points = sample_points(region, SCALE, generator)
        cells = _cells(points)
        for b in range(2):
            x, y = cells[b].tolist()
            assert region[b, y, x], f"point {points[b].tolist()} outside region {b}"
        seen.add(tuple(cells[0].tolist()))
    assert len(seen) == 18, "uniform sampling should reach every cell of a 3 x 6 region"


def test_error_clicks_are_positive_in_misses_and_negative_in_spills() -> None:
    target = torch.zeros(3, 16, 16, dtype=torch.bool)
    target[:, 4:12, 4:12] = True
    predicted = target.clone()
    predicted[0, 4:12, 8:12] = False  # missed the right half: false negatives only
    predicted[1, 0:3, 0:16] = True  # spilled over the top: false positives only
    # mask 2 is perfect
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        points, labels = error_clicks(predicted, target, SCALE, generator)
        cells = _cells(points)
        x0, y0 = cells[0].tolist()
        assert labels[0] == 1 and target[0, y0, x0] and not predicted[0, y0, x0]
        x1, y1 = cells[1].tolist()
        assert labels[1] == 0 and predicted[1, y1, x1] and not target[1, y1, x1]
        x2, y2 = cells[2].tolist()
        assert labels[2] == 1 and target[2, y2, x2]


def test_error_clicks_on_a_mixed_error_take_the_label_of_the_pixel() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.bool)
    target[0, :, :4] = True
    predicted = torch.zeros(1, 8, 8, dtype=torch.bool)
    predicted[0, :, 2:6] = True  # misses columns 0-1, spills onto 4-5
    generator = torch.Generator().manual_seed(2)
    labels = []
    for _ in range(400):
        points, label = error_clicks(predicted, target, SCALE, generator)
        x, _ = _cells(points)[0].tolist()
        assert x in (0, 1, 4, 5)
        assert label.item() == (1 if x < 2 else 0)
        labels.append(label.item())
    assert 0.4 < np.mean(labels) < 0.6, "the two error parts have equal area"


def test_interior_corrective_clicks_go_where_segany_eval_clicks() -> None:
    """With ``interior_share = 1`` every click lands on the deepest cells of the deepest error region."""
    target = torch.zeros(2, 16, 16, dtype=torch.bool)
    target[:, 2:14, 2:14] = True
    predicted = target.clone()
    predicted[0, 2:14, 2:6] = False  # a 12 x 4 miss (depth 1) ...
    predicted[0, 0:1, 0:16] = True  # ... beats a one-cell-thin spill (depth 0)
    predicted[1] = False
    predicted[1, 2:4, 2:4] = True  # nearly all missed: the click goes to the middle of the rest
    predicted[1, 0:16, 15:16] = True
    generator = torch.Generator().manual_seed(4)
    for _ in range(30):
        points, labels = error_clicks(predicted, target, SCALE, generator, interior_share=1.0)
        (x0, y0), (x1, y1) = _cells(points).tolist()
        assert labels.tolist() == [1, 1]
        assert x0 in (3, 4) and 3 <= y0 <= 12, "the miss's two middle columns"
        assert 6 <= x1 <= 9 and 6 <= y1 <= 9, "the middle of the big miss"
    uniform = {
        tuple(_cells(error_clicks(predicted, target, SCALE, generator)[0])[0].tolist()) for _ in range(200)
    }
    assert any(y == 0 for _, y in uniform), "without the share, clicks also fall on the thin spill"


def test_box_noise_stays_within_ten_percent_std_and_twenty_pixels() -> None:
    generator = torch.Generator().manual_seed(3)
    small = torch.tensor([[100.0, 100.0, 140.0, 120.0]]).repeat(4000, 1)  # sides 40 x 20
    noisy = noisy_boxes(small, generator, bounds=(1024.0, 1024.0))
    moved = noisy - small
    # std 10% of the side: 4 px horizontally, 2 px vertically.
    assert moved[:, 0].std().item() == pytest.approx(4.0, rel=0.1)
    assert moved[:, 1].std().item() == pytest.approx(2.0, rel=0.1)
    large = torch.tensor([[100.0, 100.0, 900.0, 900.0]]).repeat(4000, 1)  # std 80 px, clipped at 20
    moved = noisy_boxes(large, generator, bounds=(1024.0, 1024.0)) - large
    assert moved.abs().max().item() <= 20.0 + 1e-4
    assert (moved.abs() > 19.99).float().mean() > 0.5


def test_noisy_boxes_stay_inside_the_image_and_ordered() -> None:
    generator = torch.Generator().manual_seed(4)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [250.0, 250.0, 255.0, 255.0]]).repeat(500, 1)
    noisy = noisy_boxes(boxes, generator, bounds=(256.0, 256.0), fraction=1.0)
    assert noisy.min() >= 0 and noisy.max() <= 256
    assert (noisy[:, 2] >= noisy[:, 0]).all() and (noisy[:, 3] >= noisy[:, 1]).all()


def test_the_schedule_has_eight_clicks_and_two_quiet_rounds_one_at_the_end() -> None:
    generator = torch.Generator().manual_seed(5)
    positions = set()
    for _ in range(200):
        flags = new_point_schedule(11, generator)
        assert len(flags) == 10 and sum(flags) == 8 and flags[-1] is False
        positions.add(flags.index(False))
    assert len(positions) == 9, "the second quiet round can fall on any of the 9 intermediate rounds"
    assert new_point_schedule(1, generator) == []
    assert new_point_schedule(3, generator, no_point_iterations=0) == [True, True]


def _scene_with_areas(height: int, width: int, fractions: list[float]) -> Scene:
    masks = np.zeros((len(fractions), height, width), dtype=bool)
    for i, fraction in enumerate(fractions):
        rows = max(1, round(fraction * height))
        masks[i, :rows, :] = True
    return Scene(image=np.zeros((height, width, 3), np.uint8), masks=masks)


def test_mask_filter_drops_huge_and_empty_masks_and_caps_the_count() -> None:
    scene = _scene_with_areas(100, 100, [0.95, 0.91, 0.9, 0.5, 0.0, 0.1])
    scene.masks[4] = False
    keep = MaskFilter(max_masks=64, max_area_fraction=0.9).select(scene.masks, np.random.default_rng(0))
    assert keep.tolist() == [2, 3, 5]
    many = _scene_with_areas(50, 50, [0.2] * 30)
    picks = [
        tuple(MaskFilter(max_masks=5).select(many.masks, np.random.default_rng(seed)).tolist())
        for seed in range(10)
    ]
    assert all(len(p) == 5 and len(set(p)) == 5 for p in picks)
    assert len(set(picks)) > 1, "the capped subset is random, not always the first masks"


def test_prepared_sample_has_resized_image_boxes_and_low_res_targets() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    masks = np.zeros((2, 100, 200), dtype=bool)
    masks[0, 20:60, 40:120] = True
    masks[1, 0:1, 0:1] = True  # vanishes at the low resolution
    sample = prepare_sample(Scene(image, masks), 256, 64, MaskFilter(), np.random.default_rng(0))
    assert sample.image.shape == (3, 128, 256)
    assert sample.targets.shape == (1, 64, 64)
    assert sample.boxes.tolist() == [
        [pytest.approx(51.2), pytest.approx(25.6), pytest.approx(152.32), pytest.approx(75.52)]
    ]
    rows, cols = torch.nonzero(sample.targets[0], as_tuple=True)
    # 1.28 input pixels per original pixel, 4 per cell: rows 20-60 -> cells 6.4-19.2, cols 40-120 -> 12.8-38.4
    assert rows.min() == 6 and rows.max() == 18 and cols.min() == 13 and cols.max() == 37
    batch = collate([sample, sample], 256, 64)
    assert batch.owner.tolist() == [0, 1]
    assert batch.valid[0, :32].all() and not batch.valid[0, 32:].any()


def test_coverage_holds_each_cells_covered_share_and_thresholds_to_the_targets() -> None:
    image = np.zeros((256, 256, 3), np.uint8)
    masks = np.zeros((1, 256, 256), dtype=bool)
    masks[0, 8:40, 8:27] = True  # 4 pixels per cell (256 px input, 64 cells): columns 2-6.75
    rng = np.random.default_rng(0)
    plain = prepare_sample(Scene(image, masks), 256, 64, MaskFilter(), rng)
    assert plain.coverage is None
    sample = prepare_sample(Scene(image, masks), 256, 64, MaskFilter(), rng, coverage=True)
    assert sample.coverage is not None and sample.coverage.shape == (1, 64, 64)
    assert torch.equal(sample.coverage >= 0.5, sample.targets) and torch.equal(sample.targets, plain.targets)
    row = sample.coverage[0, 5].float()  # a row inside the mask: full cells, then the cut one
    assert row[2:6].tolist() == [1.0, 1.0, 1.0, 1.0] and row[6].item() == pytest.approx(0.75, abs=1e-3)
    assert row[7:].eq(0).all() and row[:2].eq(0).all()
    batch = collate([sample, sample], 256, 64)
    assert batch.coverage is not None and torch.equal(batch.coverage[1], sample.coverage[0])
    assert collate([sample, plain], 256, 64).coverage is None
