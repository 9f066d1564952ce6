"""Mask and annotation formats: RLE, SA-1B, COCO, PNG + CSV, YOLO."""

from __future__ import annotations

from segany.formats.base import MaskWriter
from segany.formats.coco import CocoWriter, read_coco
from segany.formats.png import PngWriter, read_png_folder
from segany.formats.sa1b import Sa1bWriter, read_sa1b
from segany.formats.yolo import YoloWriter, read_yolo

# One entry per output format; the CLI's choices come from these keys.
WRITERS: dict[str, type[MaskWriter]] = {
    writer.name: writer for writer in (Sa1bWriter, CocoWriter, PngWriter, YoloWriter)
}


def get_writer(name: str) -> MaskWriter:
    """A new writer for the format ``name`` (one of ``WRITERS``)."""
    if name not in WRITERS:
        raise ValueError(f"unknown output format {name!r}; choose one of {', '.join(WRITERS)}.")
    return WRITERS[name]()


__all__ = [
    "WRITERS",
    "CocoWriter",
    "MaskWriter",
    "PngWriter",
    "Sa1bWriter",
    "YoloWriter",
    "get_writer",
    "read_coco",
    "read_png_folder",
    "read_sa1b",
    "read_yolo",
]
