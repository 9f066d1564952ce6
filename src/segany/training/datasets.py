"""Datasets of scenes for training and evaluation: COCO instances, SA-1B folders, synthetic scenes, mixtures.

Every dataset here is a finite ``Sequence`` of :class:`~segany.training.synthetic.Scene` (``H x W x 3``
uint8 RGB image, ``N x H x W`` bool instance masks): item ``i`` is always the same scene, files are read
only when an item is asked for, and slicing gives a lazy view. Masks from real annotations may overlap
(COCO and SA-1B annotate wholes and their parts), unlike those of synthetic scenes.

``open_dataset`` turns the one-string specs the CLI takes (a path or ``synthetic:...``) into a dataset.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Any, Protocol, overload

import numpy as np
from pycocotools import mask as mask_utils

from segany.errors import DatasetError, ImageError
from segany.formats import rle as rle_utils
from segany.formats.coco import read_coco
from segany.formats.sa1b import read_sa1b
from segany.images import load_image
from segany.training.synthetic import Scene, SceneConfig, SyntheticScenes

# How many items an endless source (no ``len``) offers a random draw; also a Mixture's default length.
ENDLESS = 2**31 - 1

# Each sampler seeds its generators with (seed, index, stream), so a sampler and a synthetic source given
# the same seed (which seeds with (seed, index)) still draw independent numbers.
MIXTURE_STREAM = 1

_SPEC_HELP = (
    "give a COCO instances JSON, a COCO image folder (with ../annotations/instances_<folder>.json), "
    "an SA-1B folder, synthetic:seed=0,count=100,size=256 or text_scenes:seed=0,count=100,size=256"
)


class SceneSource(Protocol):
    """Anything that gives a scene per integer index: a dataset, a list of scenes, ``SyntheticScenes``."""

    def __getitem__(self, index: int, /) -> Scene: ...


class SceneDataset(Sequence[Scene], ABC):
    """A finite dataset of scenes: ``dataset[i]`` is always the same scene, ``dataset[a:b]`` a lazy view."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _load(self, index: int) -> Scene:
        """The scene at ``0 <= index < len(self)``."""

    def name(self, index: int) -> str:
        """A short label of item ``index`` for reports: the image file name where there is one."""
        return str(self._position(index))

    @overload
    def __getitem__(self, index: int) -> Scene: ...

    @overload
    def __getitem__(self, index: slice) -> SceneDataset: ...

    def __getitem__(self, index: int | slice) -> Scene | SceneDataset:
        if isinstance(index, slice):
            return Subset(self, range(len(self))[index])
        return self._load(self._position(index))

    def _position(self, index: int) -> int:
        """``index`` as a position in ``[0, len)``; negative indices count from the end."""
        index, length = operator.index(index), len(self)
        if not -length <= index < length:
            raise IndexError(f"index {index} is out of range for a dataset of {length} items.")
        return index % length


class Subset(SceneDataset):
    """The items ``indices`` of ``dataset``, in that order (what slicing a dataset gives)."""

    def __init__(self, dataset: SceneDataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, index: int) -> Scene:
        return self.dataset[self.indices[index]]

    def name(self, index: int) -> str:
        return self.dataset.name(self.indices[self._position(index)])


