"""Deepen a trained model's ViT image encoder without changing what it computes (see segany.training.grow).

    python scripts/grow_encoder.py runs/default_model_stage3/model.safetensors runs/grown/start.safetensors --global-new 5

A new identity block goes after each block listed in ``--after`` (default: every block); it is windowed
unless its number (0, 1, ... among the new blocks) is listed in ``--global-new``. The grown model's
embeddings are checked equal to the old model's before it is saved.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from segany import build_sam, save_checkpoint
from segany.training.grow import grow_encoder


def _indices(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"Expected comma-separated block indices, got {text!r}.") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="the trained model (.safetensors with its config)")
    parser.add_argument("out", type=Path, help="where to write the grown model (.safetensors)")
    parser.add_argument("--after", default=None, help="comma-separated old block indices (default: all)")
    parser.add_argument("--global-new", default="", help="comma-separated numbers of new blocks made global")
    parser.add_argument("--seed", type=int, default=0, help="initialisation of the new blocks' other weights")
    args = parser.parse_args()
    model = build_sam(checkpoint=args.weights, device="cpu")
    depth = model.config.encoder.depth
    after = _indices(args.after) if args.after else list(range(depth))
    try:
        grown = grow_encoder(model, after, _indices(args.global_new), args.seed)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    image = torch.randn(1, 3, model.img_size, model.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (grown.image_encoder(image) - model.image_encoder(image)).abs().max().item()
    if diff > 1e-5:
        raise SystemExit(f"The grown encoder differs from the old one by {diff:.2e}; nothing written.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(grown, args.out, config=grown.config)
    params = sum(p.numel() for p in grown.parameters())
    print(
        f"wrote {args.out}: depth {depth} -> {grown.config.encoder.depth}, global blocks "
        f"{list(grown.config.encoder.global_attn_indexes)}, {params / 1e6:.2f} M parameters, "
        f"embeddings equal to the old model's (max abs diff {diff:.1e})"
    )


if __name__ == "__main__":
    main()
