"""The nn.Module wrappers against torch's and d2l's modules with the same weights copied in.

torch: ``nn.MultiheadAttention(batch_first=True)``; its bool ``attn_mask`` and
``key_padding_mask`` mean True = NOT allowed (the opposite of this library).
d2l: ``AdditiveAttention``, ``DotProductAttention``, ``MultiHeadAttention`` take ``valid_lens``
and use ``LazyLinear``: one forward materialises the weights, which are then copied.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import mha_from_torch, rand_mask, randn, randomize_
from tolerances import DEVICES, FLOAT_DTYPES, assert_close
from torch import nn

from attention_lib import layers as L
from attention_lib import masks as M
from attention_lib import position
from attention_lib.utils import import_d2l


@pytest.fixture(scope="module")
def d2l():
    return import_d2l()


# --------------------------------------------------------------------------- split / merge
@pytest.mark.parametrize("e,h", [(12, 3), (8, 1), (6, 6), (10, 2)])
def test_split_heads_vs_per_head_slices(e, h, gen):
    x = randn(2, 5, e, gen=gen)
    s = L.split_heads(x, h)
    dh = e // h
    assert s.shape == (2, h, 5, dh)
    for i in range(h):
        assert torch.equal(s[:, i], x[..., i * dh:(i + 1) * dh])
    assert torch.equal(L.merge_heads(s), x)
    y = randn(2, h, 5, dh, gen=gen)
    assert torch.equal(L.split_heads(L.merge_heads(y), h), y)
    assert torch.equal(L.merge_heads(y), torch.cat([y[:, i] for i in range(h)], dim=-1))


def test_split_heads_non_contiguous(gen):
    x = randn(2, 12, 5, gen=gen).transpose(1, 2)  # (2, 5, 12), not contiguous
    s = L.split_heads(x, 4)
    for i in range(4):
        assert torch.equal(s[:, i], x[..., 3 * i:3 * i + 3])
    assert torch.equal(L.merge_heads(s), x)


# --------------------------------------------------------------------------- vs torch MHA
def _torch_mha(e, h, gen, dtype, *, bias=True, kdim=None, vdim=None):
    ref = nn.MultiheadAttention(e, h, bias=bias, kdim=kdim, vdim=vdim, batch_first=True)
    return randomize_(ref, gen).to(dtype).eval()


MASKS = ["none", "attn_mask (Nq, Nk)", "attn_mask (B*H, Nq, Nk)", "key_padding", "causal"]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("e,h", [(16, 4), (12, 3), (8, 1)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mask", MASKS)
def test_mha_matches_torch(dtype, e, h, bias, mask, gen):
    b, nq, nk = 2, 5, 5 if mask == "causal" else 7
    ref = _torch_mha(e, h, gen, dtype, bias=bias)
    ours = mha_from_torch(ref)
    x = randn(b, nq, e, gen=gen, dtype=dtype)
    kv = x if mask == "causal" else randn(b, nk, e, gen=gen, dtype=dtype)
    ours_mask, kw = None, {}
    if mask == "attn_mask (Nq, Nk)":
        ours_mask = rand_mask((nq, nk), gen)
        kw = dict(attn_mask=~ours_mask)  # torch: True = NOT allowed
    elif mask == "attn_mask (B*H, Nq, Nk)":
        ours_mask = rand_mask((b, h, nq, nk), gen)
        kw = dict(attn_mask=~ours_mask.reshape(b * h, nq, nk))
    elif mask == "key_padding":
        lengths = torch.tensor([nk, 3])
        ours_mask = M.key_mask(lengths, nk)
        kw = dict(key_padding_mask=torch.arange(nk) >= lengths[:, None])
    elif mask == "causal":
        kw = dict(attn_mask=~torch.ones(nq, nq, dtype=torch.bool).tril(), is_causal=True)
    expected, w_ref = ref(x, kv, kv, average_attn_weights=False, **kw)
    out, w = ours(x, kv, kv, ours_mask, is_causal=mask == "causal", return_weights=True)
    assert out.shape == (b, nq, e) and w.shape == (b, h, nq, nk)
    assert_close(out, expected)
    assert_close(w, w_ref)
    assert_close(ours(x, kv, kv, ours_mask, is_causal=mask == "causal"), expected)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_mha_self_attention_defaults_and_fast_path(dtype, gen):
    """key = value = query by default; torch's inference fast path must agree too."""
    ref = _torch_mha(16, 4, gen, dtype)
    ours = mha_from_torch(ref)
    x = randn(3, 6, 16, gen=gen, dtype=dtype)
    with torch.no_grad():
        expected, _ = ref(x, x, x, need_weights=False)
        assert_close(ours(x), expected)
        assert_close(ours(x, x), expected)


