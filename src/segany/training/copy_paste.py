"""Copy-paste augmentation: object cut-outs pasted onto backgrounds, with their masks.

After Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for Instance Segmentation"
(2021). A scene is a background (a random item of a dataset, keeping its masks, or a plain synthetic
texture) with 1..k objects pasted on it, back to front. An object is one instance of a random item of
``objects``, cut out along its mask within its box, then scaled, perhaps flipped and colour-jittered, and
pasted wholly inside the frame. A pasted object hides what lies below, so earlier masks lose the pixels
it covers; any mask left with fewer than ``min_pixels`` pixels is dropped (its pixels stay in the image,
unlabelled, like a hardly visible object in a photo).
"""

from __future__ import annotations

import operator
from collections.abc import Sized
from dataclasses import dataclass

import cv2
import numpy as np

from segany.errors import DatasetError
from segany.training.datasets import SceneSource, random_index
from segany.training.synthetic import Scene, SceneConfig, make_scene

# See datasets.MIXTURE_STREAM: copy-paste draws its own numbers even with a synthetic source's seed.
COPY_PASTE_STREAM = 2

# A synthetic scene with no shapes: just the textured background.
_PLAIN = SceneConfig(min_shapes=0, max_shapes=0)


@dataclass(frozen=True)
class CopyPasteConfig:
    """How objects are pasted. Scales are relative to an object's size in its own image."""

    min_objects: int = 1
    max_objects: int = 3
    min_scale: float = 0.5
    max_scale: float = 1.5
    flip_probability: float = 0.5  # horizontal flip
    max_rotation: float = 0.0  # degrees; each object is turned by a uniform angle in [-r, r]
    # Colour jitter: each factor is drawn from [1 - j, 1 + j]; 0 turns that jitter off.
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    # Masks (pasted or the background's own) with fewer visible pixels are dropped.
    min_pixels: int = 100
    # Size of the synthetic background drawn when there are no backgrounds.
    height: int = 256
    width: int = 256
    # Draws of a source item per object before giving that object up (items may have no masks, or
    # only masks that end up under min_pixels once scaled).
    tries_per_object: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.min_objects <= self.max_objects:
            raise DatasetError(
                f"Copy-paste needs 0 <= min_objects <= max_objects, got {self.min_objects} and "
                f"{self.max_objects}."
            )
        if not 0 < self.min_scale <= self.max_scale:
            raise DatasetError(
                f"Copy-paste needs 0 < min_scale <= max_scale, got {self.min_scale} and {self.max_scale}."
            )
        if not 0 <= self.max_rotation <= 180:
            raise DatasetError(
                f"Copy-paste max_rotation must lie in [0, 180] degrees, got {self.max_rotation}."
            )
        if not 0 <= self.flip_probability <= 1:
            raise DatasetError(
                f"Copy-paste flip_probability must lie in [0, 1], got {self.flip_probability}."
            )
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise DatasetError(f"Copy-paste {name} jitter must lie in [0, 1), got {getattr(self, name)}.")
        if self.min_pixels < 1 or self.tries_per_object < 1:
            raise DatasetError(
                "Copy-paste min_pixels and tries_per_object must be 1 or more, "
                f"got {self.min_pixels} and {self.tries_per_object}."
            )
        if self.height < 16 or self.width < 16:
            raise DatasetError(
                f"Copy-paste backgrounds need at least 16 x 16 pixels, got {self.height} x {self.width}."
            )


