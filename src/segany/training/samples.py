"""From a dataset item (an image and its instance masks) to the tensors one training step needs.

Frames: the image is resized so its longest side is the model's ``img_size`` (the input frame, as at
inference); boxes are XYXY pixels in that frame; targets live on the decoder's low-resolution grid
(``low_res x low_res`` over the padded ``img_size`` square), where the loss is computed: either each cell
thresholded at half covered (``targets``), or also the share of each cell the mask covers (``coverage``,
so that the loss can teach where within a cell the boundary lies). Crops for a
text-image encoder (text prompts, appendix D.5) are taken from the original image, before resizing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..text.crops import random_crop
from ..transforms import ResizeLongestSide, get_preprocess_shape
from .synthetic import Scene


@dataclass(frozen=True)
class MaskFilter:
    """Which masks of an image are trained on (the paper: at most 64 per GPU, none over 90% of it)."""

    max_masks: int = 64
    max_area_fraction: float = 0.9

    def select(self, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Indices of the kept masks of ``N x H x W`` bool ``masks``, a random subset when too many.

        Empty masks and masks covering more than ``max_area_fraction`` of the image are dropped first.
        """
        if len(masks) == 0:
            return np.zeros(0, dtype=np.int64)
        areas = masks.reshape(len(masks), -1).sum(axis=1)
        limit = self.max_area_fraction * masks.shape[1] * masks.shape[2]
        keep = np.flatnonzero((areas > 0) & (areas <= limit))
        if len(keep) > self.max_masks:
            keep = np.sort(rng.choice(keep, self.max_masks, replace=False))
        return keep


@dataclass(frozen=True)
class TrainSample:
    """One image ready for training.

    Attributes:
        image: ``3 x h' x w'`` float32 RGB, 0-255, longest side ``img_size`` (not normalised or padded).
        targets: ``N x L x L`` bool instance masks on the low-res grid over the padded square.
        boxes: ``N x 4`` float32 tight XYXY boxes in the input frame.
        crops: ``N x 3 x S x S`` uint8 RGB crops of the masks for a text-image encoder, or None.
        coverage: ``N x L x L`` float32, the share of each low-res cell the mask covers (``targets`` is
            ``coverage >= 0.5``), or None when the sample was prepared without it.
    """

    image: torch.Tensor
    targets: torch.Tensor
    boxes: torch.Tensor
    crops: torch.Tensor | None = None
    coverage: torch.Tensor | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[2])


def prepare_sample(
    scene: Scene,
    img_size: int,
    low_res: int,
    mask_filter: MaskFilter,
    rng: np.random.Generator,
    crop_size: int | None = None,
    coverage: bool = False,
) -> TrainSample:
    """Resize ``scene`` to the input frame and its kept masks to low-res targets.

    A mask is downsampled by area (a cell is foreground when at least half of it is); masks that
    vanish on the low-res grid are dropped, so ``N`` may be smaller than the filter allows. With
    ``coverage``, the sample also keeps each cell's covered share (the area average itself). With
    ``crop_size``, each kept mask also gets a :func:`~segany.text.crops.random_crop` of the original
    image (drawn from ``rng`` after the masks are chosen, so the choice does not depend on it).
    """
    height, width = scene.image.shape[:2]
    new_h, new_w = get_preprocess_shape(height, width, img_size)
    image = ResizeLongestSide(img_size).apply_image(scene.image)
    masks = scene.masks[mask_filter.select(scene.masks, rng)]

    rows, cols = low_res_extent((new_h, new_w), img_size, low_res)
    shares = np.zeros((len(masks), low_res, low_res), dtype=np.float32)
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    scale = np.array([new_w / width, new_h / height] * 2, dtype=np.float32)
    for i, mask in enumerate(masks):
        shares[i, :rows, :cols] = cv2.resize(
            mask.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA
        )
        ys, xs = np.nonzero(mask)
        boxes[i] = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32) * scale
    targets = shares >= 0.5
    kept = targets.reshape(len(masks), -1).any(axis=1) if len(masks) else np.zeros(0, dtype=bool)
    crops = None
    if crop_size is not None:
        pixels = [random_crop(scene.image, mask, crop_size, rng) for mask in masks[kept]]
        stacked = np.stack(pixels) if pixels else np.zeros((0, crop_size, crop_size, 3), np.uint8)
        crops = torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()
    return TrainSample(
        image=torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float(),
        targets=torch.from_numpy(targets[kept]),
        boxes=torch.from_numpy(boxes[kept]),
        crops=crops,
        coverage=torch.from_numpy(shares[kept]) if coverage else None,
    )


