"""What computes a predictor's embeddings and masks: PyTorch, or ONNX Runtime on the exported graphs.

:class:`segany.SamPredictor` holds one backend and calls only this interface, so the public API does not
know which engine answers. Both take images resized by ``ResizeLongestSide`` (``3 x h' x w'``, 0-255)
and prompts in the model-input frame, and return float32 tensors.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from .modeling import Sam
from .runtime import compute_context


class Backend(Protocol):
    """Embeddings of images and low-res masks of prompts for one model."""

    def embed(self, images: list[torch.Tensor]) -> torch.Tensor:
        """``B`` resized images ``3 x h' x w'`` -> ``B x C x h x w`` embeddings (float32)."""
        ...

    def decode(
        self,
        features: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        multimask_output: bool,
        text: torch.Tensor | None = None,
        min_iou: float | None = None,
        image_cache: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits ``B x C x 4h x 4w`` and IoU predictions ``B x C`` (see :meth:`Sam.decode`)."""
        ...


class TorchBackend:
    """The model itself, at a compute precision (``float32``, or ``bfloat16`` under autocast)."""

    def __init__(self, model: Sam, dtype: torch.dtype, compile: bool = False) -> None:
        self.model = model
        self.dtype = dtype
        # The compiled image encoder; None runs the model's own.
        self.encoder = torch.compile(model.image_encoder) if compile else None

    def embed(self, images: list[torch.Tensor]) -> torch.Tensor:
        with compute_context(self.model.device, self.dtype):
            return self.model.embed_images(images, encoder=self.encoder).float()

    def decode(
        self,
        features: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        multimask_output: bool,
        text: torch.Tensor | None = None,
        min_iou: float | None = None,
        image_cache: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with compute_context(self.model.device, self.dtype):
            low_res, scores = self.model.decode(
                features,
                points=points,
                boxes=boxes,
                masks=masks,
                multimask_output=multimask_output,
                min_iou=min_iou,
                text=text,
                image_cache=image_cache,
            )
        return low_res.float(), scores.float()


class OnnxRuntimeBackend:
    """The exported encoder and low-res decoder graphs run by ONNX Runtime (``int8``: their dynamically
    quantised versions). Text prompts, for which the graph has no input, are decoded by PyTorch."""

    def __init__(self, model: Sam, int8: bool = False) -> None:
        from .export.ort_backend import OnnxRuntimeRunner  # optional extra, imported only when asked

        self.runner = OnnxRuntimeRunner(model, int8=int8)
        self.torch = TorchBackend(model, torch.float32)
        self.device = model.device

    def embed(self, images: list[torch.Tensor]) -> torch.Tensor:
        return self.runner.embed(images).to(self.device)

    def decode(
        self,
        features: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        multimask_output: bool,
        text: torch.Tensor | None = None,
        min_iou: float | None = None,
        image_cache: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if text is not None:
            return self.torch.decode(
                features, points, boxes, masks, multimask_output, text, min_iou, image_cache
            )
        low_res, scores = self.runner.decode(features, points, boxes, masks, multimask_output)
        return low_res.to(self.device).float(), scores.to(self.device).float()


BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")


def make_backend(name: str, model: Sam, dtype: torch.dtype, compile: bool = False) -> Backend:
    """The backend called ``name`` (one of :data:`BACKENDS`) for ``model``."""
    if name == "torch":
        return TorchBackend(model, dtype, compile=compile)
    return OnnxRuntimeBackend(model, int8=name == "onnxruntime-int8")
