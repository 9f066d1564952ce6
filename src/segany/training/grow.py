"""Deepening a trained ViT image encoder without changing what it computes (function-preserving growth).

A new block goes after each chosen block. Its two output projections (attention ``proj`` and the MLP's
second layer) start at zero, so the new block adds nothing to its residual stream: the grown model's
embeddings, and so its masks, equal the old model's. Training then moves the new blocks away from the
identity (the zero-initialised residual branches of ReZero and LayerScale). ``scripts/grow_encoder.py``
does it to a checkpoint: more capacity for a model that underfits, without losing the training it
already had.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..build import sam_from_config
from ..config import ImageEncoderConfig
from ..modeling import Sam

# The layers whose output starts at zero in a new block: then the block is the identity.
_ZEROED = ("attn.proj", "mlp.lin2")


def grow_encoder(model: Sam, after: Sequence[int], global_new: Sequence[int] = (), seed: int = 0) -> Sam:
    """A deeper copy of ``model`` (in eval mode) with one identity block after each block in ``after``.

    Args:
        model: a SAM with a ViT image encoder and a config (``model.config``).
        after: indices of the old blocks that get a new block after them.
        global_new: which new blocks (counted from 0 in order) use global attention; the others are
            windowed like the old windowed blocks.
        seed: initialisation of the new blocks' other weights (their norms, qkv and first MLP layer).
    Raises:
        ValueError: for a model without a ViT encoder config, or indices out of range.
    """
    config = model.config
    encoder = config.encoder if config is not None else None
    if not isinstance(encoder, ImageEncoderConfig):
        raise ValueError("Only a model with a ViT image encoder and a config can be grown.")
    if any(not 0 <= i < encoder.depth for i in after):
        raise ValueError(f"after takes old block indices 0..{encoder.depth - 1}, got {list(after)}.")
    old_to_new: dict[int, int] = {}
    new_blocks: list[int] = []
    for old in range(encoder.depth):
        old_to_new[old] = old + len(new_blocks)
        if old in after:
            new_blocks.append(old_to_new[old] + 1)
    if any(not 0 <= i < len(new_blocks) for i in global_new):
        raise ValueError(
            f"global_new takes new block indices 0..{len(new_blocks) - 1}, got {list(global_new)}."
        )
    global_indexes = sorted(
        [old_to_new[i] for i in encoder.global_attn_indexes] + [new_blocks[i] for i in global_new]
    )
    grown_encoder = dataclasses.replace(
        encoder, depth=encoder.depth + len(new_blocks), global_attn_indexes=tuple(global_indexes)
    )
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = sam_from_config(dataclasses.replace(config, encoder=grown_encoder)).to(device)
    state = grown.state_dict()
    prefix = "image_encoder.blocks."
    for name, value in model.state_dict().items():
        if name.startswith(prefix):
            index, rest = name[len(prefix) :].split(".", 1)
            name = f"{prefix}{old_to_new[int(index)]}.{rest}"
        state[name] = value.to(state[name].dtype)
    for index in new_blocks:
        for layer in _ZEROED:
            state[f"{prefix}{index}.{layer}.weight"].zero_()
            state[f"{prefix}{index}.{layer}.bias"].zero_()
    grown.load_state_dict(state)
    return grown.eval()
