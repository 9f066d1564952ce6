"""Text-prompt mIoU on labelled synthetic scenes: the measured end of the demonstration (paper section 7.5).

Every object whose full description (``"small red triangle"``) fits no other object of its scene is
asked for by phrase, with no other prompt, and scored by IoU with its mask at the image's resolution:

* **text**: the shortest phrase naming only that object (:func:`~segany.training.text_scenes.unique_phrase`,
  e.g. ``"triangle"`` when the scene has one triangle);
* **text, full phrase**: ``"size colour kind"``;
* **wrong phrase** (control, for both kinds of phrase): the prediction for *another* askable object of
  the same scene (the next one in the scene's order), scored against this object's mask: what text
  prompts would reach if the model ignored the phrase and just found some object;
* **one word** (``colour``, ``kind``, ``size``): objects whose colour (kind, size) no other object of
  the scene shares, asked for by that one word (``"red"``): which words the model has learnt to use.
* **box** and **point**, for scale: the tight box, and the object's interior-most point
  (three outputs, the one of highest predicted IoU kept), as in ``segany eval``.

Text and box prompts take a single output (``multimask_output=False``), as the model was trained for
them. Frames: scenes are ``H x W`` images; prompts are mapped to the model's input frame here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..modeling import Sam
from ..prompts import PointLabel
from ..text.encoder import TextImageEncoder
from ..transforms import ResizeLongestSide
from .eval_prompts import interior_point, tight_boxes
from .evaluate import mask_ious
from .text_config import TextEvalConfig
from .text_scenes import LabelledScene, unique_phrase


@dataclass(frozen=True)
class TextEvalResult:
    """Mean IoUs over ``objects`` askable objects of ``images`` scenes (None where not evaluated)."""

    images: int
    objects: int
    text_miou: float
    full_phrase_miou: float
    wrong_phrase_miou: float | None
    full_wrong_phrase_miou: float | None
    word_miou: dict[str, float] | None
    box_miou: float | None
    point_miou: float | None
    seconds: float
    config: TextEvalConfig

    def to_dict(self) -> dict[str, Any]:
        summary = asdict(self)
        summary["config"] = asdict(self.config)
        summary["seconds"] = round(self.seconds, 3)
        return summary


WORD_ATTRIBUTES = ("colour", "kind", "size")


class _ImagePrompts:
    """One image's embedding, and masks for prompts given in the image's own frame."""

    def __init__(self, model: Sam, image: np.ndarray) -> None:
        self.model = model
        self.original_size = image.shape[:2]
        self.transform = ResizeLongestSide(model.img_size)
        resized = self.transform.apply_image(image)
        self.input_size = resized.shape[:2]
        pixels = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float().to(model.device)
        self.embedding = model.embed_images([pixels])

    def masks(
        self,
        text: torch.Tensor | None = None,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
    ) -> np.ndarray:
        """``N x H x W`` bool masks for ``N x D`` text embeddings, ``N x 4`` XYXY boxes or ``N x 2`` XY
        positive points (image frame); points take the best of three outputs by predicted IoU."""
        device = self.model.device
        point_input = box_input = None
        if boxes is not None:
            box_input = torch.as_tensor(self.transform.apply_boxes(boxes, self.original_size), device=device)
        if points is not None:
            coords = self.transform.apply_coords(points[:, None, :], self.original_size)
            labels = torch.full((len(points), 1), int(PointLabel.POSITIVE), device=device)
            point_input = (torch.as_tensor(coords, dtype=torch.float32, device=device), labels)
        multimask = points is not None
        logits, iou = self.model.decode(
            self.embedding,
            points=point_input,
            boxes=None if box_input is None else box_input.float(),
            text=text,
            multimask_output=multimask,
        )
        best = iou.argmax(dim=1)
        chosen = logits[torch.arange(len(best), device=device), best][:, None]
        full = self.model.postprocess_masks(chosen.float(), self.input_size, self.original_size)
        return (full[:, 0] > self.model.mask_threshold).cpu().numpy()


@torch.no_grad()
def evaluate_text(
    model: Sam,
    encoder: TextImageEncoder,
    scenes: Sequence[LabelledScene],
    config: TextEvalConfig | None = None,
) -> TextEvalResult:
    """Score text prompts (and, with ``config.baselines``, box, point and wrong-phrase) on ``scenes``.

    Raises:
        ValueError: when no scene has an object that a phrase names alone.
    """
    config = config or TextEvalConfig()
    start = time.perf_counter()
    count = len(scenes) if config.max_images is None else min(len(scenes), config.max_images)
    text_ious, full_ious, wrong_ious, full_wrong_ious, box_ious, point_ious = [], [], [], [], [], []
    word_ious: dict[str, list[np.ndarray]] = {attribute: [] for attribute in WORD_ATTRIBUTES}
    for index in range(count):
        scene = scenes[index]
        if not isinstance(scene, LabelledScene):
            raise ValueError("Text evaluation needs labelled scenes (a text_scenes:... dataset).")
        phrases = [unique_phrase(scene.labels, i) for i in range(len(scene.labels))]
        asked = [i for i, phrase in enumerate(phrases) if phrase is not None]
        if not asked:
            continue
        targets = np.asarray(scene.masks, dtype=bool)[asked]
        image = _ImagePrompts(model, scene.image)
        short = image.masks(text=encoder.encode_text([phrases[i] for i in asked]))
        text_ious.append(mask_ious(short, targets))
        full = image.masks(text=encoder.encode_text([scene.labels[i].phrase() for i in asked]))
        full_ious.append(mask_ious(full, targets))
        if config.baselines:
            if len(asked) > 1:
                wrong_ious.append(mask_ious(np.roll(short, -1, axis=0), targets))
                full_wrong_ious.append(mask_ious(np.roll(full, -1, axis=0), targets))
            for attribute in WORD_ATTRIBUTES:
                values = [getattr(label, attribute) for label in scene.labels]
                alone = [i for i, value in enumerate(values) if values.count(value) == 1]
                if alone:
                    words = image.masks(text=encoder.encode_text([values[i] for i in alone]))
                    word_ious[attribute].append(mask_ious(words, np.asarray(scene.masks, dtype=bool)[alone]))
            box_ious.append(mask_ious(image.masks(boxes=tight_boxes(targets)), targets))
            points = np.stack([interior_point(target) for target in targets])
            point_ious.append(mask_ious(image.masks(points=points), targets))
    if not text_ious:
        raise ValueError(f"None of the {count} scenes has an object that one phrase names alone.")
    return TextEvalResult(
        images=count,
        objects=int(sum(len(ious) for ious in text_ious)),
        text_miou=_mean(text_ious),
        full_phrase_miou=_mean(full_ious),
        wrong_phrase_miou=_mean(wrong_ious) if wrong_ious else None,
        full_wrong_phrase_miou=_mean(full_wrong_ious) if full_wrong_ious else None,
        word_miou={key: _mean(parts) for key, parts in word_ious.items() if parts}
        if config.baselines
        else None,
        box_miou=_mean(box_ious) if config.baselines else None,
        point_miou=_mean(point_ious) if config.baselines else None,
        seconds=time.perf_counter() - start,
        config=config,
    )


def format_text_table(result: TextEvalResult) -> str:
    """The results as aligned lines, one per prompt kind."""
    rows = [
        ("text (shortest unique phrase)", result.text_miou),
        ("  wrong phrase (control)", result.wrong_phrase_miou),
        ("text (full phrase)", result.full_phrase_miou),
        ("  wrong full phrase (control)", result.full_wrong_phrase_miou),
        *((f"one word: {key}", value) for key, value in (result.word_miou or {}).items()),
        ("box", result.box_miou),
        ("point (best of 3)", result.point_miou),
    ]
    lines = [f"mIoU over {result.objects} objects of {result.images} scenes ({result.seconds:.1f} s)"]
    lines += [f"{name:<32}{value:>8.3f}" for name, value in rows if value is not None]
    return "\n".join(lines)


def _mean(parts: list[np.ndarray]) -> float:
    return float(np.concatenate(parts).mean())