@pytest.mark.parametrize("kdim,vdim", [(5, 9), (7, 16), (16, 3)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_mha_kdim_vdim_matches_torch(kdim, vdim, with_mask, gen):
    e, h, b, nq, nk = 16, 4, 2, 4, 6
    ref = _torch_mha(e, h, gen, torch.float64, kdim=kdim, vdim=vdim)
    assert not ref._qkv_same_embed_dim
    ours = mha_from_torch(ref)
    q = randn(b, nq, e, gen=gen)
    k, v = randn(b, nk, kdim, gen=gen), randn(b, nk, vdim, gen=gen)
    mask = rand_mask((b, 1, nq, nk), gen) if with_mask else None
    kw = {}
    if with_mask:
        kw = dict(attn_mask=~mask.expand(b, h, nq, nk).reshape(b * h, nq, nk))
    expected, _ = ref(q, k, v, **kw)
    assert_close(ours(q, k, v, mask), expected)


def test_mha_equals_per_head_loop(gen):
    """MHA = concat over heads of attention with that head's slice of the projections."""
    e, h, b, nq, nk = 12, 3, 2, 4, 5
    mha = randomize_(L.MultiHeadAttention(e, h, kdim=7, vdim=5), gen).double().eval()
    q, k, v = randn(b, nq, e, gen=gen), randn(b, nk, 7, gen=gen), randn(b, nk, 5, gen=gen)
    mask = rand_mask((b, 1, 1, nk), gen)
    dh = e // h
    heads = []
    for i in range(h):
        sl = slice(i * dh, (i + 1) * dh)
        qi = q @ mha.q_proj.weight[sl].T + mha.q_proj.bias[sl]
        ki = k @ mha.k_proj.weight[sl].T + mha.k_proj.bias[sl]
        vi = v @ mha.v_proj.weight[sl].T + mha.v_proj.bias[sl]
        scores = qi @ ki.transpose(1, 2) / math.sqrt(dh)
        w = scores.masked_fill(~mask[:, 0], float("-inf")).softmax(-1)
        heads.append(w @ vi)
    expected = torch.cat(heads, dim=-1) @ mha.out_proj.weight.T + mha.out_proj.bias
    with torch.no_grad():
        assert_close(mha(q, k, v, mask), expected)


def test_mha_keeps_no_state_and_dropout_only_in_training(gen):
    mha = randomize_(L.MultiHeadAttention(8, 2, dropout=0.5), gen).double()
    x = randn(2, 5, 8, gen=gen)
    before = {n: t.clone() for n, t in mha.state_dict().items()}
    mha.eval()
    a, b_ = mha(x), mha(x)
    assert torch.equal(a, b_)
    mha.train()
    torch.manual_seed(0)
    c = mha(x)
    assert not torch.allclose(c, a)
    after = mha.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert not hasattr(mha, "attention_weights")


@pytest.mark.parametrize("device", DEVICES)
def test_mha_on_device(device, gen):
    ref = _torch_mha(8, 2, gen, torch.float32).to(device)
    ours = mha_from_torch(ref).to(device)
    x = randn(2, 3, 8, gen=gen, dtype=torch.float32, device=device)
    mask = M.key_mask(torch.tensor([3, 2], device=device))
    expected, _ = ref(x, x, x, key_padding_mask=~mask[:, 0, 0])
    assert_close(ours(x, attn_mask=mask), expected)


# --------------------------------------------------------------------------- vs d2l
VALID_LENS = {"none": None, "(B,)": torch.tensor([2, 6]),
              "(B, Nq)": torch.tensor([[1, 3, 6, 2], [5, 5, 4, 1]])}


def _ours_mask(valid, nq, nk):
    return None if valid is None else M.from_valid_lens(valid, nq, nk)


@pytest.mark.parametrize("valid", list(VALID_LENS))
@pytest.mark.parametrize("dq,dk", [(5, 5), (3, 7)])
def test_additive_attention_matches_d2l(d2l, valid, dq, dk, gen):
    b, nq, nk, hd, dv = 2, 4, 6, 8, 3
    vl = VALID_LENS[valid]
    q, k, v = (randn(b, n, d, gen=gen, dtype=torch.float32)
               for n, d in ((nq, dq), (nk, dk), (nk, dv)))
    theirs = d2l.AdditiveAttention(hd, dropout=0.0)
    theirs(q, k, v, vl)  # materialise the LazyLinear weights
    theirs.eval()
    ours = L.AdditiveAttention(dq, dk, hd).eval()
    with torch.no_grad():
        for name in ("W_q", "W_k", "w_v"):
            getattr(ours, name).weight.copy_(getattr(theirs, name).weight)
        expected = theirs(q, k, v, vl)
        mask = _ours_mask(vl, nq, nk)
        out, w = ours(q, k, v, None if mask is None else mask[:, 0], return_weights=True)
    assert_close(out, expected)
    assert_close(w, theirs.attention_weights)


@pytest.mark.parametrize("valid", list(VALID_LENS))
@pytest.mark.parametrize("d", [4, 7])
def test_dot_product_attention_matches_d2l(d2l, valid, d, gen):
    b, nq, nk, dv = 2, 4, 6, 5
    vl = VALID_LENS[valid]
    q, k, v = (randn(b, n, dd, gen=gen, dtype=torch.float32)
               for n, dd in ((nq, d), (nk, d), (nk, dv)))
    theirs = d2l.DotProductAttention(dropout=0.0).eval()
    ours = L.DotProductAttention().eval()
    expected = theirs(q, k, v, vl)
    mask = _ours_mask(vl, nq, nk)
    out, w = ours(q, k, v, None if mask is None else mask[:, 0], return_weights=True)
    assert_close(out, expected)
    assert_close(w, theirs.attention_weights)
    assert_close(ours(q, k, v, None if mask is None else mask[:, 0]), expected)


@pytest.mark.parametrize("valid", list(VALID_LENS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("kdim,vdim", [(None, None), (5, 9)])
def test_mha_matches_d2l(d2l, valid, bias, kdim, vdim, gen):
    e, h, b, nq, nk = 12, 3, 2, 4, 6
    vl = VALID_LENS[valid]
    q = randn(b, nq, e, gen=gen, dtype=torch.float32)
    k = randn(b, nk, kdim or e, gen=gen, dtype=torch.float32)
    v = randn(b, nk, vdim or e, gen=gen, dtype=torch.float32)
    theirs = d2l.MultiHeadAttention(e, h, dropout=0.0, bias=bias)
    theirs(q, k, v, vl)  # materialise the LazyLinear weights
    theirs.eval()
    if bias:
        randomize_(theirs, gen)  # nonzero biases, so that copying them is tested
    ours = L.MultiHeadAttention(e, h, bias=bias, kdim=kdim, vdim=vdim).eval()
    with torch.no_grad():
        for mine, their in (("q_proj", "W_q"), ("k_proj", "W_k"), ("v_proj", "W_v"),
                            ("out_proj", "W_o")):
            getattr(ours, mine).weight.copy_(getattr(theirs, their).weight)
            if bias:
                getattr(ours, mine).bias.copy_(getattr(theirs, their).bias)
        expected = theirs(q, k, v, vl)
        out = ours(q, k, v, _ours_mask(vl, nq, nk))
    assert_close(out, expected)


@pytest.mark.parametrize("d,n", [(8, 1), (16, 20), (32, 40)])
def test_positional_encoding_matches_d2l(d2l, d, n, gen):
    x = randn(3, n, d, gen=gen, dtype=torch.float32)
    theirs = d2l.PositionalEncoding(d, dropout=0.0).eval()
    ours = position.PositionalEncoding(d, max_len=64).eval()
    assert_close(ours(x), theirs(x))


def test_positional_encoding_adds_sinusoids_and_keeps_dtype(gen):
    pe = position.PositionalEncoding(7, max_len=10).eval()
    x = randn(2, 10, 7, gen=gen)
    out = pe(x)
    assert out.dtype == torch.float64
    assert_close(out - x, position.sinusoidal_encoding(10, 7, dtype=torch.float64).expand(2, 10, 7),
                 dtype=torch.float32)  # the buffer is float32
    assert "P" not in pe.state_dict()  # a recomputable buffer is not saved


def test_additive_attention_scores_are_additive_score(gen):
    """Module = additive_score + masked_softmax + weights @ values, written out here."""
    ours = randomize_(L.AdditiveAttention(3, 4, 5), gen).double().eval()
    q, k, v = randn(2, 3, 3, gen=gen), randn(2, 6, 4, gen=gen), randn(2, 6, 2, gen=gen)
    mask = rand_mask((2, 1, 6), gen)
    feats = torch.tanh((q @ ours.W_q.weight.T)[:, :, None] + (k @ ours.W_k.weight.T)[:, None])
    scores = (feats @ ours.w_v.weight.T)[..., 0]
    w = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    with torch.no_grad():
        out, w_ours = ours(q, k, v, mask, return_weights=True)
    assert_close(w_ours, w)
    assert_close(out, w @ v)


def test_dot_product_attention_causal_and_scale(gen):
    q, k, v = randn(2, 5, 4, gen=gen), randn(2, 5, 4, gen=gen), randn(2, 5, 3, gen=gen)
    out = L.DotProductAttention(scale=0.7).eval()(q, k, v, is_causal=True)
    expected = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None],
                                              is_causal=True, scale=0.7)[:, 0]
    assert_close(out, expected)
