"""Open a text-image encoder from a file, and check that it fits the SAM model it will prompt."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import TextEncoderError
from .clip import DEFAULT_CLIP_MODEL, WEIGHTS_HINT, load_clip
from .encoder import TextImageEncoder

if TYPE_CHECKING:
    from ..modeling import Sam


def load_text_encoder(
    path: str | Path,
    clip_model: str = DEFAULT_CLIP_MODEL,
    device: str | torch.device | None = None,
) -> TextImageEncoder:
    """The text-image encoder stored in ``path``, on ``device`` (default CUDA when available).

    A ``.safetensors`` file whose metadata holds ``"segany_text_encoder"`` is segany's small encoder
    (:func:`segany.text.tiny_encoder.load_tiny_encoder`); any other file is open_clip weights of the
    architecture ``clip_model`` (:func:`segany.text.clip.load_clip`).

    Raises:
        TextEncoderError: the file is missing, unreadable, or not an encoder; one sentence.
    """
    from ..runtime import resolve_device

    path = Path(path)
    if not path.is_file():
        raise TextEncoderError(
            f"Text encoder {path} not found; {WEIGHTS_HINT}, or pass a segany text encoder "
            "(`segany train-text-encoder --out FILE`)."
        )
    try:
        device = resolve_device(device)
    except ValueError as exc:
        raise TextEncoderError(str(exc)) from exc
    if path.suffix == ".safetensors":
        # Imported only for safetensors files: the key that marks segany's encoder is defined there.
        from .tiny_encoder import METADATA_KEY, load_tiny_encoder

        if METADATA_KEY in _safetensors_metadata(path):
            encoder = load_tiny_encoder(path)
            if isinstance(encoder, nn.Module):
                encoder.to(device)
            return encoder
    return load_clip(path, clip_model, device=device)


def check_pair(model: Sam, encoder: TextImageEncoder) -> None:
    """Raise :class:`TextEncoderError` unless ``model`` has a text path as wide as ``encoder``'s embeddings."""
    width = text_width(model)
    if width != encoder.embed_dim:
        raise TextEncoderError(
            f"This SAM model takes {width}-wide text embeddings but the text encoder gives "
            f"{encoder.embed_dim}; use the encoder the model was trained with."
        )


def text_width(model: Sam) -> int:
    """``D``, the width of the text embeddings ``model`` takes; :class:`TextEncoderError` when it has no
    text path (the official models)."""
    width = model.prompt_encoder.text_embed_dim
    if width == 0:
        raise TextEncoderError(
            "This SAM model has no text prompt path; use a checkpoint trained with text prompts "
            "(text_embed_dim > 0)."
        )
    return width


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The metadata of a ``.safetensors`` file (its header only is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise TextEncoderError(
            f"Cannot read text encoder {path} as a safetensors file ({type(exc).__name__}); "
            "check the file or download it again."
        ) from exc
