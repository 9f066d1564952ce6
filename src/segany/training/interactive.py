"""Simulated interactive segmentation: the loss of one training step (Kirillov et al., 2023, app. A).

Each mask starts from a foreground point or a noisy box (equal odds); then, for ``iterations - 1``
more rounds, a corrective click is drawn from the error region of the previous prediction and that
prediction's low-res logits come back as the mask prompt (the candidate with the highest predicted IoU
when there are three). Two rounds add no click and only refine the mask prompt. A single point is
ambiguous, so it gets three candidates (only the best is trained); every other prompt gets one.

Text prompts (paper section 7.5, appendix D.5): when the batch carries embeddings of the masks' crops
and ``text_probability > 0``, each mask starts from its crop embedding alone with that probability
(the others from a point or a box as above); the embedding stays in the prompt through the correction
rounds, with the added clicks. A text prompt gets one output, like a box. Without embeddings the
simulation draws exactly the same numbers as before text prompts existed.

The whole simulation is one ``forward`` so that ``DistributedDataParallel`` can wrap it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..modeling import Sam
from .clicks import error_clicks, first_clicks, new_point_schedule, noisy_boxes
from .losses import sam_loss
from .samples import TrainBatch


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the prompt simulation (the paper's values are the defaults)."""

    iterations: int = 11
    no_point_iterations: int = 2
    box_probability: float = 0.5
    box_noise_fraction: float = 0.1
    box_noise_max_px: float = 20.0
    # Share of first clicks put on the mask's interior-most cell (clicks.interior_cells), where segany
    # eval puts its first click; the others are drawn uniformly from the mask, as in the paper.
    interior_first_click: float = 0.0
    # Share of corrective clicks put on the interior-most cell of the deepest error region
    # (clicks.error_clicks), where segany eval puts its next clicks; the others drawn uniformly from
    # the error region, as in the paper.
    interior_corrective_click: float = 0.0


class _Group:
    """The prompts of masks that started the same way (from a point, or from a box), across rounds."""

    def __init__(
        self, index: torch.Tensor, boxes: torch.Tensor | None, text: torch.Tensor | None = None
    ) -> None:
        self.index = index  # which masks of the batch
        self.boxes = boxes
        self.text = text  # G x D crop embeddings, kept in every round
        self.coords: torch.Tensor | None = None  # G x k x 2
        self.labels: torch.Tensor | None = None  # G x k
        self.mask_input: torch.Tensor | None = None  # G x 1 x L x L logits of the previous round
        self.previous: torch.Tensor | None = None  # G x L x L bool, the previous chosen mask

    def add_points(self, coords: torch.Tensor, labels: torch.Tensor) -> None:
        coords, labels = coords[:, None], labels[:, None]
        if self.coords is None or self.labels is None:
            self.coords, self.labels = coords, labels
        else:
            self.coords = torch.cat([self.coords, coords], dim=1)
            self.labels = torch.cat([self.labels, labels], dim=1)

    @property
    def single_point(self) -> bool:
        return (
            self.boxes is None and self.text is None and self.coords is not None and self.coords.shape[1] == 1
        )


