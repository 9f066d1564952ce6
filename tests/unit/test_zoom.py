"""Zoom-in refinement: crop windows, moving low-res logits between frames, and the predictor's second pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segany
from segany.zoom import MIN_CROP_SIDE, crop_window, resample_low_res
from support import SMALL_EFFICIENTNET as SMALL
from support import sample_image
from support import small_efficientnet_model as small_model


def test_a_small_object_gets_a_square_window_inside_the_image() -> None:
    window = crop_window(torch.tensor([100.0, 50.0, 120.0, 70.0]), (480, 640), context=3.0, img_size=256)
    assert window == (80, 30, 60, 60)  # 3 x 20 px, centred on (110, 60)
    # Near a corner the window shifts inside the image instead of leaving it.
    assert crop_window(torch.tensor([0.0, 0.0, 10.0, 10.0]), (480, 640), 3.0, 256) == (0, 0, 30, 30)
    # A click's empty first mask still gets a usable window.
    tiny = crop_window(torch.tensor([300.0, 200.0, 301.0, 201.0]), (480, 640), 3.0, 256)
    assert tiny is not None and tiny[2] == tiny[3] == MIN_CROP_SIDE


def test_a_large_object_is_not_zoomed() -> None:
    assert crop_window(torch.tensor([100.0, 50.0, 400.0, 300.0]), (480, 640), 2.0, 256) is None


def test_moving_logits_to_the_same_frame_changes_nothing() -> None:
    logits = torch.randn(2, 3, 64, 64)
    frame = ((0, 0), (192, 256), 256, 64)  # a 256 x 192 image: the bottom quarter of the grid is padding
    moved = resample_low_res(logits, frame, frame, fill=-20.0)
    assert torch.allclose(moved[..., :48, :], logits[..., :48, :], atol=1e-5)
    assert (moved[..., 48:, :] == -20.0).all()


def test_a_disk_moved_into_a_crop_and_back_keeps_its_place() -> None:
    # A disk of radius 20 px at (100, 60) in a 256 x 256 image, as logits on the 64 x 64 grid (4 px cells).
    centres = (torch.arange(64) + 0.5) * 4
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    logits = (20 - torch.sqrt((xx - 100) ** 2 + (yy - 60) ** 2))[None, None]
    full, crop = ((0, 0), (256, 256), 256, 64), ((70, 30), (60, 60), 256, 64)
    zoomed = resample_low_res(logits, full, crop, fill=-20.0)
    inside = zoomed[0, 0] > 0  # the crop's grid: 60 px over 256 px of input, one cell ~0.94 px
    assert inside.sum().item() * (60 / 64) ** 2 == pytest.approx(np.pi * 20**2, rel=0.05)
    back = resample_low_res(zoomed, crop, full, fill=-20.0)
    assert ((back[0, 0] > 0) ^ (logits[0, 0] > 0)).sum() <= 4  # at most a few boundary cells differ


def test_the_predictor_redoes_a_small_box_on_its_crop() -> None:
    model = small_model(SMALL.replace(zoom_context=3.0)).eval()
    plain = small_model().eval()
    plain.load_state_dict(model.state_dict())
    image = sample_image()
    height, width = image.shape[:2]
    box = np.array([200, 150, 240, 180])
    zooming = segany.SamPredictor(model)
    zooming.set_image(image)
    masks, scores, low_res = zooming.predict(box=box, multimask_output=False)
    left, top, side_w, side_h = crop_window(torch.tensor(box, dtype=torch.float32), (height, width), 3.0, 256)
    # What the same model says on the crop alone, pasted back.
    direct = segany.SamPredictor(plain)
    direct.set_image(np.ascontiguousarray(image[top : top + side_h, left : left + side_w]))
    crop_masks, crop_scores, _ = direct.predict(
        box=box - np.array([left, top, left, top]), multimask_output=False
    )
    assert masks.shape == (1, height, width) and low_res.shape == (1, 64, 64)
    assert np.array_equal(masks[0, top : top + side_h, left : left + side_w], crop_masks[0])
    assert not masks[0].sum() - crop_masks[0].sum()  # nothing outside the crop
    assert np.allclose(scores, crop_scores, atol=1e-6)
    # A large box and a model without zoom_context answer in one pass, as before.
    big = np.array([20, 20, width - 20, height - 20])
    direct.set_image(image)
    assert np.array_equal(zooming.predict(box=big)[0], direct.predict(box=big)[0])


def test_clicks_on_a_small_object_zoom_and_take_the_mask_prompt_along() -> None:
    model = small_model(SMALL.replace(zoom_context=3.0)).eval()
    predictor = segany.SamPredictor(model)
    predictor.set_image(sample_image())
    masks, scores, low_res = predictor.predict(
        point_coords=np.array([[300, 200]]), point_labels=np.array([1])
    )
    assert masks.shape[0] == scores.shape[0] == low_res.shape[0] == 3
    again, _, _ = predictor.predict(
        point_coords=np.array([[300, 200], [320, 210]]),
        point_labels=np.array([1, 0]),
        mask_input=low_res[np.argmax(scores)][None],
        multimask_output=False,
    )
    assert again.shape == (1, *masks.shape[1:])


def test_a_batch_of_small_and_large_boxes_answers_each_as_alone() -> None:
    model = small_model(SMALL.replace(zoom_context=3.0)).eval()
    predictor = segany.SamPredictor(model)
    image = sample_image()
    height, width = image.shape[:2]
    predictor.set_image(image)
    boxes = np.array([[20, 20, width - 20, height - 20], [200, 150, 240, 180], [10, 10, width - 10, 120]])
    masks, scores, low_res = predictor.predict(box=boxes, multimask_output=False)
    for b, box in enumerate(boxes):  # the large ones in one pass, the small one on its crop
        alone = predictor.predict(box=box, multimask_output=False)
        assert np.array_equal(masks[b], alone[0])
        assert np.allclose(scores[b], alone[1], atol=1e-5)
        assert np.allclose(low_res[b], alone[2], atol=1e-4)
