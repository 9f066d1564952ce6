"""Evaluation of promptable segmentation: the click rules, the floors, the protocol and the metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import segany
from segany import SamPredictor
from segany.errors import DatasetError
from segany.training.eval_config import EvalConfig
from segany.training.eval_prompts import (
    box_masks,
    corrective_click,
    distance_to_boundary,
    ellipse_masks,
    interior_point,
    tight_boxes,
)
from segany.training.evaluate import (
    evaluate,
    grabcut_mask,
    mask_ious,
    number_of_clicks,
    sam_click_ious,
    select_masks,
)
from segany.training.synthetic import Scene, SyntheticScenes
from support import FIXTURE, fixture_model


def rectangle(height: int, width: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """``H x W`` bool with rows ``rows[0]..rows[1]`` and columns ``cols[0]..cols[1]`` (inclusive) set."""
    mask = np.zeros((height, width), dtype=bool)
    mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return mask


def disk(height: int, width: int, centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


def brute_force_distance(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest pixel outside it, the frame's outer ring included."""
    padded = np.pad(region, 1)
    inside = np.argwhere(padded)
    outside = np.argwhere(~padded)
    nearest = np.sqrt(((inside[:, None, :] - outside[None, :, :]) ** 2).sum(-1)).min(axis=1)
    distance = np.zeros(padded.shape)
    distance[tuple(inside.T)] = nearest
    return distance[1:-1, 1:-1]


# --- Click rules ------------------------------------------------------------------------------------


def test_interior_point_of_a_rectangle_is_its_centre():
    # 11 rows x 21 columns: the whole middle row ties for the maximum; the tie-break picks the centre.
    mask = rectangle(40, 64, rows=(10, 20), cols=(30, 50))
    assert interior_point(mask).tolist() == [40.0, 15.0]


def test_interior_point_of_an_l_shape_is_a_distance_maximum_inside_it():
    mask = rectangle(40, 40, rows=(2, 37), cols=(2, 11)) | rectangle(40, 40, rows=(28, 37), cols=(2, 37))
    x, y = interior_point(mask).astype(int)
    assert mask[y, x]
    reference = brute_force_distance(mask)
    assert np.allclose(distance_to_boundary(mask), reference, atol=1e-3)
    assert reference[y, x] == pytest.approx(reference.max(), abs=1e-3)
    # The deepest point lies where the arms meet, and the centroid is not even inside the L.
    assert 28 <= y <= 37 and 2 <= x <= 11
    cy, cx = np.argwhere(mask).mean(axis=0).round().astype(int)
    assert not mask[cy, cx]


def test_the_image_border_counts_as_boundary():
    # The left half of the image: without the border rule the deepest pixels would be on column 0.
    mask = rectangle(31, 40, rows=(0, 30), cols=(0, 18))
    assert interior_point(mask).tolist() == [9.0, 15.0]
    assert distance_to_boundary(mask)[15, 0] == 1.0


def test_interior_point_of_an_empty_region_is_refused():
    with pytest.raises(ValueError, match="empty"):
        interior_point(np.zeros((8, 8), dtype=bool))


def test_a_missed_part_gets_a_positive_click_inside_it():
    target = rectangle(64, 64, rows=(10, 40), cols=(10, 50))
    predicted = rectangle(64, 64, rows=(10, 40), cols=(10, 25))
    point, label = corrective_click(target, predicted)
    x, y = point.astype(int)
    assert label == 1
    assert target[y, x] and not predicted[y, x]
    assert point.tolist() == interior_point(target & ~predicted).tolist()


def test_a_spill_gets_a_negative_click_inside_it():
    target = rectangle(64, 64, rows=(10, 30), cols=(10, 30))
    spill = disk(64, 64, centre=(48, 48), radius=8)
    point, label = corrective_click(target, target | spill)
    x, y = point.astype(int)
    assert label == 0
    assert spill[y, x] and not target[y, x]
    assert point.tolist() == [48.0, 48.0]


