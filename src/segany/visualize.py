"""Pictures of predictions, drawn like the official notebooks: tinted mask, star clicks, box outline."""

from __future__ import annotations

import cv2
import numpy as np

from .prompts import PointLabel

MASK_COLOR = (30, 144, 255)  # RGB, the notebooks' blue
POSITIVE_COLOR = (0, 200, 0)
NEGATIVE_COLOR = (220, 0, 0)
BOX_COLOR = (0, 200, 0)


def draw_overlay(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    alpha: float = 0.6,
) -> np.ndarray:
    """``H x W x 3`` uint8 RGB picture: ``mask`` (``H x W`` bool) tinted, points as stars, ``box`` (XYXY)."""
    canvas = image.astype(np.float32).copy()
    if mask is not None:
        tint = np.asarray(MASK_COLOR, dtype=np.float32)
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * tint
        outline, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    scale = max(image.shape[:2]) / 1000.0
    if mask is not None:
        cv2.drawContours(canvas, outline, -1, (255, 255, 255), max(1, round(2 * scale)))
    if box is not None:
        x0, y0, x1, y1 = (round(float(v)) for v in np.asarray(box).reshape(-1)[:4])
        cv2.rectangle(canvas, (x0, y0), (x1, y1), BOX_COLOR, max(2, round(3 * scale)))
    if point_coords is not None and point_labels is not None:
        size = max(12, round(30 * scale))
        for (x, y), label in zip(np.asarray(point_coords), np.asarray(point_labels), strict=True):
            color = POSITIVE_COLOR if label == PointLabel.POSITIVE else NEGATIVE_COLOR
            center = (round(float(x)), round(float(y)))
            cv2.drawMarker(
                canvas, center, (255, 255, 255), cv2.MARKER_STAR, size + 6, max(3, round(5 * scale))
            )
            cv2.drawMarker(canvas, center, color, cv2.MARKER_STAR, size, max(2, round(3 * scale)))
    return canvas


def draw_masks(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """``H x W x 3`` uint8 RGB picture of many ``H x W`` bool masks, each in a random colour.

    Larger masks are painted first so small ones stay visible on top.
    """
    canvas = image.astype(np.float32).copy()
    rng = np.random.default_rng(seed)
    for mask in sorted(masks, key=lambda m: -int(m.sum())):
        colour = rng.integers(40, 256, 3).astype(np.float32)
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * colour
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    for mask in masks:
        outline, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, outline, -1, (255, 255, 255), 1)
    return canvas
