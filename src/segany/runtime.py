"""The one device policy: where models run when the caller does not say."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; None means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'.") from exc


_MEMORY_REUSE_SET = False


def reuse_freed_memory() -> bool:
    """Keep memory freed by large tensors for reuse instead of returning it to the OS (glibc only).

    glibc serves allocations above 32 MiB with fresh ``mmap`` pages and unmaps them on free, so every
    large temporary (the decoder makes several of hundreds of MiB per batch of prompts) pays page faults
    and zeroing again; that cost was about a third of the batched decoder's time here. With this, the
    process's heap keeps its peak size instead of shrinking between batches. Called by the automatic
    generator and the CLI; a no-op elsewhere. Returns whether the setting is in effect.
    """
    global _MEMORY_REUSE_SET
    if _MEMORY_REUSE_SET:
        return True
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 1 << 40) == 1
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _MEMORY_REUSE_SET = ok
    return ok
