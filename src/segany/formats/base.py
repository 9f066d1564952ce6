"""The interface every mask writer shares, and the small helpers they all need.

A *record* is one mask as the automatic mask generator returns it: a dict with ``segmentation`` (an
``H x W`` bool array, an uncompressed RLE or a compressed COCO RLE), ``area`` (int), ``bbox``
(``[x, y, w, h]`` in pixels), ``predicted_iou``, ``point_coords`` (``[[x, y]]`` in pixels),
``stability_score`` and ``crop_box`` (``[x, y, w, h]`` in pixels).

Writers are resumable: each image has a *done path* that exists only once everything for that image
is on disk, and every file is written atomically (a temporary file in the same folder, then
``os.replace``), so a killed run never leaves a partial file that looks finished.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from segany.files import atomic_write
from segany.formats import rle as rle_utils

Record = dict[str, Any]

# Keys every record must carry besides ``segmentation``.
RECORD_FIELDS = ("area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box")


class MaskWriter(ABC):
    """Writes the masks of one image at a time under an output folder, then finishes the folder."""

    name: ClassVar[str]

    @abstractmethod
    def done_path(self, out_dir: Path, image_name: str) -> Path:
        """The file whose existence means ``image_name`` is fully written (used to resume a run)."""

    @abstractmethod
    def write(
        self, out_dir: Path, image_name: str, image_id: int, height: int, width: int, records: list[Record]
    ) -> None:
        """Write the records of one ``height x width`` image; ``image_name`` is relative to the input."""

    def finish(self, out_dir: Path) -> None:
        """Called once after every image is written; a no-op unless the format has a folder-level file."""
        del out_dir


def output_stem(out_dir: Path, image_name: str) -> Path:
    """``out_dir`` joined with ``image_name`` less its suffix, keeping subfolders ("sub/dog.jpg" -> "sub/dog")."""
    relative = Path(image_name)
    if relative.is_absolute() or ".." in relative.parts or not relative.name:
        raise ValueError(
            f"image name {image_name!r} must be a file path relative to the input folder, without '..'."
        )
    return Path(out_dir) / relative.with_suffix("")


def to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Any of the three segmentation forms -> ``height x width`` bool mask (checked against the size)."""
    if isinstance(segmentation, dict):
        mask = rle_utils.decode(segmentation)
    else:
        mask = np.asarray(segmentation)
        if mask.dtype != bool:
            mask = mask > 0
    if mask.shape != (height, width):
        raise ValueError(
            f"a segmentation of size {list(mask.shape)} does not match the image size {[height, width]}; "
            "pass the size of the image the masks were made for."
        )
    return mask


def to_coco_rle(segmentation: Any, height: int, width: int) -> rle_utils.Rle:
    """Any of the three segmentation forms -> compressed COCO RLE ``{"size": [H, W], "counts": str}``."""
    if isinstance(segmentation, dict) and list(segmentation.get("size", [])) == [height, width]:
        return rle_utils.compress(segmentation)
    return rle_utils.encode(to_mask(segmentation, height, width))[0]


def check_records(records: Sequence[Record]) -> None:
    """Raise a ValueError naming the first record that lacks a field writers need."""
    for i, record in enumerate(records):
        missing = [key for key in ("segmentation", *RECORD_FIELDS) if key not in record]
        if missing:
            raise ValueError(
                f"mask record {i} lacks {', '.join(missing)}; pass records as the automatic mask generator "
                "returns them."
            )


def plain(value: Any) -> Any:
    """numpy scalars and arrays (also nested in lists, tuples and dicts) -> Python numbers and lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as compact JSON to ``path`` atomically (numpy values become Python numbers)."""
    atomic_write_text(path, json.dumps(plain(obj), separators=(",", ":")))
