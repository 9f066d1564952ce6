"""Optimiser, learning-rate schedule, stochastic depth and freezing for SAM training.

The paper (appendix A): AdamW (beta 0.9, 0.999), weight decay 0.1, linear warm-up for 250 iterations,
then the rate divided by 10 twice (at 60k and 86,666 of 90k iterations), layer-wise learning-rate decay
0.8 in the image encoder and drop path 0.4 (vit_h).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from ..modeling import Sam
from ..modeling.layers import DropPath

# Parameters that are tables of embeddings or positions, not weights to shrink towards zero.
_NO_DECAY_NAMES = (
    "pos_embed",
    "rel_pos",
    "point_embeddings",
    "not_a_point_embed",
    "no_mask_embed",
    "iou_token",
    "mask_tokens",
    "positional_encoding_gaussian_matrix",
)
PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")


def freeze(model: Sam, parts: Iterable[str]) -> None:
    """Stop training the named parts (``image_encoder``, ``prompt_encoder``, ``mask_decoder``) or modules
    inside them (``image_encoder.backbone``)."""
    for part in parts:
        if part.split(".")[0] not in PARTS:
            raise ValueError(f"Cannot freeze {part!r}: the parts of SAM are {', '.join(PARTS)}.")
        try:
            module = model.get_submodule(part)
        except AttributeError:
            raise ValueError(f"Cannot freeze {part!r}: this model has no such module.") from None
        for param in module.parameters():
            param.requires_grad_(False)


def set_drop_path(model: Sam, rate: float) -> None:
    """Stochastic depth in the image encoder, rising linearly from 0 (first residual branch) to ``rate``
    (last); works for any encoder built with :class:`~segany.modeling.layers.DropPath` layers."""
    paths = [module for module in model.image_encoder.modules() if isinstance(module, DropPath)]
    for index, path in enumerate(paths):
        path.p = rate * index / max(1, len(paths) - 1)


def layer_id(name: str, depth: int) -> int:
    """Depth of a parameter for layer-wise decay: 0 for the patch embedding and positions, ``i + 1`` for
    encoder block ``i``, ``depth + 1`` for the neck and everything after the encoder.
    """
    if depth and name.startswith("image_encoder."):
        rest = name[len("image_encoder.") :]
        if rest.startswith(("patch_embed.", "pos_embed")):
            return 0
        if rest.startswith("blocks."):
            return int(rest.split(".")[1]) + 1
    return depth + 1


def parameter_groups(
    model: Sam,
    lr: float,
    weight_decay: float,
    layer_decay: float,
    rate_scales: Mapping[str, float] | None = None,
) -> list[dict]:
    """AdamW groups: per (layer, decay or not); a layer's rate is ``lr * layer_decay ** (depth + 1 - id)``.

    Only trainable parameters are included. Weight decay applies to matrices and kernels, not to
    biases, norms or embedding tables (nanoGPT's ``dim >= 2`` rule, plus the tables by name).
    ``rate_scales``: name prefix -> factor on the rate of the parameters under it (e.g. parts that
    start from zero while the rest is fine-tuned).
    """
    scales = dict(rate_scales or {})
    # Encoders without a ``blocks`` list (TinyViT) train at one rate: no layer-wise decay.
    depth = len(getattr(model.image_encoder, "blocks", ()))
    groups: dict[tuple[int, bool, float], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = layer_id(name, depth)
        decay = param.dim() >= 2 and not any(key in name for key in _NO_DECAY_NAMES)
        factor = next((f for p, f in scales.items() if name == p or name.startswith(p + ".")), 1.0)
        key = (layer, decay, factor)
        if key not in groups:
            scale = layer_decay ** (depth + 1 - layer) * factor
            groups[key] = {
                "params": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(param)
    if not groups:
        raise ValueError("Nothing to train: every part of the model is frozen.")
    return [groups[key] for key in sorted(groups)]


def build_optimizer(
    model: Sam,
    lr: float,
    weight_decay: float,
    layer_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    rate_scales: Mapping[str, float] | None = None,
) -> torch.optim.AdamW:
    groups = parameter_groups(model, lr, weight_decay, layer_decay, rate_scales)
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


@dataclass
class WarmupStepDecay:
    """Rate factor at a step: linear warm-up to 1 over ``warmup`` steps, times ``gamma`` after each of
    ``milestones`` (steps). A plain object, so ``LambdaLR`` saves and restores it with the scheduler.
    """

    warmup: int
    milestones: Sequence[int]
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else 1.0
        return warm * self.gamma ** sum(step >= milestone for milestone in self.milestones)


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup: int, milestones: Sequence[int], gamma: float
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupStepDecay(warmup, list(milestones), gamma))


def reschedule(
    scheduler: torch.optim.lr_scheduler.LambdaLR, warmup: int, milestones: Sequence[int], gamma: float
) -> None:
    """Replace a (restored) scheduler's warm-up and milestones, keeping its step, and set the
    optimiser's current rates to match: a resumed run follows the config it is resumed with, so a run
    is extended by raising ``steps``. With an unchanged config this changes nothing."""
    scheduler.lr_lambdas = [WarmupStepDecay(warmup, list(milestones), gamma) for _ in scheduler.lr_lambdas]
    step = scheduler.last_epoch
    for group, base, factor in zip(
        scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * factor(step)