class CopyPaste:
    """An endless, indexable family of copy-paste scenes: ``scenes[i]`` is a pure function of ``(seed, i)``
    (for the same ``objects`` and ``backgrounds``), so scenes can be drawn in any order or in parallel.

    Args:
        objects: where cut-outs come from: any item's instance masks (one per pasted object).
        backgrounds: where backgrounds come from, their masks kept (occluded by what is pasted); None for
            plain synthetic textures of ``config.height x config.width``.
        seed: 0 or more.
        config: paste counts, scales, flip and jitter; ``CopyPasteConfig()`` if None.

    Scenes' masks are background masks first, then pasted objects in paste order; pasted masks are
    disjoint from each other and from the background's (which keep any overlap they had among themselves).
    """

    def __init__(
        self,
        objects: SceneSource,
        backgrounds: SceneSource | None = None,
        seed: int = 0,
        config: CopyPasteConfig | None = None,
    ) -> None:
        for name, source in (("objects", objects), ("backgrounds", backgrounds)):
            if isinstance(source, Sized) and len(source) == 0:
                raise DatasetError(f"Copy-paste {name} is empty; give a dataset with at least one scene.")
        if seed < 0:
            raise DatasetError(f"A copy-paste seed must be 0 or more, got {seed}.")
        self.objects = objects
        self.backgrounds = backgrounds
        self.seed = seed
        self.config = config or CopyPasteConfig()

    def __getitem__(self, index: int) -> Scene:
        index = operator.index(index)
        if index < 0:
            raise IndexError(f"Copy-paste scenes are endless and counted from 0, got index {index}.")
        config = self.config
        rng = np.random.default_rng([self.seed, index, COPY_PASTE_STREAM])
        if self.backgrounds is None:
            background = make_scene(rng, config.height, config.width, _PLAIN)
        else:
            background = self.backgrounds[random_index(rng, self.backgrounds)]
        image = background.image.copy()
        height, width = image.shape[:2]
        masks = list(background.masks)
        # Paste back to front: each object hides its pixels from every mask before it.
        for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
            cut = self._cut_out(rng, height, width)
            if cut is None:
                continue
            pixels, mask = cut
            top = int(rng.integers(height - mask.shape[0] + 1))
            left = int(rng.integers(width - mask.shape[1] + 1))
            pasted = np.zeros((height, width), dtype=bool)
            pasted[top : top + mask.shape[0], left : left + mask.shape[1]] = mask
            image[pasted] = pixels[mask]
            masks = [m & ~pasted for m in masks]
            masks.append(pasted)
        kept = [m for m in masks if int(m.sum()) >= config.min_pixels]
        stacked = np.stack(kept) if kept else np.zeros((0, height, width), dtype=bool)
        return Scene(image=image, masks=stacked)

    def _cut_out(
        self, rng: np.random.Generator, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(``h x w x 3`` uint8 pixels, ``h x w`` bool mask) of one transformed object that fits in
        ``height x width`` and keeps ``min_pixels``; None if none was found in ``tries_per_object`` draws."""
        config = self.config
        for _ in range(config.tries_per_object):
            source = self.objects[random_index(rng, self.objects)]
            if len(source.masks) == 0:
                continue
            mask = source.masks[int(rng.integers(len(source.masks)))]
            if not mask.any():
                continue
            rows, cols = _box(mask)
            pixels, mask = source.image[rows, cols], mask[rows, cols]
            if config.max_rotation:
                pixels, mask = _rotate(pixels, mask, rng.uniform(-config.max_rotation, config.max_rotation))
            pixels, mask = _scale_and_flip(rng, pixels, mask, height, width, config)
            if int(mask.sum()) >= config.min_pixels:
                return _jitter(rng, pixels, mask, config), mask
        return None


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """Row and column slices of the bounding box of a non-empty ``H x W`` mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _rotate(pixels: np.ndarray, mask: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """A cut-out turned by ``degrees`` about its centre, on a canvas grown to hold it, cropped to the
    turned mask's box (bilinear pixels, nearest-neighbour mask)."""
    h, w = mask.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    matrix[:, 2] += (new_w - w) / 2, (new_h - h) / 2
    pixels = cv2.warpAffine(pixels, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR)
    turned = cv2.warpAffine(mask.astype(np.uint8), matrix, (new_w, new_h), flags=cv2.INTER_NEAREST).astype(
        bool
    )
    if not turned.any():
        return pixels, turned
    rows, cols = _box(turned)
    return np.ascontiguousarray(pixels[rows, cols]), np.ascontiguousarray(turned[rows, cols])


def _scale_and_flip(
    rng: np.random.Generator,
    pixels: np.ndarray,
    mask: np.ndarray,
    height: int,
    width: int,
    config: CopyPasteConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """A cut-out scaled by a random factor (shrunk further to fit ``height x width``), perhaps mirrored."""
    h, w = mask.shape
    scale = min(rng.uniform(config.min_scale, config.max_scale), height / h, width / w)
    size = (min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale))))  # cv2 wants (w, h)
    if size != (w, h):  # at scale 1 the pixels stay exactly as they were
        shrink = size[0] * size[1] < w * h
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
    if rng.random() < config.flip_probability:
        pixels, mask = pixels[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(pixels), np.ascontiguousarray(mask)


def _jitter(
    rng: np.random.Generator, pixels: np.ndarray, mask: np.ndarray, config: CopyPasteConfig
) -> np.ndarray:
    """Brightness, contrast and saturation changed in that order, each by a factor from [1 - j, 1 + j].

    Contrast scales about the object's mean grey (its masked pixels only, not the box around it);
    saturation scales each pixel about its own grey. Jitters set to 0 are skipped, leaving pixels exact.
    """
    if not (config.brightness or config.contrast or config.saturation):
        return pixels
    out = pixels.astype(np.float32)
    if config.brightness:
        out *= rng.uniform(1 - config.brightness, 1 + config.brightness)
    if config.contrast:
        mean = float(_grey(out)[mask].mean())
        out = (out - mean) * rng.uniform(1 - config.contrast, 1 + config.contrast) + mean
    if config.saturation:
        grey = _grey(out)[..., None]
        out = (out - grey) * rng.uniform(1 - config.saturation, 1 + config.saturation) + grey
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _grey(image: np.ndarray) -> np.ndarray:
    """``H x W`` float32 luma (ITU-R BT.601 weights) of an ``H x W x 3`` RGB image."""
    return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
