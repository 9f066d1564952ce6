"""A linear layer that, in CPU inference, multiplies by a copy of its weight packed for oneDNN.

oneDNN runs a matrix product about 10% faster when the weight is stored once in its blocked layout
instead of being re-read from the plain row-major one on every call (measured on this project's
AVX-512 CPU for every linear shape of the ViT encoders, float32 and bfloat16), and it can apply the
exact (erf) GELU in the same pass. PyTorch's own compiler uses the same two oneDNN operators when it
freezes a model for CPU inference; this module uses them without compiling.

The packed copy is made on first use and remade when the weight changes (in place, moved or
replaced) or the compute precision changes; it costs the memory of the weight once more. Training
(gradients enabled), other devices, and PyTorch builds without these operators use ``F.linear``.
Parameter names are those of ``nn.Linear``, so state dicts load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import cpu_autocast_dtype, packed_weights_enabled, recording
from .versions import contents_key

_ACTIVATIONS = ("none", "gelu")
# Products with fewer multiply-adds run unpacked in the weight's precision (see _PackedMatrix._linear):
# measured with 2 threads, 7 x 256 x 256 took 17 us by F.linear, 43 us packed, 36 us under autocast.
_PACK_MIN_MACS = 1 << 20


def _operators_available() -> bool:
    ops = getattr(torch.ops, "mkldnn", None)
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops, "_reorder_linear_weight")
    )


_AVAILABLE = _operators_available()


class _PackedMatrix:
    """Mixin: a module's ``out x in`` matrix (derived from its parameters) packed for oneDNN, cached.

    Subclasses give :meth:`_matrix` (the matrix and bias to pack) and call :meth:`_linear`.
    """

    _packed: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None

    def _matrix(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _linear(self, x: torch.Tensor, activation: str) -> torch.Tensor:
        """``x @ matrix.T + bias`` (then ``activation``), packed where possible, else ``F.linear``."""
        if activation not in _ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; use one of {_ACTIVATIONS}.")
        dtype = self._packed_dtype(x)
        if dtype is None:
            out = F.linear(x, *self._matrix())
            return F.gelu(out) if activation == "gelu" else out
        rows = x.numel() // x.shape[-1]
        if rows * self.weight.numel() < _PACK_MIN_MACS:  # type: ignore[attr-defined]
            # A tiny product (the decoder's few prompt tokens): the packed call's fixed cost, and under
            # autocast the cast of the whole weight on every call, exceed the product itself.
            matrix, bias = self._matrix()
            with torch.autocast(x.device.type, enabled=False):
                out = F.linear(x.to(matrix.dtype), matrix, bias)
            return F.gelu(out) if activation == "gelu" else out
        weight, bias = self._packed_weight(dtype, rows)
        algorithm = "none" if activation == "gelu" else ""
        return torch.ops.mkldnn._linear_pointwise(x.to(dtype), weight, bias, activation, [], algorithm)

    def _packed_dtype(self, x: torch.Tensor) -> torch.dtype | None:
        """The precision of the packed product, or None where ``F.linear`` must run."""
        weight = self.weight  # type: ignore[attr-defined]
        if (
            not _AVAILABLE
            or torch.is_grad_enabled()
            or recording()
            or x.device.type != "cpu"
            or weight.device.type != "cpu"
            or x.numel() == 0
            or not packed_weights_enabled()
        ):
            return None
        dtype = cpu_autocast_dtype() or torch.promote_types(x.dtype, weight.dtype)
        return dtype if dtype in (torch.float32, torch.bfloat16) else None

    def _packed_weight(self, dtype: torch.dtype, rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        sources = (self.weight, self.bias)  # type: ignore[attr-defined]
        key = (dtype, *(contents_key(t) for t in sources if t is not None))
        if self._packed is None or self._packed[0] != key:
            matrix, bias = self._matrix()
            weight = torch.ops.mkldnn._reorder_linear_weight(matrix.detach().to(dtype), max(rows, 1))
            packed_bias = None if bias is None else bias.detach().to(dtype)
            if None in key:  # weights made under inference mode: no version counter, so never kept
                return weight, packed_bias
            self._packed = (key, weight, packed_bias)
        return self._packed[1], self._packed[2]

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        self._packed = None  # a move or cast makes new weights; pack them again when used
        return super()._apply(fn, recurse)  # type: ignore[misc]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_packed"] = None  # opaque oneDNN tensors are neither picklable nor deep-copyable
        return state


class PackedLinear(_PackedMatrix, nn.Linear):
    """``nn.Linear`` with a oneDNN-packed weight for CPU inference, and an optional fused GELU.

    ``forward(x, activation)``: ``x`` is ``... x in_features``; ``activation`` is ``"none"`` or
    ``"gelu"`` (exact GELU applied to the output). Numbers agree with ``F.linear`` up to float rounding
    (a different order of summation).
    """

    def forward(self, x: torch.Tensor, activation: str = "none") -> torch.Tensor:
        return self._linear(x, activation)

    def _matrix(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.weight, self.bias


class PackedConvTranspose2x2(_PackedMatrix, nn.ConvTranspose2d):
    """A 2 x 2, stride 2 transposed convolution that can also run as one matrix product, channels last.

    ``forward`` is ``nn.ConvTranspose2d``'s (``B x in x h x w -> B x out x 2h x 2w``).
    :meth:`blocks` takes channels-last ``... x in`` pixels and returns ``... x 4 x out``: each input
    pixel's 2 x 2 output block, sub-pixel ``(a, b)`` at index ``2a + b``, with the bias added (and
    ``activation`` applied) inside the product.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=2, stride=2)

    def blocks(self, x: torch.Tensor, activation: str = "none") -> torch.Tensor:
        out = self._linear(x, activation)
        return out.view(*x.shape[:-1], 4, self.out_channels)

    def _matrix(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        # weight in x out x 2 x 2 -> (sub-pixel, out) x in; the bias repeated per sub-pixel.
        c_in, c_out = self.in_channels, self.out_channels
        matrix = self.weight.reshape(c_in, c_out, 4).permute(2, 1, 0).reshape(4 * c_out, c_in)
        return matrix, self.bias.repeat(4)
