"""Writing files so that a reader never sees half of one: the one atomic writer of the package."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Create ``path`` by ``write(temporary path)`` then a rename, so ``path`` is never partial.

    The temporary file has a unique name in the same folder (``.NAME.XXXXXXXX.tmp``: two writers of
    one path never share it) and is removed if ``write`` fails; the caller sees the error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            # Mode 0o666 less the umask, as open() gives (tempfile.mkstemp's files are private, 0o600).
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
