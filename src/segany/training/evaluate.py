"""Evaluation of promptable segmentation: box and click mIoU, with the box-as-mask and GrabCut floors.

Every instance mask of every scene is prompted on its own (prompts from
:mod:`segany.training.eval_prompts`) and scored by its IoU with the ground truth at the original image
resolution; each metric is the mean over all masks (SAM paper, section 7.1 and appendix D.1):

* **box mIoU**: the tight box, one output (``multimask_output=False``);
* **click mIoU after k clicks**, k = 1..n: the first click at the mask's interior-most point with
  three outputs, keeping the one of highest predicted IoU; each later click corrects the largest error
  region, with all earlier clicks and the previous low-res logits (of the kept mask) as prompts, one
  output. A mask predicted exactly stops taking clicks and keeps its IoU of 1;
* **1 click, oracle** (SAM paper, figure 9): the first click's best candidate by its true IoU, which
  measures how much the model's own choice among its candidates (its predicted IoU) loses;
* **NoC@85 / NoC@90** (RITM, Sofiiuk et al., 2022; SimpleClick): the mean number of clicks, in the same
  protocol, a mask needs to reach IoU 0.85 / 0.90, counted as ``noc_clicks`` (20) when it never does;
* floors that need no model: the filled box as the mask, the ellipse inscribed in the box, and OpenCV's
  GrabCut started from the box;
* with ``automatic``, the automatic generator (the model's default options) on every image: its recall,
  the share of instances of at least 32 x 32 pixels (COCO's medium and large) that one of its masks
  matches with IoU >= 0.5, and the masks it returns per image.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..errors import DatasetError
from ..prompts import PointLabel
from .eval_config import EvalConfig
from .eval_prompts import box_masks, corrective_click, ellipse_masks, interior_point, tight_boxes

if TYPE_CHECKING:
    from ..automatic import SamAutomaticMaskGenerator
    from ..predictor import SamPredictor
    from .synthetic import Scene

# IoUs whose number of clicks is reported (NoC@85, NoC@90).
NOC_THRESHOLDS = (0.85, 0.90)
# The automatic generator's recall counts instances of at least this many pixels, matched at this IoU.
RECALL_MIN_AREA = 32 * 32
RECALL_MATCH_IOU = 0.5


@dataclass(frozen=True)
class EvalResult:
    """Mean IoUs over ``masks`` masks of ``images`` images; None where a part was not evaluated."""

    images: int
    masks: int
    sam_box_miou: float | None
    sam_click_miou: tuple[float, ...] | None  # after click 1, 2, ..., n
    box_as_mask_miou: float | None
    grabcut_miou: float | None
    seconds: float
    config: EvalConfig
    sam_noc: tuple[float, ...] | None = None  # mean clicks to NOC_THRESHOLDS, capped at noc_clicks
    ellipse_miou: float | None = None
    automatic_recall: float | None = None
    automatic_instances: int = 0
    automatic_masks_per_image: float | None = None
    # Box mIoU and mask count per COCO size class (small < 32^2 px <= medium < 96^2 px <= large).
    sam_box_miou_by_size: dict[str, tuple[float, int]] | None = None
    sam_click_oracle_miou: float | None = None  # 1 click, the best candidate by its true IoU

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary: ``images``, ``masks``, ``sam``, ``box_as_mask``, ``grabcut`` (the parts
        evaluated), ``seconds`` and ``config``."""
        summary: dict[str, Any] = {"images": self.images, "masks": self.masks}
        if self.sam_box_miou is not None:
            summary["sam"] = {"box_miou": self.sam_box_miou, "click_miou": list(self.sam_click_miou or ())}
            if self.sam_click_oracle_miou is not None:
                summary["sam"]["click1_oracle_miou"] = self.sam_click_oracle_miou
            if self.sam_box_miou_by_size is not None:
                summary["sam"]["box_miou_by_size"] = {
                    size: {"miou": miou, "masks": count}
                    for size, (miou, count) in self.sam_box_miou_by_size.items()
                }
            if self.sam_noc is not None:
                for threshold, clicks in zip(NOC_THRESHOLDS, self.sam_noc, strict=True):
                    summary["sam"][f"noc@{round(threshold * 100)}"] = clicks
        if self.automatic_recall is not None:
            summary["automatic"] = {
                "recall": self.automatic_recall,
                "instances": self.automatic_instances,
                "masks_per_image": self.automatic_masks_per_image,
            }
        if self.box_as_mask_miou is not None:
            summary["box_as_mask"] = {"box_miou": self.box_as_mask_miou}
        if self.ellipse_miou is not None:
            summary["ellipse"] = {"box_miou": self.ellipse_miou}
        if self.grabcut_miou is not None:
            summary["grabcut"] = {"box_miou": self.grabcut_miou}
        summary["seconds"] = round(self.seconds, 3)
        summary["config"] = dataclasses.asdict(self.config)
        return summary


