"""Moving annotations in and out of the database: exports with :mod:`segany.formats` writers, imports of
SA-1B and COCO files as proposals.

Export: every image with at least one ``accepted`` annotation is written with the writer of the chosen
format (the same files ``segany auto`` writes), its masks in annotation-id order. A human-accepted mask
has ``predicted_iou`` and ``stability_score`` 1.0, ``crop_box`` the whole image and ``point_coords`` the
mask pixel farthest from its edge. Labels: COCO makes them its categories; SA-1B keeps each in its
annotation's ``"label"`` (the folder holds SA-1B files only); PNG and YOLO, which cannot carry them, get
``OUT/labels.json``: ``{"<image path>": ["label of mask 0", ...]}`` in the order the masks were written.

Import: an SA-1B per-image JSON or a COCO instances JSON; each image is matched by ``file_name``
(relative to the images folder, written any way that stays inside it: ``./a.jpg``, ``sub/../a.jpg`` and
the absolute path name one image; registered when the file is there but not yet in the database) and its
masks are stored as ``proposed`` annotations with source ``import`` and the label of the file (COCO's
category name, SA-1B's ``"label"``). An import is all or nothing: every file is read and checked first,
then everything is stored in one transaction. Importing the same file twice stores its masks twice.
"""

from __future__ import annotations

import json
import posixpath
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import ImageError, SegAnyError
from ..formats import get_writer, read_coco, read_sa1b
from ..formats import rle as rle_utils
from ..formats.base import atomic_write_json
from ..store.catalog import image_size, inside
from ..store.storage import AnnotationRow, ImageRow, NewAnnotation, Storage
from .mask_checks import MaskError, bbox_xywh, checked_rle, interior_point

LABELS_FILE = "labels.json"
FORMATS_WITHOUT_LABELS = ("png", "yolo")  # these get LABELS_FILE


@dataclass
class ExportSummary:
    """What an export wrote: images, masks, and images copied next to them (with ``images_dir``)."""

    images: int = 0
    masks: int = 0
    copied: int = 0


@dataclass
class ImportSummary:
    """What an import stored, and one sentence per image or mask it skipped."""

    images: int = 0
    annotations: int = 0
    skipped: list[str] = field(default_factory=list)


def export_record(annotation: AnnotationRow, image: ImageRow) -> dict[str, Any]:
    """An accepted annotation as a mask record in the automatic generator's form (see module docstring)."""
    return {
        "segmentation": annotation.mask,
        "area": annotation.area,
        "bbox": annotation.bbox,
        "predicted_iou": 1.0,
        "point_coords": [interior_point(rle_utils.decode(annotation.mask))],
        "stability_score": 1.0,
        "crop_box": [0, 0, image.width, image.height],
        "label": annotation.label,
    }


def export_annotations(
    storage: Storage, out_dir: Path, format: str, images_dir: Path | None = None
) -> ExportSummary:
    """Write all accepted annotations under ``out_dir`` in ``format`` (``sa1b``, ``coco``, ``png``,
    ``yolo``), plus ``labels.json``; with ``images_dir``, also copy each image to ``out_dir/images/``."""
    writer = get_writer(format)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary()
    labels: dict[str, list[str]] = {}
    for image, accepted in storage.accepted():
        records = [export_record(a, image) for a in accepted]
        writer.write(out_dir, image.path, image.id, image.height, image.width, records)
        labels[image.path] = [a.label for a in accepted]
        summary.images += 1
        summary.masks += len(records)
        if images_dir is not None:
            source = inside(images_dir, image.path)
            if not source.is_file():
                raise ImageError(
                    f"Image {image.path} is not in {images_dir}; give the folder it was annotated in."
                )
            target = out_dir / "images" / image.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            summary.copied += 1
    writer.finish(out_dir)
    if format in FORMATS_WITHOUT_LABELS:
        atomic_write_json(out_dir / LABELS_FILE, labels)
    return summary


