"""Detail skips: fine backbone features carried in the image embedding for the decoder's upscaling.

SAM's decoder draws every mask from its ``h x w`` image embedding (stride 16 of the input), upscaled
4x by two transposed convolutions; nothing finer than that grid reaches the mask, so boundaries are
placed from 16-px cells. HQ-SAM (Ke et al., 2023) adds the encoder's early, high-resolution features to
the decoder's upscaled features; U-Net's skips do the same. Here an encoder may carry two such maps:
its stride-8 and stride-4 features, projected to the widths of the decoder's two upscaling steps
(``C/4`` and ``C/8`` channels for a ``C``-wide embedding), which the decoder adds after each step.

So that an image stays one tensor wherever embeddings are kept (the predictor, the app's store, the
ONNX decoder's input), both maps travel inside the embedding, stacked by space-to-depth
(``pixel_unshuffle``) onto its grid after the ``C`` channels of SAM's embedding:

``B x (C + 4 C/4 + 16 C/8) x h x w`` = ``[embedding | stride-8 map, 2 x 2 per cell | stride-4 map, 4 x 4]``

so ``4C`` channels in all. Channel ``c * r^2 + a * r + b`` of a packed map (``r`` = 2 or 4) holds
channel ``c`` of the pixel at row ``r i + a``, column ``r j + b``, as ``torch.pixel_unshuffle`` stores it.

Off by default. Added to the bundled model for 2200 steps (stage 18), it did not raise its figures;
the model card has them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Channels of a packed embedding per channel of SAM's embedding: C + 4 * C/4 + 16 * C/8.
PACKED_FACTOR = 4


def pack_detail(embedding: torch.Tensor, stride8: torch.Tensor, stride4: torch.Tensor) -> torch.Tensor:
    """``B x C x h x w`` embedding, ``B x C/4 x 2h x 2w`` and ``B x C/8 x 4h x 4w`` maps -> ``B x 4C x h x w``."""
    return torch.cat([embedding, F.pixel_unshuffle(stride8, 2), F.pixel_unshuffle(stride4, 4)], dim=1)


def split_detail(packed: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``B x 4C x h x w`` -> SAM's embedding ``B x C x h x w`` and the two packed maps
    (``B x C x h x w`` and ``B x 2C x h x w``, still space-to-depth)."""
    if packed.shape[1] != PACKED_FACTOR * channels:
        raise ValueError(
            f"An embedding with detail skips has {PACKED_FACTOR * channels} channels, got {packed.shape[1]}."
        )
    return packed[:, :channels], packed[:, channels : 2 * channels], packed[:, 2 * channels :]


def detail_maps(stride8: torch.Tensor, stride4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed maps -> ``B x C/4 x 2h x 2w`` and ``B x C/8 x 4h x 4w``, as the upscaling steps output them."""
    return F.pixel_shuffle(stride8, 2), F.pixel_shuffle(stride4, 4)


def detail_blocks(stride8: torch.Tensor, stride4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed maps -> the block layout of :func:`~segany.modeling.batched_decoding.upscale_masks`:
    ``B x n x 4 x C/4`` (cell ``n = (i, j)``, sub-pixel ``(a1, b1)``) and ``B x n x 4 x 4 x C/8``
    (sub-pixels ``(a1, b1)``, ``(a2, b2)``: pixel ``(4i + 2a1 + a2, 4j + 2b1 + b2)``)."""
    b, c8, h, w = stride8.shape
    c1, c2 = c8 // 4, stride4.shape[1] // 16
    # c, a1, b1, i, j -> i, j, a1, b1, c
    blocks8 = stride8.view(b, c1, 2, 2, h, w).permute(0, 4, 5, 2, 3, 1).reshape(b, h * w, 4, c1)
    # c, (a1, a2), (b1, b2), i, j -> i, j, a1, b1, a2, b2, c
    blocks4 = stride4.view(b, c2, 2, 2, 2, 2, h, w).permute(0, 6, 7, 2, 4, 3, 5, 1)
    return blocks8, blocks4.reshape(b, h * w, 4, 4, c2)
