"""causal_leakage (attention_lib.diagnostics): zero for causal functions, positive for every
kind of leak (a mask off by one, softmax over the wrong axis, a statistic over the whole
sequence, a single future input reaching a single past output), and exactly where it leaks."""
from __future__ import annotations

import pytest
import torch
from helpers import randn, randomize_
from torch import nn

from attention_lib import functional as AF
from attention_lib.diagnostics import causal_leakage
from attention_lib.layers import MultiHeadAttention

N = 7


def _self(fn):
    """Wrap a (B, H, N, D) attention function as (B, N, D) -> (B, N, D) self-attention."""
    return lambda x: fn(x[:, None], x[:, None], x[:, None])[:, 0]


def causal_sdpa(q, k, v):
    return AF.attention(q, k, v, is_causal=True)


def off_by_one(q, k, v):
    n = q.shape[-2]
    keep = torch.ones(n, n, dtype=torch.bool).tril(1)  # lets query i see key i + 1
    return AF.reference_attention(q, k, v, keep)


def softmax_over_queries(q, k, v):
    n = q.shape[-2]
    keep = torch.ones(n, n, dtype=torch.bool).tril()
    s = (q @ k.transpose(-2, -1)).masked_fill(~keep, float("-inf"))
    return s.softmax(dim=-2) @ v  # normalised over the wrong axis: column sums mix the future


def centred_over_time(q, k, v):
    out = AF.attention(q, k, v, is_causal=True)
    return out - out.mean(dim=-2, keepdim=True)  # a statistic over the whole sequence


def not_causal(q, k, v):
    return AF.attention(q, k, v)


@pytest.mark.parametrize("fn", [causal_sdpa, lambda q, k, v: AF.reference_attention(
    q, k, v, is_causal=True)], ids=["attention", "reference_attention"])
def test_causal_attention_does_not_leak(fn, gen):
    x = randn(2, N, 4, gen=gen)
    assert causal_leakage(_self(fn), x) < 1e-12
    per = causal_leakage(_self(fn), x, per_position=True)
    assert per.shape == (N,) and per.dtype == torch.float64 and per.max() < 1e-12


@pytest.mark.parametrize("fn", [off_by_one, softmax_over_queries, centred_over_time,
                                not_causal])
def test_leaks_are_caught(fn, gen):
    x = randn(2, N, 4, gen=gen)
    assert causal_leakage(_self(fn), x) > 1e-2


def test_off_by_one_leaks_at_every_position_but_the_last(gen):
    per = causal_leakage(_self(off_by_one), randn(2, N, 4, gen=gen), per_position=True)
    assert (per[:-1] > 1e-3).all() and per[-1] == 0


def test_a_single_leak_is_located(gen):
    """Only output 2 reads input 5: the per-position report points at output 2 alone."""
    def fn(x):
        out = x.clone()
        out[:, 2] = out[:, 2] + 0.01 * x[:, 5]
        return out

    per = causal_leakage(fn, randn(3, N, 4, gen=gen), per_position=True)
    assert per[2] > 1e-3
    assert (per[torch.arange(N) != 2] == 0).all()


@pytest.mark.parametrize("hkv", [4, 2, 1])
def test_modules_with_is_causal(hkv, gen):
    m = randomize_(MultiHeadAttention(8, 4, hkv, rotary=hkv == 2), gen).double().eval()
    x = randn(2, N, 8, gen=gen)
    assert causal_leakage(lambda t: m(t, is_causal=True), x) < 1e-12
    assert causal_leakage(lambda t: m(t), x) > 1e-3
    mha = randomize_(MultiHeadAttention(8, 2), gen).double().eval()
    assert causal_leakage(lambda t: mha(t, is_causal=True), x) < 1e-12


def test_token_ids_and_other_axes(gen):
    """Integer inputs (token ids through an embedding) and positions on another axis."""
    emb = nn.Embedding(11, 8).double()
    ids = torch.randint(0, 11, (2, N), generator=gen)
    fn = lambda t: AF.attention(*(emb(t)[:, None],) * 3, is_causal=True)[:, 0]  # noqa: E731
    assert causal_leakage(fn, ids) < 1e-12
    leaky = lambda t: AF.attention(*(emb(t)[:, None],) * 3)[:, 0]  # noqa: E731
    assert causal_leakage(leaky, ids, vocab_size=11) > 1e-3
    x = randn(2, 3, N, 4, gen=gen)  # (B, H, N, D): positions on axis 2
    assert causal_leakage(lambda t: causal_sdpa(t, t, t), x, seq_dim=2) < 1e-12
    assert causal_leakage(lambda t: off_by_one(t, t, t), x, seq_dim=2) > 1e-3
    # output positions on another axis than the input's
    assert causal_leakage(lambda t: causal_sdpa(t, t, t).transpose(1, 2), x, seq_dim=2,
                          out_seq_dim=1) < 1e-12


def test_nan_that_does_not_depend_on_the_future_is_not_a_leak(gen):
    def fn(x):
        out = x.clone()
        out[:, 0] = float("nan")
        return out

    assert causal_leakage(fn, randn(2, N, 4, gen=gen)) == 0.0

    def nan_from_future(x):
        out = x.clone()
        out[:, 0] = torch.where(x[:, -1] > 0, float("nan"), 0.0)
        return out

    assert causal_leakage(nan_from_future, randn(2, N, 4, gen=gen)) == float("inf")


def test_deterministic_given_a_generator(gen):
    x = randn(2, N, 4, gen=gen)
    a = causal_leakage(_self(not_causal), x, generator=torch.Generator().manual_seed(3),
                       per_position=True)
    b = causal_leakage(_self(not_causal), x, generator=torch.Generator().manual_seed(3),
                       per_position=True)
    assert torch.equal(a, b)


def test_does_not_modify_input(gen):
    x = randn(2, N, 4, gen=gen)
    before = x.clone()
    causal_leakage(_self(not_causal), x)
    assert torch.equal(x, before)


def test_bad_input_is_reported_clearly(gen):
    x = randn(2, N, 4, gen=gen)
    with pytest.raises(TypeError, match="callable"):
        causal_leakage("attention", x)
    with pytest.raises(ValueError, match="at least 2 positions"):
        causal_leakage(lambda t: t, x[:, :1])
    with pytest.raises(ValueError, match="seq_dim=5"):
        causal_leakage(lambda t: t, x, seq_dim=5)
    with pytest.raises(ValueError, match="out_seq_dim"):
        causal_leakage(lambda t: t.sum(1), x)
    with pytest.raises(TypeError, match="return a tensor"):
        causal_leakage(lambda t: (t, t), x)
    with pytest.raises(ValueError, match="num_trials"):
        causal_leakage(lambda t: t, x, num_trials=0)
