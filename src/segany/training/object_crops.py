"""Object-centred crops: training views like the zoom-in pass sees (see :mod:`segany.zoom`).

Each item picks one object of a scene, cuts a square around it ``context`` times its longest side (drawn
log-uniformly from ``[min_context, max_context]``, the object shifted at random inside the window), keeps
the window inside the image as the zoom-in pass does (shifted, cut where the image is smaller), and
resizes it so its longest side is ``size``, padded at the bottom and right to a ``size`` square: the
frame of the model's input. Every mask of the scene is cut and resized with it (nearest neighbour);
those left with fewer than ``min_pixels`` pixels are dropped. Item ``i`` is a pure function of
``(seed, i)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import DatasetError
from .datasets import RandomViews, SceneSource
from .scale_jitter import kept_masks
from .synthetic import Scene

# A stream of its own, so these draws differ from those of a source or a jitter with the same seed.
OBJECT_CROP_STREAM = 4


@dataclass(frozen=True)
class ObjectCropConfig:
    size: int = 512
    min_context: float = 1.5
    max_context: float = 4.0
    min_side: int = 24  # pixels of the source image: the smallest window
    min_pixels: int = 16

    def __post_init__(self) -> None:
        if self.size < 16:
            raise DatasetError(f"Object crops need a size of at least 16 pixels, got {self.size}.")
        if not 1.0 <= self.min_context <= self.max_context:
            raise DatasetError(
                f"Object crops need 1 <= min_context <= max_context, got {self.min_context} and {self.max_context}."
            )


class ObjectCrops(RandomViews):
    """Endless object-centred views of random scenes of ``source`` (``crops[i]`` is reproducible)."""

    stream = OBJECT_CROP_STREAM
    name = "Object crops"

    def __init__(
        self, source: SceneSource, seed: int = 0, config: ObjectCropConfig | None = None, flip: float = 0.0
    ) -> None:
        super().__init__(source, seed, flip)
        self.config = config or ObjectCropConfig()

    def view(self, scene: Scene, rng: np.random.Generator) -> Scene:
        return crop_around_object(scene, rng, self.config)


def crop_around_object(scene: Scene, rng: np.random.Generator, config: ObjectCropConfig) -> Scene:
    """One object-centred ``size x size`` view of ``scene`` (see the module docstring); a scene without
    objects gives its whole image."""
    height, width = scene.image.shape[:2]
    areas = scene.masks.reshape(len(scene.masks), -1).sum(axis=1) if len(scene.masks) else np.zeros(0)
    candidates = np.flatnonzero(areas >= config.min_pixels)
    if len(candidates) == 0:
        left, top, side_w, side_h = 0, 0, width, height
    else:
        rows, cols = np.nonzero(scene.masks[int(rng.choice(candidates))])
        x0, x1, y0, y1 = cols.min(), cols.max() + 1, rows.min(), rows.max() + 1
        extent = max(x1 - x0, y1 - y0)
        context = math.exp(rng.uniform(math.log(config.min_context), math.log(config.max_context)))
        side = max(extent * context, config.min_side)
        # The object anywhere inside the window (its centre moves by up to the free margin).
        slack = max(side - extent, 0.0) / 2
        cx = (x0 + x1) / 2 + rng.uniform(-slack, slack)
        cy = (y0 + y1) / 2 + rng.uniform(-slack, slack)
        side_w, side_h = min(math.ceil(side), width), min(math.ceil(side), height)
        left = int(min(max(round(cx - side_w / 2), 0), width - side_w))
        top = int(min(max(round(cy - side_h / 2), 0), height - side_h))
    scale = config.size / max(side_w, side_h)
    new_w, new_h = max(1, round(side_w * scale)), max(1, round(side_h * scale))
    window = (slice(top, top + side_h), slice(left, left + side_w))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = np.zeros((config.size, config.size, 3), dtype=np.uint8)
    out[:new_h, :new_w] = cv2.resize(scene.image[window], (new_w, new_h), interpolation=interpolation)

    def place(mask: np.ndarray) -> np.ndarray:
        placed = np.zeros((config.size, config.size), dtype=bool)
        cut = mask[window]
        if cut.any():
            resized = cv2.resize(cut.astype(np.uint8), (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT)
            placed[:new_h, :new_w] = resized.astype(bool)
        return placed

    return Scene(image=out, masks=kept_masks(map(place, scene.masks), config.size, config.min_pixels))
