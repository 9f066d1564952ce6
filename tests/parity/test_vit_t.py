"""``vit_t`` (MobileSAM's TinyViT encoder) against the MobileSAM package: same weights, same answers.

The published architecture at full size (1024 input, 64 x 64 embedding), random weights on every tensor
(BatchNorm statistics and attention biases included). segany's weights are written after ``.eval()``
(see ``support.mobilesam_twin_models``), so a stale bias cache like MobileSAM's would fail every test
here. Embeddings, masks, scores and low-res logits agree within 1e-4 in fp32; the automatic generator
gives the same masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany import SamPredictor
from segany.automatic import SamAutomaticMaskGenerator
from segany.variants import VIT_T
from support import mobilesam_twin_models, sample_image

pytest.importorskip("mobile_sam", reason="vit_t parity tests need the mobilesam-mirror package")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

TOL = 1e-4


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return mobilesam_twin_models(VIT_T, seed=4)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return sample_image()


@pytest.fixture(scope="module")
def predictors(models, image):
    from mobile_sam import SamPredictor as MobilePredictor

    a, b = SamPredictor(models[0]), MobilePredictor(models[1])
    a.set_image(image)
    b.set_image(image)
    return a, b


def _assert_same(ours: tuple, theirs: tuple, logits: bool = False) -> None:
    masks_a, scores_a, low_a = ours
    masks_b, scores_b, low_b = theirs
    assert masks_a.shape == masks_b.shape and masks_a.dtype == masks_b.dtype
    assert np.abs(scores_a - scores_b).max() <= TOL
    assert np.abs(low_a - low_b).max() <= TOL
    if logits:
        assert np.abs(masks_a - masks_b).max() <= TOL
    else:
        # Pixels can only flip where the reference logit is within float noise of the threshold.
        assert (masks_a != masks_b).mean() <= 1e-5
        assert masks_a.any() or not masks_b.any()


def test_state_dict_keys_are_mobilesams(models):
    ours, theirs = models
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert all(ours_sd[k].shape == theirs_sd[k].shape for k in ours_sd)


def test_embedding_matches(predictors, image):
    a, b = predictors
    emb_a, emb_b = a.get_image_embedding(), b.get_image_embedding()
    assert emb_a.shape == (1, 256, 64, 64)
    assert (emb_a - emb_b).abs().max().item() <= TOL
    assert a.input_size == b.input_size and a.original_size == b.original_size == image.shape[:2]


def _cases(image: np.ndarray) -> dict[str, dict]:
    h, w = image.shape[:2]
    box = np.array([0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h])
    two = np.array([[0.45 * w, 0.5 * h], [0.1 * w, 0.1 * h]])
    return {
        "one point multimask": dict(point_coords=two[:1], point_labels=np.array([1])),
        "points pos+neg": dict(point_coords=two, point_labels=np.array([1, 0]), multimask_output=False),
        "box": dict(box=box, multimask_output=False),
        "points+box": dict(point_coords=two, point_labels=np.array([1, 0]), box=box, multimask_output=False),
    }


@pytest.mark.parametrize("case", ["one point multimask", "points pos+neg", "box", "points+box"])
@pytest.mark.parametrize("return_logits", [False, True])
def test_predict_matches(predictors, image, case, return_logits):
    a, b = predictors
    kwargs = _cases(image)[case]
    _assert_same(
        a.predict(**kwargs, return_logits=return_logits),
        b.predict(**kwargs, return_logits=return_logits),
        return_logits,
    )


def test_mask_input_matches(predictors, image):
    a, b = predictors
    _, scores, low = b.predict(**_cases(image)["one point multimask"])
    kwargs = dict(_cases(image)["points pos+neg"], mask_input=low[np.argmax(scores)][None])
    _assert_same(a.predict(**kwargs), b.predict(**kwargs))


def test_batch_of_boxes_matches_predict_torch(predictors, image):
    a, b = predictors
    h, w = image.shape[:2]
    boxes = np.array([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.9 * h]])
    ours = a.predict(box=boxes, multimask_output=False)
    boxes_t = b.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), image.shape[:2])
    theirs = b.predict_torch(None, None, boxes=boxes_t, multimask_output=False)
    _assert_same(ours, tuple(t.numpy() for t in theirs))


def test_automatic_masks_match(models):
    """Every candidate of a 4 x 4 grid (filters and NMS off: 48 masks) on a small image, padded to 1024.

    Records are paired by grid point and score rank, not by list position: with random weights many
    scores lie close together, and a 1e-6 difference may reorder them.
    """
    from mobile_sam import SamAutomaticMaskGenerator as MobileGenerator

    image = np.ascontiguousarray(sample_image()[::4, ::4])
    options = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    ours = SamAutomaticMaskGenerator(models[0], **options).generate(image)
    theirs = MobileGenerator(models[1], **options).generate(image)
    assert len(ours) == len(theirs) == 4 * 4 * 3

    def key(record: dict) -> tuple:
        return (*np.round(record["point_coords"][0], 3), record["predicted_iou"])

    for a, b in zip(sorted(ours, key=key), sorted(theirs, key=key), strict=True):
        assert np.allclose(a["point_coords"], b["point_coords"])
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-3
        assert abs(a["stability_score"] - b["stability_score"]) <= 1e-3
        assert a["bbox"] == b["bbox"] and a["crop_box"] == b["crop_box"]
        assert (a["segmentation"] != b["segmentation"]).mean() <= 1e-4