def low_res_extent(input_size: tuple[int, int], img_size: int, low_res: int) -> tuple[int, int]:
    """Rows and columns of the low-res grid that the unpadded ``(h', w')`` input image covers."""
    cell = img_size / low_res  # input-frame pixels per low-res cell
    return max(1, round(input_size[0] / cell)), max(1, round(input_size[1] / cell))


@dataclass(frozen=True)
class TrainBatch:
    """Several images and all their masks, flattened into one list of prompts.

    Attributes:
        images: ``B`` images ``3 x h' x w'`` (see :class:`TrainSample`).
        owner: ``P`` int64, the image each mask belongs to.
        targets: ``P x L x L`` bool.
        boxes: ``P x 4`` float32 XYXY, input frame.
        valid: ``P x L x L`` bool, the low-res cells inside each mask's image (not padding).
        crops: ``P x 3 x S x S`` uint8 RGB crops of the masks (text training), or None.
        text: ``P x D`` float32 embeddings of the crops by a text-image encoder, or None; with them the
            simulation may start a mask from its embedding (see ``InteractiveLoss``).
        coverage: ``P x L x L`` float32 covered shares of the low-res cells (see :class:`TrainSample`),
            or None; with them the mask loss is computed against these shares instead of ``targets``.
    """

    images: list[torch.Tensor]
    owner: torch.Tensor
    targets: torch.Tensor
    boxes: torch.Tensor
    valid: torch.Tensor
    crops: torch.Tensor | None = None
    text: torch.Tensor | None = None
    coverage: torch.Tensor | None = None

    @property
    def num_masks(self) -> int:
        return int(self.owner.numel())

    def to(self, device: torch.device) -> TrainBatch:
        return TrainBatch(
            images=[image.to(device) for image in self.images],
            owner=self.owner.to(device),
            targets=self.targets.to(device),
            boxes=self.boxes.to(device),
            valid=self.valid.to(device),
            crops=None if self.crops is None else self.crops.to(device),
            text=None if self.text is None else self.text.to(device),
            coverage=None if self.coverage is None else self.coverage.to(device),
        )

    def with_text(self, text: torch.Tensor) -> TrainBatch:
        """This batch with ``P x D`` crop embeddings."""
        return dataclasses.replace(self, text=text)


def collate(samples: Sequence[TrainSample], img_size: int, low_res: int) -> TrainBatch:
    """Stack samples into one :class:`TrainBatch` (images keep their own sizes)."""
    owner, valid = [], []
    for index, sample in enumerate(samples):
        count = len(sample.targets)
        owner.append(torch.full((count,), index, dtype=torch.int64))
        rows, cols = low_res_extent(sample.input_size, img_size, low_res)
        area = torch.zeros(low_res, low_res, dtype=torch.bool)
        area[:rows, :cols] = True
        valid.append(area.expand(count, low_res, low_res))
    crops = [sample.crops for sample in samples]
    coverage = [sample.coverage for sample in samples]
    return TrainBatch(
        images=[sample.image for sample in samples],
        owner=torch.cat(owner),
        targets=torch.cat([sample.targets for sample in samples]),
        boxes=torch.cat([sample.boxes for sample in samples]),
        valid=torch.cat(valid),
        crops=None if any(crop is None for crop in crops) else torch.cat(crops),  # type: ignore[arg-type]
        coverage=None if any(c is None for c in coverage) else torch.cat(coverage),  # type: ignore[arg-type]
    )
