"""``SamAutomaticMaskGenerator``: "segment everything" by prompting a point grid (and zoomed-in crops).

The official algorithm and outputs, computed faster: candidates are filtered on predicted IoU while
still at low resolution, only the survivors are upsampled (in chunks, so memory stays bounded whatever
the image size), scored for stability, thresholded and run-length encoded with pycocotools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms
from torchvision.ops.boxes import box_area

from ..formats import rle as rle_codec
from ..images import to_rgb_array
from ..modeling import Sam
from ..modeling.mask_scorer import stability_score
from ..predictor import SamPredictor
from .grid import build_all_layer_point_grids, generate_crop_boxes
from .mask_ops import (
    box_near_crop_edge,
    masks_to_boxes,
    remove_small_regions,
    uncrop_boxes,
    uncrop_masks,
    uncrop_points,
    xyxy_to_xywh,
)
from .options import GeneratorConfig

# Upsample at most this many output pixels at once (float32: 8 MiB): small enough that the
# thresholds and counts that follow read the logits from cache (3x faster than 128 MiB chunks here).
_PIXELS_PER_CHUNK = 1 << 21


@dataclass
class _Masks:
    """Candidate masks of one image, kept as RLE; tensors are on the CPU, one row per mask."""

    rles: list[dict[str, Any]] = field(default_factory=list)
    boxes: list[torch.Tensor] = field(default_factory=list)  # N x 4 int64, XYXY inclusive, image frame
    iou_preds: list[torch.Tensor] = field(default_factory=list)
    points: list[torch.Tensor] = field(default_factory=list)  # N x 2 float64, image frame
    stability: list[torch.Tensor] = field(default_factory=list)
    crop_boxes: list[torch.Tensor] = field(default_factory=list)  # N x 4 int64, XYXY

    def add(self, other: _Masks) -> None:
        for name in ("rles", "boxes", "iou_preds", "points", "stability", "crop_boxes"):
            getattr(self, name).extend(getattr(other, name))

    def tensor(self, name: str) -> torch.Tensor:
        parts = getattr(self, name)
        return torch.cat(parts) if parts else torch.zeros((0, 4) if name in ("boxes", "crop_boxes") else (0,))

    def select(self, keep: torch.Tensor) -> _Masks:
        """The masks at indices ``keep`` (in that order), with tensors merged into one part each."""
        index = keep.tolist()
        out = _Masks(rles=[self.rles[i] for i in index])
        for name in ("boxes", "iou_preds", "points", "stability", "crop_boxes"):
            if getattr(self, name):  # crop boxes are only attached once a crop is done
                getattr(out, name).append(self.tensor(name)[keep])
        return out

    def __len__(self) -> int:
        return len(self.rles)


_DEFAULTS = GeneratorConfig()  # the constructor's defaults are the config's (one definition)


class SamAutomaticMaskGenerator:
    """Generates masks for a whole image (the official constructor and ``generate`` contract).

    ``generate(image)`` returns one record per mask: ``segmentation`` (per ``output_mode``: ``H x W`` bool,
    uncompressed RLE or COCO RLE), ``area``, ``bbox`` (``XYWH``), ``predicted_iou``, ``point_coords``
    (``[[x, y]]``), ``stability_score`` and ``crop_box`` (``XYWH``), all in original-image pixels.
    """

    def __init__(
        self,
        model: Sam,
        points_per_side: int | None = _DEFAULTS.points_per_side,
        points_per_batch: int = _DEFAULTS.points_per_batch,
        pred_iou_thresh: float | None = _DEFAULTS.pred_iou_thresh,
        stability_score_thresh: float | None = _DEFAULTS.stability_score_thresh,
        stability_score_offset: float = _DEFAULTS.stability_score_offset,
        box_nms_thresh: float = _DEFAULTS.box_nms_thresh,
        crop_n_layers: int = _DEFAULTS.crop_n_layers,
        crop_nms_thresh: float = _DEFAULTS.crop_nms_thresh,
        crop_overlap_ratio: float = _DEFAULTS.crop_overlap_ratio,
        crop_n_points_downscale_factor: int = _DEFAULTS.crop_n_points_downscale_factor,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = _DEFAULTS.min_mask_region_area,
        output_mode: str = _DEFAULTS.output_mode,
        max_mask_area_fraction: float | None = _DEFAULTS.max_mask_area_fraction,
    ) -> None:
        """
        Args:
            point_grids: explicit normalised ``(X, Y)`` grids in [0, 1], one per crop layer, instead of
                ``points_per_side`` (exactly one of the two must be given).
            max_mask_area_fraction: drop masks covering more than this fraction of the image, as SA-1B
                did with 0.95; None (default) keeps them, like the official generator.
            pred_iou_thresh, stability_score_thresh: None (default) takes the model's own defaults
                (``model.config.generator_defaults``), else SAM's 0.88 and 0.95.
            The other arguments are those of the official generator (see :class:`GeneratorConfig`).
        """
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("Exactly one of points_per_side or point_grids must be given.")
        self.config = GeneratorConfig(
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers,
            crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            min_mask_region_area=min_mask_region_area,
            output_mode=output_mode,
            max_mask_area_fraction=max_mask_area_fraction,
        ).for_model(model.config.generator_defaults if model.config is not None else ())
        if point_grids is None:
            point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        elif len(point_grids) != crop_n_layers + 1:
            raise ValueError(
                f"point_grids needs one grid per crop layer ({crop_n_layers + 1}), got {len(point_grids)}."
            )
        self.point_grids = [np.asarray(grid, dtype=np.float64) for grid in point_grids]
        self.predictor = SamPredictor(model)

    @classmethod
    def from_config(
        cls, model: Sam, config: GeneratorConfig, point_grids: list[np.ndarray] | None = None
    ) -> SamAutomaticMaskGenerator:
        kwargs = config.to_dict()
        if point_grids is not None:
            kwargs["points_per_side"] = None
        return cls(model, point_grids=point_grids, **kwargs)

    # Official attribute names, read by code written against segment_anything.
    def __getattr__(self, name: str) -> Any:
        config = self.__dict__.get("config")
        if config is not None and name in config.to_dict():
            return getattr(config, name)
        raise AttributeError(name)

    @torch.no_grad()
    def generate(self, image: Any) -> list[dict[str, Any]]:
        """Masks of everything in ``image`` (``H x W x 3`` uint8 RGB; grayscale, RGBA, PIL also taken)."""
        image = to_rgb_array(image)
        masks = self._generate_masks(image)
        cfg = self.config
        if cfg.min_mask_region_area > 0:
            masks = self._remove_small_regions(
                masks, cfg.min_mask_region_area, max(cfg.box_nms_thresh, cfg.crop_nms_thresh)
            )
        return self._records(masks)

    def _generate_masks(self, image: np.ndarray) -> _Masks:
        orig_size = (image.shape[0], image.shape[1])
        crop_boxes, layers = generate_crop_boxes(
            orig_size, self.config.crop_n_layers, self.config.crop_overlap_ratio
        )
        masks = _Masks()
        for crop_box, layer in zip(crop_boxes, layers, strict=True):
            masks.add(self._process_crop(image, crop_box, layer, orig_size))
        if len(crop_boxes) > 1 and len(masks):
            # Across crops prefer masks from smaller crops (zoomed in), whose details are sharper.
            scores = 1 / box_area(masks.tensor("crop_boxes"))
            boxes = masks.tensor("boxes").float()
            keep = batched_nms(
                boxes, scores, torch.zeros_like(boxes[:, 0]), iou_threshold=self.config.crop_nms_thresh
            )
            masks = masks.select(keep)
        return masks

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], layer: int, orig_size: tuple[int, int]
    ) -> _Masks:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        crop_size = (crop.shape[0], crop.shape[1])
        self.predictor.set_image(crop)
        points = self.point_grids[layer] * np.array(crop_size)[None, ::-1]
        masks = _Masks()
        batch = self.config.points_per_batch
        for start in range(0, len(points), batch):
            masks.add(self._process_batch(points[start : start + batch], crop_size, crop_box, orig_size))
        self.predictor.reset_image()
        if not len(masks):
            return masks
        boxes = masks.tensor("boxes").float()
        keep = batched_nms(
            boxes, masks.tensor("iou_preds"), torch.zeros_like(boxes[:, 0]), self.config.box_nms_thresh
        )
        masks = masks.select(keep)
        masks.boxes = [uncrop_boxes(masks.tensor("boxes"), crop_box)]
        masks.points = [uncrop_points(masks.tensor("points"), crop_box)]
        masks.crop_boxes = [torch.tensor([crop_box], dtype=torch.int64).repeat(len(masks), 1)]
        return masks

    def _process_batch(
        self,
        points: np.ndarray,
        crop_size: tuple[int, int],
        crop_box: list[int],
        orig_size: tuple[int, int],
    ) -> _Masks:
        cfg = self.config
        predictor = self.predictor
        mask_threshold = predictor.model.mask_threshold
        coords = torch.as_tensor(
            predictor.transform.apply_coords(points, crop_size), dtype=torch.float, device=predictor.device
        )
        labels = torch.ones(len(points), dtype=torch.int, device=predictor.device)
        # Prompts none of whose candidates can pass the IoU filter are never upscaled (their logits are
        # NaN and unused: the filter below drops them).
        low_res, iou_preds = predictor.predict_low_res(
            coords[:, None],
            labels[:, None],
            multimask_output=True,
            min_iou=cfg.pred_iou_thresh if cfg.pred_iou_thresh > 0.0 else None,
        )

        # One row per candidate, in the official order: point-major, then the 3 candidates of each point.
        per_point = low_res.shape[1]
        low_res = low_res.flatten(0, 1)
        iou_preds = iou_preds.flatten(0, 1)
        point_rows = torch.as_tensor(np.repeat(points, per_point, axis=0))
        keep = torch.ones_like(iou_preds, dtype=torch.bool)
        if cfg.pred_iou_thresh > 0.0:
            keep &= iou_preds > cfg.pred_iou_thresh
        index = torch.nonzero(keep).flatten()

        out = _Masks()
        orig_h, orig_w = orig_size
        pixels = crop_size[0] * crop_size[1]
        chunk = max(1, _PIXELS_PER_CHUNK // pixels)
        for start in range(0, len(index), chunk):
            rows = index[start : start + chunk]
            logits = predictor.upscale_masks(low_res[rows][:, None])[:, 0]
            stability = stability_score(logits, mask_threshold, cfg.stability_score_offset)
            good = torch.ones_like(stability, dtype=torch.bool)
            if cfg.stability_score_thresh > 0.0:
                good &= stability >= cfg.stability_score_thresh
            binary = logits[good] > mask_threshold
            del logits
            boxes = masks_to_boxes(binary)
            near = box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
            keep = ~near
            if cfg.max_mask_area_fraction is not None:  # the SA-1B filter; a crop's pixels are the mask's
                keep &= binary.flatten(1).sum(1) <= cfg.max_mask_area_fraction * orig_h * orig_w
            full = uncrop_masks(binary[keep], crop_box, orig_h, orig_w)
            boxes, chosen, stab = boxes[keep], rows[good][keep], stability[good][keep]
            out.rles.extend(rle_codec.encode(full.cpu().numpy()))
            out.boxes.append(boxes.cpu())
            out.iou_preds.append(iou_preds[chosen].float().cpu())
            out.points.append(point_rows[chosen.cpu()])
            out.stability.append(stab.float().cpu())
        return out

    def _remove_small_regions(self, masks: _Masks, min_area: int, nms_thresh: float) -> _Masks:
        """Fill small holes and drop small islands, then NMS preferring masks that did not change."""
        if not len(masks):
            return masks
        cleaned, unchanged = [], []
        for rle in masks.rles:
            mask = rle_codec.decode(rle)
            mask, holes_changed = remove_small_regions(mask, min_area, "holes")
            mask, islands_changed = remove_small_regions(mask, min_area, "islands")
            cleaned.append(mask)
            unchanged.append(float(not (holes_changed or islands_changed)))
        boxes = masks_to_boxes(torch.as_tensor(np.stack(cleaned)))
        scores = torch.as_tensor(unchanged)
        keep = batched_nms(boxes.float(), scores, torch.zeros_like(boxes[:, 0]), iou_threshold=nms_thresh)
        old_boxes = masks.tensor("boxes").clone()
        for i in keep.tolist():
            if unchanged[i] == 0.0:
                masks.rles[i] = rle_codec.encode(cleaned[i])[0]
                old_boxes[i] = boxes[i]
        masks.boxes = [old_boxes]
        return masks.select(keep)

    def _records(self, masks: _Masks) -> list[dict[str, Any]]:
        mode = self.config.output_mode
        boxes = masks.tensor("boxes").tolist()
        crop_boxes = masks.tensor("crop_boxes").tolist()
        iou_preds = masks.tensor("iou_preds").tolist()
        stability = masks.tensor("stability").tolist()
        points = masks.tensor("points").tolist() if len(masks) else []
        records = []
        for i, rle in enumerate(masks.rles):
            if mode == "coco_rle":
                segmentation: Any = rle
            elif mode == "uncompressed_rle":
                segmentation = rle_codec.to_uncompressed(rle)
            else:
                segmentation = rle_codec.decode(rle)
            records.append(
                {
                    "segmentation": segmentation,
                    "area": rle_codec.area(rle),
                    "bbox": xyxy_to_xywh(boxes[i]),
                    "predicted_iou": iou_preds[i],
                    "point_coords": [points[i]],
                    "stability_score": stability[i],
                    "crop_box": xyxy_to_xywh(crop_boxes[i]),
                }
            )
        return records
