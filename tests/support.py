"""Helpers shared by the test layers: small configs, deterministic weights, the official twin model."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from segany.config import EfficientNetLiteConfig, ImageEncoderConfig, SamConfig, TinyViTConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Same structure as vit_b (windowed + global blocks, rel-pos, neck), at a size that runs in milliseconds.
TINY = SamConfig(
    ImageEncoderConfig(
        img_size=256, embed_dim=64, depth=4, num_heads=4, window_size=7, global_attn_indexes=(1, 3)
    ),
    decoder_mlp_dim=512,
)

# The trained fixture model (tests/make_fixture_model.py writes FIXTURE_PATH): small enough to train on
# a CPU in minutes, trained enough that the automatic generator finds real, stable masks. The encoder's
# out_chans must equal prompt_embed_dim, since the decoder adds prompt embeddings to the image embedding.
FIXTURE = SamConfig(
    ImageEncoderConfig(
        img_size=256,
        patch_size=16,
        embed_dim=96,
        depth=4,
        num_heads=4,
        out_chans=128,
        window_size=8,
        global_attn_indexes=(1, 3),
    ),
    prompt_embed_dim=128,
    decoder_mlp_dim=512,
    iou_head_hidden_dim=128,
)
FIXTURE_PATH = Path(__file__).resolve().parent / "data" / "amg_fixture.safetensors"

# MobileSAM's vit_t at a quarter of the input side (16 x 16 embedding): every TinyViT path, 1/16 the cost.
TINY_T = SamConfig(TinyViTConfig(img_size=256), decoder_mlp_dim=512)

_EMBEDDING_NAMES = ("iou_token", "mask_tokens", "point_embeddings", "not_a_point_embed", "no_mask_embed")


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every tensor a deterministic random value with O(1) activations.

    The official initialisation leaves some tensors zero (position embeddings, relative positions,
    LayerNorm biases), which would hide bugs on those paths; here every path carries signal.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in sorted(model.state_dict(keep_vars=True).items()):
        if not tensor.is_floating_point():
            continue
        noise = torch.randn(tensor.shape, generator=gen)
        if any(part in name for part in _EMBEDDING_NAMES) or name.endswith(
            "positional_encoding_gaussian_matrix"
        ):
            value = noise
        elif name.endswith(("rel_pos_h", "rel_pos_w", "pos_embed", "attention_biases")):
            value = 0.5 * noise
        elif name.endswith("running_var"):  # BatchNorm (TinyViT): a variance must stay positive
            value = 1.0 + 0.2 * noise.abs()
        elif tensor.ndim == 1 and ("norm" in name or _is_norm_param(model, name)):
            value = (1.0 + 0.2 * noise) if name.endswith("weight") else 0.1 * noise
        elif tensor.ndim == 1:
            value = 0.1 * noise
        else:
            fan_in = int(np.prod(tensor.shape[1:]))
            value = noise / np.sqrt(fan_in)
        tensor.copy_(value.to(tensor.dtype))
    return model


def _is_norm_param(model: nn.Module, name: str) -> bool:
    module_name = name.rsplit(".", 1)[0]
    module = dict(model.named_modules()).get(module_name)
    return module is not None and type(module).__name__ in ("LayerNorm", "LayerNorm2d", "BatchNorm2d")


def official_sam(config: SamConfig) -> nn.Module:
    """The official ``segment_anything`` Sam with the architecture of ``config`` (test-only dependency)."""
    from functools import partial

    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    e = config.encoder
    grid = e.img_size // e.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=e.img_size,
            patch_size=e.patch_size,
            embed_dim=e.embed_dim,
            depth=e.depth,
            num_heads=e.num_heads,
            mlp_ratio=e.mlp_ratio,
            out_chans=e.out_chans,
            qkv_bias=e.qkv_bias,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=e.use_rel_pos,
            window_size=e.window_size,
            global_attn_indexes=e.global_attn_indexes,
        ),
        **_reference_heads(config, grid, PromptEncoder, MaskDecoder, TwoWayTransformer),
    ).eval()


def twin_models(config: SamConfig, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A segany model with random weights and the official model loaded (strictly) with the same weights."""
    from segany import sam_from_config

    ours = randomize_(sam_from_config(config), seed).eval()
    theirs = official_sam(config)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def mobilesam_sam(config: SamConfig, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """MobileSAM's Sam (``mobile_sam`` package, test-only) with a TinyViT encoder, loaded with ``state_dict``.

    The weights are loaded *before* ``.eval()``: MobileSAM's attention caches its bias table when
    ``.eval()`` is called, so weights set afterwards would leave that cache stale. Its TinyViT only
    runs at img_size 1024 with the published stage widths (it hard-codes the 64 x 64 grid and which
    merge keeps the resolution).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm deprecation and registry-overwrite warnings on import
        from mobile_sam.modeling import MaskDecoder, PromptEncoder, Sam, TinyViT, TwoWayTransformer

    e = config.encoder
    grid = e.embedding_grid
    model = Sam(
        image_encoder=TinyViT(
            img_size=e.img_size,
            num_classes=e.num_classes,
            embed_dims=list(e.embed_dims),
            depths=list(e.depths),
            num_heads=list(e.num_heads),
            window_sizes=list(e.window_sizes),
            mlp_ratio=e.mlp_ratio,
            drop_path_rate=0.0,
            mbconv_expand_ratio=e.mbconv_expand_ratio,
            local_conv_size=e.local_conv_size,
        ),
        **_reference_heads(config, grid, PromptEncoder, MaskDecoder, TwoWayTransformer),
    )
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def mobilesam_twin_models(config: SamConfig, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A segany ``vit_t``-type model with random weights and MobileSAM's model with the same weights.

    segany's weights are set *after* ``.eval()`` on purpose, the order that leaves MobileSAM with a
    stale bias cache: every comparison against the twin is then also a check that segany has no such cache.
    """
    from segany import sam_from_config

    ours = randomize_(sam_from_config(config).eval(), seed)
    return ours, mobilesam_sam(config, ours.state_dict())


def fixture_model() -> nn.Module:
    """The trained fixture model (segany ``Sam``, float32, eval mode, CPU), built from ``FIXTURE_PATH``.

    For the official twin, load the same weights: ``official_sam(FIXTURE).load_state_dict(
    fixture_model().state_dict())``.
    """
    from segany import build_sam

    if not FIXTURE_PATH.exists():
        raise FileNotFoundError(
            f"{FIXTURE_PATH} is missing; create it with `python tests/make_fixture_model.py`."
        )
    return build_sam(FIXTURE, checkpoint=FIXTURE_PATH, device="cpu")


def sample_image(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A real photo from ../shared/data when present, else a smooth synthetic RGB image."""
    photo = SHARED_DATA / "images" / "truck.jpg"
    if photo.exists():
        from segany.images import load_image

        return load_image(photo)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx * 255 / width), (yy * 255 / height), 128 + 60 * np.sin(xx / 23.0)], axis=-1)
    image = image + rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _reference_heads(
    config: SamConfig, grid: int, prompt_encoder: type, mask_decoder: type, transformer: type
) -> dict[str, object]:
    """Prompt encoder, mask decoder and pixel statistics of a reference ``Sam`` (the official package and
    MobileSAM share these classes' signatures), as keyword arguments."""
    size = config.encoder.img_size
    return {
        "prompt_encoder": prompt_encoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(size, size),
            mask_in_chans=config.mask_in_chans,
        ),
        "mask_decoder": mask_decoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=transformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        "pixel_mean": list(config.pixel_mean),
        "pixel_std": list(config.pixel_std),
    }


# A CLIP small enough to build in a blink (open_clip architecture, random weights), registered with
# open_clip under TINY_CLIP_NAME by tiny_clip(); its tokenizer is open_clip's bundled one (vocab 49408).
TINY_CLIP_NAME = "segany-test-tiny-clip"
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_clip(folder: Path, seed: int = 0) -> tuple[Path, nn.Module]:
    """Register ``TINY_CLIP`` with open_clip and save a random one: ``(weights file, model in eval mode)``.

    The weights are a plain ``torch.save``'d state dict, as open_clip's published ``.bin`` files are.
    """
    import json

    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{TINY_CLIP_NAME}.json"
    config_path.write_text(json.dumps(TINY_CLIP))
    if TINY_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(config_path)
    with torch.random.fork_rng():  # the caller's random stream is left as it was
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None).eval()
    weights = folder / "tiny_clip.bin"
    torch.save(model.state_dict(), weights)
    return weights, model


class ColourTextEncoder:
    """A :class:`segany.text.TextImageEncoder` stand-in that knows colours: ``"red"``, ``"green"`` and
    ``"blue"`` embed like crops of that colour; other phrases get a fixed random direction.

    A crop's embedding depends only on the mean colour of its non-black pixels (so a crop zeroed
    outside its mask shows the object's own colour); a shared random ``3 x D`` matrix maps colours.
    """

    COLOURS: ClassVar[dict[str, tuple[float, float, float]]] = {
        "red": (255.0, 0.0, 0.0),
        "green": (0.0, 255.0, 0.0),
        "blue": (0.0, 0.0, 255.0),
    }

    def __init__(self, embed_dim: int = 32, image_size: int = 16) -> None:
        self._embed_dim, self._image_size = embed_dim, image_size
        self.matrix = torch.randn(3, embed_dim, generator=torch.Generator().manual_seed(0))
        self.text_calls: list[list[str]] = []

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    @property
    def image_size(self) -> int:
        return self._image_size

    def _colour(self, rgb: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize((rgb / 255.0 - 0.5) @ self.matrix, dim=-1)

    def encode_text(self, phrases) -> torch.Tensor:
        self.text_calls.append(list(phrases))
        rows = []
        for phrase in phrases:
            if phrase in self.COLOURS:
                rows.append(self._colour(torch.tensor(self.COLOURS[phrase])))
            else:
                seed = zlib.crc32(phrase.encode("utf-8"))
                rows.append(torch.randn(self._embed_dim, generator=torch.Generator().manual_seed(seed)))
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)

    def encode_images(self, crops: torch.Tensor) -> torch.Tensor:
        assert crops.shape[1:] == (3, self._image_size, self._image_size), crops.shape
        lit = (crops.sum(dim=1, keepdim=True) > 0).float()
        mean = (crops * lit).sum(dim=(2, 3)) / lit.sum(dim=(2, 3)).clamp(min=1.0)
        return self._colour(mean)


# The bundled model's architecture (EfficientNet-Lite0 encoder, prompt prior) at a size that runs in
# milliseconds; untrained.
SMALL_EFFICIENTNET = SamConfig(
    EfficientNetLiteConfig(img_size=256, out_stride=16, neck_dim=32, out_chans=64),
    prompt_embed_dim=64,
    decoder_mlp_dim=128,
    iou_head_hidden_dim=64,
    prompt_prior="geometric",
)


def small_efficientnet_model(config: SamConfig = SMALL_EFFICIENTNET, seed: int = 0) -> nn.Module:
    """An untrained model of ``config`` with seeded initialisation, in eval mode."""
    import segany

    torch.manual_seed(seed)
    return segany.build_sam(config, device="cpu")


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    """``segany ARGV`` in-process: exit code (argparse's SystemExit included), stdout, stderr."""
    from segany.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err
