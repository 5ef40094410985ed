"""Grouped-query / multi-query attention (MultiHeadAttention with num_kv_heads), the per-head
loop, the KV cache and the cost model (attention_lib.multihead).

References: torch.nn.MultiheadAttention (same weights), reference_attention applied head by
head with K/V heads repeated by repeat_interleave, torch SDPA's own ``enable_gqa``, full causal attention (for incremental
decoding), the parameters torch counts and the FLOPs torch.utils.flop_counter counts.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import mha_from_torch, rand_mask, randn, randomize_
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DEVICES, FLOAT_DTYPES, assert_close
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attention_lib import functional as AF
from attention_lib import masks as M
from attention_lib.layers import MultiHeadAttention
from attention_lib.multihead import (
    KVCache,
    attention_cost,
    kv_cache_bytes,
    multi_head_attention_loop,
    repeat_kv,
)
from attention_lib.position import rotary_embedding

HEADS = [(4, 4), (4, 2), (4, 1), (6, 3), (6, 2)]  # (num_heads, num_kv_heads)
MASKS = [None, "(Nq, Nk)", "(B, 1, 1, Nk)", "(B, H, Nq, Nk)", "causal"]


def _gqa(e, h, hkv, gen, dtype=torch.float64, **kw):
    return randomize_(MultiHeadAttention(e, h, hkv, **kw), gen).to(dtype).eval()


def _mask(kind, b, h, nq, nk, gen):
    if kind in (None, "causal"):
        return None
    shape = {"(Nq, Nk)": (nq, nk), "(B, 1, 1, Nk)": (b, 1, 1, nk),
             "(B, H, Nq, Nk)": (b, h, nq, nk)}[kind]
    return rand_mask(shape, gen)


def gqa_by_hand(m: MultiHeadAttention, x, kv, mask, is_causal, value=None):
    """Independent reference: explicit per-head projections, K/V heads repeated with
    repeat_interleave, reference_attention on all heads (B, H, N, Dh) at once."""
    b, nq, _ = x.shape
    h, hkv, dh = m.num_heads, m.num_kv_heads, m.head_dim
    value = kv if value is None else value
    q = (x @ m.q_proj.weight.T + m.q_proj.bias).reshape(b, nq, h, dh).permute(0, 2, 1, 3)
    k = (kv @ m.k_proj.weight.T + m.k_proj.bias).reshape(b, -1, hkv, dh).permute(0, 2, 1, 3)
    v = (value @ m.v_proj.weight.T + m.v_proj.bias).reshape(b, -1, hkv, dh).permute(0, 2, 1, 3)
    k, v = k.repeat_interleave(h // hkv, dim=1), v.repeat_interleave(h // hkv, dim=1)
    out = AF.reference_attention(q, k, v, mask, is_causal=is_causal)  # (B, H, Nq, Dh)
    return out.permute(0, 2, 1, 3).reshape(b, nq, h * dh) @ m.out_proj.weight.T + m.out_proj.bias


# --------------------------------------------------------------------------- MHA parity
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("kdim,vdim", [(None, None), (5, 7)])
def test_all_kv_heads_equals_multi_head_attention_by_hand(dtype, mask, kdim, vdim, gen):
    """num_kv_heads = num_heads is plain multi-head attention: the default, and the same
    numbers as explicit per-head projections and reference_attention."""
    e, h, b, nq = 12, 3, 2, 5
    nk = nq if mask == "causal" else 6
    mha = randomize_(MultiHeadAttention(e, h, h, kdim=kdim, vdim=vdim), gen).to(dtype).eval()
    MultiHeadAttention(e, h, kdim=kdim, vdim=vdim).load_state_dict(mha.state_dict())
    x = randn(b, nq, e, gen=gen, dtype=dtype)
    k = randn(b, nk, kdim or e, gen=gen, dtype=dtype)
    v = randn(b, nk, vdim or e, gen=gen, dtype=dtype)
    if mask == "causal":
        k, v = (x, x) if kdim is None else (k[:, :nq], v[:, :nq])
    am = _mask(mask, b, h, nq, nk, gen)
    causal = mask == "causal"
    with torch.no_grad():
        out, w = mha(x, k, v, am, is_causal=causal, return_weights=True)
        ref = gqa_by_hand(mha, x, k, am, causal, value=v)
        assert_close(out, ref)
        rows = w.sum(-1)[w.sum(-1) > 0]  # rows that had a key to attend to
        assert_close(rows, torch.ones_like(rows))
        assert_close(mha(x, k, v, am, is_causal=causal), ref)


def test_causal_cross_attention_is_top_left_like_sdpa(gen):
    """Without a cache, is_causal follows SDPA (query i sees keys 0..i) even when Nq != Nk."""
    mha = randomize_(MultiHeadAttention(8, 2), gen).double().eval()
    q, kv = randn(2, 3, 8, gen=gen), randn(2, 5, 8, gen=gen)
    with torch.no_grad():
        _, w = mha(q, kv, kv, is_causal=True, return_weights=True)
        assert_close(mha(q, kv, kv, is_causal=True), gqa_by_hand(mha, q, kv, None, True))
    assert torch.equal(w[0, 0] > 0, torch.ones(3, 5, dtype=torch.bool).tril())


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_gqa_equals_torch_multihead_attention(dtype, gen):
    ref = randomize_(nn.MultiheadAttention(16, 4, batch_first=True), gen).to(dtype).eval()
    gqa = MultiHeadAttention(16, 4).to(dtype).eval()
    gqa.load_state_dict(mha_from_torch(ref).state_dict())
    x = randn(2, 7, 16, gen=gen, dtype=dtype)
    lengths = torch.tensor([7, 4])
    with torch.no_grad():
        expected, _ = ref(x, x, x, key_padding_mask=~M.padding_mask(lengths))
        assert_close(gqa(x, attn_mask=M.key_mask(lengths)), expected)


# --------------------------------------------------------------------------- GQA vs reference
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("h,hkv", HEADS)
@pytest.mark.parametrize("mask", MASKS)
def test_gqa_equals_reference_with_kv_heads_repeated(dtype, h, hkv, mask, gen):
    e, b, nq = 2 * h * 2, 2, 5
    nk = nq if mask == "causal" else 7
    m = _gqa(e, h, hkv, gen, dtype)
    x = randn(b, nq, e, gen=gen, dtype=dtype)
    kv = x if mask == "causal" else randn(b, nk, e, gen=gen, dtype=dtype)
    am = _mask(mask, b, h, nq, nk, gen)
    with torch.no_grad():
        expected = gqa_by_hand(m, x, kv, am, mask == "causal")
        out = m(x, kv, kv, am, is_causal=mask == "causal")
    assert_close(out, expected)


@pytest.mark.parametrize("h,hkv", HEADS)
def test_gqa_equals_sdpa_enable_gqa(h, hkv, gen):
    """torch's own grouped-query path: SDPA with enable_gqa=True on un-repeated K/V heads."""
    e, b, n = 4 * h, 2, 6
    m = _gqa(e, h, hkv, gen)
    x = randn(b, n, e, gen=gen)
    with torch.no_grad():
        q = m.q_proj(x).reshape(b, n, h, -1).transpose(1, 2)  # (B, H, N, Dh)
        k = m.k_proj(x).reshape(b, n, hkv, -1).transpose(1, 2)  # (B, Hkv, N, Dh)
        v = m.v_proj(x).reshape(b, n, hkv, -1).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        expected = m.out_proj(o.transpose(1, 2).reshape(b, n, e))
        assert_close(m(x, is_causal=True), expected)


