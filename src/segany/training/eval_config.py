"""Options of the evaluation (:func:`segany.training.evaluate.evaluate`).

Kept apart from the evaluation itself so that the CLI builds its flags from them without importing
torch or OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EvalConfig:
    """What :func:`~segany.training.evaluate.evaluate` measures; the ``segany eval`` flags are generated from these fields."""

    clicks: int = field(default=5, metadata={"help": "clicks per mask whose mIoU is reported"})
    noc_clicks: int = field(
        default=20,
        metadata={
            "help": "clicks at most for NoC@85 / NoC@90 (the number of clicks to reach that IoU; 0: skip)"
        },
    )
    automatic: bool = field(
        default=False,
        metadata={"help": "also run the automatic generator (the model's defaults) and report its recall"},
    )
    max_images: int | None = field(default=None, metadata={"help": "evaluate at most this many images"})
    max_masks_per_image: int | None = field(
        default=None, metadata={"help": "evaluate at most the first this many masks of each image"}
    )
    min_area: int = field(default=0, metadata={"help": "skip masks of fewer pixels than this"})
    baselines: bool = field(
        default=True, metadata={"help": "also score the box-as-mask and GrabCut floors (GrabCut is slow)"}
    )
    grabcut_iterations: int = field(default=3, metadata={"help": "GrabCut iterations per mask"})
    masks_per_batch: int = field(
        default=16, metadata={"help": "masks of one image decoded together (bounds memory)"}
    )

    def __post_init__(self) -> None:
        least = {"clicks": 1, "noc_clicks": 0, "min_area": 0, "grabcut_iterations": 1, "masks_per_batch": 1}
        for name, lowest in least.items():
            if getattr(self, name) < lowest:
                raise ValueError(f"{name} must be at least {lowest}, got {getattr(self, name)}")
        for name in ("max_images", "max_masks_per_image"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (or None for all), got {getattr(self, name)}")
