"""Writing the ONNX graphs: the decoder with the official interface, and the image encoder."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import TypeVar

import torch

from ..errors import SegAnyError
from ..modeling import Sam
from .onnx_decoder import INPUT_NAMES, LOW_RES_OUTPUT_NAMES, OUTPUT_NAMES, SamOnnxDecoder

ENCODER_INPUT = "image"  # 1 x 3 x S x S, normalised and padded (Sam.preprocess)
ENCODER_OUTPUT = "image_embeddings"
M = TypeVar("M", bound=torch.nn.Module)
# Opsets the graphs export at: arange needs 11; 20 is the highest of PyTorch's TorchScript exporter.
MIN_OPSET, MAX_OPSET = 11, 20


def _float_eval(module: M) -> M:
    """``module`` in float32 and eval mode for tracing; a copy when it is not so already, so the
    caller's model keeps its precision and mode."""
    tensors = [*module.parameters(), *module.buffers()]
    in_eval = not any(m.training for m in module.modules())
    if in_eval and all(t.dtype == torch.float32 for t in tensors if t.is_floating_point()):
        return module
    return copy.deepcopy(module).float().eval()


def check_opset(opset: int) -> None:
    """Refuse an opset outside ``MIN_OPSET..MAX_OPSET`` in one sentence."""
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise SegAnyError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET} (default 17), got {opset}.")


def _export(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, opset: int, **options
) -> None:
    """``torch.onnx.export`` (TorchScript exporter) with tracer warnings silenced for this call only."""
    check_opset(opset)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        try:
            torch.onnx.export(
                module,
                inputs,
                str(path),
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
                **options,
            )
        except (torch.onnx.OnnxExporterError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SegAnyError(
                f"ONNX export to {path} failed at opset {opset} ({first}); try opset 17."
            ) from exc


def _dummy_decoder_inputs(model: Sam, num_points: int = 5) -> tuple[torch.Tensor, ...]:
    grid = model.prompt_encoder.image_embedding_size[0]
    channels = model.embedding_channels
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
        _float_eval(model), return_single_mask=return_single_mask, upscale=upscale
    ).eval()
    dynamic_axes = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    _export(
        wrapper,
        _dummy_decoder_inputs(model),
        path,
        opset,
        input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES if upscale else LOW_RES_OUTPUT_NAMES,
        dynamic_axes=dynamic_axes,
    )
    return path


def export_encoder(model: Sam, path: str | os.PathLike[str], opset: int = 17) -> Path:
    """Write the image encoder as ONNX: ``image`` (``1 x 3 x S x S``, preprocessed) -> ``image_embeddings``."""
    path = Path(path)
    encoder = _float_eval(model.image_encoder)
    size = encoder.img_size
    _export(
        encoder,
        (torch.randn(1, 3, size, size),),
        path,
        opset,
        input_names=[ENCODER_INPUT],
        output_names=[ENCODER_OUTPUT],
    )
    return path