def test_repeat_kv_is_repeat_interleave(gen):
    x = randn(2, 3, 5, 4, gen=gen)
    for g in (1, 2, 4):
        assert torch.equal(repeat_kv(x, g), x.repeat_interleave(g, dim=1))


def test_mqa_shares_one_kv_head(gen):
    """Multi-query attention: every head reads the same keys, so permuting the query heads'
    projection blocks permutes the per-head weights and nothing else."""
    m = _gqa(16, 4, 1, gen)
    x = randn(2, 5, 16, gen=gen)
    assert m.k_proj.weight.shape == (4, 16) and m.v_proj.weight.shape == (4, 16)
    with torch.no_grad():
        _, w = m(x, return_weights=True)
        perm = torch.tensor([2, 0, 3, 1])
        rows = torch.cat([torch.arange(4 * i, 4 * i + 4) for i in perm.tolist()])
        m.q_proj.weight.copy_(m.q_proj.weight[rows])
        m.q_proj.bias.copy_(m.q_proj.bias[rows])
        _, w2 = m(x, return_weights=True)
    assert_close(w2, w[:, perm])


# --------------------------------------------------------------------------- loop == batched
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("h,hkv", HEADS)
@pytest.mark.parametrize("mask", MASKS)
def test_loop_equals_batched(dtype, h, hkv, mask, gen):
    e, b, nq = 3 * h, 2, 4
    nk = nq if mask == "causal" else 6
    m = _gqa(e, h, hkv, gen, dtype)
    x = randn(b, nq, e, gen=gen, dtype=dtype)
    kv = x if mask == "causal" else randn(b, nk, e, gen=gen, dtype=dtype)
    am = _mask(mask, b, h, nq, nk, gen)
    with torch.no_grad():
        out, w = multi_head_attention_loop(m, x, kv, kv, am, is_causal=mask == "causal",
                                           return_weights=True)
        ref, w_ref = m(x, kv, kv, am, is_causal=mask == "causal", return_weights=True)
    assert_close(out, ref)
    assert_close(w, w_ref)


