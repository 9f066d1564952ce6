"""Where the images of a labelling run come from: a list of :class:`ImageItem`, and how one is read.

An image is named by a relative POSIX path (outputs are named after it, ``OUT/<name less suffix>.json``)
and read from its *source*: a local path, or a URI with a scheme (``s3://``, ``gs://``, ``file://``, ...)
read through pyarrow's filesystems, the layer Ray Data reads with (installed by ``segany[scale]``).

A manifest is a text file with one path or URI per line; blank lines and lines starting with ``#`` are
skipped, and relative paths are relative to the manifest's folder.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import numpy as np

from ..errors import ImageError, SegAnyError
from ..images import IMAGE_SUFFIXES, load_image


@dataclass(frozen=True)
class ImageItem:
    """One image to label: ``image_id`` (its index in the sorted input, stable across resumed runs),
    ``name`` (relative POSIX path, unique in the run) and ``source`` (a local path or a URI)."""

    image_id: int
    name: str
    source: str


def is_uri(source: str) -> bool:
    """True for ``scheme://...`` sources (read through pyarrow), False for local paths."""
    return "://" in source


def items_from(pairs: list[tuple[str, str]]) -> list[ImageItem]:
    """``(source, name)`` pairs -> items sorted by name, numbered from 0; duplicate names are refused."""
    by_name: dict[str, str] = {}
    for source, name in pairs:
        if name in by_name and by_name[name] != source:
            raise SegAnyError(
                f"Two inputs would both be written as {name!r} ({by_name[name]} and {source}); rename one."
            )
        by_name[name] = source
    return [ImageItem(i, name, by_name[name]) for i, name in enumerate(sorted(by_name))]


def find_images(inputs: list[str]) -> list[tuple[Path, str]]:
    """``(path, name)`` for every image of local ``inputs``: files as given, folders searched recursively.

    ``name`` is the path relative to its folder (the file name for a file input); outputs are named after
    it. Sorted, so image ids stay the same when a run is resumed; a name found twice keeps its first path.
    """
    found: dict[str, Path] = {}
    for text in inputs:
        root = Path(text)
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    found.setdefault(path.relative_to(root).as_posix(), path)
        elif root.exists():
            found.setdefault(root.name, root)
        else:
            raise ImageError(f"Input not found: {root}.")
    return [(found[name], name) for name in sorted(found)]


def read_manifest(path: Path) -> list[tuple[str, str]]:
    """``(source, name)`` for each line of a manifest (see the module docstring).

    A line's name is its path with any scheme, host and leading ``/`` dropped (``s3://bucket/a/b.jpg``
    -> ``bucket/a/b.jpg``; ``/data/x.jpg`` -> ``data/x.jpg``), so distinct sources get distinct names.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SegAnyError(
            f"Cannot read the manifest {path} ({exc}); give a text file of paths or URIs."
        ) from exc
    pairs = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if is_uri(line):
            parts = urlsplit(line)
            name = PurePosixPath(parts.netloc, parts.path.lstrip("/")).as_posix()
            source = line
        else:
            local = Path(line).expanduser()
            source = str(local if local.is_absolute() else path.parent / local)
            name = PurePosixPath(*Path(line).expanduser().parts).as_posix().lstrip("/")
        if not name or ".." in PurePosixPath(name).parts:
            raise SegAnyError(
                f"Line {number} of {path} ({line!r}) names no file inside a folder; fix the line."
            )
        pairs.append((source, name))
    return pairs


def read_item(item: ImageItem, max_pixels: int | None) -> np.ndarray:
    """The image of ``item`` as ``H x W x 3`` uint8 RGB; raises ImageError when it cannot be read."""
    if not is_uri(item.source):
        return load_image(item.source, max_pixels=max_pixels)
    data = _fetch(item.source)
    # One decoder for every image: a URI's bytes go through load_image via a temporary file.
    with tempfile.TemporaryDirectory(prefix="segany-") as folder:
        local = Path(folder) / f"image{PurePosixPath(item.name).suffix}"
        local.write_bytes(data)
        try:
            return load_image(local, max_pixels=max_pixels)
        except ImageError as exc:
            raise ImageError(str(exc).replace(str(local), item.source)) from exc


def _fetch(uri: str) -> bytes:
    try:
        from pyarrow import fs
    except ImportError as exc:
        raise ImageError(
            f"Reading {uri} needs pyarrow's filesystems; install segany[scale] or give a local path."
        ) from exc
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, ValueError) as exc:
        raise ImageError(f"Cannot read {uri} ({exc}); check the URI and its credentials.") from exc
