"""The prompt encoder + mask decoder as one ONNX-exportable module with the official interface.

Inputs (the names and meanings SAM's web demo and the annotation tools that take SAM ONNX decoders use):

* ``image_embeddings`` ``1 x 256 x 64 x 64``: the encoder's output for the image.
* ``point_coords`` ``1 x N x 2`` float: points in the model-input frame (apply
  :meth:`ResizeLongestSide.apply_coords` first); a box is two points with labels 2 and 3.
* ``point_labels`` ``1 x N`` float: 1 foreground, 0 background, 2/3 box corners, -1 padding (add one
  padding point ``(0, 0)`` / ``-1`` when there is no box, as :mod:`segany.prompts` says).
* ``mask_input`` ``1 x 1 x 256 x 256`` and ``has_mask_input`` ``1``: a previous low-res logit mask and
  whether to use it.
* ``orig_im_size`` ``2`` float: ``(H, W)`` of the original image.

Outputs: ``masks`` (logits at ``H x W``), ``iou_predictions`` and ``low_res_masks`` (``256 x 256``).

A model with a prompt prior (``SamConfig.prompt_prior``) adds it here as in :meth:`Sam.decode`: the
ellipse of the box the points labelled 2 and 3 give (when there are such points) and the disks of the
points labelled 1. A model with a mask scorer (``SamConfig.mask_scorer``) rescores the masks as there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import Sam
from ..modeling.prompt_prior import PRIOR_FLOOR, click_logits, ellipse_logits
from ..prompts import PIXEL_CENTER_OFFSET, PointLabel

INPUT_NAMES = [
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
]
OUTPUT_NAMES = ["masks", "iou_predictions", "low_res_masks"]
# Outputs of the graph without upscaling (ONNX Runtime backend: the predictor upscales what it keeps).
LOW_RES_OUTPUT_NAMES = ["iou_predictions", "low_res_masks"]


class SamOnnxDecoder(nn.Module):
    """Prompt encoding, mask decoding and upscaling to the original size, traceable for ONNX export.

    ``return_single_mask``: return the one best mask (the single-mask token when there are several
    points, else the best of the three candidates), as the official web demo expects.
    """

    def __init__(self, model: Sam, return_single_mask: bool = True, upscale: bool = True) -> None:
        """``upscale=False`` leaves out the resize to ``orig_im_size``: outputs are then
        ``LOW_RES_OUTPUT_NAMES`` and ``orig_im_size`` is unused."""
        super().__init__()
        self.model = model
        self.return_single_mask = return_single_mask
        self.upscale = upscale
        self.img_size = model.img_size

    def _embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        prompt_encoder = self.model.prompt_encoder
        dense = prompt_encoder.mask_downscaling(mask_input) * has_mask_input
        return dense + (1 - has_mask_input) * prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def _postprocess(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        masks = F.interpolate(masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        scale = self.img_size / orig_im_size.max()
        resized = (scale * orig_im_size + 0.5).to(torch.int64)
        masks = masks[..., : resized[0], : resized[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        sparse = self.model.prompt_encoder.label_tokens(point_coords + PIXEL_CENTER_OFFSET, point_labels)
        prior = None
        if self.model.prompt_prior == "geometric":
            prior = self._prior(point_coords, point_labels, 4 * image_embeddings.shape[-1])
            config = self.model.config
            if config is not None and config.prior_as_mask_prompt:
                # No mask input: the prior takes its place (as Sam.decode does).
                mask_input = mask_input * has_mask_input + prior * (1 - has_mask_input)
                has_mask_input = torch.ones_like(has_mask_input)
        dense = self._embed_mask(mask_input, has_mask_input)
        decoder = self.model.mask_decoder
        masks, scores = decoder.predict_masks(
            image_embeddings, self.model.prompt_encoder.get_dense_pe(), sparse, dense
        )
        if prior is not None:
            masks = masks + prior.to(masks.dtype)
        if self.model.mask_scorer is not None:  # every mask token's mask, as Sam.decode scores them
            scores = self.model.mask_scorer(masks, image_embeddings, scores, range(masks.shape[1]))
        if self.return_single_mask:
            masks, scores = self._select_single(masks, scores, point_coords.shape[1])
        if not self.upscale:
            return scores, masks
        return self._postprocess(masks, orig_im_size), scores, masks

    def _prior(self, coords: torch.Tensor, labels: torch.Tensor, low_res: int) -> torch.Tensor:
        """The prompt prior of the clicks and of the box whose corners are the points labelled 2 and 3,
        with no branch in the graph: ``1 x N x 2``, ``1 x N`` -> ``1 x 1 x L x L``."""
        corners = []
        present = []
        for label in (PointLabel.BOX_TOP_LEFT, PointLabel.BOX_BOTTOM_RIGHT):
            is_corner = (labels == label).to(coords.dtype).unsqueeze(-1)  # 1 x N x 1
            count = is_corner.sum(dim=1)  # 1 x 1
            corners.append((coords * is_corner).sum(dim=1) / count.clamp(min=1))  # 1 x 2
            present.append((count > 0).to(coords.dtype))
        box = torch.cat(corners, dim=1)  # 1 x 4 XYXY
        has_box = (present[0] * present[1]).reshape(-1, 1, 1, 1)
        # Without a box its ellipse is replaced by the floor, which changes no maximum.
        ellipse = ellipse_logits(box, low_res, self.img_size) * has_box - PRIOR_FLOOR * (1 - has_box)
        return torch.maximum(ellipse, click_logits(coords, labels, low_res, self.img_size))

    def _select_single(
        self, masks: torch.Tensor, scores: torch.Tensor, num_points: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Several points (counting the padding point) are unambiguous: take the single-mask token 0;
        # one click is ambiguous: take the best of the 3 candidates. Done with a score offset so the
        # graph has no branch on the point count.
        reweight = torch.tensor([[1000.0] + [0.0] * (scores.shape[1] - 1)], device=scores.device)
        best = torch.argmax(scores + (num_points - 2.5) * reweight, dim=1)
        index = torch.arange(masks.shape[0], device=masks.device)
        return masks[index, best].unsqueeze(1), scores[index, best].unsqueeze(1)
