"""Reading images and bringing arrays to the ``H x W x 3`` uint8 RGB form the predictor takes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError

# File endings segany reads as images (folders are searched for these).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 100_000_000


def load_image(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as ``H x W x 3`` uint8 RGB (EXIF orientation applied, alpha dropped).

    Images with more than ``max_pixels`` pixels are refused before they are decoded (None: no limit).
    """
    from PIL import ImageOps

    path = Path(path)
    if not path.exists():
        raise ImageError(f"Image not found: {path}.")
    if path.is_dir():
        raise ImageError(f"Image path {path} is a directory; give an image file.")
    if path.stat().st_size == 0:
        raise ImageError(f"Image file {path} is empty (0 bytes).")
    try:
        with Image.open(path) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageError(
                    f"Image {path} has {img.width} x {img.height} pixels, more than the limit of {max_pixels:,}; "
                    "downscale it or raise the limit."
                )
            img = ImageOps.exif_transpose(img)
            return to_rgb_array(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"Image {path} is too large to decode safely ({exc}).") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"Cannot read {path} as an image ({exc}); give a JPEG, PNG or other common image file."
        ) from exc


def to_rgb_array(image: Any) -> np.ndarray:
    """Convert a PIL image or an array (``H x W``, ``H x W x 1``, ``H x W x 3``, ``H x W x 4``) to RGB uint8.

    Grayscale is replicated to three channels; RGBA drops alpha. Integer arrays with values in
    [0, 255] are accepted; float and boolean arrays are refused (their scale is ambiguous).
    """
    if isinstance(image, Image.Image):
        if image.mode not in ("RGB", "L", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise ImageError(f"image must be a numpy array or PIL image, got {type(image).__name__}.")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"image must have shape H x W x 3 (RGB), H x W x 4 or H x W, got {image.shape}.")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"image is empty (shape {image.shape}).")
    if image.dtype != np.uint8:
        image = _to_uint8(image)
    return np.ascontiguousarray(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if not np.issubdtype(image.dtype, np.integer):
        raise ImageError(
            f"image must be uint8 RGB, got dtype {image.dtype}; convert it, e.g. (image * 255).astype(np.uint8)."
        )
    low, high = int(image.min()), int(image.max())
    if low < 0 or high > 255:
        raise ImageError(f"image values must lie in [0, 255], got [{low}, {high}]; convert it to uint8.")
    return image.astype(np.uint8)
