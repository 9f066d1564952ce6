"""Running segany's ONNX graphs with ONNX Runtime behind the ``SamPredictor`` API.

``SamPredictor(model, backend="onnxruntime")`` exports the model's encoder and decoder once (to a cache
folder keyed by the weights) and computes embeddings and masks with ONNX Runtime sessions; prompts,
frames and outputs are the same as with the PyTorch backend.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ..modeling import Sam
from ..prompts import PADDING_POINT, PointLabel
from .onnx_export import ENCODER_INPUT, export_decoder, export_encoder


def _weights_key(model: Sam) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _quantized(path: Path) -> Path:
    """The int8 version of a cached graph, quantised on first use."""
    from .quantize import quantize

    out = path.with_name(path.stem + ".int8.onnx")
    return out if out.exists() else quantize(path)


class OnnxRuntimeRunner:
    """Computes embeddings and low-res masks with ONNX Runtime (CPU by default)."""

    def __init__(
        self,
        model: Sam,
        cache_dir: str | os.PathLike[str] | None = None,
        providers: list[str] | None = None,
        int8: bool = False,
    ) -> None:
        """``int8``: run the dynamically quantised graphs (see :mod:`.quantize`) instead of float32 ones."""
        import onnxruntime as ort

        from ..download import cache_dir as default_cache

        folder = Path(cache_dir) if cache_dir is not None else default_cache() / "onnx" / _weights_key(model)
        folder.mkdir(parents=True, exist_ok=True)
        encoder, decoder = folder / "encoder.onnx", folder / "decoder_lowres.onnx"
        if not encoder.exists():
            export_encoder(model, encoder)
        if not decoder.exists():
            # Low-res outputs only: the predictor upscales just what it returns, as with PyTorch.
            export_decoder(model, decoder, return_single_mask=False, upscale=False)
        if int8:
            encoder, decoder = _quantized(encoder), _quantized(decoder)
        providers = providers or ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(encoder), providers=providers)
        self.decoder = ort.InferenceSession(str(decoder), providers=providers)
        self.model = model

    def embed(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Resized ``3 x h' x w'`` images (0-255) -> ``B x C x h x w`` embeddings."""
        out = []
        for image in images:
            x = self.model.preprocess(image.float().cpu())[None].numpy()
            out.append(torch.from_numpy(self.encoder.run(None, {ENCODER_INPUT: x})[0]))
        return torch.cat(out)

    def decode(
        self,
        features: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as :meth:`Sam.decode` (prompts in the input frame); one prompt set at a time."""
        batch = next((t.shape[0] for t in (points[0] if points else None, boxes, masks) if t is not None), 1)
        low = 4 * features.shape[-1]
        low_res, ious = [], []
        for i in range(batch):
            coords, labels = [], []
            if points is not None:
                coords.append(points[0][i].float().cpu().numpy())
                labels.append(points[1][i].float().cpu().numpy())
            if boxes is not None:
                coords.append(boxes[i].float().cpu().numpy().reshape(2, 2))
                labels.append(np.array([PointLabel.BOX_TOP_LEFT, PointLabel.BOX_BOTTOM_RIGHT], np.float32))
            else:
                coords.append(np.array([PADDING_POINT], np.float32))
                labels.append(np.array([PointLabel.PADDING], np.float32))
            mask = (
                masks[i : i + 1].float().cpu().numpy()
                if masks is not None
                else np.zeros((1, 1, low, low), np.float32)
            )
            feeds = {
                "image_embeddings": features.float().cpu().numpy(),
                "point_coords": np.concatenate(coords)[None].astype(np.float32),
                "point_labels": np.concatenate(labels)[None].astype(np.float32),
                "mask_input": mask,
                "has_mask_input": np.array([1.0 if masks is not None else 0.0], np.float32),
                "orig_im_size": np.array([self.model.img_size, self.model.img_size], np.float32),
            }
            wanted = {i.name for i in self.decoder.get_inputs()}  # orig_im_size may be pruned from the graph
            iou, low_res_masks = self.decoder.run(None, {k: v for k, v in feeds.items() if k in wanted})
            selected = slice(1, None) if multimask_output else slice(0, 1)
            low_res.append(torch.from_numpy(low_res_masks[:, selected]))
            ious.append(torch.from_numpy(iou[:, selected]))
        return torch.cat(low_res), torch.cat(ious)
