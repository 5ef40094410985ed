"""Sparse Sinkhorn attention: the soft permutation, and block attention in sorted order.

* Sinkhorn normalisation: rows and columns sum to 1, the error falls as iterations grow, a low
  temperature gives the best permutation (checked by brute force over all permutations);
* blocked attention against ``reference_attention``: with a hard permutation and the dense
  mask of its block layout, with one block (full attention), and with a soft permutation
  against a per-block loop that builds the sorted keys explicitly;
* causal: the module's output at i does not depend on any later input position;
* memory: never an (N, N) tensor.
"""
from __future__ import annotations

import itertools

import pytest
import torch
from helpers import assert_rejected, randn
from tolerances import DEVICES, FLOAT_DTYPES, assert_close

from attention_lib import MultiHeadAttention, reference_attention
from attention_lib.efficient import sinkhorn as S
from attention_lib.efficient.memory import peak_memory


def _qkv(gen, n=24, d=5, dv=4, dtype=torch.float64, device="cpu"):
    return (randn(2, 3, n, d, gen=gen, dtype=dtype, device=device),
            randn(2, 3, n, d, gen=gen, dtype=dtype, device=device),
            randn(2, 3, n, dv, gen=gen, dtype=dtype, device=device))


# --------------------------------------------------------------------------- Sinkhorn
def test_soft_permutation_is_doubly_stochastic_and_converges(gen):
    logits = 2 * randn(5, 8, 8, gen=gen)
    errors = []
    for n_iters in (1, 2, 4, 8, 16, 32, 64, 256):
        p = S.soft_permutation(logits, n_iters=n_iters)
        assert (p >= 0).all()
        assert_close(p.sum(-2), torch.ones(5, 8, dtype=torch.float64))  # columns: exact
        errors.append((p.sum(-1) - 1).abs().max().item())  # rows: converging
    assert all(b <= a + 1e-15 for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 1e-2 and errors[-1] < 1e-8, errors


def test_low_temperature_gives_the_best_permutation(gen):
    n = 5
    logits = randn(n, n, gen=gen)
    best = max(itertools.permutations(range(n)),
               key=lambda s: sum(logits[a, s[a]].item() for a in range(n)))
    hard = torch.eye(n, dtype=torch.float64)[list(best)]
    mass = []  # the share of P on the best permutation, as the temperature falls
    for temperature in (1.0, 0.3, 0.1, 0.03):
        p = S.soft_permutation(logits, n_iters=500, temperature=temperature)
        mass.append((p * hard).sum().item() / n)
    assert p.argmax(-1).tolist() == list(best)
    assert all(b > a for a, b in zip(mass, mass[1:])), mass
    assert mass[-1] > 0.9, mass


def test_sinkhorn_matches_a_loop_in_the_linear_domain(gen):
    logits = randn(6, 6, gen=gen)
    a = logits.exp()
    for _ in range(7):
        a = a / a.sum(1, keepdim=True)
        a = a / a.sum(0, keepdim=True)
    assert_close(S.sinkhorn_normalize(logits, 7).exp(), a)
    assert torch.equal(S.sinkhorn_normalize(logits, 0), logits)


def test_causal_soft_permutation_only_looks_back(gen):
    p = S.soft_permutation(randn(2, 6, 6, gen=gen), is_causal=True)
    assert (p.triu() == 0).all()  # c >= a excluded
    assert (p[:, 0] == 0).all()  # block 0 has no earlier block
    assert_close(p[:, 1:].sum(-1), torch.ones(2, 5, dtype=torch.float64))


# --------------------------------------------------------------------------- attention
def test_block_summaries_are_block_means(gen):
    x = randn(2, 3, 12, 4, gen=gen)
    s = S.block_summaries(x, 4)
    assert s.shape == (2, 3, 3, 4)
    assert_close(s[:, :, 1], x[:, :, 4:8].mean(-2))


@pytest.mark.parametrize("is_causal", [False, True])
def test_hard_permutation_equals_masked_reference(is_causal, gen):
    q, k, v = _qkv(gen)
    if is_causal:  # partners strictly earlier; block 0 has none
        p = torch.zeros(6, 6, dtype=torch.float64)
        for a, c in ((1, 0), (2, 0), (3, 1), (4, 2), (5, 3)):
            p[a, c] = 1.0
    else:  # a derangement: no block is its own partner
        p = torch.eye(6, dtype=torch.float64)[[3, 2, 5, 0, 1, 4]]
    out = S.sinkhorn_attention(q, k, v, p, 4, is_causal=is_causal)
    mask = S.sinkhorn_mask(p, 4, is_causal=is_causal)
    # the mask against its definition: own block or partner block (and j <= i)
    partner = {a: int(p[a].argmax()) for a in range(6) if p[a].sum() > 0}
    for i in range(24):
        for j in range(24):
            a, c = i // 4, j // 4
            assert bool(mask[i, j]) == ((c == a or partner.get(a) == c) and
                                        (j <= i or not is_causal))
    assert_close(out, reference_attention(q, k, v, mask))


@pytest.mark.parametrize("is_causal", [False, True])
def test_one_block_is_full_attention(is_causal, gen):
    q, k, v = _qkv(gen, n=10)
    out = S.sinkhorn_attention(q, k, v, torch.ones(1, 1, dtype=torch.float64), 10,
                               is_causal=is_causal)
    assert_close(out, reference_attention(q, k, v, is_causal=is_causal))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_soft_permutation_attention_equals_a_loop(device, dtype, gen):
    """Per block a: keys = [sum_c P[a, c] K_c ; K_a], values likewise, full attention."""
    q, k, v = _qkv(gen, dtype=dtype, device=device)
    p = S.soft_permutation(randn(2, 3, 6, 6, gen=gen, dtype=dtype, device=device), n_iters=5)
    out = S.sinkhorn_attention(q, k, v, p, 4)
    assert out.dtype == dtype and out.device == q.device
    blocks = []
    for a in range(6):
        ks = sum(p[..., a, c, None, None] * k[..., 4 * c:4 * c + 4, :] for c in range(6))
        vs = sum(p[..., a, c, None, None] * v[..., 4 * c:4 * c + 4, :] for c in range(6))
        blocks.append(reference_attention(q[..., 4 * a:4 * a + 4, :],
                                          torch.cat([ks, k[..., 4 * a:4 * a + 4, :]], -2),
                                          torch.cat([vs, v[..., 4 * a:4 * a + 4, :]], -2)))
    assert_close(out, torch.cat(blocks, -2))


def test_error_falls_as_blocks_grow(gen):
    """A cyclic shift as the partner: each query sees 2 of nb blocks; nb = 2 sees everything."""
    n, seeds = 64, 3
    errs = []
    for bs in (4, 8, 16, 32):
        nb, e = n // bs, 0.0
        shift = torch.eye(nb, dtype=torch.float64).roll(1, dims=1)
        for seed in range(seeds):
            g = torch.Generator().manual_seed(seed)
            q, k, v = (randn(1, 2, n, 8, gen=g) for _ in range(3))
            full = reference_attention(q, k, v)
            e += ((S.sinkhorn_attention(q, k, v, shift, bs) - full).norm() / full.norm()).item()
        errs.append(e / seeds)
    assert all(b < 0.9 * a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-10


def test_module_causal_has_no_leakage_and_returns_its_permutation(gen):
    torch.manual_seed(0)
    m = MultiHeadAttention(16, 2, attn_fn=S.SinkhornSorting(8, 4)).double()
    x = randn(2, 24, 16, gen=gen)
    out = m(x)
    q, k = (f(x).view(2, 24, 2, 8).transpose(1, 2) for f in (m.q_proj, m.k_proj))
    p = m.attn_fn.permutation(q, k)
    assert out.shape == (2, 24, 16) and p.shape == (2, 2, 6, 6)
    assert_close(p.sum(-2), torch.ones(2, 2, 6, dtype=torch.float64))
    for t in (0, 5, 13, 22):
        y = m(x, is_causal=True)
        x2 = x.clone()
        x2[:, t + 1:] += randn(2, 23 - t, 16, gen=gen)
        y2 = m(x2, is_causal=True)
        assert torch.equal(y[:, : t + 1], y2[:, : t + 1]), t
        assert not torch.equal(y[:, t + 1:], y2[:, t + 1:])


def test_module_is_a_thin_wrapper(gen):
    torch.manual_seed(1)
    sorting = S.SinkhornSorting(4, 3, n_iters=4, temperature=0.5)
    m = MultiHeadAttention(8, 2, attn_fn=sorting).double()
    x = randn(1, 9, 8, gen=gen)
    heads = [f(x).view(1, 9, 2, 4).transpose(1, 2) for f in (m.q_proj, m.k_proj, m.v_proj)]
    sq, sk = (S.block_summaries(t, 3) for t in heads[:2])
    logits = m.attn_fn.sort_proj(sq) @ sk.transpose(-2, -1) / 2.0
    p = S.soft_permutation(logits, n_iters=4, temperature=0.5)
    manual = S.sinkhorn_attention(*heads, p, 3)
    assert_close(m(x), m.out_proj(manual.transpose(1, 2).reshape(1, 9, 8)))


# --------------------------------------------------------------------------- memory
def test_blocked_never_allocates_n_by_n():
    n, d, bs = 4096, 16, 64
    q, k, v = (torch.randn(1, 1, n, d) for _ in range(3))
    p = S.soft_permutation(torch.randn(n // bs, n // bs), n_iters=5)
    stats = peak_memory(S.sinkhorn_attention, q, k, v, p, bs)
    nn_bytes = n * n * 4
    assert stats.largest_bytes < nn_bytes / 16, stats.largest_bytes
    assert stats.peak_bytes < nn_bytes / 4, stats.peak_bytes


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_rejected_with_a_clear_message(gen):
    q, k, v = _qkv(gen, n=12)
    p = torch.eye(3, dtype=torch.float64)
    assert_rejected(lambda: S.sinkhorn_attention(q, k, v, p, 5), ValueError,
                    "multiple of block_size", "N % block")
    assert_rejected(lambda: S.sinkhorn_attention(q, k, v, torch.eye(4), 4), ValueError,
                    r"nb = N / block_size = 3", "permutation shape")
    assert_rejected(lambda: S.sinkhorn_attention(q, k[..., :8, :], v[..., :8, :], p, 4),
                    ValueError, "self-attention", "Nq != Nk")
    assert_rejected(lambda: S.sinkhorn_normalize(torch.zeros(3, 4)), ValueError,
                    r"\(\.\.\., n, n\)", "not square")
    assert_rejected(lambda: S.sinkhorn_normalize(torch.zeros(3, 3), -1), ValueError, "n_iters",
                    "iters")
    assert_rejected(lambda: S.soft_permutation(torch.zeros(3, 3), temperature=0.0), ValueError,
                    "temperature", "temperature")
    assert_rejected(lambda: S.sinkhorn_attention(q, k, v, p.long(), 4), TypeError,
                    "permutation", "dtype")
    module = MultiHeadAttention(8, 2, attn_fn=S.SinkhornSorting(4, 4))
    assert_rejected(lambda: module(torch.randn(1, 10, 8)), ValueError, "block_size = 4",
                    "module N")
    assert_rejected(lambda: module(torch.randn(1, 8, 8), attn_mask=torch.ones(8, 8).bool()),
                    ValueError, "no attn_mask", "module mask")
