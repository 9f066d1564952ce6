"""Options and model loading shared by the subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..variants import ALIASES, VARIANTS

if TYPE_CHECKING:
    import torch

    from ..engine.pipeline import ModelSpec
    from ..modeling import Sam


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        choices=sorted([*VARIANTS, *ALIASES]),
        help="official variant (default: the checkpoint's own; without --checkpoint, the downloaded official "
        "checkpoint of this variant; without both, segany's bundled model)",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="weights file (.pth, .safetensors, or a HF SAM file)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="float32 (exact, default) or bfloat16 (faster on CPUs with AVX512-BF16/AMX and on GPUs)",
    )


def load_model(args: argparse.Namespace) -> Sam:
    """Build the model the options ask for (the checkpoint found by :func:`resolve_checkpoint`)."""
    from ..build import build_sam

    checkpoint = resolve_checkpoint(args)
    return build_sam(
        args.model, checkpoint=checkpoint, device=checked_device(args.device), dtype=args.precision
    )


def resolve_checkpoint(args: argparse.Namespace) -> str | Path:
    """The weights file the model options name: ``--checkpoint``; else with ``--model``, the downloaded
    official checkpoint of that variant; else segany's bundled model. One sentence when there is none."""
    from ..download import cached_checkpoint
    from ..errors import CheckpointError
    from ..variants import MANUAL_WEIGHTS, bundled_checkpoint, resolve_variant

    checkpoint = args.checkpoint
    if checkpoint is None and args.model is None:
        checkpoint = bundled_checkpoint()
    if checkpoint is None:
        variant = resolve_variant(args.model or "default")
        checkpoint = cached_checkpoint(variant)
        if checkpoint is None and variant in MANUAL_WEIGHTS:
            raise CheckpointError(
                f"{variant} has no download; get {MANUAL_WEIGHTS[variant]} and pass --checkpoint PATH."
            )
        if checkpoint is None:
            raise CheckpointError(
                f"No checkpoint given and no {variant} checkpoint downloaded; pass --checkpoint PATH "
                f"or run `segany download {variant}` first."
            )
    return checkpoint


def checked_device(name: str | None) -> torch.device:
    """The ``--device`` asked for, refused with one sentence when it is unknown or absent here."""
    import torch

    from ..errors import SegAnyError
    from ..runtime import resolve_device

    try:
        device = resolve_device(name)
    except ValueError as exc:
        raise SegAnyError(str(exc)) from exc
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise SegAnyError(
            f"Device {name!r} is not available here ({found} CUDA device(s)); use --device cpu."
        )
    return device


def make_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create the output folder ``path`` (and its parents), or say in one sentence why it cannot be."""
    from ..errors import SegAnyError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SegAnyError(f"{flag} {path} is an existing file, not a folder; give a folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegAnyError(
            f"Cannot create the folder {path} ({exc.strerror or exc}); give another {flag}."
        ) from exc
    return path


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model of the model options as the data engine's labellers build it (:func:`load_model`'s
    model, its checkpoint file resolved to an absolute path so Ray actors elsewhere find the same one)."""
    from ..engine.pipeline import ModelSpec

    return ModelSpec(
        checkpoint=str(Path(resolve_checkpoint(args)).resolve()),
        variant=args.model,
        device=args.device,
        precision=args.precision,
    )
