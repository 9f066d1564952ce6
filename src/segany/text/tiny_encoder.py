"""A small text-image encoder that segany trains itself: the offline stand-in for CLIP (paper section 7.5).

No CLIP weights can be had offline, so the text-prompt demonstration pairs SAM with this encoder,
trained CLIP-style on labelled synthetic scenes (:mod:`segany.training.text_encoder_training`):

* the **image tower** is a small CNN on ``image_size x image_size`` RGB crops (four stride-2 convolutions
  with GroupNorm and GELU, global average pooling, a two-layer head);
* the **text tower** is a bag of words over a fixed vocabulary: the phrase's known words are looked up
  and summed, and a two-layer MLP maps the sum into the shared space, so ``"large blue ellipse"``
  composes its three words. Unknown words (index 0) have a fixed zero vector and add nothing.

Both towers end in unit vectors of width ``embed_dim``. The file format is safetensors with the
encoder's config as JSON under the metadata key ``segany_text_encoder``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TextEncoderError
from ..files import atomic_write
from .vocabulary import VOCABULARY

METADATA_KEY = "segany_text_encoder"
UNKNOWN = "<unk>"


@dataclass(frozen=True)
class TinyEncoderConfig:
    """Sizes of :class:`TinyTextImageEncoder`; ``vocabulary`` excludes the unknown token (index 0)."""

    embed_dim: int = 64
    image_size: int = 64
    vocabulary: tuple[str, ...] = VOCABULARY
    word_dim: int = 64
    channels: tuple[int, ...] = (32, 64, 96, 128)
    hidden_dim: int = 128

    def __post_init__(self) -> None:
        if self.embed_dim < 1 or self.word_dim < 1 or self.hidden_dim < 1 or not self.channels:
            raise ValueError("A tiny text encoder needs positive widths and at least one convolution.")
        if self.image_size % 2 ** len(self.channels):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2 ** {len(self.channels)} (one halving per convolution)."
            )
        if len(set(self.vocabulary)) != len(self.vocabulary) or UNKNOWN in self.vocabulary:
            raise ValueError("The vocabulary must hold distinct words and not the unknown token.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinyEncoderConfig:
        """Inverse of ``dataclasses.asdict``; unknown keys are an error."""
        data = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
        return cls(**data)


class TinyTextImageEncoder(nn.Module):
    """Implements :class:`segany.text.TextImageEncoder` with a small CNN and a bag-of-words MLP."""

    def __init__(self, config: TinyEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or TinyEncoderConfig()
        c = self.config
        self._word_index = {word: i + 1 for i, word in enumerate(c.vocabulary)}

        # Image tower: each convolution halves the side.
        layers: list[nn.Module] = []
        previous = 3
        for width in c.channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.GroupNorm(8, width), nn.GELU()]
            previous = width
        self.image_features = nn.Sequential(*layers)
        self.image_head = nn.Sequential(
            nn.Linear(previous, c.hidden_dim), nn.GELU(), nn.Linear(c.hidden_dim, c.embed_dim)
        )

        # Text tower: the sum of the phrase's word vectors, then an MLP.
        self.words = nn.Embedding(len(c.vocabulary) + 1, c.word_dim, padding_idx=0)
        self.text_head = nn.Sequential(
            nn.Linear(c.word_dim, c.hidden_dim), nn.GELU(), nn.Linear(c.hidden_dim, c.embed_dim)
        )
        # CLIP's learned temperature, as a log; used by training only.
        self.logit_scale = nn.Parameter(torch.tensor(2.3))

    # --- The TextImageEncoder protocol --------------------------------------------------------------

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def encode_text(self, phrases: Sequence[str]) -> torch.Tensor:
        """``N`` phrases -> ``N x D`` float32 unit embeddings. Words are lower-cased and split on anything
        but letters; words outside the vocabulary are ignored."""
        if isinstance(phrases, str):
            raise TypeError("encode_text takes a sequence of phrases, not one string; wrap it in a list.")
        ids = [[self._word_index.get(word, 0) for word in tokenize(phrase)] or [0] for phrase in phrases]
        longest = max((len(row) for row in ids), default=1)
        table = torch.zeros((len(ids), longest), dtype=torch.int64)
        for i, row in enumerate(ids):
            table[i, : len(row)] = torch.tensor(row)
        summed = self.words(table.to(self.device)).sum(dim=1)  # padding and unknown words are zero
        return F.normalize(self.text_head(summed).float(), dim=-1)

    def encode_images(self, crops: torch.Tensor) -> torch.Tensor:
        """``N x 3 x S x S`` RGB crops, float in [0, 255] -> ``N x D`` float32 unit embeddings."""
        size = self.config.image_size
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, size, size):
            raise ValueError(f"Crops must be N x 3 x {size} x {size}, got {tuple(crops.shape)}.")
        pixels = (crops.to(self.device, torch.float32) / 255.0 - 0.5) / 0.25
        features = self.image_features(pixels).mean(dim=(2, 3))
        return F.normalize(self.image_head(features).float(), dim=-1)

    # --- Files ----------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights (float32) and config to a ``.safetensors`` file; atomic (temporary, rename)."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {key: value.detach().cpu().contiguous() for key, value in self.state_dict().items()}
        return atomic_write(
            path, lambda tmp: save_file(tensors, str(tmp), metadata={METADATA_KEY: self.config.to_json()})
        )


def tokenize(phrase: str) -> list[str]:
    """Lower-case words of ``phrase`` (runs of letters): ``"Large, BLUE ellipse"`` -> three words."""
    return re.findall(r"[a-z]+", phrase.lower())


def load_tiny_encoder(path: str | os.PathLike[str]) -> TinyTextImageEncoder:
    """The encoder saved at ``path`` by :meth:`TinyTextImageEncoder.save`, in eval mode on the CPU.

    Raises:
        TextEncoderError: the file is missing, unreadable, or not a segany text encoder.
    """
    from ..checkpoints import UnreadableSafetensors, read_safetensors

    path = Path(path)
    hint = "train one with `segany train-text-encoder --out FILE` or check the path"
    if not path.is_file():
        raise TextEncoderError(f"Text encoder {path} not found; {hint}.")
    try:
        tensors, metadata = read_safetensors(path)
    except UnreadableSafetensors as exc:
        raise TextEncoderError(
            f"Text encoder {path} is not a readable safetensors file ({exc}); {hint}."
        ) from exc
    if METADATA_KEY not in metadata:
        raise TextEncoderError(
            f"{path} is not a segany text encoder (its metadata has no {METADATA_KEY!r}); {hint}."
        )
    try:
        config = TinyEncoderConfig.from_dict(json.loads(metadata[METADATA_KEY]))
        encoder = TinyTextImageEncoder(config)
        encoder.load_state_dict({key: value.float() for key, value in tensors.items()}, strict=True)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise TextEncoderError(
            f"Text encoder {path} does not match its own config ({str(exc).splitlines()[0][:120]}); {hint}."
        ) from exc
    return encoder.eval()
