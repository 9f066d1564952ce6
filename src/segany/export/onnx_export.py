"""Writing the ONNX graphs: the decoder with the official interface, and the image encoder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ..modeling import Sam
from .onnx_decoder import INPUT_NAMES, LOW_RES_OUTPUT_NAMES, OUTPUT_NAMES, SamOnnxDecoder

ENCODER_INPUT = "image"  # 1 x 3 x S x S, normalised and padded (Sam.preprocess)
ENCODER_OUTPUT = "image_embeddings"


def _dummy_decoder_inputs(model: Sam, num_points: int = 5) -> tuple[torch.Tensor, ...]:
    grid = model.prompt_encoder.image_embedding_size[0]
    channels = model.prompt_encoder.embed_dim
    low = 4 * grid
    return (
        torch.randn(1, channels, grid, grid),
        torch.randint(0, model.img_size, (1, num_points, 2), dtype=torch.float),
        torch.randint(0, 4, (1, num_points), dtype=torch.float),
        torch.randn(1, 1, low, low),
        torch.tensor([1.0]),
        torch.tensor([1500.0, 2250.0]),
    )


def export_decoder(
    model: Sam,
    path: str | os.PathLike[str],
    return_single_mask: bool = True,
    opset: int = 17,
    upscale: bool = True,
) -> Path:
    """Write the prompt encoder + mask decoder as ONNX with the official input and output names.

    The number of points is dynamic; everything else has the model's fixed sizes.
    """
    path = Path(path)
    wrapper = SamOnnxDecoder(
        model.float().eval(), return_single_mask=return_single_mask, upscale=upscale
    ).eval()
    dynamic_axes = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        torch.onnx.export(
            wrapper,
            _dummy_decoder_inputs(model),
            str(path),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES if upscale else LOW_RES_OUTPUT_NAMES,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def export_encoder(model: Sam, path: str | os.PathLike[str], opset: int = 17) -> Path:
    """Write the image encoder as ONNX: ``image`` (``1 x 3 x S x S``, preprocessed) -> ``image_embeddings``."""
    path = Path(path)
    encoder = model.image_encoder.float().eval()
    size = encoder.img_size
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        torch.onnx.export(
            encoder,
            (torch.randn(1, 3, size, size),),
            str(path),
            input_names=[ENCODER_INPUT],
            output_names=[ENCODER_OUTPUT],
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return path
