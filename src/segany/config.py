"""Typed, frozen configurations of SAM models. A variant (``vit_b``, ...) is just a value of these."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Hyperparameters of the ViT image encoder (SAM's ``vit_b``/``vit_l``/``vit_h``)."""

    kind: ClassVar[str] = "vit"

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
class TinyViTConfig:
    """Hyperparameters of MobileSAM's TinyViT image encoder (``vit_t``).

    Four stages: a convolutional stem (stride 4), one stage of MBConv blocks, then stages of windowed
    attention blocks; a patch-merging convolution between stages halves the resolution, except the one
    into the last stage, so the embedding grid is ``img_size / 16`` (64 for the published model).
    Per-stage tuples have one entry per stage; the first stage's ``num_heads`` and ``window_sizes`` are
    unused (it has no attention) but kept so the tuples line up with MobileSAM's definition.
    """

    kind: ClassVar[str] = "tiny_vit"

    img_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256
    # TinyViT's ImageNet classifier (norm_head, head): unused by SAM, kept so the published checkpoint
    # loads with its own keys; 0 drops the head's linear layer.
    num_classes: int = 1000

    def __post_init__(self) -> None:
        stages = len(self.embed_dims)
        if stages < 2 or any(len(t) != stages for t in (self.depths, self.num_heads, self.window_sizes)):
            raise ValueError(
                f"TinyViTConfig needs embed_dims, depths, num_heads and window_sizes of one equal length >= 2 "
                f"(got {len(self.embed_dims)}, {len(self.depths)}, {len(self.num_heads)}, {len(self.window_sizes)})."
            )

    @property
    def embedding_grid(self) -> int:
        """Side of the image-embedding grid: stem stride 4, then 2 per merge but the last (64 at 1024)."""
        return self.img_size // (4 * 2 ** (len(self.embed_dims) - 2))


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    """An EfficientNet-Lite backbone (Tan & Le, 2019; timm's ``efficientnet_lite0``..``4``) with a
    feature-pyramid neck that fuses its stride-8, -16 and -32 features into SAM's image embedding.

    For small SAMs on an ImageNet-pretrained CNN (segany's bundled model). The embedding grid is
    ``img_size / out_stride``; ``neck_dim`` is the width of the pyramid's lateral and top-down path.
    """

    kind: ClassVar[str] = "efficientnet_lite"

    img_size: int = 512
    variant: str = "efficientnet_lite0"
    out_stride: int = 16
    neck_dim: int = 128
    out_chans: int = 256
    # True: the backbone's stride-8 and stride-4 features also reach the decoder's upscaling, carried
    # in the embedding (segany.modeling.detail); needs out_stride 16.
    detail_skips: bool = False

    def __post_init__(self) -> None:
        if self.detail_skips and self.out_stride != 16:
            raise ValueError(f"detail_skips needs out_stride 16, got {self.out_stride}.")
        if self.variant not in EFFICIENTNET_LITE_VARIANTS:
            raise ValueError(
                f"Unknown EfficientNet-Lite variant {self.variant!r}; choose one of: "
                f"{', '.join(EFFICIENTNET_LITE_VARIANTS)}."
            )
        if self.out_stride not in (8, 16, 32):
            raise ValueError(f"out_stride must be 8, 16 or 32 (a pyramid level), got {self.out_stride}.")
        if self.img_size % 32:
            raise ValueError(
                f"img_size must be a multiple of 32 (the backbone's stride), got {self.img_size}."
            )

    @property
    def embedding_grid(self) -> int:
        """Side of the image-embedding grid."""
        return self.img_size // self.out_stride


EFFICIENTNET_LITE_VARIANTS = tuple(f"efficientnet_lite{i}" for i in range(5))

EncoderConfig = ImageEncoderConfig | TinyViTConfig | EfficientNetLiteConfig
ENCODER_KINDS: dict[str, type[ImageEncoderConfig] | type[TinyViTConfig] | type[EfficientNetLiteConfig]] = {
    ImageEncoderConfig.kind: ImageEncoderConfig,
    TinyViTConfig.kind: TinyViTConfig,
    EfficientNetLiteConfig.kind: EfficientNetLiteConfig,
}

# Priors the decoder's mask logits start from (added to its output; see segany.modeling.prompt_prior).
PROMPT_PRIORS = ("none", "geometric")


