"""Pieces of the automatic generator: exact upsampling, boxes, small-region cleanup, grids, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segany
from segany.automatic import GeneratorConfig, SamAutomaticMaskGenerator
from segany.automatic.grid import build_point_grid, generate_crop_boxes
from segany.automatic.mask_ops import masks_to_boxes, remove_small_regions
from support import TINY, randomize_


@pytest.mark.parametrize(
    ("input_size", "original_size"),
    [((768, 1024), (768, 1024)), ((683, 1024), (1200, 1800)), ((1024, 577), (500, 282))],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_postprocess_masks_equals_the_official_definition(input_size, original_size, threads):
    import torch.nn.functional as F

    config = segany.VARIANTS["vit_b"].replace(encoder={"depth": 1, "global_attn_indexes": (0,)})
    model = segany.sam_from_config(config)
    low = torch.randn(1, 3, 256, 256) * 5
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # PyTorch's kernels round differently with one thread
    try:
        reference = F.interpolate(low, (1024, 1024), mode="bilinear", align_corners=False)
        reference = reference[..., : input_size[0], : input_size[1]]
        reference = F.interpolate(reference, original_size, mode="bilinear", align_corners=False)
        fast = model.postprocess_masks(low, input_size, original_size)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(fast, reference)  # bit for bit, not just close


def test_masks_to_boxes_inclusive_and_empty():
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[2, 9, 11] = True
    boxes = masks_to_boxes(masks)
    assert boxes.tolist() == [[3, 2, 8, 4], [0, 0, 0, 0], [11, 9, 11, 9]]


def test_remove_small_regions():
    mask = np.zeros((40, 40), bool)
    mask[5:30, 5:30] = True
    mask[10:13, 10:13] = False  # a 9-pixel hole
    mask[35:37, 35:37] = True  # a 4-pixel island
    filled, changed = remove_small_regions(mask, 20, "holes")
    assert changed and filled[11, 11] and filled[36, 36]
    cleaned, changed = remove_small_regions(filled, 20, "islands")
    assert changed and not cleaned[36, 36] and cleaned[20, 20]
    same, changed = remove_small_regions(cleaned, 20, "islands")
    assert not changed and np.array_equal(same, cleaned)
    only_small = np.zeros((20, 20), bool)
    only_small[1:3, 1:3] = True
    only_small[10:13, 10:13] = True
    kept, _ = remove_small_regions(only_small, 50, "islands")
    assert kept.sum() == 9  # every island is small: the largest stays


def test_grid_and_crops():
    grid = build_point_grid(4)
    assert (
        grid.shape == (16, 2)
        and np.allclose(grid[0], [0.125, 0.125])
        and np.allclose(grid[1], [0.375, 0.125])
    )
    boxes, layers = generate_crop_boxes((600, 800), 2, 512 / 1500)
    assert boxes[0] == [0, 0, 800, 600] and layers == [0] + [1] * 4 + [2] * 16
    assert all(0 <= x0 < x1 <= 800 and 0 <= y0 < y1 <= 600 for x0, y0, x1, y1 in boxes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(output_mode="png"), "output_mode must be one of"),
        (dict(points_per_side=None), "Exactly one of points_per_side or point_grids"),
        (dict(box_nms_thresh=1.5), "box_nms_thresh must lie in [0, 1]"),
        (dict(points_per_batch=0), "points_per_batch must be positive"),
        (dict(max_mask_area_fraction=0.0), "max_mask_area_fraction must lie in (0, 1]"),
        (dict(pred_iou_thresh=2.0), "pred_iou_thresh must lie in [0, 1]"),
        (dict(stability_score_offset=float("nan")), "stability_score_offset must be a finite number"),
        (dict(crop_overlap_ratio=float("inf")), "crop_overlap_ratio must be a finite number"),
    ],
)
def test_bad_options(kwargs, message):
    model = segany.sam_from_config(TINY)
    with pytest.raises(ValueError) as info:
        SamAutomaticMaskGenerator(model, **kwargs)
    assert message in str(info.value)


def test_official_attribute_names_and_config():
    generator = SamAutomaticMaskGenerator(randomize_(segany.sam_from_config(TINY)).eval(), points_per_side=4)
    assert generator.points_per_side == 4 and generator.pred_iou_thresh == 0.88
    assert generator.config == GeneratorConfig(points_per_side=4, pred_iou_thresh=0.88, stability_score_thresh=0.95)
    assert len(generator.point_grids) == 1 and generator.point_grids[0].shape == (16, 2)