class CocoInstances(SceneDataset):
    """COCO instances: one item per image with at least one non-crowd annotation, in file order.

    Masks come from polygons (one or several parts per object) and RLEs (compressed or uncompressed
    counts), in annotation order; crowd annotations (``iscrowd=1``) and empty masks (degenerate polygons)
    are left out.

    Args:
        annotations: the instances JSON, e.g. ``annotations/instances_val2017.json``.
        images: the folder the images' ``file_name`` is relative to, e.g. ``val2017``.
    """

    def __init__(self, annotations: Path, images: Path) -> None:
        self.annotations = Path(annotations)
        self.images = Path(images)
        if not self.annotations.is_file():
            raise DatasetError(f"COCO annotations {self.annotations} not found; check the path.")
        if not self.images.is_dir():
            raise DatasetError(f"COCO image folder {self.images} not found; check the path.")
        try:
            pairs = read_coco(self.annotations)
            self._items = [
                (image, kept) for image, anns in pairs if (kept := [a for a in anns if not a.get("iscrowd")])
            ]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DatasetError(
                f"Cannot read {self.annotations} as a COCO instances JSON ({type(exc).__name__}: {exc}); "
                'give a file with "images" and "annotations" lists.'
            ) from exc
        unmasked = next((a for _, anns in self._items for a in anns if "segmentation" not in a), None)
        if unmasked is not None:
            raise DatasetError(
                f"Annotation {unmasked.get('id')} in {self.annotations} has no segmentation; "
                "give an instances JSON (not captions)."
            )

    def __len__(self) -> int:
        return len(self._items)

    def name(self, index: int) -> str:
        return str(self._items[self._position(index)][0].get("file_name", index))

    def _load(self, index: int) -> Scene:
        info, anns = self._items[index]
        if "file_name" not in info:
            raise DatasetError(f"Image id {info.get('id')} in {self.annotations} has no file_name.")
        path = self.images / info["file_name"]
        image = _read_image(path)
        height, width = image.shape[:2]
        expected = (info.get("height", height), info.get("width", width))
        if expected != (height, width):
            raise DatasetError(
                f"Image {path} is {width} x {height} pixels but {self.annotations} gives "
                f"{expected[1]} x {expected[0]}; use the images these annotations were made on."
            )
        masks = [
            _annotation_mask(
                a["segmentation"], height, width, f"annotation {a.get('id')} in {self.annotations}"
            )
            for a in anns
        ]
        return _scene(image, masks)