@dataclass(frozen=True)
class SamConfig:
    """A whole SAM model: encoder, prompt encoder and mask decoder dimensions, and pixel statistics."""

    encoder: EncoderConfig = field(default_factory=ImageEncoderConfig)
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
    # Width of the text/image embeddings (CLIP's, e.g. 512 or 768) the prompt encoder projects to one
    # sparse token (paper section 7.5, appendix D.5); 0 means no text path, as in the official models.
    text_embed_dim: int = 0
    # "geometric": every mask the decoder returns starts from the prompt's geometry (the ellipse inscribed
    # in a box, a disk at each positive click), so the decoder learns corrections of what the prompt
    # already says (segany.modeling.prompt_prior); "none" (the official models): the decoder's alone.
    prompt_prior: str = "none"
    # With a prompt prior: a prompt without a mask prompt also gets the prior as its mask prompt (SAM's
    # dense path), so the decoder sees the prior it corrects, not only its sum.
    prior_as_mask_prompt: bool = False
    # > 0: SamPredictor.predict gives a prompt on a small object a second pass on a square crop this many
    # times the object's side, zoomed to the input size (segany.zoom); 0 (the official models): one pass.
    zoom_context: float = 0.0
    # True: each returned mask's predicted IoU is rescored from the mask and the image embedding under it
    # (segany.modeling.mask_scorer); False (the official models): the IoU token's prediction alone.
    mask_scorer: bool = False
    # Defaults of the automatic mask generator that fit this model (GeneratorConfig field -> value),
    # for models whose predicted IoU is calibrated on another scale than SAM's; empty: SAM's defaults.
    generator_defaults: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.zoom_context != 0 and self.zoom_context < 1:
            raise ValueError(f"zoom_context must be 0 (off) or at least 1, got {self.zoom_context}.")
        if self.prompt_prior not in PROMPT_PRIORS:
            raise ValueError(
                f"prompt_prior must be one of {', '.join(PROMPT_PRIORS)}, got {self.prompt_prior!r}."
            )
        if self.encoder.out_chans != self.prompt_embed_dim:
            raise ValueError(
                f"encoder.out_chans ({self.encoder.out_chans}) must equal prompt_embed_dim ({self.prompt_embed_dim}): "
                "the decoder adds prompt embeddings to the image embedding."
            )
        if self.text_embed_dim < 0:
            raise ValueError(
                f"text_embed_dim must be 0 (no text path) or positive, got {self.text_embed_dim}."
            )

    @property
    def detail_skips(self) -> bool:
        """Whether the embedding carries fine features for the decoder (``EfficientNetLiteConfig.detail_skips``)."""
        return bool(getattr(self.encoder, "detail_skips", False))

    def to_dict(self) -> dict[str, Any]:
        """Plain values; ``encoder["kind"]`` names the encoder type (``vit``, ``tiny_vit``, ``efficientnet_lite``)."""
        data = dataclasses.asdict(self)
        data["encoder"]["kind"] = self.encoder.kind
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (so a typo is never silently ignored)."""
        data = dict(data)
        encoder = dict(data.pop("encoder", {}))
        # Files written before TinyViT existed carry no kind: they are ViTs.
        kind = encoder.pop("kind", ImageEncoderConfig.kind)
        if kind not in ENCODER_KINDS:
            raise ValueError(f"Unknown encoder kind {kind!r}; choose one of: {', '.join(ENCODER_KINDS)}.")
        # JSON and TOML give lists where the dataclasses hold tuples.
        encoder = {k: tuple(v) if isinstance(v, list) else v for k, v in encoder.items()}
        for key in ("pixel_mean", "pixel_std"):
            if key in data:
                data[key] = tuple(data[key])
        if "generator_defaults" in data:
            pairs = data["generator_defaults"]
            pairs = pairs.items() if isinstance(pairs, dict) else pairs
            data["generator_defaults"] = tuple((str(k), float(v)) for k, v in pairs)
        return cls(encoder=ENCODER_KINDS[kind](**encoder), **data)

    @classmethod
    def from_json(cls, text: str) -> SamConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> SamConfig:
        """A copy with top-level fields changed; ``encoder=dict(...)`` changes encoder fields."""
        if isinstance(changes.get("encoder"), dict):
            changes["encoder"] = dataclasses.replace(self.encoder, **changes["encoder"])
        return dataclasses.replace(self, **changes)
