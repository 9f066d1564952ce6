"""ViT image encoder of SAM (MAE-style ViT with windowed attention and a conv neck).

Frames: the encoder takes a normalised, padded ``B x 3 x S x S`` image (``S = img_size``, 1024 for the
official models) and returns ``B x out_chans x S/16 x S/16`` image embeddings (256 x 64 x 64).
Parameter names follow the official checkpoints so their state dicts load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DropPath, LayerNorm2d, MLPBlock
from .packed_linear import PackedLinear

# Attention over more tokens than this (the global blocks) runs one head and one block of query rows
# at a time (see Attention._blockwise_attention); windowed blocks (196 tokens) a few windows at a time.
_BLOCKWISE_ABOVE = 1024
# Query rows per block there: a block's scores (512 x 4096 for a 64 x 64 grid) stay near the caches.
_QUERY_BLOCK = 512
# Windows per block of a windowed layer on the CPU (2 x 12 heads x 196 x 196 scores for vit_b).
_WINDOWS_PER_BLOCK = 2
# Query rows per bias block of a float32 global layer on the CPU, where the fused kernel runs (see
# Attention._fused_bias_blocks): 1024 x 4096 x 4 bytes = 16 MiB, within a large last-level cache.
_FUSED_QUERY_BLOCK = 1024


class ImageEncoderViT(nn.Module):
    """Patch embedding, learned absolute positions, ``depth`` transformer blocks and a conv neck."""

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (),
        use_sdpa: bool = True,
    ) -> None:
        """
        Args:
            window_size: side of the square attention windows; blocks listed in
                ``global_attn_indexes`` attend globally instead.
            use_sdpa: compute attention with ``F.scaled_dot_product_attention`` (the relative-position
                bias passed as an additive mask). ``False`` runs the explicit reference computation;
                both give the same numbers up to float rounding.
        """
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            # Zero-initialised like the official model; checkpoints overwrite it.
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
                use_sdpa=use_sdpa,
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x S x S`` normalised image -> ``B x out_chans x S/p x S/p`` embedding."""
        x = self.patch_embed(x)  # B x H x W x C (channels last through the blocks)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution; returns channels-last ``B x H x W x C``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Made contiguous: a permuted view would carry its channels-first strides through every
        # residual add of the blocks (each add then ~12x slower on the CPU, each layer norm copying).
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class Block(nn.Module):
    """Pre-norm transformer block with windowed (``window_size > 0``) or global attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        use_rel_pos: bool,
        window_size: int,
        input_size: tuple[int, int],
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_size = input_size if window_size == 0 else (window_size, window_size)
        self.attn = Attention(dim, num_heads, qkv_bias, use_rel_pos, attn_size, use_sdpa)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size
        # Identity unless training sets a rate (segany.training.optim.set_drop_path).
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        x = self.attn.windowed(x, self.window_size) if self.window_size > 0 else self.attn(x)
        # Under autocast the branches come back in bfloat16: adding them to the float32 stream after
        # an explicit cast is 10x faster on the CPU than PyTorch's mixed-type add, same numbers.
        x = shortcut + self.drop_path(x).to(shortcut.dtype)
        return x + self.drop_path(self.mlp(self.norm2(x))).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention over a ``B x H x W x C`` grid with decomposed relative positions."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        use_rel_pos: bool,
        input_size: tuple[int, int],
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = PackedLinear(dim, dim * 3, bias=qkv_bias)
        self.proj = PackedLinear(dim, dim)
        self.use_rel_pos = use_rel_pos
        self.use_sdpa = use_sdpa
        if use_rel_pos:
            # One embedding per relative offset along each axis: 2 * size - 1 offsets.
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention among all tokens of each ``B x H x W x C`` grid (a window, or the whole image)."""
        return self.proj(self._attend(self.qkv(x)))

    def windowed(self, x: torch.Tensor, window_size: int) -> torch.Tensor:
        """Attention within ``window_size`` windows of a ``B x H x W x C`` grid, zero-padded to whole
        windows: the official computation (partition, attention, unpartition) for the real tokens.

        The projections run on the real tokens only: a padding token's input is zero, so its
        ``q, k, v`` are the qkv bias, placed in the padding directly (for vit_b at 1024 input 804 of the
        4900 window tokens are padding), and its output is cut away, so it is never projected.
        """
        height, width = x.shape[1], x.shape[2]
        qkv = self.qkv(x)
        windows, padded_hw = window_partition(qkv, window_size, self.qkv.bias)  # no bias: zeros
        out = window_unpartition(self._attend(windows), window_size, padded_hw, (height, width))
        return self.proj(out)

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """``B x H x W x 3C`` projected queries, keys and values -> ``B x H x W x C`` attention output
        (heads concatenated, before the output projection)."""
        batch, height, width, _ = qkv.shape
        tokens = height * width
        # qkv: 3 x B x heads x N x head_dim
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.use_rel_pos and self.use_sdpa and _blockwise(tokens, q.device):
            out = self._blockwise_attention(q, k, v, height, width)
            return out.permute(0, 2, 1, 3).reshape(batch, height, width, -1)
        bias = None
        if self.use_rel_pos:
            bias = decomposed_rel_pos_bias(
                q.reshape(batch * self.num_heads, tokens, -1),
                self.rel_pos_h,
                self.rel_pos_w,
                (height, width),
                (height, width),
            ).view(batch, self.num_heads, tokens, tokens)
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if bias is not None:
                attn = attn + bias
            out = attn.softmax(dim=-1) @ v
        # B x heads x N x head_dim -> B x H x W x C
        return out.permute(0, 2, 1, 3).reshape(batch, height, width, -1)

    def _blockwise_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """Attention with the relative-position bias added in place, a block of scores at a time.

        The full relative-position bias of a global block is ``heads x N x N`` (805 MB for vit_b at
        1024 input). Here each block of scores -- one head and ``_QUERY_BLOCK`` query rows of a global
        block, or every head of ``_WINDOWS_PER_BLOCK`` windows -- gets its two bias halves added in
        place (no bias tensor is built) and its softmax taken before the next block: the arithmetic of
        the explicit reference computation, with two plain matrix products per block. On CPUs this
        beats the fused attention kernel fed the whole bias built beforehand (measured with 2 threads on
        AVX-512, vit_b: a global block 1.3-1.6x in float32, 1.8x in bfloat16; a windowed attention
        layer, projections included, 1.2x in both). Global float32 layers on the CPU feed the fused
        kernel one block of bias at a time instead (:meth:`_fused_bias_blocks`), which is faster still.
        """
        batch, heads, tokens, dim = q.shape
        # Scores, bias and softmax in float32 whatever the precision of the products (as the fused
        # kernel keeps them); only the probabilities go back to q's precision for the second product.
        with torch.autocast(q.device.type, enabled=False):
            rel_h, rel_w = rel_pos_terms(
                q.reshape(batch * heads, tokens, dim).float(),
                self.rel_pos_h.float(),
                self.rel_pos_w.float(),
                (height, width),
                (height, width),
            )
        rel_h = rel_h.view(batch, heads, tokens, height, 1)
        rel_w = rel_w.view(batch, heads, tokens, 1, width)
        if _use_fused_bias_blocks(q, tokens):
            return self._fused_bias_blocks(q, k, v, rel_h, rel_w)
        out = torch.empty_like(q)
        scaled = q * self.scale  # once: hundreds of small multiplications cost more in call overhead
        for block in _score_blocks(batch, heads, tokens):
            # Global: block (b, h, rows) of 2-D matrices; windowed: a batch of windows, every head.
            keys, values = k[block[:-1]], v[block[:-1]]
            scores = torch.matmul(scaled[block], keys.transpose(-2, -1)).float()
            grid = scores.view(*scores.shape[:-1], height, width)
            grid.add_(rel_h[block]).add_(rel_w[block])
            out[block] = torch.matmul(scores.softmax(dim=-1).to(q.dtype), values)
        return out

    def _fused_bias_blocks(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor
    ) -> torch.Tensor:
        """Global float32 attention by the fused kernel, fed the bias ``_FUSED_QUERY_BLOCK`` query rows
        of one head at a time (each block's two halves added into one reused buffer).

        The kernel keeps its scores in small tiles; the explicit blocks above write, reread and
        soft-max every 4 MiB block of float32 scores in memory, and slow down more than it when other
        work competes for memory bandwidth (measured, vit_b global layer, 2 threads: 3-28% slower). In
        bfloat16 the explicit blocks stay faster (the kernel's bfloat16 path is slow), and so do
        windowed layers.
        """
        batch, heads, tokens, _ = q.shape
        height, width = rel_h.shape[-2], rel_w.shape[-1]
        out = torch.empty_like(q)
        buffer = q.new_empty(min(_FUSED_QUERY_BLOCK, tokens), height, width)
        for b, h, rows in _score_blocks(batch, heads, tokens, _FUSED_QUERY_BLOCK):
            row_h = rel_h[b, h, rows]
            bias = torch.add(row_h, rel_w[b, h, rows], out=buffer[: row_h.shape[0]])
            out[b, h, rows] = F.scaled_dot_product_attention(
                q[b, h, rows][None], k[b, h][None], v[b, h][None], attn_mask=bias.view(1, -1, tokens)
            )[0]
        return out


