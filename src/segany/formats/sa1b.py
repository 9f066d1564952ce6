"""SA-1B per-image JSON: the schema of the Segment Anything 1-Billion masks dataset.

One file per image, ``OUT/<stem>.json``::

    {"image": {"image_id", "width", "height", "file_name"},
     "annotations": [{"id", "segmentation": {"size": [H, W], "counts": str}, "bbox", "area",
                      "predicted_iou", "point_coords", "stability_score", "crop_box"}]}

``segmentation`` is always a compressed COCO RLE; ``bbox`` and ``crop_box`` are ``[x, y, w, h]`` and
``point_coords`` is ``[[x, y]]``, all in pixels of the full image. Annotation ``id`` is the mask's index
within its image, so ``(image_id, id)`` is unique across a folder.
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
    plain,
    to_coco_rle,
)


def sa1b_annotation(record: Record, ann_id: int, height: int, width: int) -> dict[str, Any]:
    """One generator record -> one SA-1B annotation dict (segmentation as compressed COCO RLE)."""
    return {
        "id": ann_id,
        "segmentation": to_coco_rle(record["segmentation"], height, width),
        "bbox": plain(record["bbox"]),
        "area": plain(record["area"]),
        "predicted_iou": plain(record["predicted_iou"]),
        "point_coords": plain(record["point_coords"]),
        "stability_score": plain(record["stability_score"]),
        "crop_box": plain(record["crop_box"]),
        **({"label": str(record["label"])} if record.get("label") else {}),
    }


class Sa1bWriter(MaskWriter):
    """Writes ``OUT/<stem>.json`` per image in the SA-1B schema; that file is also the done path."""

    name = "sa1b"

    def done_path(self, out_dir: Path, image_name: str) -> Path:
        return output_stem(out_dir, image_name).with_suffix(".json")

    def write(
        self, out_dir: Path, image_name: str, image_id: int, height: int, width: int, records: list[Record]
    ) -> None:
        check_records(records)
        document = {
            "image": {
                "image_id": int(image_id),
                "width": int(width),
                "height": int(height),
                "file_name": Path(image_name).as_posix(),
            },
            "annotations": [sa1b_annotation(r, i, height, width) for i, r in enumerate(records)],
        }
        atomic_write_json(self.done_path(out_dir, image_name), document)


def read_sa1b(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read one SA-1B JSON file -> (image info, annotations); segmentations stay compressed RLEs."""
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    return document["image"], document["annotations"]
