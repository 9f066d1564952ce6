"""Synthetic scenes of flat, gradient and textured shapes on a textured background, with instance masks.

Training data for small models and tests: every object has a clear boundary (a minimum colour contrast
with what it covers), a known mask and a random appearance, so a model has to learn edges and regions
rather than particular colours.

A scene is painted back to front; a new shape is kept only if it, and every shape it covers part of,
stays one connected region of at least ``min_visible`` pixels with a core at least 5 pixels thick. So
the visible masks are disjoint, connected and cover exactly the painted shapes (no unlabelled
fragments or slivers). Everything is drawn from the numpy ``Generator`` given, so a scene is a pure
function of the generator's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHAPE_KINDS = ("ellipse", "rectangle", "rotated_rectangle", "triangle", "polygon")
FILL_KINDS = ("flat", "gradient", "noise")


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn; sizes are fractions of the shorter image side."""

    min_shapes: int = 3
    max_shapes: int = 10
    min_size: float = 0.10
    max_size: float = 0.60
    min_visible: int = 100
    # A shape's colour differs from what it covers by at least this (RGB Euclidean distance), so that
    # every boundary is visible.
    min_contrast: float = 60.0
    tries_per_shape: int = 10


@dataclass(frozen=True)
class Scene:
    """An image and its instance masks.

    Attributes:
        image: ``H x W x 3`` uint8 RGB.
        masks: ``N x H x W`` bool visible instance masks, back to front, pairwise disjoint.
    """

    image: np.ndarray
    masks: np.ndarray

    @property
    def background(self) -> np.ndarray:
        """``H x W`` bool: the pixels no instance covers."""
        return ~self.masks.any(axis=0)


def make_scene(rng: np.random.Generator, height: int, width: int, config: SceneConfig | None = None) -> Scene:
    """Draw one scene of ``height x width`` pixels with ``config.min_shapes`` to ``config.max_shapes`` shapes.

    A shape that would break one already painted is redrawn, up to ``tries_per_shape`` times per shape
    on average; a very crowded or tiny image may end with fewer shapes than asked for.
    """
    config = config or SceneConfig()
    if height < 16 or width < 16:
        raise ValueError(f"Scenes need at least 16 x 16 pixels, got {height} x {width}.")
    image = _background(rng, height, width)
    masks: list[np.ndarray] = []
    count = int(rng.integers(config.min_shapes, config.max_shapes + 1))
    for _ in range(count * config.tries_per_shape):
        if len(masks) == count:
            break
        shape = _random_shape(rng, height, width, config)
        if not _is_solid(shape, config.min_visible):  # too small, or a sliver left by the frame
            continue
        survivors = [mask & ~shape for mask in masks]
        covered = [old.sum() != new.sum() for old, new in zip(masks, survivors, strict=True)]
        if not all(
            _is_solid(new, config.min_visible) for new, hit in zip(survivors, covered, strict=True) if hit
        ):
            continue
        rows, cols = _box(shape)
        below = _mean_colour(image, shape)
        fill = _fill(rng, rows.stop - rows.start, cols.stop - cols.start, below, config.min_contrast)
        crop = image[rows, cols]  # a view: painting it paints the image
        crop[shape[rows, cols]] = fill[shape[rows, cols]]
        masks = [*survivors, shape]
    stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
    return Scene(image=image, masks=stacked)


class SyntheticScenes:
    """An endless, indexable family of scenes: ``scenes[i]`` is always the same scene for one ``seed``.

    Each index gets its own generator (seeded with ``(seed, i)``), so scenes can be drawn in any order
    or in parallel and still be reproducible.
    """

    def __init__(
        self, seed: int, height: int = 256, width: int = 256, config: SceneConfig | None = None
    ) -> None:
        self.seed = seed
        self.height = height
        self.width = width
        self.config = config or SceneConfig()

    def __getitem__(self, index: int) -> Scene:
        rng = np.random.default_rng([self.seed, index])
        return make_scene(rng, self.height, self.width, self.config)


def _is_solid(mask: np.ndarray, min_visible: int) -> bool:
    """One 4-connected piece of at least ``min_visible`` pixels, not just a sliver.

    Slivers (a thin rim left around a shape painted over) are legal segments but teach little at the
    low mask resolution, so a core at least 5 pixels thick must keep half of ``min_visible``.
    """
    if mask.sum() < min_visible:
        return False
    pixels = mask.astype(np.uint8)
    count, _ = cv2.connectedComponents(pixels, connectivity=4)
    if count != 2:  # label 0 is everything outside the mask
        return False
    return int(cv2.erode(pixels, np.ones((5, 5), np.uint8)).sum()) >= min_visible // 2


