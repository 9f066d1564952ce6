"""Training views of the data engine's outputs, as :class:`~segany.training.datasets.SceneDataset`.

* :class:`AnnotationDb`: the accepted annotations of the annotation app's SQLite database (one item per
  image with at least one accepted mask; images read from the folder they were annotated in).
* :class:`LabelledFolder`: an output folder of ``segany engine label`` (one item per image whose manifest
  line says ``ok``; images read from the source recorded in the manifest, so the folder need not hold them).

Both name an item by its image's relative path, as the annotation app and the labeller do, so the same
image has the same name in either source (the held-out split relies on it), and both know each item's
mask count without decoding masks (``mask_counts``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError, ImageError
from ..formats import rle as rle_utils
from ..formats.sa1b import read_sa1b
from ..store.catalog import inside
from ..store.storage import Storage
from ..training.datasets import SceneDataset
from ..training.synthetic import Scene
from .outputs import LabelLog, json_path
from .sources import ImageItem, read_item


class AnnotationDb(SceneDataset):
    """Accepted annotations of the database ``path``, images from ``images_dir``; sorted by image path.

    Masks come in annotation-id order; images are read (EXIF orientation applied) only when asked for.
    """

    def __init__(self, path: Path, images_dir: Path) -> None:
        self.path = Path(path)
        self.images_dir = Path(images_dir)
        if not self.path.is_file():
            raise DatasetError(f"Annotation database {self.path} not found; check the path.")
        if not self.images_dir.is_dir():
            raise DatasetError(
                f"Images folder {self.images_dir} not found; give the folder {self.path} was annotated in."
            )
        self.storage = Storage(self.path)
        summaries = [s for s in self.storage.image_summaries() if s.accepted > 0]
        self._images = [s.image for s in summaries]
        self.mask_counts = [s.accepted for s in summaries]

    def __len__(self) -> int:
        return len(self._images)

    def name(self, index: int) -> str:
        return self._images[self._position(index)].path

    def _load(self, index: int) -> Scene:
        row = self._images[index]
        try:
            image = read_item(ImageItem(row.id, row.path, str(inside(self.images_dir, row.path))), None)
        except ImageError as exc:
            raise DatasetError(f"Image {row.path} of {self.path}: {exc}") from exc
        if image.shape[:2] != (row.height, row.width):
            raise DatasetError(
                f"Image {row.path} is {image.shape[1]} x {image.shape[0]} pixels but {self.path} says "
                f"{row.width} x {row.height}; give the images folder it was annotated in."
            )
        masks = [rle_utils.decode(a.mask) for a in self.storage.annotations(row.id, ("accepted",))]
        return _scene(image, masks)


class LabelledFolder(SceneDataset):
    """The images ``segany engine label`` labelled into ``folder``, with their automatic masks; by name."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        log = LabelLog(self.folder)
        if not log.manifest.exists():
            raise DatasetError(
                f"{self.folder} has no manifest; give an output folder of `segany engine label`."
            )
        entries = sorted((e for e in log.entries().values() if log.is_done(e)), key=lambda e: e["name"])
        self._items = [ImageItem(int(e["image_id"]), e["name"], e["source"]) for e in entries]
        self.mask_counts = [int(e.get("masks", 0)) for e in entries]

    def __len__(self) -> int:
        return len(self._items)

    def name(self, index: int) -> str:
        return self._items[self._position(index)].name

    def _load(self, index: int) -> Scene:
        item = self._items[index]
        try:
            image = read_item(item, None)
        except ImageError as exc:
            raise DatasetError(f"Image {item.name} labelled in {self.folder}: {exc}") from exc
        path = json_path(self.folder, item.name)
        info, annotations = read_sa1b(path)
        if (int(info["height"]), int(info["width"])) != image.shape[:2]:
            raise DatasetError(
                f"{item.source} is no longer the {info['width']} x {info['height']} image labelled in {path}; "
                "label it again."
            )
        return _scene(image, [rle_utils.decode(a["segmentation"]) for a in annotations])


def _scene(image: np.ndarray, masks: list[np.ndarray]) -> Scene:
    """``image`` with its non-empty masks stacked ``N x H x W`` bool."""
    kept = [mask for mask in masks if mask.any()]
    stacked = np.stack(kept) if kept else np.zeros((0, *image.shape[:2]), dtype=bool)
    return Scene(image=image, masks=np.ascontiguousarray(stacked))
