"""CLIP (through ``open_clip``) as SAM's text-image encoder, from a weights file the user already has.

Nothing is downloaded: the architecture comes from open_clip's bundled model configs, the weights from
a local file, and only models whose tokenizer ships with open_clip are accepted (Hugging Face text
towers and tokenizers would be fetched on first use). The default, ``ViT-B-32``, fits the
``open_clip_pytorch_model.bin`` of ``laion/CLIP-ViT-B-32-laion2B-s34B-b79K`` on Hugging Face (OpenAI's
original weights need ``ViT-B-32-quickgelu``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TextEncoderError

DEFAULT_CLIP_MODEL = "ViT-B-32"
WEIGHTS_HINT = (
    "download open_clip_pytorch_model.bin from laion/CLIP-ViT-B-32-laion2B-s34B-b79K on Hugging Face "
    "and pass it with --text-encoder PATH"
)


class ClipTextImageEncoder:
    """An open_clip model seen through :class:`segany.text.TextImageEncoder`.

    Build it with :func:`load_clip`. Both towers run in float32, without gradients, on ``device``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        embed_dim: int,
        image_size: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ) -> None:
        """
        Args:
            model: an open_clip ``CLIP`` (``encode_text``/``encode_image``), in eval mode.
            tokenizer: open_clip tokenizer: list of phrases -> ``N x L`` int64 token ids.
            embed_dim: ``D``, the width of both towers' outputs.
            image_size: side ``S`` of the square input of the image tower.
            pixel_mean, pixel_std: the image tower's RGB statistics, on the [0, 1] scale.
        """
        self.model = model
        self.tokenizer = tokenizer
        self._image_size = int(image_size)
        self._embed_dim = int(embed_dim)
        device = self.device
        self._mean = 255.0 * torch.tensor(pixel_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._std = 255.0 * torch.tensor(pixel_std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_text(self, phrases: Sequence[str]) -> torch.Tensor:
        """``N`` phrases -> ``N x D`` float32 unit-length embeddings."""
        if isinstance(phrases, str):
            raise TypeError("encode_text takes a sequence of phrases, not one string; wrap it in a list.")
        tokens = self.tokenizer(list(phrases)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    @torch.no_grad()
    def encode_images(self, crops: torch.Tensor) -> torch.Tensor:
        """``N x 3 x S x S`` RGB crops, float in [0, 255] -> ``N x D`` float32 unit-length embeddings."""
        size = self._image_size
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, size, size):
            raise ValueError(f"CLIP crops must be N x 3 x {size} x {size}, got {tuple(crops.shape)}.")
        pixels = (crops.to(self.device, torch.float32) - self._mean) / self._std
        return F.normalize(self.model.encode_image(pixels).float(), dim=-1)


def load_clip(
    weights: str | Path,
    model_name: str = DEFAULT_CLIP_MODEL,
    device: str | torch.device | None = None,
) -> ClipTextImageEncoder:
    """The open_clip model ``model_name`` with the weights of the local file ``weights``.

    Args:
        weights: an open_clip checkpoint (``.bin``/``.pt``/``.pth`` saved by torch, or ``.safetensors``).
        model_name: an architecture from ``open_clip.list_models()`` whose tokenizer ships with open_clip.
        device: where the model runs; default CUDA when available, else CPU.
    Raises:
        TextEncoderError: open_clip missing, the file missing or unreadable, its tensors not fitting
            ``model_name``, or a model that would need a download; one sentence each.
    """
    from ..runtime import resolve_device

    open_clip = _import_open_clip()
    path = Path(weights)
    if not path.is_file():
        raise TextEncoderError(f"CLIP weights {path} not found; {WEIGHTS_HINT}.")
    config = _model_config(open_clip, model_name)
    try:
        device = resolve_device(device)
    except ValueError as exc:
        raise TextEncoderError(str(exc)) from exc
    model = open_clip.create_model(
        model_name, pretrained=None, device="cpu", pretrained_image=False, pretrained_text=False
    )
    try:
        open_clip.load_checkpoint(model, str(path))
    except Exception as exc:  # torch, safetensors and open_clip each raise their own types
        raise TextEncoderError(_load_failure(open_clip, path, model_name, exc)) from exc
    size = open_clip.get_model_preprocess_cfg(model)["size"]
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise TextEncoderError(
                f"CLIP model {model_name} takes {size[0]} x {size[1]} images; use one with square input."
            )
        size = size[0]
    mean, std = _pixel_stats(open_clip, model_name)
    tokenizer = open_clip.get_tokenizer(model_name)
    return ClipTextImageEncoder(model.to(device).eval(), tokenizer, config["embed_dim"], int(size), mean, std)


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise TextEncoderError(
            "CLIP text prompts need open_clip; install it with `pip install 'segany[text]'`."
        ) from exc
    return open_clip


def _model_config(open_clip: Any, model_name: str) -> dict[str, Any]:
    """open_clip's config of ``model_name``, refused when unknown or when it would need a download."""
    names = open_clip.list_models()
    if model_name not in names:
        examples = [n for n in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50") if n in names]
        raise TextEncoderError(
            f"Unknown CLIP model {model_name!r}; use one of open_clip's models, e.g. {', '.join(examples)} "
            "(open_clip.list_models() lists them all)."
        )
    config = open_clip.get_model_config(model_name)
    text_cfg = config.get("text_cfg", {})
    if "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg or "siglip" in model_name.lower():
        raise TextEncoderError(
            f"CLIP model {model_name} needs files from Hugging Face for its text tower or tokenizer, and segany "
            "downloads nothing; use a model with open_clip's own tokenizer such as ViT-B-32."
        )
    return config


def _load_failure(open_clip: Any, path: Path, model_name: str, exc: Exception) -> str:
    """The sentence for a weights file that did not load: unreadable, or not this architecture."""
    # Read it once more, alone, to tell the two apart (only on this failure path).
    try:
        open_clip.factory.load_state_dict(str(path))
    except Exception:
        return (
            f"Cannot read CLIP weights {path} ({type(exc).__name__}); pass an open_clip weights file saved "
            f"with torch or safetensors ({WEIGHTS_HINT})."
        )
    return (
        f"CLIP weights {path} do not fit open_clip model {model_name}; pass --clip-model with the "
        "architecture the file was trained as (e.g. ViT-B-16 for a ViT-B/16 file)."
    )


def _pixel_stats(open_clip: Any, model_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RGB mean and std on the [0, 1] scale. A weights file carries none, so: the statistics all of
    open_clip's published weights for this architecture agree on, else OpenAI's (open_clip's default)."""
    stats = set()
    for tag in open_clip.list_pretrained_tags_by_model(model_name):
        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        stats.add(
            (
                tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)),
            )
        )
    if len(stats) == 1:
        return stats.pop()
    return tuple(open_clip.OPENAI_DATASET_MEAN), tuple(open_clip.OPENAI_DATASET_STD)
