"""Fetching official checkpoints into the user cache: progress bar, resume, SHA-256 check."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DownloadError
from .variants import MANUAL_WEIGHTS, OFFICIAL_WEIGHTS, OfficialWeights, resolve_variant

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where downloads go: ``$SEGANY_CACHE_DIR``, else ``$XDG_CACHE_HOME/segany``, else ``~/.cache/segany``."""
    if os.environ.get("SEGANY_CACHE_DIR"):
        return Path(os.environ["SEGANY_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "segany"


def official_weights(variant: str) -> OfficialWeights:
    """Where ``variant``'s official checkpoint downloads from; a :class:`DownloadError` for a variant
    without a download (``vit_t``), saying where its weights come from instead."""
    canonical = resolve_variant(variant)
    if canonical not in OFFICIAL_WEIGHTS:
        raise DownloadError(
            f"segany has no download for {canonical}: get {MANUAL_WEIGHTS[canonical]} and pass its path as the checkpoint."
        )
    return OFFICIAL_WEIGHTS[canonical]


def checkpoint_path(variant: str) -> Path:
    """Cache path of an official checkpoint (whether or not it has been downloaded)."""
    return cache_dir() / "checkpoints" / official_weights(variant).filename


def cached_checkpoint(variant: str) -> Path | None:
    """The downloaded official checkpoint of ``variant``, or None (also for a variant without a download)."""
    if resolve_variant(variant) not in OFFICIAL_WEIGHTS:
        return None
    path = checkpoint_path(variant)
    return path if path.is_file() else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    url: str, dest: str | os.PathLike[str], sha256: str | None = None, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download, and check its SHA-256.

    Bytes go to ``dest + ".part"`` and are renamed to ``dest`` only once complete and verified, so an
    interrupted download never looks finished; running again resumes with an HTTP Range request.
    A file whose checksum does not match is deleted and a :class:`DownloadError` raised.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "segany"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if start and response.status != 206:
                start = 0  # the server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            _copy(response, part, start, total, progress, dest.name)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # range not satisfiable: the part file is already complete
            pass
        else:
            raise DownloadError(f"Download of {url} failed: HTTP {exc.code} {exc.reason}.") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"Download of {url} failed ({reason}); check the connection and run again to resume."
        ) from exc
    if sha256 is not None:
        actual = sha256_of(part)
        if actual != sha256.lower():
            part.unlink()
            raise DownloadError(
                f"Checksum mismatch for {url}: expected SHA-256 {sha256}, got {actual}; the partial file was deleted, run again."
            )
    os.replace(part, dest)
    return dest


def _copy(response: object, part: Path, start: int, total: int | None, progress: bool, name: str) -> None:
    from tqdm import tqdm

    mode = "ab" if start else "wb"
    with (
        open(part, mode) as out,
        tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name, disable=not progress) as bar,
    ):
        while True:
            block = response.read(_CHUNK)  # type: ignore[attr-defined]
            if not block:
                break
            out.write(block)
            bar.update(len(block))
    if total is not None and part.stat().st_size < total:
        raise ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")


def download_checkpoint(
    variant: str,
    dest_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download the official checkpoint of ``variant`` (or ``url``, checked against ``sha256``).

    Returns its path; a file already there with the right checksum is not downloaded again.
    """
    weights = official_weights(variant)
    url = url or weights.url
    expected = sha256 if sha256 is not None else (weights.sha256 if url == weights.url else None)
    target_dir = Path(dest_dir) if dest_dir is not None else checkpoint_path(variant).parent
    dest = target_dir / url.rsplit("/", 1)[-1]
    if dest.is_file() and (expected is None or sha256_of(dest) == expected.lower()):
        return dest
    return download_file(url, dest, sha256=expected, progress=progress)
