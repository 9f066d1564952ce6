"""Typed, frozen configurations of SAM models. A variant (``vit_b``, ...) is just a value of these."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Hyperparameters of the ViT image encoder."""

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True

    @property
    def embedding_grid(self) -> int:
        """Side of the image-embedding grid (64 for the official models)."""
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class SamConfig:
    """A whole SAM model: encoder, prompt encoder and mask decoder dimensions, and pixel statistics."""

    encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    def __post_init__(self) -> None:
        if self.encoder.out_chans != self.prompt_embed_dim:
            raise ValueError(
                f"encoder.out_chans ({self.encoder.out_chans}) must equal prompt_embed_dim ({self.prompt_embed_dim}): "
                "the decoder adds prompt embeddings to the image embedding."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (so a typo is never silently ignored)."""
        data = dict(data)
        encoder = dict(data.pop("encoder", {}))
        if "global_attn_indexes" in encoder:
            encoder["global_attn_indexes"] = tuple(encoder["global_attn_indexes"])
        for key in ("pixel_mean", "pixel_std"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(encoder=ImageEncoderConfig(**encoder), **data)

    @classmethod
    def from_json(cls, text: str) -> SamConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> SamConfig:
        """A copy with top-level fields changed; ``encoder=dict(...)`` changes encoder fields."""
        if isinstance(changes.get("encoder"), dict):
            changes["encoder"] = dataclasses.replace(self.encoder, **changes["encoder"])
        return dataclasses.replace(self, **changes)