def _use_fused_bias_blocks(q: torch.Tensor, tokens: int) -> bool:
    """Whether a global layer runs :meth:`Attention._fused_bias_blocks`: float32 on the CPU, not while
    tracing (the export keeps the explicit blocks)."""
    return (
        tokens > _BLOCKWISE_ABOVE
        and q.dtype == torch.float32
        and q.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
    )


def _blockwise(tokens: int, device: torch.device) -> bool:
    """Whether :meth:`Attention._blockwise_attention` runs: always for global attention (the full bias
    would not fit), and for windowed attention on the CPU, except while tracing (ONNX export), where
    the in-place writes through views would not be recorded."""
    if tokens > _BLOCKWISE_ABOVE:
        return True
    return device.type == "cpu" and not torch.jit.is_tracing() and not torch.jit.is_scripting()


def _score_blocks(
    batch: int, heads: int, tokens: int, query_block: int = _QUERY_BLOCK
) -> list[tuple[int | slice, ...]]:
    """Index tuples ``(batch, head, query rows)`` of the score blocks of
    :meth:`Attention._blockwise_attention`: one head and ``query_block`` rows of a global layer, or
    ``_WINDOWS_PER_BLOCK`` windows with every head and row of a windowed one."""
    if tokens > _BLOCKWISE_ABOVE:
        return [
            (b, h, slice(start, start + query_block))
            for b in range(batch)
            for h in range(heads)
            for start in range(0, tokens, query_block)
        ]
    every = slice(None)
    return [(slice(b, b + _WINDOWS_PER_BLOCK), every, every) for b in range(0, batch, _WINDOWS_PER_BLOCK)]


