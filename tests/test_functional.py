"""The functional core against independent references.

* ``reference_attention`` and ``attention`` against ``F.scaled_dot_product_attention`` (SDPA);
* the five score functions against explicit Python loops over (i, j) in float64;
* ``masked_softmax`` against ``torch.softmax`` restricted to the kept entries;
* ``sinusoidal_encoding`` against the closed form written with ``math.sin``/``math.cos``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import rand_mask, randn
from tolerances import DEVICES, FLOAT_DTYPES, assert_close

from attention_lib import functional as AF
from attention_lib.position import sinusoidal_encoding

ATTENTION_FNS = {"reference_attention": AF.reference_attention, "attention": AF.attention}

# (B, H, Nq, Nk, D, Dv): square, Nq != Nk both ways, odd head dims, N = 1, Dv != D.
SHAPES = [
    (2, 3, 5, 5, 8, 8),
    (2, 2, 4, 7, 7, 5),
    (1, 1, 1, 1, 13, 13),
    (3, 2, 9, 1, 13, 4),
    (2, 1, 1, 6, 4, 4),
    (1, 4, 8, 3, 7, 9),
]
MASK_KINDS = [None, "(Nq, Nk)", "(B, 1, 1, Nk)", "(B, H, Nq, Nk)"]


def _mask_shape(kind, b, h, nq, nk):
    return {"(Nq, Nk)": (nq, nk), "(B, 1, 1, Nk)": (b, 1, 1, nk),
            "(B, H, Nq, Nk)": (b, h, nq, nk)}[kind]


def _qkv(shape, gen, dtype, device):
    b, h, nq, nk, d, dv = shape
    return (randn(b, h, nq, d, gen=gen, dtype=dtype, device=device),
            randn(b, h, nk, d, gen=gen, dtype=dtype, device=device),
            randn(b, h, nk, dv, gen=gen, dtype=dtype, device=device))


# --------------------------------------------------------------------------- vs SDPA
@pytest.mark.parametrize("fn", list(ATTENTION_FNS))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}H{}Nq{}Nk{}D{}Dv{}".format(*s))
@pytest.mark.parametrize("mask_kind", MASK_KINDS, ids=str)
@pytest.mark.parametrize("is_causal", [False, True])
def test_matches_sdpa(fn, dtype, device, shape, mask_kind, is_causal, gen):
    q, k, v = _qkv(shape, gen, dtype, device)
    b, h, nq, nk = shape[:4]
    mask = None
    if mask_kind is not None:  # key 0 always allowed: no empty row, even when causal
        mask = rand_mask(_mask_shape(mask_kind, b, h, nq, nk), gen, device=device)
    if is_causal and mask is not None:
        # SDPA refuses attn_mask together with is_causal: give it the AND, built by hand.
        tri = torch.tensor([[j <= i for j in range(nk)] for i in range(nq)], device=device)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask & tri)
    else:
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    out = ATTENTION_FNS[fn](q, k, v, mask, is_causal=is_causal)
    assert out.dtype == dtype and out.device == q.device
    assert_close(out, expected)


@pytest.mark.parametrize("fn", list(ATTENTION_FNS))
@pytest.mark.parametrize("scale", [0.1, 1.0, 2.5])
def test_explicit_scale_matches_sdpa(fn, scale, gen):
    q, k, v = _qkv((2, 2, 5, 6, 7, 3), gen, torch.float64, "cpu")
    expected = F.scaled_dot_product_attention(q, k, v, scale=scale)
    assert_close(ATTENTION_FNS[fn](q, k, v, scale=scale), expected)


def test_default_scale_is_inverse_sqrt_head_dim():
    for d in (1, 4, 7, 64):
        assert AF.default_scale(d) == pytest.approx(d ** -0.5, rel=1e-15)


@pytest.mark.parametrize("fn", list(ATTENTION_FNS))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("bias_shape", ["(Nq, Nk)", "(B, 1, Nq, Nk)", "(B, H, Nq, Nk)"])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("is_causal", [False, True])
def test_bias_matches_sdpa_float_mask(fn, dtype, bias_shape, with_mask, is_causal, gen):
    b, h, nq, nk = 2, 3, 5, 6
    q, k, v = _qkv((b, h, nq, nk, 7, 4), gen, dtype, "cpu")
    bshape = {"(Nq, Nk)": (nq, nk), "(B, 1, Nq, Nk)": (b, 1, nq, nk),
              "(B, H, Nq, Nk)": (b, h, nq, nk)}[bias_shape]
    bias = randn(*bshape, gen=gen, dtype=dtype)
    mask = rand_mask((b, 1, 1, nk), gen) if with_mask else None
    # Independent float mask for SDPA: the bias, with -inf wherever a mask forbids.
    float_mask = bias.expand(b, h, nq, nk).clone()
    if mask is not None:
        float_mask = float_mask.masked_fill(~mask, float("-inf"))
    if is_causal:
        tri = torch.tensor([[j <= i for j in range(nk)] for i in range(nq)])
        float_mask = float_mask.masked_fill(~tri, float("-inf"))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask)
    out = ATTENTION_FNS[fn](q, k, v, mask, is_causal=is_causal, bias=bias)
    assert_close(out, expected)


@pytest.mark.parametrize("mask_kind", MASK_KINDS, ids=str)
@pytest.mark.parametrize("is_causal", [False, True])
def test_return_weights_same_output_and_weights(mask_kind, is_causal, gen):
    b, h, nq, nk, d = 2, 2, 4, 6, 5
    q, k, v = _qkv((b, h, nq, nk, d, 3), gen, torch.float64, "cpu")
    mask = None if mask_kind is None else rand_mask(_mask_shape(mask_kind, b, h, nq, nk), gen)
    plain = AF.attention(q, k, v, mask, is_causal=is_causal)
    for fn in ATTENTION_FNS.values():
        out, w = fn(q, k, v, mask, is_causal=is_causal, return_weights=True)
        assert w.shape == (b, h, nq, nk)
        assert_close(out, plain)
        # Weights written out independently: scores, -inf where forbidden, softmax.
        keep = torch.ones(b, h, nq, nk, dtype=torch.bool)
        if mask is not None:
            keep = keep & mask
        if is_causal:
            keep = keep & torch.ones(nq, nk, dtype=torch.bool).tril()
        scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(d)
        assert_close(w, scores.masked_fill(~keep, float("-inf")).softmax(-1))
        assert_close(w @ v, out)


def test_fully_masked_rows_are_zero(gen):
    q, k, v = _qkv((2, 2, 4, 5, 3, 3), gen, torch.float64, "cpu")
    mask = rand_mask((2, 2, 4, 5), gen)
    mask[0, 1, 2] = False  # one empty row
    mask[1, :, 0] = False  # and a few more
    empty = ~mask.any(-1)
    for fn in ATTENTION_FNS.values():
        out, w = fn(q, k, v, mask, return_weights=True)
        assert not torch.isnan(out).any() and not torch.isnan(w).any()
        assert (out[empty] == 0).all() and (w[empty] == 0).all()
        assert (fn(q, k, v, mask)[empty] == 0).all()
        # and the other rows are untouched: SDPA on the same mask with the empty rows refilled
        full = mask.clone()
        full[empty] = True
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=full)
        assert_close(out[~empty], ref[~empty])


def test_dropout_zeroes_or_rescales_weights(gen):
    """With dropout_p = p each weight is either dropped (0) or kept and scaled by 1/(1-p)."""
    q, k, v = _qkv((2, 2, 6, 7, 4, 3), gen, torch.float64, "cpu")
    p = 0.4
    _, w0 = AF.reference_attention(q, k, v, return_weights=True)
    torch.manual_seed(0)
    out, w = AF.reference_attention(q, k, v, dropout_p=p, return_weights=True)
    dropped = w == 0
    assert dropped.any() and (~dropped).any()
    assert_close(w[~dropped], w0[~dropped] / (1 - p))
    assert_close(out, w @ v)


# --------------------------------------------------------------------------- score functions
def _lists(*ts):
    return [t.tolist() for t in ts]


@pytest.fixture
def tiny(gen):
    """Tiny float64 query (B=2, Nq=3, Dq=4) and key (B=2, Nk=5, Dk=6)."""
    return randn(2, 3, 4, gen=gen), randn(2, 5, 6, gen=gen)


def test_dot_score_vs_loops(gen):
    q, k = randn(2, 3, 4, gen=gen), randn(2, 5, 4, gen=gen)
    ql, kl = _lists(q, k)
    expected = torch.tensor([[[sum(ql[b][i][d] * kl[b][j][d] for d in range(4))
                               for j in range(5)] for i in range(3)] for b in range(2)],
                            dtype=torch.float64)
    assert_close(AF.dot_score(q, k), expected)
    assert_close(AF.scaled_dot_score(q, k), expected / 2.0)  # sqrt(4) = 2
    assert_close(AF.scaled_dot_score(q, k, scale=0.3), expected * 0.3)


def test_score_odd_dim_and_leading_axes(gen):
    """(B, H, N, D) inputs with broadcasting leading axes: each (b, h) slice on its own."""
    q, k = randn(2, 1, 3, 7, gen=gen), randn(1, 3, 4, 7, gen=gen)
    s = AF.scaled_dot_score(q, k)
    assert s.shape == (2, 3, 3, 4)
    for b in range(2):
        for h in range(3):
            ql, kl = _lists(q[b, 0], k[0, h])
            for i in range(3):
                for j in range(4):
                    ref = sum(x * y for x, y in zip(ql[i], kl[j])) / math.sqrt(7)
                    assert s[b, h, i, j].item() == pytest.approx(ref, rel=1e-12, abs=1e-12)


def test_general_score_vs_loops(tiny, gen):
    q, k = tiny
    w = randn(4, 6, gen=gen)
    ql, kl, wl = _lists(q, k, w)
    expected = torch.tensor(
        [[[sum(ql[b][i][a] * wl[a][c] * kl[b][j][c] for a in range(4) for c in range(6))
           for j in range(5)] for i in range(3)] for b in range(2)], dtype=torch.float64)
    assert_close(AF.general_score(q, k, w), expected)


def test_general_score_identity_is_dot(gen):
    q, k = randn(2, 3, 5, gen=gen), randn(2, 4, 5, gen=gen)
    assert_close(AF.general_score(q, k, torch.eye(5, dtype=torch.float64)), AF.dot_score(q, k))


def test_additive_score_vs_loops(tiny, gen):
    q, k = tiny
    hd = 3
    wq, wk, v = randn(hd, 4, gen=gen), randn(hd, 6, gen=gen), randn(hd, gen=gen)
    ql, kl, wql, wkl, vl = _lists(q, k, wq, wk, v)

    def score(b, i, j):
        return sum(vl[h] * math.tanh(sum(wql[h][a] * ql[b][i][a] for a in range(4))
                                     + sum(wkl[h][c] * kl[b][j][c] for c in range(6)))
                   for h in range(hd))

    expected = torch.tensor([[[score(b, i, j) for j in range(5)] for i in range(3)]
                             for b in range(2)], dtype=torch.float64)
    assert_close(AF.additive_score(q, k, wq, wk, v), expected)


def test_concat_score_vs_loops(tiny, gen):
    q, k = tiny
    hd = 3
    w, v = randn(hd, 4 + 6, gen=gen), randn(hd, gen=gen)
    ql, kl, wl, vl = _lists(q, k, w, v)

    def score(b, i, j):
        cat = ql[b][i] + kl[b][j]  # list concatenation [q_i; k_j]
        return sum(vl[h] * math.tanh(sum(wl[h][e] * cat[e] for e in range(10)))
                   for h in range(hd))

    expected = torch.tensor([[[score(b, i, j) for j in range(5)] for i in range(3)]
                             for b in range(2)], dtype=torch.float64)
    assert_close(AF.concat_score(q, k, w, v), expected)


@pytest.mark.parametrize("name", ["dot", "scaled", "general", "additive", "concat"])
def test_scores_do_not_mutate_inputs(name, gen):
    q, k = randn(2, 3, 4, gen=gen), randn(2, 5, 4, gen=gen)
    args = {"dot": (), "scaled": (), "general": (randn(4, 4, gen=gen),),
            "additive": (randn(3, 4, gen=gen), randn(3, 4, gen=gen), randn(3, gen=gen)),
            "concat": (randn(3, 8, gen=gen), randn(3, gen=gen))}[name]
    fn = {"dot": AF.dot_score, "scaled": AF.scaled_dot_score, "general": AF.general_score,
          "additive": AF.additive_score, "concat": AF.concat_score}[name]
    before = [t.clone() for t in (q, k, *args)]
    fn(q, k, *args)
    assert all(torch.equal(a, b) for a, b in zip((q, k, *args), before))


# --------------------------------------------------------------------------- masked softmax
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_masked_softmax_vs_softmax_on_kept_entries(dtype, gen):
    scores = randn(3, 4, 7, gen=gen, dtype=dtype) * 3
    mask = torch.rand(3, 4, 7, generator=gen) < 0.6
    mask[0, 0] = False  # an empty row
    w = AF.masked_softmax(scores, mask)
    assert w.dtype == dtype and w.shape == scores.shape
    for idx in torch.cartesian_prod(torch.arange(3), torch.arange(4)).tolist():
        row, keep = w[tuple(idx)], mask[tuple(idx)]
        assert (row[~keep] == 0).all()
        if keep.any():
            assert_close(row[keep], torch.softmax(scores[tuple(idx)][keep], dim=0))
        else:
            assert (row == 0).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_masked_softmax_without_mask_is_softmax(dtype, gen):
    scores = randn(2, 3, 5, gen=gen, dtype=dtype)
    assert_close(AF.masked_softmax(scores), torch.softmax(scores, dim=-1))


def test_masked_softmax_all_true_mask_is_softmax(gen):
    scores = randn(2, 3, 5, gen=gen)
    assert_close(AF.masked_softmax(scores, torch.ones(5, dtype=torch.bool)),
                 torch.softmax(scores, dim=-1))


def test_masked_softmax_other_dim(gen):
    scores = randn(4, 6, gen=gen)
    mask = rand_mask((6, 4), gen).T  # every column keeps row 0
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=0)
    assert_close(AF.masked_softmax(scores, mask, dim=0), expected)


def test_masked_softmax_large_scores_do_not_overflow(gen):
    scores = torch.tensor([[1000.0, 999.0, -1000.0], [-5e4, -5e4 + 1, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, True, False]])
    w = AF.masked_softmax(scores, mask)
    e = 1 / (1 + math.exp(-1))
    assert_close(w, torch.tensor([[e, 1 - e, 0.0], [1 - e, e, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("masked", [False, True])
def test_masked_softmax_half_precision(dtype, masked, gen):
    scores32 = (randn(3, 5, 9, gen=gen) * 4).to(dtype).float()  # exactly representable
    mask = rand_mask((3, 5, 9), gen) if masked else None
    w = AF.masked_softmax(scores32.to(dtype), mask)
    assert w.dtype == dtype
    ref = AF.masked_softmax(scores32, mask)  # float32 path, itself tested above
    expected = torch.softmax(scores32 if mask is None
                             else scores32.masked_fill(~mask, float("-inf")), dim=-1)
    assert_close(ref, expected)
    assert_close(w, expected, dtype=dtype)
    if mask is not None:
        assert (w[~mask.expand_as(w)] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_inputs_are_computed_in_float32(dtype, gen):
    """Normalised in float32 and rounded once: bit-for-bit the float32 result, cast back."""
    s = (randn(4, 6, 33, gen=gen) * 6).to(dtype)
    mask = rand_mask((4, 6, 33), gen, p=0.7)
    assert torch.equal(AF.masked_softmax(s, mask), AF.masked_softmax(s.float(), mask).to(dtype))
    assert torch.equal(AF.masked_softmax(s), AF.masked_softmax(s.float()).to(dtype))
    q, k, v = (randn(2, 2, n, 16, gen=gen).to(dtype) for n in (5, 33, 33))
    out, w = AF.reference_attention(q, k, v, mask[:2, None, :5], return_weights=True)
    out32, w32 = AF.reference_attention(q.float(), k.float(), v.float(), mask[:2, None, :5],
                                        return_weights=True)
    assert torch.equal(out, out32.to(dtype)) and torch.equal(w, w32.to(dtype))


def test_masked_softmax_half_long_row():
    """3000 kept of 4000 equal float16 scores: each kept weight is 1/3000 (rounded once)."""
    scores = torch.zeros(2, 4000, dtype=torch.float16)
    mask = torch.arange(4000) < torch.tensor([[3000], [1]])
    w = AF.masked_softmax(scores, mask)
    assert w.dtype == torch.float16
    assert (w[0, :3000] == torch.tensor(1 / 3000, dtype=torch.float16)).all()
    assert (w[1, :1] == 1).all() and (w[~mask] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fn", list(ATTENTION_FNS))
def test_attention_half_precision(dtype, fn, gen):
    q, k, v = (t.to(dtype) for t in _qkv((2, 2, 5, 6, 8, 8), gen, torch.float32, "cpu"))
    mask = rand_mask((2, 1, 1, 6), gen)
    out = ATTENTION_FNS[fn](q, k, v, mask)
    assert out.dtype == dtype
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    assert_close(out, expected, dtype=dtype)


# --------------------------------------------------------------------------- positions
def _closed_form(n, dim, base=10000.0):
    rows = []
    for p in range(n):
        row = []
        for c in range(dim):
            i = c // 2
            angle = p / base ** (2 * i / dim)
            row.append(math.sin(angle) if c % 2 == 0 else math.cos(angle))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("n,dim", [(1, 1), (1, 8), (20, 7), (20, 8), (33, 13), (50, 64)])
@pytest.mark.parametrize("base", [10000.0, 100.0])
def test_sinusoidal_encoding_closed_form(n, dim, base):
    expected = _closed_form(n, dim, base)
    p64 = sinusoidal_encoding(n, dim, base=base, dtype=torch.float64)
    assert p64.shape == (n, dim) and p64.dtype == torch.float64
    assert_close(p64, expected)
    p32 = sinusoidal_encoding(n, dim, base=base)
    assert p32.dtype == torch.float32
    assert_close(p32, expected.float())


@pytest.mark.parametrize("dim", [2, 8, 16])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_sinusoidal_shift_is_a_fixed_rotation(dim, k):
    """P[p + k] = R_k P[p] for one block-diagonal rotation R_k that does not depend on p."""
    n = 40
    pe = sinusoidal_encoding(n + k, dim, dtype=torch.float64)
    rot = torch.zeros(dim, dim, dtype=torch.float64)
    for i in range(dim // 2):
        w = k / 10000.0 ** (2 * i / dim)
        # (sin(a + w), cos(a + w)) = [[cos w, sin w], [-sin w, cos w]] (sin a, cos a)
        rot[2 * i, 2 * i], rot[2 * i, 2 * i + 1] = math.cos(w), math.sin(w)
        rot[2 * i + 1, 2 * i], rot[2 * i + 1, 2 * i + 1] = -math.sin(w), math.cos(w)
    assert_close(rot @ rot.T, torch.eye(dim, dtype=torch.float64))  # a rotation
    assert_close(pe[:n] @ rot.T, pe[k:k + n])
    # and every position has the same norm, sqrt(dim / 2)
    assert_close(pe.norm(dim=-1), torch.full((n + k,), math.sqrt(dim / 2), dtype=torch.float64))


@pytest.mark.parametrize("device", DEVICES)
def test_sinusoidal_encoding_device(device):
    assert sinusoidal_encoding(4, 6, device=device).device.type == device