def mask_ious(predicted: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """IoU of each pair: ``N x H x W`` bool twice -> ``N`` float64 (1 where both masks are empty)."""
    inter = np.logical_and(predicted, targets).sum(axis=(-2, -1))
    union = np.logical_or(predicted, targets).sum(axis=(-2, -1))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def select_masks(masks: np.ndarray, config: EvalConfig) -> np.ndarray:
    """The masks of one scene to evaluate: ``N x H x W`` bool -> ``M x H x W`` bool, in their order.

    Empty masks and masks under ``config.min_area`` pixels are skipped; then the first
    ``config.max_masks_per_image`` are kept.
    """
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    kept = masks[areas >= max(config.min_area, 1)]
    return kept[: config.max_masks_per_image]


def sam_box_ious(predictor: SamPredictor, targets: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Box-prompt IoUs on the image set in ``predictor``: ``M x H x W`` targets, ``M x 4`` boxes -> ``M``."""
    masks, _, _ = predictor.predict(box=boxes, multimask_output=False)
    return mask_ious(masks.reshape(targets.shape), targets)


@dataclass(frozen=True)
class ClickIous:
    """The click protocol's IoUs for ``M`` masks."""

    curves: np.ndarray  # M x clicks: column k holds each mask's IoU after k + 1 clicks
    first_candidates: np.ndarray  # M x K: the IoU of each of the first click's K candidates


def sam_click_ious(predictor: SamPredictor, targets: np.ndarray, clicks: int) -> ClickIous:
    """Click-protocol IoUs on the image set in ``predictor`` for ``M x H x W`` targets."""
    count = len(targets)
    coords = np.stack([interior_point(target) for target in targets])[:, None, :]  # M x 1 x 2
    labels = np.full((count, 1), int(PointLabel.POSITIVE), dtype=np.int64)
    masks, scores, logits = predictor.predict(point_coords=coords, point_labels=labels, multimask_output=True)
    candidates = np.stack([mask_ious(masks[:, k], targets) for k in range(masks.shape[1])], axis=1)
    best = np.argmax(scores, axis=1)
    current = masks[np.arange(count), best]  # M x H x W
    previous = logits[np.arange(count), best][:, None]  # M x 1 x h x w
    ious = np.repeat(candidates[np.arange(count), best][:, None], clicks, axis=1)
    active = np.arange(count)
    for step in range(1, clicks):
        # Masks predicted exactly take no more clicks (their IoU of 1 stands); they get a copy of their
        # last click only so that every mask keeps one row in the click arrays.
        new_coords, new_labels = coords[:, -1].copy(), labels[:, -1].copy()
        still = []
        for i in active:
            correction = corrective_click(targets[i], current[i])
            if correction is not None:
                new_coords[i], new_labels[i] = correction
                still.append(i)
        active = np.array(still, dtype=np.int64)
        if len(active) == 0:
            break
        coords = np.concatenate([coords, new_coords[:, None]], axis=1)
        labels = np.concatenate([labels, new_labels[:, None]], axis=1)
        masks, _, low_res = predictor.predict(
            point_coords=coords[active],
            point_labels=labels[active],
            mask_input=previous[active],
            multimask_output=False,
        )
        current[active], previous[active] = masks[:, 0], low_res
        ious[active, step:] = mask_ious(current[active], targets[active])[:, None]
    return ClickIous(curves=ious, first_candidates=candidates)


def number_of_clicks(ious: np.ndarray, threshold: float) -> np.ndarray:
    """Clicks each mask needed to reach ``threshold``: ``M x k`` IoUs after click 1..k -> ``M`` ints in 1..k.

    A mask that never reaches it counts ``k`` (the protocol's cap).
    """
    reached = ious >= threshold
    return np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, ious.shape[1])


def automatic_matches(
    generator: SamAutomaticMaskGenerator, image: np.ndarray, masks: np.ndarray
) -> tuple[int, int, int]:
    """Run ``generator`` on ``image`` and match its masks to the instances ``masks`` (``N x H x W`` bool).

    Returns ``(instances, matched, generated)``: the instances of at least ``RECALL_MIN_AREA`` pixels,
    how many of them some generated mask overlaps with IoU >= ``RECALL_MATCH_IOU``, and the number of
    masks generated.
    """
    records = generator.generate(image)
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    targets = masks[areas >= RECALL_MIN_AREA]
    if len(targets) == 0 or not records:
        return len(targets), 0, len(records)
    found = np.stack([np.asarray(r["segmentation"], dtype=bool) for r in records]).reshape(len(records), -1)
    truth = targets.reshape(len(targets), -1)
    inter = truth.astype(np.float32) @ found.T.astype(np.float32)  # N x G
    union = truth.sum(1)[:, None] + found.sum(1)[None, :] - inter
    best = (inter / np.maximum(union, 1)).max(axis=1)
    return len(targets), int((best >= RECALL_MATCH_IOU).sum()), len(records)


# GrabCut needs pixels on both sides of the box to fit its two colour models (5 Gaussians each); below
# these sizes it fails or is meaningless, and the floor falls back to the filled box.
GRABCUT_MIN_SIDE = 4
GRABCUT_MIN_BACKGROUND = 64


def grabcut_mask(image: np.ndarray, box: np.ndarray, iterations: int = 3) -> np.ndarray:
    """OpenCV's GrabCut started from ``box``: ``H x W x 3`` uint8 image, ``4`` ``XYXY`` inclusive -> ``H x W`` bool.

    Pixels outside the box are background, inside it probably foreground; the result is every pixel
    labelled (probably) foreground after ``iterations`` rounds. Degenerate cases give the filled box
    itself: a box under ``GRABCUT_MIN_SIDE`` pixels on a side, one leaving fewer than
    ``GRABCUT_MIN_BACKGROUND`` pixels outside it (a box covering the whole image), and a GrabCut
    result with no foreground at all. The channel order does not matter.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in np.rint(box))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
    box_w, box_h = x1 - x0 + 1, y1 - y0 + 1
    if min(box_w, box_h) < GRABCUT_MIN_SIDE or height * width - box_w * box_h < GRABCUT_MIN_BACKGROUND:
        return box_masks(np.array([[x0, y0, x1, y1]]), height, width)[0]
    labels = np.zeros((height, width), dtype=np.uint8)
    background_model = np.zeros((1, 65), dtype=np.float64)
    foreground_model = np.zeros((1, 65), dtype=np.float64)
    # GrabCut seeds its colour models with k-means on OpenCV's global generator: reseed it so that the
    # floor is the same number on every run.
    cv2.setRNGSeed(0)
    cv2.grabCut(
        np.ascontiguousarray(image, dtype=np.uint8),
        labels,
        (x0, y0, box_w, box_h),
        background_model,
        foreground_model,
        iterations,
        cv2.GC_INIT_WITH_RECT,
    )
    mask = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    # An empty result means the colour models could not tell the object from its surroundings; the box
    # still says an object is there, so the floor keeps the box (as Khoreva et al., 2017, do).
    return mask if mask.any() else box_masks(np.array([[x0, y0, x1, y1]]), height, width)[0]


def evaluate(
    predictor: SamPredictor | None,
    scenes: Sequence[Scene],
    config: EvalConfig | None = None,
    progress: bool = False,
) -> EvalResult:
    """Score ``predictor`` (and, with ``config.baselines``, the floors) on every selected mask of ``scenes``.

    Args:
        predictor: the model to evaluate; None scores the floors only.
        scenes: images (``H x W x 3`` uint8 RGB) with instance masks (``N x H x W`` bool).
        progress: show a progress bar on stderr.
    Raises:
        DatasetError: when no mask is left to evaluate.
        ValueError: when nothing is asked for (no predictor and no baselines).
    """
    config = config or EvalConfig()
    if predictor is None and not config.baselines:
        raise ValueError("Nothing to evaluate: give a model or keep the baselines.")
    start = time.perf_counter()
    count = len(scenes) if config.max_images is None else min(len(scenes), config.max_images)
    box_ious, click_ious, floor_ious, grabcut_ious, ellipse_ious = [], [], [], [], []
    oracle_ious = []
    areas = []
    clicks = max(config.clicks, config.noc_clicks)
    generator = None
    if predictor is not None and config.automatic:
        from ..automatic import SamAutomaticMaskGenerator

        generator = SamAutomaticMaskGenerator(predictor.model)
    instances = matched = generated = 0
    indices = range(count)
    if progress:
        from ..progress import progress_bar

        indices = progress_bar(indices, desc="images", unit="img")
    for index in indices:
        scene = scenes[index]
        if generator is not None:
            found = automatic_matches(generator, scene.image, np.asarray(scene.masks, dtype=bool))
            instances, matched, generated = instances + found[0], matched + found[1], generated + found[2]
        targets = select_masks(np.asarray(scene.masks, dtype=bool), config)
        if len(targets) == 0:
            continue
        boxes = tight_boxes(targets)
        areas.append(targets.reshape(len(targets), -1).sum(axis=1))
        if config.baselines:
            floor_ious.append(mask_ious(box_masks(boxes, *targets.shape[1:]), targets))
            ellipse_ious.append(mask_ious(ellipse_masks(boxes, *targets.shape[1:]), targets))
            grabcut = [grabcut_mask(scene.image, box, config.grabcut_iterations) for box in boxes]
            grabcut_ious.append(mask_ious(np.stack(grabcut), targets))
        if predictor is not None:
            predictor.set_image(scene.image)
            for first in range(0, len(targets), config.masks_per_batch):
                chunk = slice(first, first + config.masks_per_batch)
                box_ious.append(sam_box_ious(predictor, targets[chunk], boxes[chunk]))
                found = sam_click_ious(predictor, targets[chunk], clicks)
                click_ious.append(found.curves)
                oracle_ious.append(found.first_candidates.max(axis=1))
    masks = sum(len(ious) for ious in (box_ious or floor_ious))
    if masks == 0:
        raise DatasetError(
            f"No masks to evaluate in {count} image(s): none has at least {max(config.min_area, 1)} "
            "pixels; check the dataset or lower --min-area."
        )
    curves = np.concatenate(click_ious) if predictor is not None else None
    noc = None
    if curves is not None and config.noc_clicks > 0:
        capped = curves[:, : config.noc_clicks]
        noc = tuple(float(number_of_clicks(capped, t).mean()) for t in NOC_THRESHOLDS)
    return EvalResult(
        images=count,
        masks=masks,
        sam_box_miou=_mean(box_ious) if predictor is not None else None,
        sam_click_miou=tuple(curves[:, : config.clicks].mean(axis=0).tolist())
        if curves is not None
        else None,
        box_as_mask_miou=_mean(floor_ious) if config.baselines else None,
        grabcut_miou=_mean(grabcut_ious) if config.baselines else None,
        seconds=time.perf_counter() - start,
        config=config,
        sam_noc=noc,
        sam_box_miou_by_size=_by_size(box_ious, areas) if predictor is not None else None,
        sam_click_oracle_miou=_mean(oracle_ious) if predictor is not None else None,
        ellipse_miou=_mean(ellipse_ious) if config.baselines else None,
        automatic_recall=matched / instances if generator is not None and instances else None,
        automatic_instances=instances,
        automatic_masks_per_image=generated / count if generator is not None else None,
    )


# COCO's object size classes, by mask area in pixels.
SIZE_CLASSES = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, np.inf)}


def _by_size(ious: list[np.ndarray], areas: list[np.ndarray]) -> dict[str, tuple[float, int]]:
    """Mean IoU and count per COCO size class (classes without masks left out)."""
    values, sizes = np.concatenate(ious), np.concatenate(areas)
    out = {}
    for name, (low, high) in SIZE_CLASSES.items():
        chosen = (sizes >= low) & (sizes < high)
        if chosen.any():
            out[name] = (float(values[chosen].mean()), int(chosen.sum()))
    return out


def _mean(parts: list[np.ndarray], per_column: bool = False) -> Any:
    """Mean over all masks of per-image IoU arrays (``M`` or, ``per_column``, ``M x k`` -> ``k`` floats)."""
    values = np.concatenate(parts)
    return values.mean(axis=0).tolist() if per_column else float(values.mean())
