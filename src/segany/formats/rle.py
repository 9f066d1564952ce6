"""Run-length encoding of masks, in the COCO convention (pycocotools does the work).

Two forms, as in SA-1B and the official automatic generator:

* compressed ("COCO RLE"): ``{"size": [H, W], "counts": "<ascii string>"}``
* uncompressed: ``{"size": [H, W], "counts": [n0, n1, ...]}``: alternating runs of 0s and 1s over the
  mask read column by column (Fortran order), starting with a run of 0s (possibly of length 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

Rle = dict[str, Any]


def encode(masks: np.ndarray) -> list[Rle]:
    """``N x H x W`` (or ``H x W``) bool masks -> compressed RLEs with ``counts`` as ``str``."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 2:
        masks = masks[None]
    if len(masks) == 0:
        return []
    # pycocotools wants H x W x N in column-major order: that is the memory of N x W x H row-major,
    # so one transposed copy serves (no per-mask conversion).
    fortran = np.ascontiguousarray(masks.transpose(0, 2, 1)).transpose(2, 1, 0).view(np.uint8)
    encoded = mask_utils.encode(fortran)
    for rle in encoded:
        rle["counts"] = rle["counts"].decode("ascii")
    return encoded


def compress(rle: Rle) -> Rle:
    """Any RLE -> compressed form (``counts`` a ``str``)."""
    if isinstance(rle["counts"], str):
        return {"size": list(rle["size"]), "counts": rle["counts"]}
    if isinstance(rle["counts"], bytes):
        return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    h, w = rle["size"]
    out = mask_utils.frPyObjects({"size": [h, w], "counts": list(rle["counts"])}, h, w)
    return {"size": [h, w], "counts": out["counts"].decode("ascii")}


def decode(rle: Rle) -> np.ndarray:
    """Any RLE -> ``H x W`` bool mask."""
    compressed = compress(rle)
    return mask_utils.decode(
        {"size": compressed["size"], "counts": compressed["counts"].encode("ascii")}
    ).astype(bool)


def uncompressed(mask: np.ndarray) -> Rle:
    """``H x W`` bool mask -> uncompressed RLE (vectorised: one pass over the pixels)."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [h, w], "counts": counts}


def to_uncompressed(rle: Rle) -> Rle:
    """Any RLE -> uncompressed form."""
    if isinstance(rle["counts"], list):
        return {"size": list(rle["size"]), "counts": list(rle["counts"])}
    return uncompressed(decode(rle))


def area(rle: Rle) -> int:
    """Number of foreground pixels."""
    if isinstance(rle["counts"], list):
        return int(sum(rle["counts"][1::2]))
    compressed = compress(rle)
    return int(mask_utils.area({"size": compressed["size"], "counts": compressed["counts"].encode("ascii")}))
