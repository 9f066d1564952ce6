"""The automatic generator's options: one definition, from which the constructor defaults and CLI flags come."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

# Options a model may give its own defaults for (``SamConfig.generator_defaults``: a small model's
# predicted IoU is calibrated on its own scale), with SAM's values, used for models that give none.
MODEL_TUNED_DEFAULTS: dict[str, float] = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}


@dataclass(frozen=True)
class GeneratorConfig:
    """Options of :class:`SamAutomaticMaskGenerator` (names and defaults of the official generator)."""

    points_per_side: int | None = field(
        default=32, metadata={"help": "grid points per image side (None: use point_grids)"}
    )
    points_per_batch: int = field(default=64, metadata={"help": "points decoded together (bounds memory)"})
    pred_iou_thresh: float | None = field(
        default=None,
        metadata={
            "help": "keep masks whose predicted IoU is above this",
            "default_text": "the model's; 0.88 for SAM's",
        },
    )
    stability_score_thresh: float | None = field(
        default=None,
        metadata={"help": "keep masks at least this stable", "default_text": "the model's; 0.95 for SAM's"},
    )
    stability_score_offset: float = field(
        default=1.0, metadata={"help": "logit offset of the stability score"}
    )
    box_nms_thresh: float = field(
        default=0.7, metadata={"help": "box IoU above which duplicates are removed"}
    )
    crop_n_layers: int = field(
        default=0, metadata={"help": "layers of zoomed-in crops (0: whole image only)"}
    )
    crop_nms_thresh: float = field(
        default=0.7, metadata={"help": "box IoU for removing duplicates across crops"}
    )
    crop_overlap_ratio: float = field(
        default=512 / 1500, metadata={"help": "crop overlap, fraction of the short side"}
    )
    crop_n_points_downscale_factor: int = field(
        default=1, metadata={"help": "grid shrink factor per crop layer"}
    )
    min_mask_region_area: int = field(
        default=0, metadata={"help": "fill holes / drop islands smaller than this (px)"}
    )
    output_mode: str = field(
        default="binary_mask", metadata={"help": "binary_mask, uncompressed_rle or coco_rle"}
    )
    max_mask_area_fraction: float | None = field(
        default=None,
        metadata={"help": "drop masks covering more than this fraction of the image (SA-1B: 0.95)"},
    )

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float):
                _check(math.isfinite(value), f"{item.name} must be a finite number, got {value}")
        _check(self.output_mode in OUTPUT_MODES, f"output_mode must be one of {', '.join(OUTPUT_MODES)}")
        _check(self.points_per_side is None or self.points_per_side > 0, "points_per_side must be positive")
        _check(self.points_per_batch > 0, "points_per_batch must be positive")
        _check(self.crop_n_layers >= 0, "crop_n_layers must be 0 or more")
        _check(self.crop_n_points_downscale_factor >= 1, "crop_n_points_downscale_factor must be 1 or more")
        _check(0.0 <= self.crop_overlap_ratio < 1.0, "crop_overlap_ratio must lie in [0, 1)")
        for name in ("box_nms_thresh", "crop_nms_thresh"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"{name} must lie in [0, 1]")
        _check(self.min_mask_region_area >= 0, "min_mask_region_area must be 0 or more")
        for name in MODEL_TUNED_DEFAULTS:
            value = getattr(self, name)
            _check(value is None or 0.0 <= value <= 1.0, f"{name} must lie in [0, 1]")
        _check(
            self.max_mask_area_fraction is None or 0.0 < self.max_mask_area_fraction <= 1.0,
            "max_mask_area_fraction must lie in (0, 1]",
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def for_model(
        self, model_defaults: Mapping[str, float] | tuple[tuple[str, float], ...]
    ) -> GeneratorConfig:
        """This config with the options left None filled in: the model's defaults, else SAM's.

        ``model_defaults``: option -> value (``SamConfig.generator_defaults``); only the options of
        ``MODEL_TUNED_DEFAULTS`` may be given.
        """
        given = dict(model_defaults)
        unknown = sorted(set(given) - set(MODEL_TUNED_DEFAULTS))
        _check(not unknown, f"a model cannot set generator option(s) {', '.join(unknown)}")
        changes = {
            name: float(given.get(name, sam))
            for name, sam in MODEL_TUNED_DEFAULTS.items()
            if getattr(self, name) is None
        }
        return dataclasses.replace(self, **changes)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message + ".")
