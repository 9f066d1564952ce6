"""The interface between SAM's text path and a text-image encoder such as CLIP.

SAM's prompt encoder takes one ``D``-wide embedding per prompt. In training it is the image tower's
embedding of the object's crop; at inference the text tower's embedding of a phrase; the two towers
are trained (CLIP) so that a phrase and a crop of what it names land close together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class TextImageEncoder(Protocol):
    """A text tower and an image tower that map into one ``embed_dim``-wide space."""

    @property
    def embed_dim(self) -> int:
        """``D``: the width of both towers' embeddings."""
        ...

    @property
    def image_size(self) -> int:
        """Side ``S`` of the square crops :meth:`encode_images` takes."""
        ...

    def encode_text(self, phrases: Sequence[str]) -> torch.Tensor:
        """``N`` phrases -> ``N x D`` float32 unit-length embeddings (on the encoder's device)."""
        ...

    def encode_images(self, crops: torch.Tensor) -> torch.Tensor:
        """``N x 3 x S x S`` RGB crops, float in [0, 255], any device -> ``N x D`` float32 unit-length
        embeddings (on the encoder's device). Each encoder applies its own pixel normalisation."""
        ...