def import_files(storage: Storage, images_dir: Path, files: Iterable[Path]) -> ImportSummary:
    """Store the masks of SA-1B or COCO files as proposals, all or nothing (see module docstring)."""
    summary = ImportSummary()
    pending: dict[str, tuple[int, int, list[NewAnnotation]]] = {}  # canonical path -> width, height, masks
    for path in files:
        for info, found, categories in _read(Path(path)):
            image = _find_image(storage, images_dir, str(info.get("file_name", "")), summary)
            if image is None:
                continue
            name, width, height = image
            new = pending.setdefault(name, (width, height, []))[2]
            for i, ann in enumerate(found):
                try:
                    mask = _segmentation(ann.get("segmentation"), height, width)
                except (MaskError, KeyError, TypeError, ValueError) as exc:
                    summary.skipped.append(f"{path}: mask {i} of {name}: {exc}")
                    continue
                label = categories.get(ann.get("category_id"), "") if categories else ann.get("label", "")
                new.append(
                    NewAnnotation(
                        mask=mask,
                        area=rle_utils.area(mask),
                        bbox=bbox_xywh(mask),
                        label=str(label or "")[:200],
                        prompts=None,
                        source="import",
                        status="proposed",
                    )
                )
    summary.annotations = storage.import_annotations(
        (name, width, height, masks) for name, (width, height, masks) in pending.items()
    )
    summary.images = len(pending)
    return summary


def _read(path: Path) -> list[tuple[dict[str, Any], list[dict[str, Any]], dict[Any, str]]]:
    """``(image info, annotations, {category id: name})`` per image of an SA-1B or COCO file."""
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError) as exc:
        raise SegAnyError(
            f"Cannot read {path} as JSON ({exc}); give SA-1B or COCO annotation files."
        ) from exc
    if isinstance(document, dict) and isinstance(document.get("images"), list):
        categories = {c.get("id"): str(c.get("name", "")) for c in document.get("categories", [])}
        return [(info, anns, categories) for info, anns in read_coco(path)]
    if isinstance(document, dict) and isinstance(document.get("image"), dict):
        info, anns = read_sa1b(path)
        return [(info, anns, {})]
    raise SegAnyError(
        f"{path} is neither an SA-1B file (with 'image' and 'annotations') nor a COCO file (with 'images')."
    )


def _find_image(
    storage: Storage, images_dir: Path, name: str, summary: ImportSummary
) -> tuple[str, int, int] | None:
    """``(canonical path, width, height)`` of the image a file names, registered or with its file in
    ``images_dir``; None (with a sentence in ``summary.skipped``) if neither."""
    try:
        canonical = canonical_name(images_dir, name)
    except ImageError as exc:
        summary.skipped.append(f"image {name!r}: {exc}")
        return None
    image = storage.image_by_path(canonical)
    if image is not None:
        return image.path, image.width, image.height
    try:
        path = inside(images_dir, canonical)
        if not path.is_file():
            raise ImageError(f"no file {canonical!r} in {images_dir}")
        height, width = image_size(path)
    except ImageError as exc:
        summary.skipped.append(f"image {name!r}: {exc}")
        return None
    return canonical, width, height


def canonical_name(images_dir: Path, name: str) -> str:
    """The one relative POSIX path (as the app registers images) that ``name`` means: ``./a.jpg``,
    ``sub/../a.jpg``, ``sub\\a.jpg`` and the absolute path of a file in ``images_dir`` all name one image.

    Raises :class:`ImageError` for an empty name or one that leads outside ``images_dir``.
    """
    text = name.replace("\\", "/").strip()
    if not text:
        raise ImageError("the file names no image (empty file_name)")
    if posixpath.isabs(text):
        base = Path(images_dir).resolve().as_posix()
        text = posixpath.normpath(text)
        if not text.startswith(base + "/"):
            raise ImageError(f"{name!r} is not in the images folder {images_dir}")
        text = text[len(base) + 1 :]
    text = posixpath.normpath(text)
    if text == "." or text == ".." or text.startswith("../"):
        raise ImageError(f"{name!r} leads outside the images folder")
    return text


def _segmentation(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A file's segmentation (RLE in either form, or COCO polygons) -> checked compressed RLE."""
    if isinstance(segmentation, dict):
        return checked_rle(segmentation, height, width)
    if isinstance(segmentation, list) and segmentation:
        polygons = [np.asarray(p, dtype=np.float64).tolist() for p in segmentation]
        if any(len(p) < 6 or len(p) % 2 for p in polygons):
            raise MaskError("a polygon needs at least 3 (x, y) points.")
        merged = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        return checked_rle(
            {"size": [height, width], "counts": merged["counts"].decode("ascii")}, height, width
        )
    raise MaskError("segmentation must be an RLE or a list of polygons.")
