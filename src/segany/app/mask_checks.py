"""Masks arriving over the network: checked before any C code decodes them; numbers derived from masks.

Masks travel as COCO RLE (see :mod:`segany.formats.rle`): uncompressed ``{"size": [H, W], "counts":
[n0, n1, ...]}`` (runs over the mask read column by column, starting with a run of 0s) or compressed
``{"size": [H, W], "counts": str}``. pycocotools trusts its input: counts that add up to more than
``H * W`` pixels make it write past its buffer, so :func:`checked_rle` parses and sums the counts in
Python first.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..formats import rle as rle_utils

# Compressed counts: each number is written in 5-bit groups, one character per group (offset 48), with
# bit 0x20 meaning "another group follows" and, on the last group, bit 0x10 the sign.
_FIRST_CHAR, _LAST_CHAR = 48, 48 + 63
_MAX_GROUPS = 7  # 35 bits: more than any image has pixels


class MaskError(ValueError):
    """A mask is malformed, of the wrong size or empty; the message says which."""


def string_counts(counts: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (differences decoded, as pycocotools does)."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, groups, more = 0, 0, True
        while more:
            if position >= len(counts) or groups >= _MAX_GROUPS:
                raise MaskError("mask counts string is truncated or malformed; send the RLE as produced.")
            code = ord(counts[position])
            if not _FIRST_CHAR <= code <= _LAST_CHAR:
                raise MaskError(f"mask counts string has an invalid character {counts[position]!r}.")
            code -= _FIRST_CHAR
            value |= (code & 0x1F) << (5 * groups)
            more = bool(code & 0x20)
            position += 1
            groups += 1
            if not more and code & 0x10:
                value |= -1 << (5 * groups)
        # From the third run on, each number is stored as the difference to the run two before it.
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def checked_rle(mask: dict[str, Any], height: int, width: int) -> rle_utils.Rle:
    """A client's RLE (either form) checked against a ``height x width`` image -> compressed RLE.

    Raises :class:`MaskError` when the size differs, a count is negative, the counts do not cover
    exactly ``H * W`` pixels, or the mask has no foreground pixel.
    """
    size = [int(v) for v in mask["size"]]
    if size != [height, width]:
        raise MaskError(f"mask size {size} does not match the image size [{height}, {width}] (H, W).")
    counts = mask["counts"]
    runs = string_counts(counts) if isinstance(counts, str) else [int(v) for v in counts]
    if any(run < 0 for run in runs):
        raise MaskError("mask counts must not be negative.")
    if sum(runs) != height * width:
        raise MaskError(
            f"mask counts cover {sum(runs)} pixels but the image has {height * width} (H x W); "
            "send runs over the whole image."
        )
    if sum(runs[1::2]) == 0:
        raise MaskError("mask is empty; draw at least one pixel.")
    if isinstance(counts, str):
        return {"size": size, "counts": counts}
    return rle_utils.compress({"size": size, "counts": runs})


def bbox_xywh(rle: rle_utils.Rle) -> list[int]:
    """Tight ``[x, y, w, h]`` box of the mask's pixels (``[0, 0, 0, 0]`` when empty)."""
    mask = rle_utils.decode(rle)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def interior_point(mask: np.ndarray) -> list[float]:
    """``[x, y]`` of the mask pixel farthest from the mask's edge (a point that surely selects it)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return [float(x), float(y)]