def _mean_colour(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    return image[region].reshape(-1, 3).mean(axis=0)


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """Row and column slices of the bounding box of a non-empty ``H x W`` mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


# --- Shapes -----------------------------------------------------------------------------------------


def _random_shape(rng: np.random.Generator, height: int, width: int, config: SceneConfig) -> np.ndarray:
    """``H x W`` bool mask of one shape; its centre may lie anywhere, so shapes can leave the frame."""
    side = min(height, width)
    size = rng.uniform(config.min_size, config.max_size) * side  # diameter of the shape
    centre = rng.uniform((0.0, 0.0), (width, height))
    angle = rng.uniform(0.0, np.pi)
    kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
    if kind == "ellipse":
        radii = size / 2 * np.array([1.0, rng.uniform(0.4, 1.0)])
        return _ellipse(height, width, centre, radii, angle)
    if kind in ("rectangle", "rotated_rectangle"):
        halves = size / 2 * np.array([1.0, rng.uniform(0.3, 1.0)])
        return _rectangle(height, width, centre, halves, angle if kind == "rotated_rectangle" else 0.0)
    corners = 3 if kind == "triangle" else int(rng.integers(5, 9))
    return _polygon(rng, height, width, centre, size / 2, corners, angle)


def _rotated_grid(height: int, width: int, centre: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(u, v)`` in a frame centred on ``centre`` and rotated by ``angle``."""
    dx = (np.arange(width, dtype=np.float32) + 0.5 - centre[0])[None, :]
    dy = (np.arange(height, dtype=np.float32) + 0.5 - centre[1])[:, None]
    cos, sin = np.cos(angle), np.sin(angle)
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _ellipse(height: int, width: int, centre: np.ndarray, radii: np.ndarray, angle: float) -> np.ndarray:
    u, v = _rotated_grid(height, width, centre, angle)
    return (u / radii[0]) ** 2 + (v / radii[1]) ** 2 <= 1.0


def _rectangle(height: int, width: int, centre: np.ndarray, halves: np.ndarray, angle: float) -> np.ndarray:
    u, v = _rotated_grid(height, width, centre, angle)
    return (np.abs(u) <= halves[0]) & (np.abs(v) <= halves[1])


def _polygon(
    rng: np.random.Generator,
    height: int,
    width: int,
    centre: np.ndarray,
    radius: float,
    corners: int,
    angle: float,
) -> np.ndarray:
    """A star-shaped polygon: corners at sorted random angles and radii around ``centre``."""
    if corners == 3:
        # Spread the corners so that triangles are not slivers.
        angles = angle + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.4, 0.4, 3)
        radii = radius * rng.uniform(0.7, 1.0, 3)
    else:
        angles = angle + np.sort(rng.uniform(0.0, 2 * np.pi, corners))
        radii = radius * rng.uniform(0.5, 1.0, corners)
    points = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    canvas = np.zeros((height, width), dtype=np.uint8)
    # fillPoly takes fixed-point coordinates: 4 fractional bits keep sub-pixel corners.
    cv2.fillPoly(canvas, [np.round(points * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


# --- Appearance -------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``H x W x 3`` uint8: a two-colour linear gradient plus smooth and fine noise."""
    image = _gradient(rng, height, width, rng.uniform(0, 255, 3), rng.uniform(0, 255, 3))
    image += _smooth_noise(rng, height, width, amplitude=rng.uniform(5.0, 30.0))
    image += rng.normal(0.0, rng.uniform(0.0, 8.0), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _fill(
    rng: np.random.Generator, height: int, width: int, below: np.ndarray, min_contrast: float
) -> np.ndarray:
    """``h x w x 3`` uint8 appearance for a shape's bounding box, its mean colour far from ``below`` (RGB)."""
    colour = rng.uniform(0, 255, 3)
    for _ in range(20):
        if np.linalg.norm(colour - below) >= min_contrast:
            break
        colour = rng.uniform(0, 255, 3)
    kind = FILL_KINDS[int(rng.integers(len(FILL_KINDS)))]
    if kind == "flat":
        image = np.broadcast_to(colour, (height, width, 3)).astype(np.float32)
    elif kind == "gradient":
        # A gentle gradient around the chosen colour, so the contrast holds everywhere.
        shift = rng.uniform(-40.0, 40.0, 3)
        image = _gradient(rng, height, width, colour - shift, colour + shift)
    else:
        image = colour + _smooth_noise(rng, height, width, amplitude=rng.uniform(10.0, 30.0))
        image += rng.normal(0.0, rng.uniform(2.0, 10.0), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _gradient(
    rng: np.random.Generator, height: int, width: int, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """``H x W x 3`` float32 linear blend from ``start`` to ``end`` along a random direction."""
    angle = rng.uniform(0.0, 2 * np.pi)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    t = xs * np.cos(angle) + ys * np.sin(angle)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return start.astype(np.float32) + t[..., None] * (end - start).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, amplitude: float) -> np.ndarray:
    """``H x W x 3`` float32 low-frequency noise of about ``amplitude``: a coarse random grid, upsampled."""
    cells = int(rng.integers(3, 9))
    coarse = rng.uniform(-amplitude, amplitude, (cells, cells, 3)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
