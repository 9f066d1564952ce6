"""YOLO segmentation labels: one polygon per line, coordinates normalised by the image size.

``OUT/<stem>.txt`` holds lines ``CLASS x1 y1 x2 y2 ...`` where ``x = column / width`` and
``y = row / height`` (pixel indices of the mask's outline, so values lie in ``[0, 1)``); every mask is
class 0. Each external contour of a mask becomes one line, so a mask in several parts gives several
lines, and contours are simplified to within about 1 pixel.

The format is lossy: holes are filled, parts thinner than a polygon of 3 points are dropped, the
outline moves by up to a pixel, and the generator's scores are not kept. Read it back as masks with
``read_yolo``; use the SA-1B, COCO or PNG formats where masks must survive exactly.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segany.formats.base import MaskWriter, Record, atomic_write_text, check_records, output_stem, to_mask

CLASS_ID = 0
# Tolerance of the polygon simplification, in pixels: removes staircase points, keeps the shape.
SIMPLIFY_EPSILON_PX = 1.0


def mask_to_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """``H x W`` bool mask -> list of ``K x 2`` int arrays of ``(x, y)`` pixel indices, one per outer contour."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polygons = []
    for contour in contours:
        simplified = cv2.approxPolyDP(contour, SIMPLIFY_EPSILON_PX, True).reshape(-1, 2)
        if len(simplified) >= 3:
            polygons.append(simplified)
    return polygons


class YoloWriter(MaskWriter):
    """Writes ``OUT/<stem>.txt`` (the done path) per image; an image without masks gets an empty file."""

    name = "yolo"

    def done_path(self, out_dir: Path, image_name: str) -> Path:
        return output_stem(out_dir, image_name).with_suffix(".txt")

    def write(
        self, out_dir: Path, image_name: str, image_id: int, height: int, width: int, records: list[Record]
    ) -> None:
        check_records(records)
        scale = np.array([width, height], dtype=np.float64)
        lines = []
        for record in records:
            for polygon in mask_to_polygons(to_mask(record["segmentation"], height, width)):
                coords = " ".join(f"{v:.6f}" for v in (polygon / scale).ravel())
                lines.append(f"{CLASS_ID} {coords}")
        atomic_write_text(self.done_path(out_dir, image_name), "".join(f"{line}\n" for line in lines))


def read_yolo(path: Path, height: int, width: int) -> list[np.ndarray]:
    """Read a YOLO segmentation label file -> one ``height x width`` bool mask per line (polygon filled)."""
    masks = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            values = line.split()
            if not values:
                continue
            coords = np.array(values[1:], dtype=np.float64)
            if len(coords) < 6 or len(coords) % 2:
                raise ValueError(
                    f"line {line_no} of {path} is not 'CLASS x1 y1 x2 y2 x3 y3 ...' with at least 3 points."
                )
            points = np.rint(coords.reshape(-1, 2) * [width, height]).astype(np.int32)
            canvas = np.zeros((height, width), dtype=np.uint8)
            cv2.fillPoly(canvas, [points], 1)
            masks.append(canvas > 0)
    return masks
