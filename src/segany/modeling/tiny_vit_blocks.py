"""The layers of MobileSAM's TinyViT encoder: conv+BatchNorm units, MBConv, patch merging, attention blocks.

Layouts: convolutional layers take and return ``B x C x H x W``; attention blocks take and return
channels-last ``B x H x W x C`` (like SAM's ViT blocks). Module and parameter names follow MobileSAM's
checkpoint (``c``/``bn``, ``conv1..3``, ``attn.attention_biases``, ``mlp.fc1``, ``local_conv``) so its
state dict loads unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from .image_encoder import window_partition, window_unpartition
from .layers import DropPath
from .packed_linear import PackedLinear


class ConvBN(nn.Sequential):
    """A bias-free ``Conv2d`` (``c``) followed by ``BatchNorm2d`` (``bn``)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(self.bn.weight, bn_weight_init)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual add, then GELU."""

    def __init__(self, chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(chans * expand_ratio)
        self.conv1 = ConvBN(chans, hidden)
        self.conv2 = ConvBN(hidden, hidden, kernel_size=3, groups=hidden)
        # Zero-initialised last BatchNorm: a new block starts as the identity.
        self.conv3 = ConvBN(hidden, chans, bn_weight_init=0.0)
        self.act = nn.GELU()
        # Identity unless training sets a rate.
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        y = self.act(self.conv2(y))
        y = self.conv3(y)
        return self.act(x + self.drop_path(y))


class PatchMerging(nn.Module):
    """``B x C x H x W`` -> ``B x C' x H/s x W/s``: 1x1 conv, depthwise 3x3 conv with stride ``s``, 1x1 conv."""

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(in_chans, out_chans)
        self.conv2 = ConvBN(out_chans, out_chans, kernel_size=3, stride=stride, groups=out_chans)
        self.conv3 = ConvBN(out_chans, out_chans)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


def attention_bias_index(window_size: int) -> torch.Tensor:
    """``N x N`` index (``N = window_size**2``) of each (query, key) pair's learned bias.

    Pairs share a bias when their offsets agree up to sign on both axes; the ``(|dy|, |dx|)`` offset is
    stored at column ``|dy| * window_size + |dx|`` of ``attention_biases`` (MobileSAM's order).
    """
    rows, cols = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    dy = (rows[:, None] - rows[None, :]).abs()
    dx = (cols[:, None] - cols[None, :]).abs()
    return dy * window_size + dx


class Attention(nn.Module):
    """Pre-norm multi-head self-attention within one window, with a learned bias per relative offset.

    The bias table is gathered from ``attention_biases`` on every call (a few hundred thousand
    elements) rather than cached: a cache would go stale when weights are loaded or changed after
    ``.eval()``, which is MobileSAM's flaw.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = PackedLinear(dim, 3 * dim)
        self.proj = PackedLinear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        # Derived from the window size only, never from weights; not in checkpoints.
        self.register_buffer("attention_bias_idxs", attention_bias_index(window_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x N x C`` tokens of ``B`` windows (``N = window_size**2``) -> ``B x N x C``."""
        batch, tokens, _ = x.shape
        # qkv is laid out per head as [q | k | v] (MobileSAM's order).
        qkv = self.qkv(self.norm(x)).view(batch, tokens, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=-1)
        bias = self.attention_biases[:, self.attention_bias_idxs]  # heads x N x N
        # The explicit product, not F.scaled_dot_product_attention: on CPUs it is ~1.6x faster for
        # windows of 49 and 196 tokens (SDPA checks the additive mask for fully masked rows first).
        attn = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5 + bias
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class Mlp(nn.Module):
    """Pre-norm feed-forward block: LayerNorm, linear, GELU, linear."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = PackedLinear(dim, hidden_dim)
        self.fc2 = PackedLinear(hidden_dim, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention, a depthwise convolution across window borders, and an MLP.

    The grid is zero-padded up to whole windows *before* the attention's LayerNorm, so padded positions
    take part as keys (as in MobileSAM); their outputs are cut off afterwards.
    """

    def __init__(
        self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, kernel_size=local_conv_size, groups=dim)
        # Identity unless training sets a rate.
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x H x W x C`` -> ``B x H x W x C``."""
        height, width = x.shape[1:3]
        windows, padded_hw = window_partition(x, self.window_size)
        attended = self.attn(windows.flatten(1, 2)).view_as(windows)
        x = x + self.drop_path(window_unpartition(attended, self.window_size, padded_hw, (height, width)))
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.drop_path(self.mlp(x))
