"""CLIP-style training of :class:`~segany.text.tiny_encoder.TinyTextImageEncoder` on labelled synthetic scenes.

Step ``s`` draws the scenes ``s * scenes_per_step ...`` of ``TextScenes(seed)``, takes
``crops_per_object`` :func:`~segany.text.crops.random_crop` crops of every object (the same crops, with
the same randomness, that SAM's text training embeds) and gives each crop a phrase of a random form
(``"triangle"``, ``"red triangle"``, ``"small triangle"``, ``"small red triangle"``). The loss is CLIP's
symmetric InfoNCE with one change: a phrase is a positive for *every* crop it describes (``"triangle"``
fits all triangles of the batch), so each row's target is uniform over its matches instead of one-hot.
Everything is drawn from generators seeded with ``(seed, step)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..text.crops import CropConfig, random_crop
from ..text.tiny_encoder import TinyEncoderConfig, TinyTextImageEncoder
from .text_config import EncoderTrainConfig
from .text_scenes import COLOURS, KINDS, PHRASE_FORMS, SIZES, ObjectLabel, TextScenes


@dataclass(frozen=True)
class CropBatch:
    """Crops and phrases of one step.

    Attributes:
        crops: ``N x 3 x S x S`` float32 RGB in [0, 255].
        labels: the ``N`` objects cropped.
        phrases: ``P`` distinct phrases, each naming at least one of the crops.
        matches: ``P x N`` bool, phrase ``p`` describes crop ``n``.
    """

    crops: torch.Tensor
    labels: list[ObjectLabel]
    phrases: list[str]
    matches: torch.Tensor


def crop_batch(
    scenes: TextScenes,
    first: int,
    count: int,
    image_size: int,
    crops_per_object: int,
    rng: np.random.Generator,
) -> CropBatch:
    """Crops of every object of scenes ``first .. first + count - 1`` with one random-form phrase each."""
    crops, labels, chosen = [], [], []
    config = CropConfig()
    for index in range(first, first + count):
        scene = scenes[index]
        for mask, label in zip(scene.masks, scene.labels, strict=True):
            for _ in range(crops_per_object):
                crops.append(random_crop(scene.image, mask, image_size, rng, config))
                labels.append(label)
                chosen.append(label.phrase(PHRASE_FORMS[int(rng.integers(len(PHRASE_FORMS)))]))
    phrases = sorted(set(chosen))
    matches = torch.tensor([[label.matches(phrase) for label in labels] for phrase in phrases])
    pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    return CropBatch(crops=pixels, labels=labels, phrases=phrases, matches=matches)


def contrastive_loss(
    image: torch.Tensor, text: torch.Tensor, matches: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE with several positives: ``N x D`` image and ``P x D`` text unit embeddings,
    ``P x N`` bool matches (every row and column has one at least) -> scalar loss."""
    logits = logit_scale.exp().clamp(max=100.0) * text @ image.T  # P x N
    targets = matches.to(logits.dtype)
    text_to_image = -(F.log_softmax(logits, dim=1) * targets / targets.sum(1, keepdim=True)).sum(1).mean()
    image_to_text = -(F.log_softmax(logits, dim=0) * targets / targets.sum(0, keepdim=True)).sum(0).mean()
    return (text_to_image + image_to_text) / 2


def train_encoder(
    config: EncoderTrainConfig,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> TinyTextImageEncoder:
    """Train a :class:`TinyTextImageEncoder` from scratch as ``config`` says; returns it in eval mode.

    ``progress(step, figures)`` is called after every step with ``loss`` and ``lr``.
    """
    torch.manual_seed(config.seed)
    encoder = TinyTextImageEncoder(
        TinyEncoderConfig(embed_dim=config.embed_dim, image_size=config.image_size)
    )
    encoder.train()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _WarmupCosine(config.warmup_steps, config.steps))
    scenes = TextScenes(config.seed, config.scene_size, config.scene_size, length=2**31 - 1)
    start = time.monotonic()
    for step in range(config.steps):
        rng = np.random.default_rng([config.seed, step])
        batch = crop_batch(
            scenes,
            step * config.scenes_per_step,
            config.scenes_per_step,
            config.image_size,
            config.crops_per_object,
            rng,
        )
        loss = contrastive_loss(
            encoder.encode_images(batch.crops),
            encoder.encode_text(batch.phrases),
            batch.matches,
            encoder.logit_scale,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, {"loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"]})
        if config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes:
            break
    return encoder.eval()


@torch.no_grad()
def retrieval_accuracy(
    encoder: TinyTextImageEncoder, scenes: TextScenes, count: int, rng: np.random.Generator
) -> dict[str, float]:
    """How often a crop's nearest full phrase (``"small red triangle"``) is its own, over the objects of
    ``count`` scenes, and per attribute (``kind``, ``colour``, ``size``): the encoder's own check."""
    batch = crop_batch(scenes, 0, count, encoder.image_size, 1, rng)
    vocabulary = [ObjectLabel(kind, colour, size) for size in SIZES for colour in COLOURS for kind in KINDS]
    text = encoder.encode_text([label.phrase() for label in vocabulary])
    image = encoder.encode_images(batch.crops)
    nearest = (image @ text.T).argmax(dim=1).tolist()
    guesses = [vocabulary[i] for i in nearest]
    pairs = list(zip(guesses, batch.labels, strict=True))
    figures = {"phrase": float(np.mean([guess == truth for guess, truth in pairs]))}
    for attribute in ("kind", "colour", "size"):
        figures[attribute] = float(
            np.mean([getattr(guess, attribute) == getattr(truth, attribute) for guess, truth in pairs])
        )
    return figures


@dataclass
class _WarmupCosine:
    """Rate factor: linear warm-up, then cosine decay to 0 at ``steps`` (a plain, picklable object)."""

    warmup: int
    steps: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
