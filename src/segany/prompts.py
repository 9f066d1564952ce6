"""The one home of SAM's prompt conventions, and their validation.

Conventions (shared by the model, the predictor, export and the app):

* Points are ``(X, Y)`` pixel coordinates; in the predictor API they are in the original image frame,
  inside the model they are in the resized input frame (see :mod:`segany.transforms`).
* Labels: ``1`` foreground (positive), ``0`` background (negative), ``-1`` padding (not a point),
  ``2`` / ``3`` a box's top-left / bottom-right corner given as points (the ONNX decoder's form).
* When points come without a box, one padding point ``(0, 0)`` with label ``-1`` is appended, since
  the decoder was trained with a token in the box slot.
* Boxes are ``XYXY`` (``x0, y0, x1, y1``), pixels, same frame as points.
* Coordinates are shifted by half a pixel to cell centres before positional encoding.
* Mask prompts are low-resolution logits, ``1 x 256 x 256`` per prompt (the previous prediction's
  ``low_res_logits``), over the padded model-input square.

It imports only :mod:`segany.errors`, so every layer may use it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

from .errors import PromptError


class PointLabel(IntEnum):
    """Meaning of a point label."""

    PADDING = -1
    NEGATIVE = 0
    POSITIVE = 1
    BOX_TOP_LEFT = 2
    BOX_BOTTOM_RIGHT = 3


VALID_LABELS = frozenset(int(label) for label in PointLabel)
PADDING_POINT = (0.0, 0.0)
PIXEL_CENTER_OFFSET = 0.5
LOW_RES_MASK_SIZE = 256  # side of mask prompts and low-resolution logits for the official models
MAX_INTERACTIVE_POINTS = 200  # clicks one interactive request may carry (the app); far above real use


def _as_float_array(value: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{name} must be numeric, got {type(value).__name__}.") from exc
    if not np.all(np.isfinite(array)):
        raise PromptError(f"{name} contains NaN or infinite values; give finite pixel coordinates.")
    return array


def check_points(point_coords: Any, point_labels: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate points: ``N x 2`` coords with ``N`` labels, or ``B x N x 2`` with ``B x N`` (one set per box).

    Returns float64 coords and int64 labels, or None when neither is given.
    """
    if point_coords is None and point_labels is None:
        return None
    if point_coords is None:
        raise PromptError("point_labels was given without point_coords; pass both or neither.")
    if point_labels is None:
        raise PromptError(
            "point_coords requires point_labels (1 foreground, 0 background) of the same length."
        )
    coords = _as_float_array(point_coords, "point_coords")
    if coords.ndim not in (2, 3) or coords.shape[-1] != 2:
        raise PromptError(f"point_coords must have shape N x 2 (X, Y pixels), got {coords.shape}.")
    if coords.shape[-2] == 0:
        raise PromptError("point_coords is empty; pass None when there are no points.")
    labels = np.asarray(point_labels)
    if labels.shape != coords.shape[:-1]:
        raise PromptError(
            f"point_labels must have shape {coords.shape[:-1]} to match point_coords {coords.shape}, got {labels.shape}."
        )
    if not np.issubdtype(labels.dtype, np.number) or labels.dtype == np.bool_:
        raise PromptError(f"point_labels must be integers, got dtype {labels.dtype}.")
    if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
        raise PromptError("point_labels must be whole numbers (1 foreground, 0 background).")
    bad = sorted(set(np.unique(labels).astype(np.int64).tolist()) - VALID_LABELS)
    if bad:
        raise PromptError(
            f"point_labels contains {bad}; use 1 (foreground), 0 (background), -1 (padding) or 2/3 (box corners)."
        )
    return coords, labels.astype(np.int64)


def check_boxes(box: Any) -> np.ndarray | None:
    """Validate a box ``4`` / ``1 x 4`` or several boxes ``B x 4`` (XYXY pixels). Returns float64 ``B x 4``."""
    if box is None:
        return None
    boxes = _as_float_array(box, "box")
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
        raise PromptError(f"box must have shape 4 or B x 4 (x0, y0, x1, y1), got {np.shape(box)}.")
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise PromptError("box must be XYXY with x0 <= x1 and y0 <= y1.")
    return boxes


def is_ambiguous(points: int, box: bool, text: bool = False) -> bool:
    """Whether a prompt is ambiguous, so that SAM answers with its 3 candidates and the best is kept
    (paper section 3): one click alone (a part, the object, a group?), or a phrase with at most one
    click; a box, or several clicks, say which object they mean and get the single-mask output.

    ``points``: how many clicks; ``box``: whether a box is given; ``text``: whether a phrase is.
    (The exported ONNX decoder, a traced graph, applies the same rule in tensors: see
    :class:`segany.export.onnx_decoder.SamOnnxDecoder`.)
    """
    if box:
        return False
    return points == 1 or (text and points <= 1)


def check_inside(points: Any, box: Any, width: int, height: int) -> None:
    """Refuse points (``N x 2`` XY) or a box (XYXY) that lie outside a ``width x height`` image.

    Points must fall on a pixel (``0 <= x < W``, ``0 <= y < H``); a box may reach the image's far edges.
    The predictor itself accepts any coordinates, as the official one does; the command line and the
    annotation app hold users to this rule.
    """
    for x, y in np.asarray(points if points is not None else [], dtype=np.float64).reshape(-1, 2):
        if not (0 <= x < width and 0 <= y < height):
            raise PromptError(f"Point ({x:g}, {y:g}) lies outside the image ({width} x {height} pixels).")
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            shown = ", ".join(f"{v:g}" for v in (x0, y0, x1, y1))
            raise PromptError(f"Box ({shown}) reaches outside the image ({width} x {height} pixels).")


def check_mask_input(mask_input: Any, size: int = LOW_RES_MASK_SIZE) -> np.ndarray | None:
    """Validate a mask prompt: ``1 x S x S`` logits (or ``B x 1 x S x S``, one per box). Returns float32."""
    if mask_input is None:
        return None
    mask = _as_float_array(mask_input, "mask_input")
    if mask.ndim not in (3, 4) or mask.shape[-3:] != (1, size, size):
        raise PromptError(
            f"mask_input must have shape 1 x {size} x {size} (a previous low_res_logits), got {mask.shape}."
        )
    return mask.astype(np.float32)
