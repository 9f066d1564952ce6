"""Training checkpoints that resume exactly: model, optimiser, scheduler, step and random state.

The file is a plain ``torch.save`` dictionary (tensors, numbers, strings), loaded with
``weights_only=True``. Its ``model`` entry and ``segany_config`` make it a SAM checkpoint as well, so
``build_sam(checkpoint="last.pt")`` loads the weights directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import CONFIG_METADATA_KEY
from ..errors import CheckpointError
from ..files import atomic_write
from ..modeling import Sam

FORMAT = "segany-train-1"


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues: the next optimiser step to take."""

    step: int


def save_training_state(
    path: Path,
    model: Sam,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    train_config: dict[str, Any],
) -> Path:
    """Write the state after ``step`` optimiser steps; atomic (temporary file, then rename)."""
    state = {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        CONFIG_METADATA_KEY: model.config.to_dict() if model.config is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "train_config": _plain(train_config),
    }
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_training_state(
    path: Path,
    model: Sam,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> ResumePoint:
    """Restore everything :func:`save_training_state` wrote into the given objects."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"Cannot resume from {path}: the file is unreadable or truncated ({exc})."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"Cannot resume from {path}: it is not a segany training checkpoint.")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"Cannot resume from {path}: it was written for a different model or set of trainable parts "
            f"({str(exc).splitlines()[0]})."
        ) from exc
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return ResumePoint(step=int(state["step"]))


# --- Progress kept in a repository -------------------------------------------------------------------

PROGRESS_STEP_KEY = "segany_step"


def save_progress(path: Path, model: Sam, step: int) -> Path:
    """Write a small resumable state: the weights in float16 and the step, as ``.safetensors``.

    Meant to be committed between the sessions of a long run (a few MB, one path, overwritten); it leaves
    out the optimiser's moments, which a resumed run rebuilds. Atomic (temporary file, then rename).
    """
    from safetensors.torch import save_file

    tensors = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    metadata = {PROGRESS_STEP_KEY: str(step)}
    if model.config is not None:
        metadata[CONFIG_METADATA_KEY] = model.config.to_json()
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_progress(path: Path, model: Sam) -> ResumePoint:
    """Load :func:`save_progress`'s weights into ``model``; returns the step they were saved at."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
        step = int(metadata[PROGRESS_STEP_KEY])
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"Cannot resume from {path}: it is not a segany progress file ({exc})."
        ) from exc
    own = model.state_dict()
    try:
        model.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in tensors.items()})
    except RuntimeError as exc:
        raise CheckpointError(
            f"Cannot resume from {path}: it was written for a different model ({str(exc).splitlines()[0]})."
        ) from exc
    return ResumePoint(step=step)


def _plain(value: Any) -> Any:
    """Tuples to lists and everything else left as numbers/strings, for ``weights_only`` loading."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