def test_loop_equals_multi_head_attention_module(gen):
    m = randomize_(MultiHeadAttention(12, 4, kdim=5, vdim=3), gen).double().eval()
    q, k, v = randn(2, 4, 12, gen=gen), randn(2, 6, 5, gen=gen), randn(2, 6, 3, gen=gen)
    mask = M.key_mask(torch.tensor([6, 2]))
    with torch.no_grad():
        assert_close(multi_head_attention_loop(m, q, k, v, mask), m(q, k, v, mask))


def test_loop_with_rotary(gen):
    m = _gqa(16, 4, 2, gen, rotary=True)
    x = randn(2, 6, 16, gen=gen)
    with torch.no_grad():
        assert_close(multi_head_attention_loop(m, x, is_causal=True), m(x, is_causal=True))


# --------------------------------------------------------------------------- KV cache
@st.composite
def chunkings(draw):
    n = draw(st.integers(1, 10))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    return n, [b - a for a, b in zip([0] + cuts, cuts + [n])]


@given(chunkings(), st.sampled_from(HEADS), st.booleans(), st.integers(0, 2**31 - 1))
def test_incremental_decoding_equals_full_causal_attention(chunks, heads, rotary, seed):
    """Feeding a sequence in chunks (1 token at a time, or more) through the KV cache gives
    the outputs of one causal pass over the whole sequence."""
    n, sizes = chunks
    h, hkv = heads
    gen = torch.Generator().manual_seed(seed)
    m = _gqa(4 * h, h, hkv, gen, rotary=rotary)
    x = randn(2, n, 4 * h, gen=gen)
    outs, cache = [], m.init_cache(2)
    start = 0
    with torch.no_grad():
        for size in sizes:
            out, cache = m(x[:, start:start + size], is_causal=True, past=cache, use_cache=True)
            outs.append(out)
            start += size
        full = m(x, is_causal=True)
    assert cache.length == n and cache.key.shape == (2, hkv, n, 4 * h // h)
    assert_close(torch.cat(outs, dim=1), full)


def test_cache_holds_rotated_keys_and_values(gen):
    m = _gqa(8, 2, 1, gen, rotary=True)
    x = randn(1, 5, 8, gen=gen)
    with torch.no_grad():
        _, cache = m(x, is_causal=True, use_cache=True)
        k = m.k_proj(x).reshape(1, 5, 1, 4).transpose(1, 2)  # (B, Hkv, N, Dh)
        v = m.v_proj(x).reshape(1, 5, 1, 4).transpose(1, 2)
    assert_close(cache.key, rotary_embedding(k))
    assert_close(cache.value, v)


def test_decoding_with_a_padding_mask(gen):
    """A key mask over the whole (past + new) sequence works while decoding too."""
    m = _gqa(8, 2, 2, gen)
    x = randn(2, 6, 8, gen=gen)
    keep = M.key_mask(torch.tensor([6, 4]))  # (B, 1, 1, 6)
    with torch.no_grad():
        full = m(x, attn_mask=keep, is_causal=True)
        out1, cache = m(x[:, :3], attn_mask=keep[..., :3], is_causal=True, use_cache=True)
        out2, cache = m(x[:, 3:], attn_mask=keep, is_causal=True, past=cache, use_cache=True)
    assert_close(torch.cat([out1, out2], 1), full)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("h,hkv", HEADS)
def test_kv_cache_bytes_matches_the_cache(dtype, h, hkv, gen):
    e, b, n = 4 * h, 3, 7
    m = MultiHeadAttention(e, h, hkv).to(dtype).eval()
    x = randn(b, n, e, gen=gen, dtype=dtype)
    with torch.no_grad():
        _, cache = m(x, is_causal=True, use_cache=True)
    assert cache.nbytes == kv_cache_bytes(b, n, hkv, e // h, dtype=dtype)
    mha_bytes = kv_cache_bytes(b, n, h, e // h, dtype=dtype, num_layers=5)
    assert mha_bytes / kv_cache_bytes(b, n, hkv, e // h, dtype=dtype, num_layers=5) == h / hkv
    assert kv_cache_bytes(b, n, h, e // h, dtype=dtype, num_layers=5) == 5 * kv_cache_bytes(
        b, n, h, e // h, dtype=dtype)


def test_kv_cache_is_immutable_and_checked(gen):
    k = randn(1, 2, 3, 4, gen=gen)
    c = KVCache(k, k.clone())
    c2 = c.append(randn(1, 2, 1, 4, gen=gen), randn(1, 2, 1, 4, gen=gen))
    assert c.length == 3 and c2.length == 4 and torch.equal(c2.key[:, :, :3], k)
    with pytest.raises(ValueError, match="does not fit"):
        c.append(randn(1, 3, 1, 4, gen=gen), randn(1, 3, 1, 4, gen=gen))
    with pytest.raises(ValueError, match="share"):
        KVCache(k, randn(1, 2, 2, 4, gen=gen))


# --------------------------------------------------------------------------- cost model
@pytest.mark.parametrize("h,hkv", HEADS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kdim,vdim", [(None, None), (5, 9)])
def test_attention_cost_counts_parameters_and_flops(h, hkv, bias, kdim, vdim, gen):
    e, b, nq, nk = 4 * h, 2, 5, 7
    m = MultiHeadAttention(e, h, hkv, bias=bias, kdim=kdim, vdim=vdim).eval()
    cost = attention_cost(b, nq, e, h, hkv, kv_seq_len=nk, bias=bias, kdim=kdim, vdim=vdim)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert cost.params[name] == sum(p.numel() for p in getattr(m, name).parameters())
    assert cost.total_params == sum(p.numel() for p in m.parameters())
    x = torch.randn(b, nq, e)
    k, v = torch.randn(b, nk, kdim or e), torch.randn(b, nk, vdim or e)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(x, k, v, return_weights=True)  # the reference path: plain matmuls, all counted
    assert counter.get_total_flops() == cost.total_flops


def test_attention_flops_do_not_depend_on_num_heads():
    costs = [attention_cost(2, 50, 64, h) for h in (1, 2, 4, 8, 16)]
    assert len({c.total_flops for c in costs}) == 1
    assert len({c.total_params for c in costs}) == 1
    gqa = attention_cost(2, 50, 64, 8, 2)
    mha = attention_cost(2, 50, 64, 8)
    assert gqa.params["k_proj"] * 4 == mha.params["k_proj"]  # weight and bias both / 4
    assert gqa.flops["scores"] == mha.flops["scores"]


# --------------------------------------------------------------------------- module hygiene
def test_dropout_only_in_training_and_no_state(gen):
    m = randomize_(MultiHeadAttention(8, 4, 2, dropout=0.5), gen).double()
    x = randn(2, 5, 8, gen=gen)
    before = {n: t.clone() for n, t in m.state_dict().items()}
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    torch.manual_seed(0)
    assert not torch.allclose(m(x), m.eval()(x))
    assert all(torch.equal(before[n], t) for n, t in m.state_dict().items())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hkv", [4, 1])
def test_gqa_on_device(device, hkv, gen):
    m = _gqa(16, 4, hkv, gen, torch.float32, rotary=True).to(device)
    x = randn(2, 6, 16, gen=gen, dtype=torch.float32, device=device)
    with torch.no_grad():
        out, cache = m(x, is_causal=True, use_cache=True)
        step, _ = m(x[:, -1:], is_causal=True, past=KVCache(cache.key[:, :, :5],
                                                            cache.value[:, :, :5]),
                    use_cache=True)
    assert out.device.type == torch.device(device).type
    assert_close(step, out[:, -1:])
    assert_close(out.cpu(), multi_head_attention_loop(m.cpu(), x.cpu(), is_causal=True))


def test_bad_input_is_reported_clearly(gen):
    with pytest.raises(ValueError, match="divisible by num_kv_heads"):
        MultiHeadAttention(12, 4, 3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(10, 4, 2)
    with pytest.raises(ValueError, match="num_kv_heads must be an int >= 1"):
        MultiHeadAttention(8, 4, 0)
    m = MultiHeadAttention(8, 4, 2)
    x = randn(2, 3, 8, gen=gen, dtype=torch.float32)
    with pytest.raises(ValueError, match="last dim E=8"):
        m(randn(2, 3, 6, gen=gen, dtype=torch.float32))
    with pytest.raises(ValueError, match="self-attention"):
        m(x, x, x, use_cache=True)
    with pytest.raises(TypeError, match="KVCache"):
        m(x, past=(x, x))
    with pytest.raises(ValueError, match="past holds keys"):
        m(x, past=MultiHeadAttention(8, 4, 4).init_cache(2).append(
            torch.zeros(2, 4, 1, 2), torch.zeros(2, 4, 1, 2)))
    with pytest.raises(ValueError, match="does not broadcast"):
        m(x, attn_mask=torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="kv_seq_len"):
        attention_cost(1, 4, 8, 2, kv_seq_len=0)
    with pytest.raises(ValueError, match="num_heads % num_kv_heads"):
        attention_cost(1, 4, 12, 4, 3)


def test_scale_is_one_over_sqrt_head_dim(gen):
    """The softmax temperature uses the head size Dh = E / H, not E."""
    m = _gqa(16, 4, 2, gen)
    x = randn(1, 3, 16, gen=gen)
    with torch.no_grad():
        _, w = m(x, return_weights=True)
        q = m.q_proj(x).reshape(1, 3, 4, 4).transpose(1, 2)
        k = repeat_kv(m.k_proj(x).reshape(1, 3, 2, 4).transpose(1, 2), 2)
        expected = (q @ k.transpose(-2, -1) / math.sqrt(4)).softmax(-1)
    assert_close(w, expected)
