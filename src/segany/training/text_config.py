"""Options of training and evaluating with text prompts (paper section 7.5, appendix D.5).

Kept apart from the code that uses them, and free of torch, so that the CLI builds its flags from
them and ``segany --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TextPromptConfig:
    """The ``[text]`` section of a training config: crop embeddings as first prompts (appendix D.5).

    ``encoder`` is a text-image encoder file (segany's small encoder or CLIP weights) whose image tower,
    frozen, embeds a random crop of each training mask (:func:`segany.text.random_crop`, taken from the
    original image before it is resized to the model's input). With ``probability`` a mask's first
    prompt is that embedding instead of a point or a box; the embedding stays in the prompt through the
    correction rounds, alongside the added clicks. The model needs ``text_embed_dim`` equal to the
    encoder's width.
    """

    encoder: str
    probability: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"text probability must lie in [0, 1], got {self.probability}")


@dataclass(frozen=True)
class EncoderTrainConfig:
    """How the tiny encoder is trained; ``segany train-text-encoder`` flags are generated from these."""

    steps: int = field(default=1500, metadata={"help": "optimiser steps"})
    scenes_per_step: int = field(default=16, metadata={"help": "new scenes drawn for each step"})
    crops_per_object: int = field(default=2, metadata={"help": "random crops of each object per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW, cosine decay)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=50, metadata={"help": "linear warm-up steps"})
    seed: int = field(default=0, metadata={"help": "seed of the training scenes and crops"})
    scene_size: int = field(default=256, metadata={"help": "side of the training scenes in pixels"})
    embed_dim: int = field(default=64, metadata={"help": "width D of both towers' embeddings"})
    image_size: int = field(default=64, metadata={"help": "side of the crops the image tower takes"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop after this long"})

    def __post_init__(self) -> None:
        for name in ("steps", "scenes_per_step", "crops_per_object", "scene_size", "embed_dim", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(
                f"lr must be positive and warmup_steps at least 0, got {self.lr}, {self.warmup_steps}"
            )


@dataclass(frozen=True)
class TextEvalConfig:
    """What :func:`segany.training.text_evaluate.evaluate_text` measures; ``segany eval-text`` flags come from these."""

    max_images: int | None = field(default=None, metadata={"help": "evaluate at most this many scenes"})
    baselines: bool = field(
        default=True,
        metadata={"help": "also score box and point prompts and the wrong-phrase control"},
    )

    def __post_init__(self) -> None:
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be at least 1 (or None for all), got {self.max_images}")