def test_the_deeper_error_region_wins_and_no_error_gives_no_click():
    target = rectangle(64, 64, rows=(10, 30), cols=(10, 30))
    # A long 2-pixel sliver missed along the top (more pixels) vs a thick spilled blob (deeper).
    predicted = (target & ~rectangle(64, 64, rows=(10, 11), cols=(10, 30))) | disk(64, 64, (50, 50), 5)
    assert (target & ~predicted).sum() > 0
    _, label = corrective_click(target, predicted)
    assert label == 0
    assert corrective_click(target, target.copy()) is None


# --- Floors -----------------------------------------------------------------------------------------


def test_box_as_mask_iou_of_a_disk():
    target = disk(64, 64, centre=(32, 32), radius=10)
    assert target.sum() == 317  # lattice points in a disk of radius 10 (Gauss's circle problem)
    boxes = tight_boxes(target[None])
    assert boxes.tolist() == [[22.0, 22.0, 42.0, 42.0]]
    filled = box_masks(boxes, 64, 64)
    assert filled.sum() == 21 * 21
    assert mask_ious(filled, target[None])[0] == pytest.approx(317 / 441)


def test_grabcut_beats_box_as_mask_on_an_ellipse():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :128]
    ellipse = ((xx - 64) / 36.0) ** 2 + ((yy - 48) / 22.0) ** 2 <= 1.0
    image = np.where(ellipse[..., None], [200, 40, 40], [30, 60, 170]) + rng.normal(0, 12, (96, 128, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    box = tight_boxes(ellipse[None])[0]
    grabcut = grabcut_mask(image, box)
    assert grabcut.shape == ellipse.shape and grabcut.dtype == bool
    floor = mask_ious(box_masks(box[None], 96, 128), ellipse[None])[0]
    assert floor == pytest.approx(np.pi * 36 * 22 / (73 * 45), abs=0.01)  # ellipse area / box area
    assert mask_ious(grabcut[None], ellipse[None])[0] > max(0.9, floor + 0.1)


def test_grabcut_on_a_synthetic_scene_is_deterministic():
    scene = SyntheticScenes(seed=12345, height=96, width=96)[0]
    box = tight_boxes(scene.masks[:1])[0]
    first, second = grabcut_mask(scene.image, box), grabcut_mask(scene.image, box)
    assert first.any() and np.array_equal(first, second)


def test_grabcut_falls_back_to_the_box_when_degenerate():
    image = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    for box in ([0, 0, 49, 39], [10, 10, 12, 30]):  # the whole image; a box 3 pixels wide
        expected = box_masks(np.array([box], dtype=float), 40, 50)[0]
        assert np.array_equal(grabcut_mask(image, np.array(box, dtype=float)), expected)


# --- Selection and protocol -------------------------------------------------------------------------


def test_select_masks_skips_small_and_keeps_the_first():
    masks = np.stack([rectangle(20, 20, (0, 0), (0, k)) for k in (9, 0, 4, 7, 5)])  # areas 10 1 5 8 6
    assert select_masks(masks, EvalConfig(min_area=5)).sum(axis=(1, 2)).tolist() == [10, 5, 8, 6]
    kept = select_masks(masks, EvalConfig(min_area=5, max_masks_per_image=2))
    assert kept.sum(axis=(1, 2)).tolist() == [10, 5]
    assert len(select_masks(np.zeros((2, 20, 20), dtype=bool), EvalConfig())) == 0


class ScriptedPredictor:
    """Answers the first call with three candidates (the second scored best), then the ground truth."""

    def __init__(self, target: np.ndarray) -> None:
        self.target = target
        self.calls: list[dict] = []

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        self.calls.append(
            {"coords": point_coords, "labels": point_labels, "mask": mask_input, "multi": multimask_output}
        )
        count = len(point_coords)
        if len(self.calls) == 1:
            left = self.target.copy()
            left[:, 32:] = False
            candidates = np.stack([np.zeros_like(left), left, ~self.target])
            logits = np.stack([np.full((8, 8), float(k)) for k in range(3)])
            return candidates[None].repeat(count, 0), np.array([[0.1, 0.9, 0.2]] * count), logits[None]
        return self.target[None, None], np.ones((count, 1)), np.zeros((count, 1, 8, 8))


def test_click_protocol_feeds_clicks_and_the_best_candidates_logits_back():
    target = rectangle(64, 64, rows=(16, 47), cols=(16, 47))
    predictor = ScriptedPredictor(target)
    found = sam_click_ious(predictor, target[None], clicks=4)
    left = (target[:, :32]).sum() / target.sum()
    assert found.curves.tolist() == [[pytest.approx(left), 1.0, 1.0, 1.0]]
    assert found.first_candidates.tolist() == [[0.0, pytest.approx(left), 0.0]]
    first, second = predictor.calls[:2]
    assert first["multi"] and first["mask"] is None
    assert first["coords"].tolist() == [[interior_point(target).tolist()]] and first["labels"].tolist() == [
        [1]
    ]
    assert not second["multi"]
    assert second["coords"].shape == (1, 2, 2) and second["labels"].tolist() == [[1, 1]]
    assert second["coords"][0, 1, 0] >= 32  # in the missed right half
    assert np.all(second["mask"] == 1.0)  # the logits of the candidate scored best
    assert len(predictor.calls) == 2  # a mask predicted exactly takes no more clicks


class MisjudgingPredictor(ScriptedPredictor):
    """Scores the empty candidate best, though the second one covers half of the target."""

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        masks, scores, logits = super().predict(point_coords, point_labels, box, mask_input, multimask_output)
        if multimask_output:
            scores = np.array([[0.9, 0.1, 0.2]] * len(scores))
        return masks, scores, logits


def test_the_oracle_takes_the_best_candidate_the_model_misjudged(scenes):
    target = rectangle(64, 64, rows=(16, 47), cols=(16, 47))
    found = sam_click_ious(MisjudgingPredictor(target), target[None], clicks=1)
    assert found.curves.tolist() == [[0.0]]  # the model's choice: the empty mask
    assert found.first_candidates.max(axis=1).tolist() == [0.5]  # the oracle's: the left half
    # Through evaluate(), on a real model: the mean over masks of the best candidate's IoU, computed here
    # from the predictor's own three candidates at each mask's interior-most point.
    config = EvalConfig(clicks=1, noc_clicks=0, baselines=False)
    predictor = SamPredictor(fixture_model())
    result = evaluate(predictor, scenes[:1], config)
    targets = select_masks(np.asarray(scenes[0].masks, dtype=bool), config)
    predictor.set_image(scenes[0].image)
    best = []
    for target in targets:
        masks, _, _ = predictor.predict(
            point_coords=interior_point(target)[None], point_labels=np.array([1]), multimask_output=True
        )
        best.append(max(mask_ious(masks[k][None], target[None])[0] for k in range(len(masks))))
    assert result.sam_click_oracle_miou == pytest.approx(float(np.mean(best)), abs=1e-6)
    assert result.to_dict()["sam"]["click1_oracle_miou"] == result.sam_click_oracle_miou


class DiskPredictor:
    """A model-free stand-in: disks of radius 6 around positive clicks, minus disks around negative ones."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        masks = []
        for coords, labels in zip(point_coords, point_labels, strict=True):
            mask = np.zeros(self.shape, dtype=bool)
            for (x, y), label in zip(coords, labels, strict=True):
                if label == 1:
                    mask |= disk(*self.shape, (x, y), 6)
            for (x, y), label in zip(coords, labels, strict=True):
                if label == 0:
                    mask &= ~disk(*self.shape, (x, y), 6)
            masks.append(mask)
        masks = np.stack(masks)[:, None]
        return masks, np.ones(masks.shape[:2]), np.zeros((len(masks), 1, 8, 8))


def test_clicks_land_in_the_errors_so_each_one_helps():
    target = rectangle(48, 64, rows=(8, 39), cols=(8, 55))
    ious = sam_click_ious(DiskPredictor(target.shape), target[None], clicks=6).curves[0]
    assert np.all(np.diff(ious) > 0)


def test_ellipse_floor_of_a_disk_is_the_disk():
    target = disk(64, 64, centre=(32, 32), radius=10)
    ellipse = ellipse_masks(tight_boxes(target[None]), 64, 64)
    assert mask_ious(ellipse, target[None])[0] > 0.9
    # Of a filled box, the inscribed ellipse covers pi / 4.
    square = rectangle(200, 200, rows=(0, 199), cols=(0, 199))
    ellipse = ellipse_masks(tight_boxes(square[None]), 200, 200)
    assert mask_ious(ellipse, square[None])[0] == pytest.approx(np.pi / 4, abs=0.002)


def test_number_of_clicks_is_the_first_click_reaching_the_iou_capped_at_the_protocols_end():
    curves = np.array(
        [
            [0.9, 0.95, 0.95],  # reached at once
            [0.5, 0.86, 0.91],  # 85 % at click 2, 90 % at click 3
            [0.5, 0.6, 0.7],  # never: counts the cap, 3
            [0.86, 0.8, 0.95],  # a click that makes it worse does not undo the first success
        ]
    )
    assert number_of_clicks(curves, 0.85).tolist() == [1, 2, 3, 1]
    assert number_of_clicks(curves, 0.90).tolist() == [1, 3, 3, 3]


def test_no_masks_to_evaluate_is_a_dataset_error():
    scene = Scene(image=np.zeros((32, 32, 3), dtype=np.uint8), masks=np.zeros((1, 32, 32), dtype=bool))
    with pytest.raises(DatasetError, match="No masks"):
        evaluate(None, [scene])


def test_config_is_checked():
    with pytest.raises(ValueError, match="clicks"):
        EvalConfig(clicks=0)
    with pytest.raises(ValueError, match="max_images"):
        EvalConfig(max_images=0)


# --- With models ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    """Scenes the fixture model never saw (it was trained on another stream of seeds)."""
    family = SyntheticScenes(seed=12345, height=256, width=256)
    return [family[i] for i in range(3)]


def test_trained_model_beats_an_untrained_one(scenes):
    config = EvalConfig(clicks=1, noc_clicks=0, max_masks_per_image=4, baselines=False)
    trained = evaluate(SamPredictor(fixture_model()), scenes, config)
    untrained = evaluate(SamPredictor(segany.sam_from_config(FIXTURE).eval()), scenes, config)
    assert trained.masks == untrained.masks == 12
    # Measured on these masks: about 0.5 against 0.05.
    assert trained.sam_box_miou > 0.3
    assert trained.sam_box_miou > untrained.sam_box_miou + 0.2
    assert trained.box_as_mask_miou is None and trained.grabcut_miou is None


def test_result_does_not_depend_on_how_masks_are_batched(scenes):
    predictor = SamPredictor(fixture_model())
    config = EvalConfig(clicks=3, noc_clicks=0, max_masks_per_image=4, baselines=False)
    one = evaluate(predictor, scenes[:2], dataclasses.replace(config, masks_per_batch=1))
    together = evaluate(predictor, scenes[:2], dataclasses.replace(config, baselines=True))
    assert one.masks == together.masks == 8
    assert len(one.sam_click_miou) == len(together.sam_click_miou) == 3
    assert one.sam_box_miou == pytest.approx(together.sam_box_miou, abs=1e-4)
    assert one.sam_click_miou == pytest.approx(together.sam_click_miou, abs=1e-3)
    summary = together.to_dict()
    assert set(summary) == {"images", "masks", "sam", "box_as_mask", "ellipse", "grabcut", "seconds", "config"}
    assert len(summary["sam"]["click_miou"]) == 3 and summary["config"]["clicks"] == 3


def test_noc_and_the_generators_recall_are_reported(scenes):
    predictor = SamPredictor(fixture_model())
    config = EvalConfig(clicks=2, noc_clicks=4, max_masks_per_image=3, baselines=False, automatic=True)
    result = evaluate(predictor, scenes[:2], config)
    assert len(result.sam_click_miou) == 2
    assert all(1 <= clicks <= 4 for clicks in result.sam_noc)
    assert result.sam_noc[0] <= result.sam_noc[1]  # 90 % takes at least as many clicks as 85 %
    assert result.automatic_instances > 0 and 0 <= result.automatic_recall <= 1
    assert result.automatic_masks_per_image >= 0
    summary = result.to_dict()
    assert set(summary["sam"]) == {
        "box_miou",
        "click_miou",
        "click1_oracle_miou",
        "noc@85",
        "noc@90",
        "box_miou_by_size",
    }
    assert set(summary["automatic"]) == {"recall", "instances", "masks_per_image"}
