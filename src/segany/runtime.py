"""The one device and precision policy: where models run and in which precision they compute."""

from __future__ import annotations

import contextlib
import os

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; None means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'.") from exc


def recording() -> bool:
    """Whether a compiler (``torch.compile``) or the TorchScript tracer/scripter is recording the forward
    pass, so layers take their plain path (no cached derived weights, no eager-only operators)."""
    compiler = getattr(torch, "compiler", None)  # torch.compiler.is_compiling exists from PyTorch 2.3
    compiling = compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling()
    return bool(compiling or torch.jit.is_tracing() or torch.jit.is_scripting())


_MEMORY_REUSE_SET = False


def reuse_freed_memory() -> bool:
    """Keep memory freed by large tensors for reuse instead of returning it to the OS (glibc only).

    glibc serves allocations above 32 MiB with fresh ``mmap`` pages and unmaps them on free, so every
    large temporary (the decoder makes several of hundreds of MiB per batch of prompts) pays page faults
    and zeroing again; that cost was about a third of the batched decoder's time here. With this, the
    process's heap keeps its peak size instead of shrinking between batches. It changes the whole
    process, so library calls never make it: the programs that own their process and run the automatic
    generator (``segany auto``, ``segany engine label``'s labellers, the annotation server) opt in, and
    so may a script. A no-op off Linux/glibc. Returns whether the setting is in effect.
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


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """The compute precision asked for: ``float32`` (exact; the default) or ``bfloat16``."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.bfloat16):
            return dtype
    elif dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(
        f"Unsupported precision {dtype!r}; use 'float32' (exact) or 'bfloat16' (faster on CPUs with AVX512-BF16/AMX and on GPUs)."
    )


def compute_context(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """The context every forward pass of segany runs in: nothing for float32, autocast for bfloat16.

    Under bfloat16 autocast, weights stay float32 and matrix products, convolutions and attention run
    in bfloat16, while normalisations and softmax stay float32; outputs are cast back by the caller.
    """
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_autocast_dtype() -> torch.dtype | None:
    """The precision CPU autocast computes matrix products in where it is on, else None."""
    try:
        enabled = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu")
    except (TypeError, AttributeError):  # PyTorch before 2.4
        enabled = torch.is_autocast_cpu_enabled()
        dtype = torch.get_autocast_cpu_dtype()
    return dtype if enabled else None


_PACKED_WEIGHTS: bool | None = None  # None: the environment's setting, read at the next use


def packed_weights_enabled() -> bool:
    """Whether CPU inference may keep oneDNN-packed copies of linear weights (see
    :class:`segany.modeling.packed_linear.PackedLinear`): about 10% faster matrix products for the
    memory of those weights once more. On unless the environment sets ``SEGANY_PACKED_WEIGHTS=0``
    (read once, at the first forward pass) or :func:`set_packed_weights` says otherwise.
    """
    global _PACKED_WEIGHTS
    if _PACKED_WEIGHTS is None:
        _PACKED_WEIGHTS = os.environ.get("SEGANY_PACKED_WEIGHTS", "1") != "0"
    return _PACKED_WEIGHTS


def set_packed_weights(enabled: bool | None) -> None:
    """Turn packed weights on or off for this process; None goes back to ``SEGANY_PACKED_WEIGHTS``."""
    global _PACKED_WEIGHTS
    _PACKED_WEIGHTS = enabled


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bfloat16 matrix products beat float32 on ``device``: CUDA GPUs with bf16 support, and CPUs
    with AVX512-BF16 or AMX tiles (read from ``/proc/cpuinfo``; False where that is unavailable).
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