class Sa1bFolder(SceneDataset):
    """An SA-1B folder: one item per ``<stem>.json`` (the per-image schema of ``segany.formats.sa1b``).

    The image of ``<stem>.json`` is its ``image.file_name`` relative to the folder if that file exists,
    else ``<stem>.jpg``. Files are sorted by name and each JSON is read only when its item is asked for.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DatasetError(f"SA-1B folder {self.folder} not found; check the path.")
        self._files = sorted(self.folder.glob("*.json"))
        if not self._files:
            raise DatasetError(
                f"SA-1B folder {self.folder} holds no .json files; give one of <stem>.json + image pairs."
            )

    def __len__(self) -> int:
        return len(self._files)

    def name(self, index: int) -> str:
        path = self._files[self._position(index)]
        info, _ = _read_sa1b_file(path)
        return str(info.get("file_name") or path.with_suffix(".jpg").name)

    def _load(self, index: int) -> Scene:
        path = self._files[index]
        info, anns = _read_sa1b_file(path)
        image_path = _sa1b_image(self.folder, path, info)
        image = _read_image(image_path)
        height, width = image.shape[:2]
        masks = [
            _annotation_mask(a.get("segmentation"), height, width, f"annotation {a.get('id')} in {path}")
            for a in anns
        ]
        return _scene(image, masks)


def check_generated(kind: str, seed: int, length: int, height: int, width: int, min_side: int) -> None:
    """One-sentence :class:`DatasetError` for bad arguments of a generated (seeded) dataset."""
    if seed < 0:
        raise DatasetError(f"A {kind} dataset's seed must be 0 or more, got {seed}.")
    if length < 1:
        raise DatasetError(f"A {kind} dataset needs at least 1 scene, got count {length}.")
    if height < min_side or width < min_side:
        raise DatasetError(
            f"A {kind} dataset needs scenes of at least {min_side} x {min_side} pixels, got {height} x {width}."
        )


class SyntheticDataset(SceneDataset):
    """The first ``length`` scenes of ``SyntheticScenes(seed, height, width, config)``: a finite view of
    an endless family, so that it can be evaluated and mixed."""

    def __init__(
        self,
        seed: int,
        height: int = 256,
        width: int = 256,
        length: int = 1000,
        config: SceneConfig | None = None,
    ) -> None:
        check_generated("synthetic", seed, length, height, width, min_side=16)
        self.scenes = SyntheticScenes(seed, height, width, config)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def name(self, index: int) -> str:
        return f"synthetic-{self.scenes.seed}-{self._position(index)}"

    def _load(self, index: int) -> Scene:
        return self.scenes[index]


class Mixture(SceneDataset):
    """Scenes drawn from several sources at given rates.

    Item ``i`` picks source ``k`` with probability ``weights[k] / sum(weights)``, then one of its items
    uniformly, both with a generator seeded by ``(seed, i)``: a pure function of ``(seed, i)``. A mixture
    is a sampler, not a concatenation: items repeat, and its length is just how many draws it offers,
    ``length`` (default ``ENDLESS``, 2**31 - 1: a training loop takes as many as it needs). Give a length
    for a finite mixture, e.g. a fixed evaluation set. Sources without a ``len`` (``SyntheticScenes``,
    ``CopyPaste``) are endless; their items are drawn from their first ``ENDLESS`` indices.
    """

    def __init__(
        self, datasets: Sequence[SceneSource], weights: Sequence[float], seed: int, length: int = ENDLESS
    ) -> None:
        if len(datasets) == 0:
            raise DatasetError("A mixture needs at least one dataset.")
        if len(weights) != len(datasets):
            raise DatasetError(
                f"A mixture of {len(datasets)} datasets got {len(weights)} weights; give one per dataset."
            )
        rates = np.asarray(weights, dtype=np.float64)
        if not (np.isfinite(rates).all() and (rates > 0).all()):
            raise DatasetError(f"Mixture weights must be positive numbers, got {list(weights)}.")
        for k, dataset in enumerate(datasets):
            if isinstance(dataset, Sized) and len(dataset) == 0:
                raise DatasetError(f"Dataset {k} of the mixture is empty; remove it or give it items.")
        if seed < 0 or length < 1:
            raise DatasetError(
                f"A mixture needs a seed of 0 or more and a length of 1 or more, got {seed} and {length}."
            )
        self.datasets = list(datasets)
        self.probabilities = rates / rates.sum()
        self.seed = seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def name(self, index: int) -> str:
        k, j = self._draw(self._position(index))
        dataset = self.datasets[k]
        return f"{k}:{dataset.name(j) if isinstance(dataset, SceneDataset) else j}"

    def _load(self, index: int) -> Scene:
        k, j = self._draw(index)
        return self.datasets[k][j]

    def _draw(self, index: int) -> tuple[int, int]:
        """(source, item in it) of mixture item ``index``."""
        rng = np.random.default_rng([self.seed, index, MIXTURE_STREAM])
        k = int(rng.choice(len(self.datasets), p=self.probabilities))
        return k, random_index(rng, self.datasets[k])


class RandomViews(ABC):
    """Endless augmented views of random scenes of ``source``: ``views[i]`` is :meth:`view` of a scene
    drawn with a generator seeded by ``(seed, i, stream)``, so every view is reproducible and views can
    be drawn in any order or in parallel. Subclasses set ``stream`` (their own random numbers even on
    the same seed as others) and ``name`` (for errors), and give :meth:`view`.

    ``flip``: the probability that the scene is mirrored left to right (image and masks) before its
    view is taken. At 0 no number is drawn for it, so views stay those of the same seed without it.
    """

    stream: int
    name: str

    def __init__(self, source: SceneSource, seed: int = 0, flip: float = 0.0) -> None:
        if isinstance(source, Sized) and len(source) == 0:
            raise DatasetError(f"{self.name}: the dataset is empty; give one with at least one scene.")
        if not 0.0 <= flip <= 1.0:
            raise DatasetError(f"{self.name}: flip is a probability and must lie in [0, 1], got {flip}.")
        self.source = source
        self.seed = seed
        self.flip = flip

    def __getitem__(self, index: int) -> Scene:
        index = operator.index(index)
        rng = np.random.default_rng([self.seed, index, self.stream])
        scene = self.source[random_index(rng, self.source)]
        if self.flip > 0 and rng.random() < self.flip:
            scene = mirrored(scene)
        return self.view(scene, rng)

    @abstractmethod
    def view(self, scene: Scene, rng: np.random.Generator) -> Scene:
        """One view of ``scene``, drawn with ``rng``."""


def mirrored(scene: Scene) -> Scene:
    """``scene`` mirrored left to right: column ``x`` of its image and masks moves to ``W - 1 - x`` (other
    fields, such as a labelled scene's names, are kept)."""
    image, masks = scene.image[:, ::-1], scene.masks[:, :, ::-1]
    return dataclasses.replace(scene, image=np.ascontiguousarray(image), masks=np.ascontiguousarray(masks))


def random_index(rng: np.random.Generator, source: SceneSource) -> int:
    """An index into ``source`` drawn uniformly with ``rng`` (below ``ENDLESS`` if it has no ``len``)."""
    count = len(source) if isinstance(source, Sized) else ENDLESS
    return int(rng.integers(count))


def open_dataset(spec: str) -> SceneDataset:
    """The dataset a CLI spec names.

    Specs:
        * a COCO instances JSON: images in ``<root>/<split>`` when the JSON is
          ``<root>/annotations/instances_<split>.json`` and that folder exists, else in the JSON's folder;
        * a COCO image folder ``<root>/<split>`` with ``<root>/annotations/instances_<split>.json``;
        * an SA-1B folder: ``<stem>.json`` files (``{"image": ..., "annotations": [...]}``) with their images;
        * ``synthetic:seed=1,count=50,size=256`` (``height=``/``width=`` instead of ``size=``; each optional,
          defaults seed 0, count 1000, size 256);
        * ``text_scenes:seed=1,count=50,size=256``: the same options, labelled scenes of named shapes
          (:class:`segany.training.text_scenes.TextScenes`, for the text-prompt demonstration).

    Raises:
        DatasetError: the spec names nothing usable, or a file it names is missing or unreadable.
    """
    text = spec.strip()
    if text == "synthetic" or text.startswith("synthetic:"):
        return _open_synthetic(text.partition(":")[2])
    if text == "text_scenes" or text.startswith("text_scenes:"):
        return _open_text_scenes(text.partition(":")[2])
    path = Path(text).expanduser()
    if not path.exists():
        raise DatasetError(f"Dataset {spec!r} not found; {_SPEC_HELP}.")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise DatasetError(f"Dataset file {path} is not a JSON file; {_SPEC_HELP}.")
        return CocoInstances(path, _coco_images(path))
    annotations = path.parent / "annotations" / f"instances_{path.name}.json"
    if annotations.is_file():
        return CocoInstances(annotations, path)
    if _is_sa1b_folder(path):
        return Sa1bFolder(path)
    raise DatasetError(
        f"Folder {path} is neither COCO images (no {annotations}) nor an SA-1B folder (no <stem>.json with "
        f"its image beside it); {_SPEC_HELP}."
    )


# --- Helpers ----------------------------------------------------------------------------------------


def _read_image(path: Path) -> np.ndarray:
    """``H x W x 3`` uint8 RGB; a missing or broken file is a DatasetError that names it."""
    try:
        return load_image(path)
    except ImageError as exc:
        raise DatasetError(str(exc)) from exc


def _annotation_mask(segmentation: Any, height: int, width: int, source: str) -> np.ndarray:
    """``H x W`` bool mask of a COCO or SA-1B ``segmentation``: polygons or an RLE of the image's size."""
    try:
        if isinstance(segmentation, list):
            # pycocotools reads a 4-number list as a box; parts of under 3 points enclose nothing anyway.
            parts = [[float(v) for v in part] for part in segmentation if len(part) >= 6]
            if not parts:
                return np.zeros((height, width), dtype=bool)
            merged = mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
            return mask_utils.decode(merged).astype(bool)
        if isinstance(segmentation, dict):
            size = [int(s) for s in segmentation["size"]]
            if size != [height, width]:
                raise DatasetError(
                    f"The mask of {source} is {size[1]} x {size[0]} pixels, its image {width} x {height}."
                )
            return rle_utils.decode(segmentation)
    except DatasetError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"Cannot decode the mask of {source} ({type(exc).__name__}: {exc}).") from exc
    raise DatasetError(f"The segmentation of {source} is neither a list of polygons nor an RLE.")