def window_partition(
    x: torch.Tensor, window_size: int, fill: torch.Tensor | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split ``B x H x W x C`` into ``B*nW x ws x ws x C`` windows, padding H and W up first.

    ``fill``: the ``C`` values of a padding token (default zeros). Returns the windows and the padded
    ``(Hp, Wp)``.
    """
    batch, height, width, channels = x.shape
    pad_h = (window_size - height % window_size) % window_size
    pad_w = (window_size - width % window_size) % window_size
    hp, wp = height + pad_h, width + pad_w
    if (pad_h or pad_w) and fill is not None:
        fill = fill.to(x.dtype)
        if not torch.jit.is_tracing():
            return _partition_filled(x, window_size, fill), (hp, wp)
        # Writes through views are not recorded by the ONNX export: pad by concatenation.
        x = torch.cat([x, fill.expand(batch, pad_h, width, channels)], dim=1)
        x = torch.cat([x, fill.expand(batch, hp, pad_w, channels)], dim=2)
    elif pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    x = x.view(batch, hp // window_size, window_size, wp // window_size, window_size, channels)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, channels)
    return windows, (hp, wp)


def _partition_filled(x: torch.Tensor, window_size: int, fill: torch.Tensor) -> torch.Tensor:
    """:func:`window_partition` with padding tokens ``fill``, written straight into the windows (no
    padded copy of the grid first): the whole windows, then the real part of the last row and column
    of windows, then their padding."""
    batch, height, width, channels = x.shape
    ws = window_size
    full_h, full_w = height // ws, width // ws  # whole windows along each axis
    rest_h, rest_w = height - full_h * ws, width - full_w * ws  # real rows / columns of the last ones
    out = x.new_empty(batch, -(-height // ws), -(-width // ws), ws, ws, channels)
    inner = x[:, : full_h * ws, : full_w * ws].unflatten(1, (full_h, ws)).unflatten(3, (full_w, ws))
    out[:, :full_h, :full_w] = inner.permute(0, 1, 3, 2, 4, 5)
    if rest_h:
        bottom = x[:, full_h * ws :, : full_w * ws].unflatten(2, (full_w, ws))  # B x rest_h x full_w x ws x C
        out[:, full_h, :full_w, :rest_h] = bottom.permute(0, 2, 1, 3, 4)
        out[:, full_h, :, rest_h:] = fill
    if rest_w:
        out[:, :full_h, full_w, :, :rest_w] = x[:, : full_h * ws, full_w * ws :].unflatten(1, (full_h, ws))
        out[:, :, full_w, :, rest_w:] = fill
    if rest_h and rest_w:
        out[:, full_h, full_w, :rest_h, :rest_w] = x[:, full_h * ws :, full_w * ws :]
    return out.view(-1, ws, ws, channels)


def window_unpartition(
    windows: torch.Tensor, window_size: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``B*nW x ws x ws x C`` -> ``B x H x W x C`` (padding cut)."""
    hp, wp = padded_hw
    height, width = hw
    batch = windows.shape[0] // (hp * wp // window_size // window_size)
    x = windows.view(batch, hp // window_size, wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, hp, wp, -1)
    if hp > height or wp > width:
        x = x[:, :height, :width, :].contiguous()
    return x


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings for every (query, key) pair along one axis: ``q x k x C``.

    ``rel_pos`` is ``L x C`` with ``L = 2 * max(q, k) - 1`` (linearly resampled if it differs).
    """
    max_rel_dist = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != max_rel_dist:
        resized = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist, mode="linear"
        )
        rel_pos = resized.reshape(-1, max_rel_dist).permute(1, 0)
    # Scale coordinates with the shorter side when q and k differ in length.
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative.long()]


def rel_pos_terms(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two halves of MViTv2's decomposed relative-position bias.

    Args:
        q: ``B x (q_h*q_w) x C`` unscaled queries.
    Returns:
        ``B x (q_h*q_w) x k_h`` (``q . R_h[row offset]``) and ``B x (q_h*q_w) x k_w`` (columns); the bias of
        query ``i`` and key ``(r, c)`` is ``rel_h[i, r] + rel_w[i, c]``.
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    rh = get_rel_pos(q_h, k_h, rel_pos_h)
    rw = get_rel_pos(q_w, k_w, rel_pos_w)
    batch, _, dim = q.shape
    r_q = q.reshape(batch, q_h, q_w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh).reshape(batch, q_h * q_w, k_h)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw).reshape(batch, q_h * q_w, k_w)
    return rel_h, rel_w


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> torch.Tensor:
    """The additive attention bias ``B x (q_h*q_w) x (k_h*k_w)`` of :func:`rel_pos_terms`."""
    rel_h, rel_w = rel_pos_terms(q, rel_pos_h, rel_pos_w, q_size, k_size)
    return (rel_h[:, :, :, None] + rel_w[:, :, None, :]).flatten(-2)
