"""Large-scale jitter (Ghiasi et al., 2021): each scene resized by a random factor, then cut or padded to
a fixed square, so objects are seen at many more sizes (and positions) than the data holds.

The scene is first scaled so its longest side is ``size``, then by a factor drawn log-uniformly from
``[min_scale, max_scale]``; a random ``size x size`` window is taken (zero padding where the scaled image
is smaller). Masks follow (nearest neighbour) and those left with fewer than ``min_pixels`` pixels are
dropped. Item ``i`` is a pure function of ``(seed, i)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import DatasetError
from .datasets import RandomViews, SceneSource
from .synthetic import Scene

# A stream of its own, so jitter draws differ from those of a source with the same seed.
SCALE_JITTER_STREAM = 3


@dataclass(frozen=True)
class ScaleJitterConfig:
    size: int = 1024
    min_scale: float = 0.1
    max_scale: float = 2.0
    min_pixels: int = 100

    def __post_init__(self) -> None:
        if self.size < 16:
            raise DatasetError(f"Scale jitter needs a size of at least 16 pixels, got {self.size}.")
        if not 0 < self.min_scale <= self.max_scale:
            raise DatasetError(
                f"Scale jitter needs 0 < min_scale <= max_scale, got {self.min_scale} and {self.max_scale}."
            )


class ScaleJitter(RandomViews):
    """Endless jittered scenes drawn from ``source`` (random items; ``scenes[i]`` is reproducible)."""

    stream = SCALE_JITTER_STREAM
    name = "Scale jitter"

    def __init__(
        self, source: SceneSource, seed: int = 0, config: ScaleJitterConfig | None = None, flip: float = 0.0
    ) -> None:
        super().__init__(source, seed, flip)
        self.config = config or ScaleJitterConfig()

    def view(self, scene: Scene, rng: np.random.Generator) -> Scene:
        return jitter_scene(scene, rng, self.config)


def jitter_scene(scene: Scene, rng: np.random.Generator, config: ScaleJitterConfig) -> Scene:
    """One large-scale-jittered ``size x size`` copy of ``scene`` (see the module docstring)."""
    height, width = scene.image.shape[:2]
    factor = math.exp(rng.uniform(math.log(config.min_scale), math.log(config.max_scale)))
    scale = config.size / max(height, width) * factor
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(scene.image, (new_w, new_h), interpolation=interpolation)
    # Window origin in the scaled image; negative offsets place a smaller image at a random spot.
    top = int(rng.integers(min(0, new_h - config.size), max(0, new_h - config.size) + 1))
    left = int(rng.integers(min(0, new_w - config.size), max(0, new_w - config.size) + 1))
    src_rows = slice(max(0, top), min(new_h, top + config.size))
    src_cols = slice(max(0, left), min(new_w, left + config.size))
    dst_rows = slice(src_rows.start - top, src_rows.stop - top)
    dst_cols = slice(src_cols.start - left, src_cols.stop - left)
    out = np.zeros((config.size, config.size, 3), dtype=np.uint8)
    out[dst_rows, dst_cols] = image[src_rows, src_cols]

    def place(mask: np.ndarray) -> np.ndarray:
        resized = cv2.resize(mask.astype(np.uint8), (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT)
        placed = np.zeros((config.size, config.size), dtype=bool)
        placed[dst_rows, dst_cols] = resized[src_rows, src_cols].astype(bool)
        return placed

    return Scene(image=out, masks=kept_masks(map(place, scene.masks), config.size, config.min_pixels))


def kept_masks(masks: Iterable[np.ndarray], size: int, min_pixels: int) -> np.ndarray:
    """The ``size x size`` bool masks with at least ``min_pixels`` pixels, stacked: ``K x size x size``
    (what an augmentation keeps of a scene's masks once they are moved, cut and resized)."""
    kept = [mask for mask in masks if int(mask.sum()) >= max(min_pixels, 1)]  # never an empty target
    return np.stack(kept) if kept else np.zeros((0, size, size), dtype=bool)
