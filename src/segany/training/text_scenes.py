"""Labelled synthetic scenes for the offline text-prompt demonstration (paper section 7.5).

Each scene holds a few flat-coloured shapes on a plain, softly shaded grey background; every shape has
a kind (``ellipse``, ``rectangle``, ``triangle``), a colour (``red``, ``green``, ``blue``, ``yellow``,
``white``) and a size (``small``, ``large``), so it can be named by a phrase such as ``"triangle"``,
``"red triangle"``, ``"small triangle"`` or ``"large blue ellipse"``. Shapes do not touch, so each
visible mask is the whole shape and its label describes all of it. The whole image carries fine pixel
noise of a fixed strength, so a crop of a small object (enlarged to the encoder's input) shows coarser
grain than a crop of a large one: the size of an object leaves a trace in its crop, as it does in a photo.

A scene is a pure function of its numpy ``Generator``; :class:`TextScenes` gives scene ``i`` of a seed
from the generator seeded with ``(seed, i)``. Frames: image pixels, X right, Y down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..text.vocabulary import COLOURS, KINDS, PHRASE_FORMS, SIZES, VOCABULARY  # noqa: F401 (re-exported)
from .datasets import SceneDataset, check_generated
from .synthetic import Scene


@dataclass(frozen=True)
class ObjectLabel:
    """What a phrase can say about one object."""

    kind: str
    colour: str
    size: str

    def phrase(self, form: Sequence[str] = PHRASE_FORMS[-1]) -> str:
        """The phrase of ``form`` (attribute names, e.g. ``("colour", "kind")``): ``"red triangle"``."""
        return " ".join(getattr(self, part) for part in form)

    def phrases(self) -> list[str]:
        """Every phrase of :data:`PHRASE_FORMS` that names this object, shortest first."""
        return [self.phrase(form) for form in PHRASE_FORMS]

    def matches(self, phrase: str) -> bool:
        """Whether every word of ``phrase`` is one of this object's attributes."""
        words = phrase.split()
        return bool(words) and all(word in (self.kind, self.colour, self.size) for word in words)


@dataclass(frozen=True)
class LabelledScene(Scene):
    """A :class:`~segany.training.synthetic.Scene` whose mask ``i`` is the object ``labels[i]``."""

    labels: tuple[ObjectLabel, ...] = ()


def unique_phrase(labels: Sequence[ObjectLabel], index: int) -> str | None:
    """The shortest phrase naming ``labels[index]`` and no other object of the scene.

    Forms are tried in :data:`PHRASE_FORMS` order (so ``"red triangle"`` before ``"small triangle"``);
    None when even the full phrase fits another object too (two identical objects).
    """
    others = [label for i, label in enumerate(labels) if i != index]
    for phrase in labels[index].phrases():
        if not any(other.matches(phrase) for other in others):
            return phrase
    return None


@dataclass(frozen=True)
class TextSceneConfig:
    """How labelled scenes are drawn."""

    min_objects: int = 2
    max_objects: int = 5
    gap: int = 4  # pixels kept free around every shape
    tries_per_object: int = 30
    colour_jitter: float = 18.0  # per channel, uniform
    noise_std: float = 7.0  # pixel noise over the whole image

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"Need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}."
            )


def make_labelled_scene(
    rng: np.random.Generator, height: int, width: int, config: TextSceneConfig | None = None
) -> LabelledScene:
    """Draw one scene of ``height x width`` pixels with ``min_objects`` to ``max_objects`` shapes.

    A shape that would touch one already placed is redrawn (up to ``tries_per_object`` times); a small
    image may end with fewer shapes than asked for, but always with at least one.
    """
    config = config or TextSceneConfig()
    if height < 32 or width < 32:
        raise ValueError(f"Labelled scenes need at least 32 x 32 pixels, got {height} x {width}.")
    image = _background(rng, height, width)
    taken = np.zeros((height, width), dtype=np.uint8)
    masks: list[np.ndarray] = []
    labels: list[ObjectLabel] = []
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    kernel = np.ones((2 * config.gap + 1, 2 * config.gap + 1), np.uint8)
    for _ in range(count * config.tries_per_object):
        if len(masks) == count:
            break
        label = ObjectLabel(
            kind=KINDS[int(rng.integers(len(KINDS)))],
            colour=list(COLOURS)[int(rng.integers(len(COLOURS)))],
            size=list(SIZES)[int(rng.integers(len(SIZES)))],
        )
        extent = rng.uniform(*SIZES[label.size]) * min(height, width)
        mask = _shape(rng, label.kind, extent, height, width)
        if not mask.any() or (cv2.dilate(mask.astype(np.uint8), kernel) & taken).any():
            continue
        colour = np.asarray(COLOURS[label.colour], np.float32) + rng.uniform(
            -config.colour_jitter, config.colour_jitter, 3
        )
        image[mask] = colour
        taken |= mask.astype(np.uint8)
        masks.append(mask)
        labels.append(label)
    image += rng.normal(0.0, config.noise_std, image.shape).astype(np.float32)
    stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
    return LabelledScene(image=np.clip(image, 0, 255).astype(np.uint8), masks=stacked, labels=tuple(labels))


