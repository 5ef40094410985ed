"""Hypothesis properties of attention over random small shapes and random bool masks.

Shapes: B <= 3, H <= 3, N <= 9, D <= 8. Tensors are drawn from a ``torch.Generator`` seeded by
hypothesis (so every example is reproducible from its seed); mask densities include 0, so
fully masked rows come up often. The profile (examples per property) is set in conftest.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pytest
import torch
from helpers import randomize_
from hypothesis import given
from hypothesis import strategies as st
from tolerances import assert_close

from attention_lib import functional as AF
from attention_lib import layers as L
from attention_lib import masks as M

ATTENTION_FNS = [AF.reference_attention, AF.attention]
FN_IDS = ["reference_attention", "attention"]
MASK_KINDS = [None, "(Nq, Nk)", "(B, 1, 1, Nk)", "(B, 1, Nq, Nk)", "(B, H, Nq, Nk)"]


@dataclass
class Case:
    q: torch.Tensor  # (B, H, Nq, D)
    k: torch.Tensor  # (B, H, Nk, D)
    v: torch.Tensor  # (B, H, Nk, Dv)
    mask: Optional[torch.Tensor]  # bool, broadcastable to (B, H, Nq, Nk)
    gen: torch.Generator  # for anything else the test draws

    @property
    def keep(self) -> torch.Tensor:
        """The mask expanded to (B, H, Nq, Nk) (all True when there is none)."""
        b, h, nq, nk = self.q.shape[0], self.q.shape[1], self.q.shape[2], self.k.shape[2]
        if self.mask is None:
            return torch.ones(b, h, nq, nk, dtype=torch.bool)
        return self.mask.expand(b, h, nq, nk)


def _mask_shape(kind, b, h, nq, nk):
    return {"(Nq, Nk)": (nq, nk), "(B, 1, 1, Nk)": (b, 1, 1, nk),
            "(B, 1, Nq, Nk)": (b, 1, nq, nk), "(B, H, Nq, Nk)": (b, h, nq, nk)}[kind]


@st.composite
def cases(draw, *, square: bool = False, max_b: int = 3, max_h: int = 3, max_n: int = 9,
          max_d: int = 8, masks=MASK_KINDS, dtype=torch.float64) -> Case:
    b, h = draw(st.integers(1, max_b)), draw(st.integers(1, max_h))
    nq = draw(st.integers(1, max_n))
    nk = nq if square else draw(st.integers(1, max_n))
    d, dv = draw(st.integers(1, max_d)), draw(st.integers(1, max_d))
    kind = draw(st.sampled_from(masks))
    density = draw(st.sampled_from([0.0, 0.25, 0.6, 1.0]))
    sharpness = draw(st.sampled_from([0.1, 1.0, 5.0]))  # flat to nearly one-hot weights
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 32 - 1)))

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    q, k, v = rnd(b, h, nq, d) * sharpness, rnd(b, h, nk, d), rnd(b, h, nk, dv)
    mask = None
    if kind is not None:
        mask = torch.rand(*_mask_shape(kind, b, h, nq, nk), generator=gen) < density
    return Case(q, k, v, mask, gen)


def _perm(n, gen):
    return torch.randperm(n, generator=gen)


# --------------------------------------------------------------------------- weights
@given(c=cases())
def test_weights_rows_sum_to_one(c):
    _, w = AF.reference_attention(c.q, c.k, c.v, c.mask, return_weights=True)
    rows = c.keep.any(-1)
    assert_close(w.sum(-1)[rows], torch.ones_like(w.sum(-1)[rows]))
    assert (w >= 0).all()


@given(c=cases(), is_causal=st.booleans())
def test_masked_weights_are_exactly_zero(c, is_causal):
    _, w = AF.reference_attention(c.q, c.k, c.v, c.mask, is_causal=is_causal,
                                  return_weights=True)
    keep = c.keep
    if is_causal:
        keep = keep & torch.ones(keep.shape[-2:], dtype=torch.bool).tril()
    assert (w[~keep] == 0).all()
    ws = AF.masked_softmax(c.q @ c.k.transpose(-2, -1), c.mask)
    assert (ws[~c.keep] == 0).all()


@pytest.mark.parametrize("fn", ATTENTION_FNS, ids=FN_IDS)
@given(c=cases(masks=MASK_KINDS[1:]))
def test_fully_masked_rows_give_zeros_never_nan(fn, c):
    out = fn(c.q, c.k, c.v, c.mask)
    empty = ~c.keep.any(-1)  # (B, H, Nq)
    assert not torch.isnan(out).any()
    assert (out[empty] == 0).all()
    w = AF.masked_softmax(c.q @ c.k.transpose(-2, -1), c.mask)
    assert not torch.isnan(w).any()
    assert (w[empty] == 0).all()
    # and the bias route: mask_to_bias puts -inf on every key of an empty row
    out_b = fn(c.q, c.k, c.v, bias=M.mask_to_bias(c.mask, torch.float64))
    assert not torch.isnan(out_b).any()
    assert (out_b[empty] == 0).all()
    assert_close(out_b, out)


@given(c=cases(max_h=1, masks=["(B, 1, Nq, Nk)"]), dq=st.integers(1, 6),
       hd=st.integers(1, 6), heads=st.integers(1, 3))
def test_layers_fully_masked_rows_never_nan(c, dq, hd, heads):
    mask = c.mask[:, 0]  # (B, Nq, Nk)
    b, nq, nk = mask.shape
    empty = ~mask.any(-1)  # (B, Nq)
    q3, k3, v3 = c.q[:, 0], c.k[:, 0], c.v[:, 0]
    with torch.no_grad():
        out = L.DotProductAttention().eval()(q3, k3, v3, mask)
        assert not torch.isnan(out).any() and (out[empty] == 0).all()

        add = randomize_(L.AdditiveAttention(q3.shape[-1], k3.shape[-1], hd), c.gen).double()
        out, w = add.eval()(q3, k3, v3, mask, return_weights=True)
        assert not torch.isnan(out).any() and (out[empty] == 0).all() and (w[empty] == 0).all()

        e = heads * dq
        mha = randomize_(L.MultiHeadAttention(e, heads, kdim=k3.shape[-1], vdim=v3.shape[-1]),
                         c.gen).double().eval()
        x = torch.randn(b, nq, e, generator=c.gen, dtype=torch.float64)
        out, w = mha(x, k3, v3, mask[:, None], return_weights=True)
        assert not torch.isnan(out).any()
        assert (w.permute(0, 2, 1, 3)[empty] == 0).all()
        # an empty row attends to nothing: the output is out_proj(0) = out_proj.bias
        assert_close(out[empty], mha.out_proj.bias.expand_as(out[empty]))


# --------------------------------------------------------------------------- symmetries
@pytest.mark.parametrize("fn", ATTENTION_FNS, ids=FN_IDS)
@given(c=cases())
def test_invariant_to_permuting_key_value_pairs(fn, c):
    out = fn(c.q, c.k, c.v, c.mask)
    p = _perm(c.k.shape[2], c.gen)
    mask_p = None if c.mask is None else c.mask[..., p]
    assert_close(fn(c.q, c.k[:, :, p], c.v[:, :, p], mask_p), out)


@pytest.mark.parametrize("fn", ATTENTION_FNS, ids=FN_IDS)
@given(c=cases())
def test_equivariant_to_permuting_queries(fn, c):
    out = fn(c.q, c.k, c.v, c.mask)
    p = _perm(c.q.shape[2], c.gen)
    mask_p = None
    if c.mask is not None:
        mask_p = c.mask[..., p, :] if c.mask.shape[-2] > 1 else c.mask
    assert_close(fn(c.q[:, :, p], c.k, c.v, mask_p), out[:, :, p])


@pytest.mark.parametrize("fn", ATTENTION_FNS, ids=FN_IDS)
@given(c=cases(square=True), t=st.integers(0, 8))
def test_no_causal_leakage(fn, c, t):
    """Changing the keys/values of positions > t leaves outputs 0..t exactly unchanged."""
    n = c.q.shape[2]
    t = min(t, n - 1)
    out = fn(c.q, c.k, c.v, c.mask, is_causal=True)
    k2, v2 = c.k.clone(), c.v.clone()
    k2[:, :, t + 1:] = torch.randn(k2[:, :, t + 1:].shape, generator=c.gen, dtype=k2.dtype) * 9
    v2[:, :, t + 1:] = torch.randn(v2[:, :, t + 1:].shape, generator=c.gen, dtype=v2.dtype) * 9
    out2 = fn(c.q, k2, v2, c.mask, is_causal=True)
    assert torch.equal(out2[:, :, :t + 1], out[:, :, :t + 1])


@given(b=st.integers(1, 3), n=st.integers(1, 9), heads=st.integers(1, 3),
       dh=st.integers(1, 4), t=st.integers(0, 8), seed=st.integers(0, 2 ** 32 - 1))
def test_mha_no_causal_leakage(b, n, heads, dh, t, seed):
    gen = torch.Generator().manual_seed(seed)
    t = min(t, n - 1)
    mha = randomize_(L.MultiHeadAttention(heads * dh, heads), gen).double().eval()
    x = torch.randn(b, n, heads * dh, generator=gen, dtype=torch.float64)
    x2 = x.clone()
    x2[:, t + 1:] += torch.randn(x2[:, t + 1:].shape, generator=gen, dtype=torch.float64) * 9
    with torch.no_grad():
        assert torch.equal(mha(x2, is_causal=True)[:, :t + 1], mha(x, is_causal=True)[:, :t + 1])


@pytest.mark.parametrize("fn", ATTENTION_FNS, ids=FN_IDS)
@given(c=cases(), is_causal=st.booleans())
def test_batch_and_head_independence(fn, c, is_causal):
    """Each (example, head) computed alone equals its slice of the batched result."""
    out = fn(c.q, c.k, c.v, c.mask, is_causal=is_causal)
    keep = c.keep
    for i in range(c.q.shape[0]):
        alone = fn(c.q[i:i + 1], c.k[i:i + 1], c.v[i:i + 1],
                   None if c.mask is None else keep[i:i + 1], is_causal=is_causal)
        assert_close(alone, out[i:i + 1])
        for h in range(c.q.shape[1]):
            one = fn(c.q[i:i + 1, h:h + 1], c.k[i:i + 1, h:h + 1], c.v[i:i + 1, h:h + 1],
                     None if c.mask is None else keep[i:i + 1, h:h + 1], is_causal=is_causal)
            assert_close(one, out[i:i + 1, h:h + 1])


@given(b=st.integers(1, 3), nq=st.integers(1, 9), nk=st.integers(1, 9),
       heads=st.integers(1, 3), dh=st.integers(1, 4), seed=st.integers(0, 2 ** 32 - 1))
def test_mha_batch_independence(b, nq, nk, heads, dh, seed):
    gen = torch.Generator().manual_seed(seed)
    e = heads * dh
    mha = randomize_(L.MultiHeadAttention(e, heads), gen).double().eval()
    x = torch.randn(b, nq, e, generator=gen, dtype=torch.float64)
    kv = torch.randn(b, nk, e, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, nk + 1, (b,), generator=gen)
    mask = M.key_mask(lengths, nk)
    with torch.no_grad():
        out = mha(x, kv, kv, mask)
        for i in range(b):
            assert_close(mha(x[i:i + 1], kv[i:i + 1], kv[i:i + 1], mask[i:i + 1]), out[i:i + 1])


# --------------------------------------------------------------------------- consistency
@given(c=cases(), is_causal=st.booleans(), with_bias=st.booleans())
def test_attention_equals_reference(c, is_causal, with_bias):
    bias = None
    if with_bias:
        bias = torch.randn(c.keep.shape[-2:], generator=c.gen, dtype=torch.float64)
    ref = AF.reference_attention(c.q, c.k, c.v, c.mask, is_causal=is_causal, bias=bias)
    assert_close(AF.attention(c.q, c.k, c.v, c.mask, is_causal=is_causal, bias=bias), ref)


@pytest.mark.parametrize("fn", ATTENTION_FNS, ids=FN_IDS)
@given(c=cases(masks=MASK_KINDS[1:4]))
def test_broadcast_mask_equals_expanded_mask(fn, c):
    expanded = c.keep.contiguous()
    assert_close(fn(c.q, c.k, c.v, c.mask), fn(c.q, c.k, c.v, expanded))


@given(c=cases(masks=[None]), data=st.data())
def test_key_padding_equals_truncating_keys(c, data):
    b, nk = c.q.shape[0], c.k.shape[2]
    lengths = data.draw(st.lists(st.integers(1, nk), min_size=b, max_size=b))
    out = AF.reference_attention(c.q, c.k, c.v, M.key_mask(torch.tensor(lengths), nk))
    for i, n in enumerate(lengths):
        alone = AF.reference_attention(c.q[i:i + 1], c.k[i:i + 1, :, :n], c.v[i:i + 1, :, :n])
        assert_close(out[i:i + 1], alone)


@given(c=cases(), shift=st.floats(-1e3, 1e3))
def test_masked_softmax_shift_invariant(c, shift):
    """Adding the same constant to every score of a row leaves the weights unchanged."""
    scores = c.q @ c.k.transpose(-2, -1)
    row_shift = shift * torch.rand(scores.shape[:-1] + (1,), generator=c.gen, dtype=scores.dtype)
    assert_close(AF.masked_softmax(scores + row_shift, c.mask), AF.masked_softmax(scores, c.mask))


# --------------------------------------------------------------------------- purity
@given(c=cases(), is_causal=st.booleans())
def test_inputs_never_mutated(c, is_causal):
    bias = torch.randn(c.keep.shape[-2:], generator=c.gen, dtype=torch.float64)
    args = [c.q, c.k, c.v] + ([] if c.mask is None else [c.mask]) + [bias]
    before = [a.clone() for a in args]
    for fn in ATTENTION_FNS:
        fn(c.q, c.k, c.v, c.mask, is_causal=is_causal)
        fn(c.q, c.k, c.v, c.mask, is_causal=is_causal, bias=bias)
    AF.reference_attention(c.q, c.k, c.v, c.mask, return_weights=True)
    scores = c.q @ c.k.transpose(-2, -1)
    args.append(scores)
    before.append(scores.clone())
    AF.masked_softmax(scores, c.mask)
    x3, k3 = c.q[:, 0], c.k[:, 0]
    L.DotProductAttention()(x3, k3, c.v[:, 0])
    AF.scaled_dot_score(c.q, c.k)
    for a, a0 in zip(args, before):
        assert torch.equal(a, a0)
    with torch.no_grad():
        e = x3.shape[-1]
        mha = L.MultiHeadAttention(e, 1, kdim=e, vdim=c.v.shape[-1]).double()
        mha(x3, k3, c.v[:, 0])
    for a, a0 in zip(args, before):
        assert torch.equal(a, a0)


# --------------------------------------------------------------------------- gradients
@given(c=cases(max_b=2, max_h=2, max_n=5, max_d=4), is_causal=st.booleans(),
       with_bias=st.booleans())
def test_gradcheck_reference_attention(c, is_causal, with_bias):
    q, k, v = (t.clone().requires_grad_() for t in (c.q, c.k, c.v))
    inputs = (q, k, v)
    if with_bias:  # the gradient reaches a (learned) bias too
        bias = torch.randn(c.keep.shape[-2:], generator=c.gen, dtype=torch.float64)
        inputs += (bias.requires_grad_(),)

    def f(q, k, v, bias=None):
        return AF.reference_attention(q, k, v, c.mask, is_causal=is_causal, bias=bias)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fn", ATTENTION_FNS, ids=FN_IDS)
@given(c=cases(masks=MASK_KINDS[1:]), route=st.sampled_from(["attn_mask", "bias"]))
def test_gradients_finite_with_empty_rows(fn, c, route):
    """Rows emptied by the mask or by a -inf bias give zero gradients, never NaN."""
    q, k, v = (t.clone().requires_grad_() for t in (c.q, c.k, c.v))
    if route == "attn_mask":
        out = fn(q, k, v, c.mask)
    else:
        out = fn(q, k, v, bias=M.mask_to_bias(c.mask, torch.float64))
    out.backward(torch.randn(out.shape, generator=c.gen, dtype=out.dtype))
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    empty = ~c.keep.any(-1)  # (B, H, Nq): these queries influence nothing
    assert (q.grad[empty] == 0).all()


@given(c=cases(max_n=6, masks=MASK_KINDS[1:]))
def test_gradcheck_masked_softmax(c):
    scores = (c.q @ c.k.transpose(-2, -1)).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda s: AF.masked_softmax(s, c.mask), (scores,),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- log-sum-exp
@given(c=cases())
def test_masked_softmax_lse_is_the_logsumexp_of_the_kept_scores(c):
    s = c.q @ c.k.transpose(-2, -1)  # (B, H, Nq, Nk)
    w, lse = AF.masked_softmax(s, c.mask, return_lse=True)
    assert_close(w, AF.masked_softmax(s, c.mask))  # the same weights
    expected = s.masked_fill(~c.keep, float("-inf")).logsumexp(-1)  # -inf on empty rows
    assert_close(lse, expected)
    assert torch.equal(torch.isneginf(lse), ~c.keep.any(-1))


@given(c=cases(), cut=st.integers(0, 9), is_causal=st.booleans())
def test_merging_two_key_sets_by_lse_is_attention_over_their_union(c, cut, is_causal):
    """Attention over keys [0, cut) and [cut, Nk) separately, merged: the full attention,
    and zeros (never NaN) where a row has nothing in either part."""
    s = c.q @ c.k.transpose(-2, -1) * c.q.shape[-1] ** -0.5
    keep = c.keep & (torch.ones(s.shape[-2:], dtype=torch.bool).tril() if is_causal else True)
    first = torch.arange(s.shape[-1]) < cut  # (Nk,)
    parts = [AF.masked_softmax(s, keep & part, return_lse=True) for part in (first, ~first)]
    out, lse = AF.merge_by_lse(torch.stack([w @ c.v for w, _ in parts]),
                               torch.stack([lse for _, lse in parts]))
    expected = AF.reference_attention(c.q, c.k, c.v, c.mask, is_causal=is_causal)
    assert not torch.isnan(out).any() and not torch.isnan(lse).any()
    assert_close(out, expected)
    assert_close(lse, s.masked_fill(~keep, float("-inf")).logsumexp(-1))
    # the scattered form (any number of parts per row) agrees with the stacked one
    b, h, nq, dv = out.shape
    outs = torch.stack([w @ c.v for w, _ in parts], dim=2).reshape(b, h, 2 * nq, dv)
    lses = torch.stack([lse for _, lse in parts], dim=2).reshape(b, h, 2 * nq)
    index = torch.arange(nq).repeat(2).expand(b, h, -1)  # entry p * Nq + i: part p of row i
    out_i, lse_i = AF.merge_by_lse(outs, lses, index=index, size=nq)
    assert_close(out_i, out)
    assert_close(lse_i, lse)
