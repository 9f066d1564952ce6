"""Data-parallel training across processes: ``torchrun --nproc_per_node N -m segany train CONFIG``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with more than one process the trainer
joins a process group (gloo on CPU, nccl on CUDA) and wraps its loss module in
``DistributedDataParallel``, which averages gradients across processes after each backward pass. Each
process draws its own share of every global batch (see ``segany.training.loader``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place in the run; ``world == 1`` outside ``torchrun``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def process_info() -> ProcessInfo:
    """Read the ``torchrun`` environment (a single process when it is absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessInfo()
    return ProcessInfo(
        rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )


def device_for(info: ProcessInfo, requested: str | None) -> torch.device:
    """One GPU per process (``cuda:LOCAL_RANK``) when CUDA is used, else the CPU."""
    from ..runtime import resolve_device

    device = resolve_device(requested)
    if device.type == "cuda" and info.distributed:
        return torch.device("cuda", info.local_rank)
    return device


def init_process_group(info: ProcessInfo, device: torch.device) -> None:
    """Join the run's process group; gloo for CPU tensors, nccl for CUDA ones."""
    if not info.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def average(value: torch.Tensor, info: ProcessInfo) -> torch.Tensor:
    """Mean of a scalar over processes (for logging; gradients are averaged by DDP itself)."""
    if not info.distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / info.world