class TextScenes(SceneDataset):
    """The first ``length`` labelled scenes of ``seed``: scene ``i`` comes from ``Generator((seed, i))``."""

    def __init__(
        self,
        seed: int,
        height: int = 256,
        width: int = 256,
        length: int = 1000,
        config: TextSceneConfig | None = None,
    ) -> None:
        check_generated("text_scenes", seed, length, height, width, min_side=32)
        self.seed = seed
        self.height = height
        self.width = width
        self.length = length
        self.config = config or TextSceneConfig()

    def __len__(self) -> int:
        return self.length

    def name(self, index: int) -> str:
        return f"text-scenes-{self.seed}-{self._position(index)}"

    def _load(self, index: int) -> LabelledScene:
        rng = np.random.default_rng([self.seed, index])
        return make_labelled_scene(rng, self.height, self.width, self.config)


# --- Drawing ----------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``H x W x 3`` float32: a mid-grey, slightly tinted, with a soft low-frequency shading."""
    grey = rng.uniform(60.0, 150.0) + rng.uniform(-8.0, 8.0, 3)
    cells = int(rng.integers(2, 6))
    coarse = rng.uniform(-15.0, 15.0, (cells, cells, 1)).astype(np.float32)
    shading = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    return (grey.astype(np.float32) + shading).astype(np.float32)


def _shape(rng: np.random.Generator, kind: str, extent: float, height: int, width: int) -> np.ndarray:
    """``H x W`` bool mask of one shape of longest extent about ``extent`` pixels, wholly inside the image."""
    radius = extent / 2
    margin = radius + 2
    if 2 * margin >= min(height, width):
        return np.zeros((height, width), dtype=bool)
    centre = rng.uniform((margin, margin), (width - margin, height - margin))
    angle = rng.uniform(0.0, np.pi)
    if kind == "ellipse":
        ratio = rng.uniform(0.55, 1.0)
        corners = _ellipse_outline(centre, radius, radius * ratio, angle)
    elif kind == "rectangle":
        ratio = rng.uniform(0.5, 0.9)
        # Corners on the circle of the given radius: the diagonal is the extent.
        half_angle = np.arctan(ratio)
        offsets = np.array([half_angle, np.pi - half_angle, np.pi + half_angle, -half_angle]) + angle
        corners = centre + radius * np.stack([np.cos(offsets), np.sin(offsets)], axis=1)
    elif kind == "triangle":
        offsets = angle + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.25, 0.25, 3)
        corners = centre + radius * rng.uniform(0.85, 1.0, (3, 1)) * np.stack(
            [np.cos(offsets), np.sin(offsets)], axis=1
        )
    else:
        raise ValueError(f"Unknown shape kind {kind!r}; choose one of {', '.join(KINDS)}.")
    canvas = np.zeros((height, width), dtype=np.uint8)
    # fillPoly takes fixed-point coordinates: 4 fractional bits keep sub-pixel corners.
    cv2.fillPoly(canvas, [np.round(corners * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _ellipse_outline(centre: np.ndarray, a: float, b: float, angle: float, points: int = 64) -> np.ndarray:
    """``points x 2`` XY points on an ellipse of semi-axes ``a``, ``b`` turned by ``angle``."""
    t = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    cos, sin = np.cos(angle), np.sin(angle)
    return centre + np.stack([x * cos - y * sin, x * sin + y * cos], axis=1)
