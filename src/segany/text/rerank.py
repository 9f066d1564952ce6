"""Rank automatic masks by how well they match a phrase (the second use of text in paper section 7.5).

Each mask is seen as the image tower saw objects in training (appendix D.5): a square crop around its
box, expanded, resized to the encoder's input. Two crops per mask, one with its surroundings and one
with the pixels outside the mask zeroed (training used each half of the time); their unit embeddings
are averaged and compared by cosine similarity with the phrase's text embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PromptError
from ..formats.base import to_mask
from ..images import to_rgb_array
from .crops import mask_crop
from .encoder import TextImageEncoder

# The score of an empty mask, which has no crop: the lowest cosine similarity, so it ranks last.
EMPTY_MASK_SCORE = -1.0


def rank_by_text(
    image: Any,
    records: Sequence[dict[str, Any]],
    phrase: str,
    encoder: TextImageEncoder,
    expand: float = 1.5,
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """The records, each with ``"text_score"`` added, best match to ``phrase`` first.

    Args:
        image: the ``H x W x 3`` uint8 RGB image the masks were made for (or what
            :func:`segany.images.to_rgb_array` accepts).
        records: masks as :class:`segany.automatic.SamAutomaticMaskGenerator` returns them; only
            ``segmentation`` is read (an ``H x W`` bool array, an uncompressed or a COCO RLE).
        phrase: what to look for, e.g. ``"a red triangle"``.
        encoder: the text-image encoder (CLIP or segany's small one).
        expand: side of each crop's square over the longer side of the mask's box (1 = tight).
        batch_size: crops per pass of the image tower.
    Returns:
        New dicts (the input records are not changed) with ``text_score``, the cosine similarity in
        [-1, 1] (higher is a better match), sorted by it, best first; ties keep their input order.
    """
    if not phrase.strip():
        raise PromptError("The text prompt is empty; give a phrase such as 'a red triangle'.")
    image = to_rgb_array(image)
    height, width = image.shape[:2]
    masks = [to_mask(record["segmentation"], height, width) for record in records]
    present = [i for i, mask in enumerate(masks) if mask.any()]
    scores = np.full(len(records), EMPTY_MASK_SCORE, dtype=np.float64)
    if present:
        with torch.no_grad():
            text = encoder.encode_text([phrase])[0]
            crops = _embed_crops(image, [masks[i] for i in present], encoder, expand, batch_size)
            scores[present] = (crops @ text.to(crops.device)).cpu().double().numpy()
    order = sorted(range(len(records)), key=lambda i: -scores[i])  # sorted() is stable
    return [{**records[i], "text_score": float(scores[i])} for i in order]


def _embed_crops(
    image: np.ndarray, masks: list[np.ndarray], encoder: TextImageEncoder, expand: float, batch_size: int
) -> torch.Tensor:
    """``N`` masks -> ``N x D`` unit embeddings: the mean of the context crop's and the object crop's."""
    size = encoder.image_size
    out = []
    for start in range(0, len(masks), batch_size):
        chunk = masks[start : start + batch_size]
        crops = [
            mask_crop(image, m, size, expand=expand, zero_outside=zero)
            for zero in (False, True)
            for m in chunk
        ]
        pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()  # 2n x 3 x S x S, 0-255
        embedded = encoder.encode_images(pixels)
        out.append(F.normalize(embedded[: len(chunk)] + embedded[len(chunk) :], dim=-1))
    return torch.cat(out)
