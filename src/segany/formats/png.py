"""A folder of PNG masks plus ``metadata.csv``, as the official ``scripts/amg.py`` writes them.

For each image, ``OUT/<stem>/`` holds ``0.png``, ``1.png``, ... (``H x W`` uint8, 0 or 255) and
``metadata.csv`` with the header below; row ``i`` describes ``i.png``. ``bbox`` and ``crop_box`` are
``x0, y0, w, h`` and the point ``x, y``, in pixels of the full image. ``metadata.csv`` is written last
(after any old one is removed), so its presence means the folder is complete.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segany.formats.base import (
    MaskWriter,
    Record,
    atomic_write_bytes,
    atomic_write_text,
    check_records,
    output_stem,
    plain,
    to_mask,
)

METADATA_FILE = "metadata.csv"
HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,stability_score,"
    "crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)


def _metadata_row(i: int, record: Record) -> str:
    values = [
        i,
        record["area"],
        *record["bbox"],
        *record["point_coords"][0],
        record["predicted_iou"],
        record["stability_score"],
        *record["crop_box"],
    ]
    # str() of a Python float is its shortest exact repr, so reading the CSV gives the same numbers back.
    return ",".join(str(plain(v)) for v in values)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


class PngWriter(MaskWriter):
    """Writes ``OUT/<stem>/{i}.png`` and ``OUT/<stem>/metadata.csv`` (the done path) per image."""

    name = "png"

    def done_path(self, out_dir: Path, image_name: str) -> Path:
        return output_stem(out_dir, image_name) / METADATA_FILE

    def write(
        self, out_dir: Path, image_name: str, image_id: int, height: int, width: int, records: list[Record]
    ) -> None:
        check_records(records)
        folder = output_stem(out_dir, image_name)
        # An old metadata.csv would mark the folder done while its masks are being replaced.
        (folder / METADATA_FILE).unlink(missing_ok=True)
        for i, record in enumerate(records):
            mask = to_mask(record["segmentation"], height, width)
            ok, encoded = cv2.imencode(".png", mask.astype(np.uint8) * 255)
            if not ok:
                raise ValueError(f"OpenCV could not encode mask {i} of {image_name!r} as PNG.")
            atomic_write_bytes(folder / f"{i}.png", encoded.tobytes())
        # Masks left over from an earlier run with more masks would be read as this run's.
        stale = len(records)
        while (folder / f"{stale}.png").exists():
            (folder / f"{stale}.png").unlink()
            stale += 1
        rows = [HEADER, *(_metadata_row(i, r) for i, r in enumerate(records))]
        atomic_write_text(folder / METADATA_FILE, "\n".join(rows))


def read_png_folder(folder: Path) -> list[dict[str, Any]]:
    """Read ``OUT/<stem>/`` -> records with ``segmentation`` as an ``H x W`` bool mask, in ``metadata.csv`` order."""
    folder = Path(folder)
    with open(folder / METADATA_FILE, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    records = []
    for row in rows:
        values = {key: _number(text) for key, text in row.items()}
        # np.fromfile + imdecode also reads paths that cv2.imread cannot (non-ASCII on Windows).
        png = np.fromfile(folder / f"{values['id']}.png", dtype=np.uint8)
        mask = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ValueError(
                f"{folder / str(values['id'])}.png is not a readable PNG; rewrite this image's masks."
            )
        records.append(
            {
                "segmentation": mask > 0,
                "area": values["area"],
                "bbox": [values["bbox_x0"], values["bbox_y0"], values["bbox_w"], values["bbox_h"]],
                "predicted_iou": values["predicted_iou"],
                "point_coords": [[values["point_input_x"], values["point_input_y"]]],
                "stability_score": values["stability_score"],
                "crop_box": [
                    values["crop_box_x0"],
                    values["crop_box_y0"],
                    values["crop_box_w"],
                    values["crop_box_h"],
                ],
            }
        )
    return records
