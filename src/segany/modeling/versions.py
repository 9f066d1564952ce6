"""Keys that tell a tensor's contents apart, for caches of work derived from weights or embeddings."""

from __future__ import annotations

import torch


def contents_key(tensor: torch.Tensor) -> tuple[int, int] | None:
    """``(data_ptr, version)`` of ``tensor``: it changes when the tensor's memory changes or an in-place
    write bumps its version counter.

    None for an inference tensor (made under ``torch.inference_mode()``): it has no version counter, so
    nothing derived from it may be cached; callers compute afresh instead.
    """
    if tensor.is_inference():
        return None
    return tensor.data_ptr(), tensor._version
