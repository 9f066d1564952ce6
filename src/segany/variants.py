"""Named model variants (values of :class:`SamConfig`) and their official weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import ImageEncoderConfig, SamConfig, TinyViTConfig

VIT_B = SamConfig(
    ImageEncoderConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11))
)
VIT_L = SamConfig(
    ImageEncoderConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23))
)
VIT_H = SamConfig(
    ImageEncoderConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31))
)

# MobileSAM (Zhang et al., 2023): SAM's prompt encoder and decoder behind a distilled TinyViT encoder.
VIT_T = SamConfig(TinyViTConfig())

VARIANTS: dict[str, SamConfig] = {"vit_h": VIT_H, "vit_l": VIT_L, "vit_b": VIT_B, "vit_t": VIT_T}
ALIASES: dict[str, str] = {"default": "vit_h"}


@dataclass(frozen=True)
class OfficialWeights:
    """Where an official checkpoint lives and how to check it (kept apart from the architecture)."""

    variant: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
OFFICIAL_WEIGHTS: dict[str, OfficialWeights] = {
    "vit_h": OfficialWeights(
        "vit_h",
        _BASE_URL + "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    "vit_l": OfficialWeights(
        "vit_l",
        _BASE_URL + "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_b": OfficialWeights(
        "vit_b",
        _BASE_URL + "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
}

# Variants whose weights have no stable URL with a known checksum, so no download: where to get them.
MANUAL_WEIGHTS: dict[str, str] = {
    "vit_t": "mobile_sam.pt from MobileSAM's repository (weights/mobile_sam.pt in "
    "https://github.com/ChaoningZhang/MobileSAM)",
}


# segany's own model, trained here (configs/bundled_v2.toml, then configs/bundled_v2_stage2.toml; card:
# weights/MODEL_CARD.md). Its architecture (and how it is used) travels in the
# file's metadata, so it needs no entry in VARIANTS.
BUNDLED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "segany_small.safetensors"


def bundled_checkpoint() -> Path | None:
    """The weights file shipped with segany, or None in an installation without it."""
    return BUNDLED_WEIGHTS if BUNDLED_WEIGHTS.is_file() else None


def resolve_variant(name: str) -> str:
    """Canonical variant name (``default`` -> ``vit_h``); a clear ``ValueError`` for unknown names."""
    canonical = ALIASES.get(name, name)
    if canonical not in VARIANTS:
        known = ", ".join(sorted([*VARIANTS, *ALIASES]))
        raise ValueError(f"Unknown model {name!r}; choose one of: {known}.")
    return canonical


def variant_of(config: SamConfig) -> str | None:
    """The variant name whose configuration equals ``config``, or None for a custom model."""
    for name, candidate in VARIANTS.items():
        if candidate == config:
            return name
    return None
