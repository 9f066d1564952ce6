"""The images folder: which files are images, their sizes, and paths that cannot leave the folder.

Images are named by their path relative to the folder (POSIX separators) and addressed over the API by
database id only. A path is used only if, with every symlink resolved, it still lies inside the folder.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import ImageError
from ..images import IMAGE_SUFFIXES

# EXIF orientations that rotate by 90 degrees, so that width and height swap when applied.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112

log = logging.getLogger(__name__)


class OutsideFolderError(ImageError):
    """A path leads outside the images folder (through ``..`` or a symlink)."""


def inside(root: Path, relative: str) -> Path:
    """``root / relative`` with symlinks resolved; raises :class:`OutsideFolderError` if it leaves ``root``."""
    base = Path(root).resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or path == base:
        raise OutsideFolderError(
            f"Image path {relative!r} leads outside the images folder; it is not served."
        )
    return path


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image file as :func:`segany.images.load_image` returns it (EXIF
    orientation applied), read from the header without decoding the pixels."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
                width, height = height, width
    except Image.DecompressionBombError as exc:
        raise ImageError(f"Image {path} is too large to decode safely ({exc}).") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"Cannot read {path} as an image ({exc}); remove it or fix it.") from exc
    return height, width


def scan(root: Path, known: Collection[str] = frozenset()) -> Iterator[tuple[str, int, int]]:
    """``(relative path, width, height)`` of each image file under ``root`` not in ``known``, by path.

    Hidden files and folders are skipped, as are symlinks leading outside ``root`` and files that are
    not readable images (logged).
    """
    base = Path(root).resolve()
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(base).as_posix()
        if relative in known or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if any(part.startswith(".") for part in path.relative_to(base).parts):
            continue
        try:
            resolved = inside(base, relative)
            if not resolved.is_file():
                continue
            height, width = image_size(resolved)
        except ImageError as exc:
            log.warning("skipped %s: %s", relative, exc)
            continue
        yield relative, width, height
