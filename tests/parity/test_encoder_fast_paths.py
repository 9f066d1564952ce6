"""The encoder's CPU fast paths give the official numbers: blockwise global attention and packed linears."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention as OfficialAttention
from segment_anything.modeling.image_encoder import Block as OfficialBlock

from segany.modeling.image_encoder import Attention, Block, window_partition
from segany.modeling.layers import MLPBlock
from segany.modeling.packed_linear import PackedLinear
from segany.runtime import compute_context


def _twin_attention(size: int) -> tuple[Attention, OfficialAttention]:
    torch.manual_seed(0)
    ours = Attention(dim=96, num_heads=3, qkv_bias=True, use_rel_pos=True, input_size=(size, size))
    theirs = OfficialAttention(96, num_heads=3, qkv_bias=True, use_rel_pos=True, input_size=(size, size))
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.3)
    theirs.load_state_dict(ours.state_dict())
    return ours.eval(), theirs.eval()


# 1600 and 1296 tokens: above the blockwise threshold; 1600 also gives a shorter last bias block.
@pytest.mark.parametrize("size", [40, 36])
def test_blockwise_global_attention_matches_official(size):
    ours, theirs = _twin_attention(size)
    x = torch.randn(2, size, size, 96)
    with torch.inference_mode():
        expected = theirs(x)
        got = ours(x)  # the fused kernel fed bias blocks (float32 on the CPU)
        explicit = torch.jit.trace(ours, x)(x)  # tracing keeps the explicit score blocks
        ours.use_sdpa = False
        reference = ours(x)
    assert got.abs().max() > 0.5
    assert (got - expected).abs().max() <= 2e-4  # float32 sums in another order: 1.0001e-4 measured with torch 2.14.1
    assert (explicit - expected).abs().max() <= 2e-4  # float32 sums in another order: 1.0001e-4 measured with torch 2.14.1
    assert not torch.equal(got, explicit)  # two different computations ran
    assert (reference - expected).abs().max() <= 2e-4  # float32 sums in another order: 1.0001e-4 measured with torch 2.14.1


@pytest.mark.parametrize("windows", [1, 5])  # one block of windows, and an odd count (a shorter last block)
def test_windowed_attention_blocks_match_official(windows):
    ours, theirs = _twin_attention(14)
    x = torch.randn(windows, 14, 14, 96)
    with torch.inference_mode():
        expected = theirs(x)
        got = ours(x)
        traced = torch.jit.trace(ours, x)(x)  # tracing (ONNX export) takes the fused kernel
    assert got.abs().max() > 0.5
    assert (got - expected).abs().max() <= 1e-4
    assert (traced - expected).abs().max() <= 1e-4


# Grids that windows of 14 do not tile: padding at the bottom and right, both, or only one of them.
@pytest.mark.parametrize("grid", [(20, 20), (14, 23), (9, 28), (30, 31)])
def test_windowed_block_with_padding_matches_official(grid):
    """Projections on the real tokens only, the padding tokens' q, k, v put in as the qkv bias."""
    torch.manual_seed(0)
    ours = Block(96, 3, 4.0, qkv_bias=True, use_rel_pos=True, window_size=14, input_size=grid)
    theirs = OfficialBlock(96, 3, qkv_bias=True, use_rel_pos=True, window_size=14, input_size=grid)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.1)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, *grid, 96)
    with torch.inference_mode():
        expected = theirs.eval()(x)
        got = ours.eval()(x)
        traced = torch.jit.trace(ours, x)(x)  # the ONNX export pads by concatenation instead
    assert got.abs().max() > 0.5
    assert (got - expected).abs().max() <= 1e-4
    assert (traced - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("grid", [(16, 16), (5, 9), (14, 28), (3, 3)])
def test_window_partition_pads_with_the_given_token(grid):
    x = torch.randn(2, *grid, 6)
    fill = torch.randn(6)
    got, padded_hw = window_partition(x, 7, fill)
    padded = fill.expand(2, *padded_hw, 6).clone()
    padded[:, : grid[0], : grid[1]] = x
    want, want_hw = window_partition(padded, 7)
    assert padded_hw == want_hw == (-(-grid[0] // 7) * 7, -(-grid[1] // 7) * 7)
    assert torch.equal(got, want)


def test_blockwise_global_attention_in_bfloat16_stays_close():
    ours, _ = _twin_attention(40)
    x = torch.randn(1, 40, 40, 96)
    with torch.inference_mode():
        exact = ours(x)
        with compute_context(torch.device("cpu"), torch.bfloat16):
            fast = ours(x)
    assert fast.dtype == torch.bfloat16
    relative = (fast.float() - exact).norm() / exact.norm()
    assert relative < 0.025  # the fused kernel fed the bias: 0.017 on this case


@pytest.mark.own_autograd_mode
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_packed_linear_matches_plain_linear(activation):
    torch.manual_seed(0)
    layer = PackedLinear(256, 192)  # 48 rows: a product large enough to be packed
    x = torch.randn(3, 16, 256)
    plain = torch.nn.functional.linear(x, layer.weight, layer.bias)
    if activation == "gelu":
        plain = torch.nn.functional.gelu(plain)
    with torch.inference_mode():
        packed = layer(x, activation=activation)
        again = layer(torch.randn(40, 256))  # another number of rows reuses the packed weight
    assert packed.shape == (3, 16, 192) and again.shape == (40, 192)
    if torch.backends.mkldnn.is_available():
        assert layer._packed is not None  # the packed path ran, not the fallback
    assert (packed - plain).abs().max() <= 1e-5
    with torch.enable_grad():  # training takes the plain path and gets gradients
        out = layer(x, activation=activation)
        out.sum().backward()
    assert layer.weight.grad is not None and (out.detach() - plain).abs().max() <= 1e-5


def test_packed_linear_follows_weight_changes_and_copies():
    torch.manual_seed(0)
    layer = PackedLinear(128, 96)
    x = torch.randn(96, 128)
    with torch.inference_mode():
        before = layer(x)
    assert (before - (x @ layer.weight.T + layer.bias)).abs().max() <= 1e-5
    with torch.no_grad():
        layer.weight.mul_(2)  # in place: the packed copy must be remade
        layer.bias.zero_()
        after = layer(x)
    assert (after - x @ layer.weight.T).abs().max() <= 1e-5
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        with torch.no_grad():
            assert (clone(x) - after).abs().max() <= 1e-5
    with torch.no_grad():
        assert (layer.to(torch.float64)(x.double()) - after.double()).abs().max() <= 1e-5


def test_mlp_block_with_fused_gelu_matches_unfused():
    torch.manual_seed(0)
    block = MLPBlock(32, 64, torch.nn.GELU)
    x = torch.randn(10, 32)
    plain = torch.nn.functional.linear(
        torch.nn.functional.gelu(torch.nn.functional.linear(x, block.lin1.weight, block.lin1.bias)),
        block.lin2.weight,
        block.lin2.bias,
    )
    with torch.inference_mode():
        assert (block(x) - plain).abs().max() <= 1e-5


def test_packed_weights_can_be_turned_off(monkeypatch):
    from segany.runtime import packed_weights_enabled, set_packed_weights

    monkeypatch.setenv("SEGANY_PACKED_WEIGHTS", "0")
    set_packed_weights(None)  # the environment's setting, read at the next use
    try:
        assert not packed_weights_enabled()
        torch.manual_seed(0)
        layer = PackedLinear(256, 192)
        x = torch.randn(48, 256)
        with torch.inference_mode():
            out = layer(x)
        assert layer._packed is None  # no packed copy made: the plain product ran
        assert (out - torch.nn.functional.linear(x, layer.weight, layer.bias)).abs().max() <= 1e-5
        set_packed_weights(True)
        assert packed_weights_enabled()
    finally:
        monkeypatch.delenv("SEGANY_PACKED_WEIGHTS")
        set_packed_weights(None)


def test_tiny_products_run_unpacked_in_the_weights_precision():
    torch.manual_seed(0)
    layer = PackedLinear(256, 256)
    x = torch.randn(1, 7, 256)  # a decoder prompt's tokens
    with torch.inference_mode(), compute_context(torch.device("cpu"), torch.bfloat16):
        out = layer(x)
    assert layer._packed is None
    assert out.dtype == torch.float32  # not rounded to bfloat16: cheaper and exact
    assert (out - torch.nn.functional.linear(x, layer.weight, layer.bias)).abs().max() <= 1e-5