class InteractiveLoss(nn.Module):
    """``forward(batch, generator) -> (loss, parts)``: the mean loss over all masks and rounds."""

    def __init__(
        self,
        model: Sam,
        config: SimulationConfig | None = None,
        text_probability: float = 0.0,
        mask_loss: str = "focal_dice",
        iou_weight: float = 1.0,
        rank_weight: float = 0.0,
    ) -> None:
        """``text_probability``: the chance a mask starts from its crop embedding, when the batch has them.
        ``mask_loss``, ``iou_weight``, ``rank_weight``: see :func:`~segany.training.losses.sam_loss`."""
        super().__init__()
        self.model = model
        self.mask_loss = mask_loss
        self.iou_weight = iou_weight
        self.rank_weight = rank_weight
        self.config = config or SimulationConfig()
        self.text_probability = text_probability

    def forward(
        self, batch: TrainBatch, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model, config = self.model, self.config
        device = batch.targets.device
        img_size = model.img_size
        low_res = batch.targets.shape[-1]
        scale = img_size / low_res
        encoder_trains = any(p.requires_grad for p in model.image_encoder.parameters())
        with torch.set_grad_enabled(encoder_trains and torch.is_grad_enabled()):
            embeddings = model.embed_images(batch.images)

        count = batch.num_masks
        from_box = torch.rand(count, generator=generator, device=device) < config.box_probability
        from_text = torch.zeros_like(from_box)
        if batch.text is not None and self.text_probability > 0:
            from_text = torch.rand(count, generator=generator, device=device) < self.text_probability
            from_box = from_box & ~from_text
        groups = []
        box_index = torch.nonzero(from_box)[:, 0]
        point_index = torch.nonzero(~from_box & ~from_text)[:, 0]
        text_index = torch.nonzero(from_text)[:, 0]
        if len(box_index):
            height_width = (float(img_size), float(img_size))
            boxes = noisy_boxes(
                batch.boxes[box_index],
                generator,
                height_width,
                config.box_noise_fraction,
                config.box_noise_max_px,
            )
            boxes = _clip_to_images(boxes, batch, box_index)
            groups.append(_Group(box_index, boxes))
        if len(point_index):
            group = _Group(point_index, None)
            first = first_clicks(batch.targets[point_index], scale, generator, config.interior_first_click)
            group.add_points(first, torch.ones(len(point_index), dtype=torch.int64, device=device))
            groups.append(group)
        if len(text_index):
            assert batch.text is not None
            groups.append(_Group(text_index, None, text=batch.text[text_index]))

        schedule = new_point_schedule(config.iterations, generator, config.no_point_iterations)
        total = embeddings.new_zeros(())
        parts_sum: dict[str, torch.Tensor] = {}
        for round_index in range(config.iterations):
            for group in groups:
                targets = batch.targets[group.index]
                if round_index > 0 and schedule[round_index - 1]:
                    assert group.previous is not None
                    predicted = group.previous & batch.valid[group.index]
                    coords, labels = error_clicks(
                        predicted, targets, scale, generator, config.interior_corrective_click
                    )
                    group.add_points(coords, labels)
                points = None
                if group.coords is not None and group.labels is not None:
                    points = (group.coords, group.labels)
                logits, iou = model.decode(
                    embeddings[batch.owner[group.index]],
                    points=points,
                    boxes=group.boxes,
                    masks=group.mask_input,
                    multimask_output=group.single_point,
                    text=group.text,
                )
                # The mask loss sees each cell's covered share when the batch has them; clicks, the
                # previous masks and the IoU head's target use the thresholded targets.
                truth = targets if batch.coverage is None else batch.coverage[group.index]
                loss, parts = sam_loss(
                    logits.float(), iou.float(), truth, self.mask_loss, self.iou_weight, self.rank_weight
                )
                weight = len(group.index) / count
                total = total + loss * weight
                for key, value in parts.items():
                    parts_sum[key] = parts_sum.get(key, 0.0) + value * weight
                # The next round sees the candidate the model itself rates best, as a user would.
                best = iou.detach().argmax(dim=1)
                chosen = logits.detach()[torch.arange(len(best), device=device), best][:, None]
                group.mask_input = chosen
                group.previous = chosen[:, 0] > model.mask_threshold
        rounds = config.iterations
        parts_mean = {key: value / rounds for key, value in parts_sum.items()}
        parts_mean["masks"] = torch.tensor(float(count))
        return total / rounds, parts_mean


def _clip_to_images(boxes: torch.Tensor, batch: TrainBatch, index: torch.Tensor) -> torch.Tensor:
    """Keep each noisy box inside its own image (input frame), not just the padded square."""
    sizes = torch.tensor(
        [[image.shape[2], image.shape[1]] for image in batch.images], dtype=boxes.dtype, device=boxes.device
    )[batch.owner[index]]
    upper = sizes.repeat(1, 2)
    return torch.minimum(boxes, upper)