def _scene(image: np.ndarray, masks: list[np.ndarray]) -> Scene:
    """A scene of ``image`` and the non-empty ``masks``, stacked ``N x H x W`` C-contiguous bool."""
    kept = [mask for mask in masks if mask.any()]
    stacked = np.stack(kept) if kept else np.zeros((0, *image.shape[:2]), dtype=bool)
    return Scene(image=image, masks=np.ascontiguousarray(stacked))


def _read_sa1b_file(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        info, anns = read_sa1b(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"Cannot read {path} as an SA-1B JSON ({type(exc).__name__}: {exc}); "
            'give files of the form {"image": {...}, "annotations": [...]}.'
        ) from exc
    if not (isinstance(info, dict) and isinstance(anns, list) and all(isinstance(a, dict) for a in anns)):
        raise DatasetError(
            f'{path} is not an SA-1B JSON: "image" must be an object and "annotations" a list of objects.'
        )
    return info, anns


def _sa1b_image(folder: Path, path: Path, info: dict[str, Any]) -> Path:
    """The image of SA-1B file ``path``: ``info["file_name"]`` relative to ``folder`` if that exists, else
    ``<stem>.jpg``."""
    candidates = [folder / info["file_name"]] if info.get("file_name") else []
    candidates.append(path.with_suffix(".jpg"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DatasetError(f"No image for {path}: {' and '.join(map(str, candidates))} do not exist.")


def _is_sa1b_folder(folder: Path) -> bool:
    """True if the first ``*.json`` of ``folder`` is an SA-1B file whose image is there."""
    first = min(folder.glob("*.json"), default=None)
    if first is None:
        return False
    try:
        with open(first, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError):
        return False
    if not (
        isinstance(document, dict) and isinstance(document.get("image"), dict) and "annotations" in document
    ):
        return False
    try:
        _sa1b_image(folder, first, document["image"])
    except DatasetError:
        return False
    return True


def _coco_images(annotations: Path) -> Path:
    """``<root>/<split>`` for ``<root>/annotations/instances_<split>.json`` if that folder exists, else the
    JSON's folder."""
    match = re.fullmatch(r"instances_(.+)\.json", annotations.name)
    if match and annotations.parent.name == "annotations":
        split = annotations.parent.parent / match.group(1)
        if split.is_dir():
            return split
    return annotations.parent


_SYNTHETIC_KEYS = ("seed", "count", "size", "height", "width")


def _open_synthetic(options: str) -> SyntheticDataset:
    """A SyntheticDataset from ``seed=1,count=50,size=256`` (every key optional)."""
    values = _synthetic_options(options, "synthetic")
    return SyntheticDataset(
        seed=values["seed"], height=values["height"], width=values["width"], length=values["count"]
    )


def _open_text_scenes(options: str) -> SceneDataset:
    """Labelled scenes (``segany.training.text_scenes``) from the options a synthetic spec takes."""
    from .text_scenes import TextScenes  # it builds on this module

    values = _synthetic_options(options, "text_scenes")
    return TextScenes(
        seed=values["seed"], height=values["height"], width=values["width"], length=values["count"]
    )


def _synthetic_options(options: str, kind: str) -> dict[str, int]:
    """``seed``, ``count``, ``height`` and ``width`` from ``seed=1,count=50,size=256`` (each optional;
    defaults 0, 1000, 256, 256); ``kind`` names the spec in errors."""
    values: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or key not in _SYNTHETIC_KEYS or key in values:
            raise DatasetError(
                f"Bad {kind} dataset option {item!r}; give each of {', '.join(_SYNTHETIC_KEYS)} at most "
                f"once as key=integer, e.g. {kind}:seed=1,count=50,size=256."
            )
        try:
            values[key] = int(value)
        except ValueError:
            raise DatasetError(
                f"Option {key} of a {kind} dataset must be an integer, got {value!r}."
            ) from None
    if "size" in values and ("height" in values or "width" in values):
        raise DatasetError(f"Give a {kind} dataset either size= or height=/width=, not both.")
    size = values.get("size", 256)
    return {
        "seed": values.get("seed", 0),
        "count": values.get("count", 1000),
        "height": values.get("height", size),
        "width": values.get("width", size),
    }
