"""COCO instances JSON for a whole folder: one category per label of the records (their optional
``"label"``, e.g. an annotator's), "object" for records without one (the automatic generator's).

Layout of ``OUT/instances.json``::

    {"info": {...},
     "images": [{"id", "file_name", "width", "height"}],
     "annotations": [{"id", "image_id", "category_id": 1, "segmentation": {"size": [H, W], "counts": str},
                      "area", "bbox", "iscrowd": 0, "score", "predicted_iou", "stability_score",
                      "point_coords", "crop_box"}],
     "categories": [{"id": 1, "name": "object"}, ...]}  # ids 1, 2, ... in order of first use

``bbox`` and ``crop_box`` are ``[x, y, w, h]`` and ``point_coords`` ``[[x, y]]``, in pixels; ``score`` is
the predicted IoU, so the file also serves as detection results for COCOeval.

To resume, ``write`` stores one part per image (``OUT/.coco_parts/<stem>.json``, the done path) and
``finish`` assembles ``instances.json`` from every part there, ordered by image id, numbering the
annotations 1, 2, ... across the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segany.formats.base import (
    MaskWriter,
    Record,
    atomic_write_json,
    check_records,
    output_stem,
)
from segany.formats.sa1b import sa1b_annotation
from segany.version import __version__

PARTS_DIR = ".coco_parts"
INSTANCES_FILE = "instances.json"
CATEGORY = {"id": 1, "name": "object"}


def coco_annotation(record: Record, image_id: int, height: int, width: int) -> dict[str, Any]:
    """One generator record -> one COCO annotation without its ``id`` (assigned when the folder is assembled):
    the SA-1B fields plus COCO's ``image_id``, ``category_id``, ``iscrowd`` and ``score``."""
    annotation = sa1b_annotation(record, 0, height, width)
    del annotation["id"]
    label = annotation.pop("label", "")
    annotation.update(
        image_id=int(image_id),
        category_id=CATEGORY["id"],
        iscrowd=0,
        score=annotation["predicted_iou"],
        category_name=label or CATEGORY["name"],  # numbered across the folder by finish()
    )
    return annotation


class CocoWriter(MaskWriter):
    """Writes a per-image part on ``write`` and ``OUT/instances.json`` for the folder on ``finish``."""

    name = "coco"

    def done_path(self, out_dir: Path, image_name: str) -> Path:
        return output_stem(Path(out_dir) / PARTS_DIR, image_name).with_suffix(".json")

    def write(
        self, out_dir: Path, image_name: str, image_id: int, height: int, width: int, records: list[Record]
    ) -> None:
        check_records(records)
        part = {
            "image": {
                "id": int(image_id),
                "file_name": Path(image_name).as_posix(),
                "width": int(width),
                "height": int(height),
            },
            "annotations": [coco_annotation(r, image_id, height, width) for r in records],
        }
        atomic_write_json(self.done_path(out_dir, image_name), part)

    def finish(self, out_dir: Path) -> None:
        parts = []
        for path in sorted((Path(out_dir) / PARTS_DIR).rglob("*.json")):
            with open(path, encoding="utf-8") as f:
                parts.append(json.load(f))
        parts.sort(key=lambda part: (part["image"]["id"], part["image"]["file_name"]))
        seen: dict[int, str] = {}
        for part in parts:
            image = part["image"]
            if image["id"] in seen:
                raise ValueError(
                    f"images {seen[image['id']]!r} and {image['file_name']!r} share image id {image['id']}; "
                    f"give each image its own id or clear {Path(out_dir) / PARTS_DIR} before rerunning."
                )
            seen[image["id"]] = image["file_name"]

        annotations = []
        categories: dict[str, int] = {}
        for part in parts:
            for ann in part["annotations"]:
                name = ann.pop("category_name", CATEGORY["name"])
                category_id = categories.setdefault(name, len(categories) + 1)
                annotations.append({"id": len(annotations) + 1, **ann, "category_id": category_id})
        document = {
            "info": {"description": "Masks from segany's automatic mask generator", "version": __version__},
            "images": [part["image"] for part in parts],
            "annotations": annotations,
            "categories": [{"id": i, "name": name} for name, i in categories.items()] or [dict(CATEGORY)],
        }
        atomic_write_json(Path(out_dir) / INSTANCES_FILE, document)


def read_coco(path: Path) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Read a COCO instances JSON -> one (image info, annotations) pair per image, in file order."""
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    by_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in document["images"]}
    for ann in document.get("annotations", []):
        by_image.setdefault(ann["image_id"], []).append(ann)
    return [(image, by_image[image["id"]]) for image in document["images"]]
