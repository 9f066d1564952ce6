"""Fast decoding of many prompts on one image (the automatic generator's case, and several boxes).

The same function as :meth:`MaskDecoder.predict_masks` (the reference), reorganised so that no
per-prompt copy of anything image-sized is made before it is needed, and per-prompt attention runs in
the low-rank form the few prompt tokens allow:

* Until the first image-to-token attention updates them, the image keys are the same for every prompt:
  their projections are computed once and shared.
* Attention between ``N`` image tokens and ``T`` prompt tokens never forms the projected image
  (``N x C/2``): projections are folded into the ``T`` tokens instead
  (``(X W_k^T) q = X (W_k^T q)``, ``P (X W_v^T) = (P X) W_v^T``, ``A (V W_o^T) = A (V W_o^T)`` per head),
  which costs ``N x C x heads*T`` instead of ``N x C x C/2`` multiply-adds per prompt. The key bias of
  token-to-image attention is dropped: it adds a constant to each softmax row.
* The transposed-convolution upscaling runs as channels-last matrix products on each 2 x 2 output
  block, and the hypernetwork dot product happens before pixels are put back in raster order.

Results equal the reference up to float rounding (tests compare both); this path is used by
:class:`MaskDecoder` when one image embedding is shared by several prompts and no prompt has its
own mask input.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .transformer import Attention, TwoWayTransformer

# Prompts upscaled together: bounds the 32-channel 256 x 256 intermediate (2 MiB per prompt channel-plane).
_UPSCALE_CHUNK = 8


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``B x T x (H*d)`` -> ``B x H x T x d``."""
    b, t, c = x.shape
    return x.reshape(b, t, num_heads, c // num_heads).transpose(1, 2)


def _head_weights(linear: torch.nn.Linear, num_heads: int) -> torch.Tensor:
    """Weight ``(H*d) x C`` of a projection into heads -> ``H x d x C``."""
    out, c = linear.weight.shape
    return linear.weight.reshape(num_heads, out // num_heads, c)


def tokens_to_shared_image(
    attn: Attention, q: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor
) -> torch.Tensor:
    """Attention of ``B x T x C`` tokens to one image shared by all prompts.

    ``kh``, ``vh``: the image's projected keys and values, ``1 x H x N x d`` (see :class:`SharedImage`).
    """
    b, t, _ = q.shape
    heads = attn.num_heads
    qh = _heads(attn.q_proj(q), heads)  # B x H x T x d
    # All prompts' queries are rows of one attention against the shared keys.
    rows = qh.permute(1, 0, 2, 3).reshape(1, heads, b * t, -1)
    out = F.scaled_dot_product_attention(rows, kh, vh, scale=1.0 / math.sqrt(qh.shape[-1]))
    out = out.reshape(heads, b, t, -1).permute(1, 2, 0, 3).reshape(b, t, -1)
    return attn.out_proj(out)


def tokens_to_image(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of ``B x T x C`` tokens to per-prompt images (``B x N x C`` keys and values)."""
    b, t, _ = q.shape
    heads = attn.num_heads
    qh = _heads(attn.q_proj(q), heads)  # B x H x T x d
    d = qh.shape[-1]
    folded = torch.einsum("bhtd,hdc->bhtc", qh / math.sqrt(d), _head_weights(attn.k_proj, heads))
    # H*T x N scores per prompt (the scale folded into the few token rows): the softmax runs over the
    # contiguous last axis.
    probs = torch.bmm(folded.reshape(b, heads * t, -1), k.transpose(1, 2)).softmax(dim=-1)
    pooled = torch.bmm(probs, v).reshape(b, heads, t, -1)  # B x H x T x C
    out = torch.einsum("bhtc,hdc->bhtd", pooled, _head_weights(attn.v_proj, heads))
    out = out + attn.v_proj.bias.reshape(1, heads, 1, d)  # softmax rows sum to 1
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, heads * d))


def image_to_tokens(
    attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shared_qh: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention of image tokens (``B x N x C``, or one shared image) to ``B x T x C`` prompt tokens.

    For a shared image pass its projected query heads, transposed, ``shared_qh`` (``H x d x N``); ``q``
    then only gives the token count. Returns ``B x N x C``.
    """
    b, t, _ = k.shape
    heads = attn.num_heads
    kh = _heads(attn.k_proj(k), heads)  # B x H x T x d
    vh = _heads(attn.v_proj(v), heads)
    d = kh.shape[-1]
    n = q.shape[1]
    kh = kh / math.sqrt(d)  # the softmax scale on the few key rows, not on the scores
    # Scores laid out B x H x T x N, so the softmax over the few tokens T runs across the long N axis.
    if shared_qh is not None:  # H x d x N, once for all prompts
        rows = kh.permute(1, 0, 2, 3).reshape(heads, b * t, d)
        scores = torch.bmm(rows, shared_qh).reshape(heads, b, t, n).transpose(0, 1)  # B x H x T x N
    else:
        folded = torch.einsum("bhtd,hdc->bhtc", kh, _head_weights(attn.q_proj, heads)).reshape(
            b, heads * t, -1
        )
        bias = torch.einsum("bhtd,hd->bht", kh, attn.q_proj.bias.reshape(heads, d)).reshape(b, heads * t, 1)
        scores = torch.baddbmm(bias, folded, q.transpose(1, 2)).reshape(b, heads, t, n)
    probs = scores.softmax(dim=2).reshape(b, heads * t, n)
    # Output projection folded into the values (per head V_h W_o,h^T is T x C); each head's weights sum
    # to 1 over T, so adding bias / H to every value row adds the bias once.
    w_out = attn.out_proj.weight.reshape(-1, heads, d)  # C x H x d
    values = torch.einsum("bhtd,chd->bhtc", vh, w_out).reshape(b, heads * t, -1)
    values = values + attn.out_proj.bias / heads
    return torch.bmm(probs.transpose(1, 2), values)


@dataclass(frozen=True)
class SharedImage:
    """What the first two-way layer computes from the image alone, once for all prompts of a call."""

    keys: torch.Tensor  # 1 x N x C image tokens (embedding + dense prompt)
    key_pe: torch.Tensor  # 1 x N x C positional encoding
    token_to_image_k: torch.Tensor  # 1 x H x N x d
    token_to_image_v: torch.Tensor  # 1 x H x N x d
    image_to_token_q: torch.Tensor  # H x d x N (transposed for the products with the prompt keys)


def prepare_shared_image(
    transformer: TwoWayTransformer, image_embedding: torch.Tensor, image_pe: torch.Tensor
) -> SharedImage:
    """Project a ``1 x C x h x w`` image for the first layer's two cross-attentions."""
    # Token-major copies: every prompt's layers read these, and strided reads are 3x slower.
    keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
    key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
    k = keys + key_pe
    first = transformer.layers[0]
    to_image, to_token = first.cross_attn_token_to_image, first.cross_attn_image_to_token
    return SharedImage(
        keys=keys,
        key_pe=key_pe,
        token_to_image_k=_heads(to_image.k_proj(k), to_image.num_heads),
        token_to_image_v=_heads(to_image.v_proj(keys), to_image.num_heads),
        image_to_token_q=_heads(to_token.q_proj(k), to_token.num_heads)[0].transpose(1, 2).contiguous(),
    )


def two_way_shared_image(
    transformer: TwoWayTransformer, image: SharedImage, tokens: torch.Tensor, rows: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`TwoWayTransformer.forward` for ``B`` prompts on one prepared image.

    ``rows``: the token rows whose outputs are needed (default all). Only the final token-to-image
    attention depends on this: its other rows feed nothing.
    Returns tokens ``B x len(rows) x C`` and image keys ``B x N x C``.
    """
    keys, key_pe = image.keys, image.key_pe
    queries, query_pe = tokens, tokens
    for index, layer in enumerate(transformer.layers):
        queries = layer.attend_tokens(queries, query_pe)
        if index == 0:  # keys are still the shared image: use its precomputed projections
            attn_out = tokens_to_shared_image(
                layer.cross_attn_token_to_image,
                queries + query_pe,
                image.token_to_image_k,
                image.token_to_image_v,
            )
            queries = layer.norm2(queries + attn_out)
            queries = layer.norm3(queries + layer.mlp(queries))
            update = image_to_tokens(
                layer.cross_attn_image_to_token, keys, queries + query_pe, queries, image.image_to_token_q
            )
        else:
            k = keys + key_pe
            queries = layer.norm2(
                queries + tokens_to_image(layer.cross_attn_token_to_image, queries + query_pe, k, keys)
            )
            queries = layer.norm3(queries + layer.mlp(queries))
            update = image_to_tokens(layer.cross_attn_image_to_token, k, queries + query_pe, queries)
            del k
        keys = layer.norm4(_residual(update, keys))
    if rows is not None:
        queries, query_pe = queries[:, rows], query_pe[:, rows]
    attn_out = tokens_to_image(transformer.final_attn_token_to_image, queries + query_pe, keys + key_pe, keys)
    queries = transformer.norm_final_attn(queries + attn_out)
    return queries, keys


def _residual(update: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``update + keys`` in ``update``'s dtype, written into ``update`` (one fewer image-sized tensor).

    Under autocast the first layer adds bfloat16 updates to the float32 image: PyTorch's mixed-type
    add is several times slower than converting, adding in float32 and rounding back (same numbers).
    """
    if update.dtype == keys.dtype:
        return update.add_(keys)
    return update.copy_(update.to(keys.dtype).add_(keys))


def upscale_masks(
    upscaling: torch.nn.Sequential,
    keys: torch.Tensor,
    hyper_in: torch.Tensor,
    size: tuple[int, int],
    out: torch.Tensor | None = None,
    detail: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``output_upscaling`` then the hypernetwork dot product, channels last.

    Args:
        upscaling: ``ConvT(2x2, s2), LayerNorm2d, act, ConvT(2x2, s2), act`` of the decoder (its
            transposed convolutions :class:`PackedConvTranspose2x2`).
        keys: ``B x (h*w) x C`` image tokens; hyper_in: ``B x M x C/8``; size: ``(h, w)``.
        out: where to write the result (contiguous, any dtype; default a new tensor of the products'
            dtype): the masks are gathered into raster order straight into it. Not while tracing (ONNX
            export), which does not record writes through views.
        detail: the image's detail maps in this block layout, ``1 x n x 4 x C/4`` and
            ``1 x n x 4 x 4 x C/8`` (:func:`~segany.modeling.detail.detail_blocks`), added to the output
            of each transposed convolution; None for models without detail skips.
    Returns:
        ``B x M x 4h x 4w`` mask logits (``out`` when given).
    """
    conv1, norm, act1, conv2, act2 = upscaling
    b, n, _ = keys.shape
    h, w = size
    c1, c2 = conv1.out_channels, conv2.out_channels
    fused = isinstance(act2, torch.nn.GELU) and act2.approximate == "none" and detail is None
    tracing = torch.jit.is_tracing()
    pieces = []
    for start in range(0, b, _UPSCALE_CHUNK):
        x = keys[start : start + _UPSCALE_CHUNK]
        m = x.shape[0]
        # Each transposed convolution is one product giving every pixel's 2 x 2 output block.
        y = conv1.blocks(x)  # m x n x 4 x c1
        if detail is not None:
            y = y + detail[0]
        y = act1(F.layer_norm(y, (c1,), norm.weight, norm.bias, norm.eps))
        if fused:
            z = conv2.blocks(y, "gelu")  # m x n x 4 x 4 x c2
        elif detail is not None:
            z = act2(conv2.blocks(y) + detail[1])
        else:
            z = act2(conv2.blocks(y))
        hyper = hyper_in[start : start + _UPSCALE_CHUNK].to(z.dtype)
        # The few masks against the pixels (the large tensor read in its own layout): m x M x (n*16),
        # pixels in block order n = (i, j), block (a1, b1), sub-block (a2, b2), i.e. pixel
        # (4i + 2a1 + a2, 4j + 2b1 + b2). bmm, not matmul: for one prompt matmul folds this into a 2-D
        # product that first copies the transposed pixels in bfloat16 (1.2 ms instead of 0.35).
        dots = torch.bmm(hyper, z.reshape(m, n * 16, c2).transpose(1, 2))
        if tracing:
            dots = dots.view(m, -1, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
            pieces.append(dots.reshape(m, -1, 4 * h, 4 * w))
            continue
        if out is None:
            out = torch.empty(b, dots.shape[1], 4 * h, 4 * w, dtype=dots.dtype, device=dots.device)
        # Raster order by one gather (3x faster on the CPU than a copy through the 8-axis permutation).
        planes = dots.to(out.dtype).view(-1, n * 16)
        order = _raster_order(h, w, dots.device)
        target = out[start : start + m].view(-1, n * 16)
        if planes.requires_grad:  # out= is not differentiable
            target.copy_(planes[:, order])
        else:
            torch.index_select(planes, 1, order, out=target)
    if tracing:
        return torch.cat(pieces)
    return out if out is not None else keys.new_empty(0, hyper_in.shape[1], 4 * h, 4 * w)


@functools.lru_cache(maxsize=8)
def _raster_order(h: int, w: int, device: torch.device) -> torch.Tensor:
    """For each pixel of a ``4h x 4w`` mask in raster order, its index in the block order of
    :func:`upscale_masks` (``(i, j, a1, b1, a2, b2)`` -> row ``4i + 2a1 + a2``, column ``4j + 2b1 + b2``)."""
    blocks = torch.arange(h * w * 16, device=device).view(h, w, 2, 2, 2, 2)
    return blocks.permute(0, 2, 4, 1, 3, 5).reshape(-1)
