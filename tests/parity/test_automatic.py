"""segany's automatic generator against the official one: same trained weights, same images, same masks.

The fixture model (tests/data/amg_fixture.safetensors, trained on synthetic shapes by
tests/make_fixture_model.py) yields many distinct, stable masks, so these comparisons are not the
degenerate one-blob case of random weights. Every official mask must have a segany mask with IoU >= 0.99
and the same predicted IoU and stability score (within 1e-3), and the counts must match; with filters and
NMS switched off, every candidate is compared.
"""

from __future__ import annotations

import numpy as np
import pytest

from segany.automatic import SamAutomaticMaskGenerator
from segany.formats import rle
from segany.training.synthetic import make_scene
from support import FIXTURE_PATH

pytestmark = pytest.mark.skipif(not FIXTURE_PATH.exists(), reason="fixture model missing")


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(1234)
    return [make_scene(rng, 256, 256).image, make_scene(rng, 200, 300).image]


def _mask(record: dict) -> np.ndarray:
    segmentation = record["segmentation"]
    return segmentation if isinstance(segmentation, np.ndarray) else rle.decode(segmentation)


def _compare(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    if not theirs:
        return
    stack = np.stack([_mask(r) for r in ours]).reshape(len(ours), -1)
    for record in theirs:
        mask = _mask(record).reshape(1, -1)
        iou = (stack & mask).sum(1) / np.maximum((stack | mask).sum(1), 1)
        best = int(np.argmax(iou))
        assert iou[best] >= 0.99
        match = ours[best]
        assert abs(match["predicted_iou"] - record["predicted_iou"]) <= 1e-3
        assert abs(match["stability_score"] - record["stability_score"]) <= 1e-3
        assert match["crop_box"] == record["crop_box"]
        assert np.allclose(match["point_coords"], record["point_coords"])
        assert abs(match["area"] - record["area"]) <= 0.01 * record["area"] + 2


def _run(fixture_twins, image, **options):
    from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator

    ours, theirs = fixture_twins
    return SamAutomaticMaskGenerator(ours, **options).generate(image), OfficialGenerator(
        theirs, **options
    ).generate(image)


@pytest.mark.parametrize("index", [0, 1])
def test_default_options_give_the_official_masks(fixture_twins, scenes, index):
    ours, theirs = _run(fixture_twins, scenes[index], points_per_side=16)
    assert len(theirs) >= 4, "the fixture model should find several stable masks"
    _compare(ours, theirs)
    # The records are in the official order too (NMS keeps by predicted IoU).
    assert [r["bbox"] for r in ours] == [r["bbox"] for r in theirs]


def test_every_candidate_with_filters_and_nms_off(fixture_twins, scenes):
    options = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    ours, theirs = _run(fixture_twins, scenes[1], **options)
    assert len(theirs) == 8 * 8 * 3
    _compare(ours, theirs)


def test_crops_and_small_region_cleanup(fixture_twins, scenes):
    options = dict(points_per_side=8, crop_n_layers=1, min_mask_region_area=40, pred_iou_thresh=0.8)
    ours, theirs = _run(fixture_twins, scenes[0], **options)
    assert len(theirs) >= 4
    assert len({tuple(r["crop_box"]) for r in theirs}) >= 2  # masks from the zoomed-in crops are there
    _compare(ours, theirs)


@pytest.mark.parametrize("mode", ["uncompressed_rle", "coco_rle"])
def test_output_modes_match(fixture_twins, scenes, mode):
    ours, theirs = _run(fixture_twins, scenes[0], points_per_side=8, output_mode=mode)
    assert len(ours) == len(theirs) >= 1
    for a, b in zip(ours, theirs, strict=True):
        assert a["segmentation"]["size"] == list(b["segmentation"]["size"])
        if mode == "uncompressed_rle":
            assert a["segmentation"]["counts"] == list(b["segmentation"]["counts"])
        else:
            assert a["segmentation"]["counts"] == b["segmentation"]["counts"]


def test_max_area_filter(fixture_twins, scenes):
    image = scenes[0]
    everything = SamAutomaticMaskGenerator(
        fixture_twins[0], points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    all_masks = everything.generate(image)
    limit = 0.2
    filtered = SamAutomaticMaskGenerator(
        fixture_twins[0],
        points_per_side=8,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        max_mask_area_fraction=limit,
    ).generate(image)
    pixels = image.shape[0] * image.shape[1]
    assert any(r["area"] > limit * pixels for r in all_masks)
    assert filtered and all(r["area"] <= limit * pixels for r in filtered)
