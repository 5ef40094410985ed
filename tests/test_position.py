"""Rotary embeddings and the relative shift of the sinusoidal encoding (attention_lib.position).

References: a complex-number implementation of RoPE (Su et al., 2021, eq. 34: multiply feature
pair i, read as a complex number, by exp(1j * p * theta_i)), the sinusoidal encoding of
attention_lib.functional, and the angle-addition formulas. Properties (hypothesis): rotary
scores depend on positions only through their difference, rotations preserve norms.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import randn
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DEVICES, FLOAT_DTYPES, assert_close

from attention_lib.position import (
    RotaryEmbedding,
    rotary_embedding,
    rotary_frequencies,
    sinusoidal_encoding,
    sinusoidal_shift_matrix,
)


def complex_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0,
                 interleaved: bool = True) -> torch.Tensor:
    """RoPE as complex multiplication, in complex128: the paper's formulation, independently."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (D/2,)
    xd = x.detach().cpu().double()
    if interleaved:
        z = torch.complex(xd[..., 0::2], xd[..., 1::2])
    else:
        z = torch.complex(xd[..., : d // 2], xd[..., d // 2:])
    rot = torch.exp(1j * positions.detach().cpu().double()[..., None] * theta)  # (.., N, D/2)
    w = z * rot
    if interleaved:
        out = torch.stack([w.real, w.imag], dim=-1).flatten(-2)
    else:
        out = torch.cat([w.real, w.imag], dim=-1)
    return out.to(dtype=x.dtype, device=x.device)


# --------------------------------------------------------------------------- vs complex reference
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("base", [10000.0, 100.0])
def test_rotary_matches_complex_reference(device, dtype, interleaved, base, gen):
    x = randn(2, 3, 11, 8, gen=gen, dtype=dtype, device=device)  # (B, H, N, D)
    pos = torch.arange(11, device=device)
    expected = complex_rope(x, pos, base, interleaved)
    assert_close(rotary_embedding(x, base=base, interleaved=interleaved), expected)
    assert_close(rotary_embedding(x, pos, base=base, interleaved=interleaved), expected)
    rope = RotaryEmbedding(8, 16, base=base, interleaved=interleaved).to(device)
    assert_close(rope(x), expected)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_rotary_per_example_and_fractional_positions(dtype, gen):
    x = randn(2, 3, 5, 6, gen=gen, dtype=dtype)
    pos = torch.tensor([[0, 1, 2, 3, 4], [7, 3, 100, 2, 2]])[:, None]  # (B, 1, N)
    assert_close(rotary_embedding(x, pos), complex_rope(x, pos.expand(2, 3, 5)))
    assert_close(RotaryEmbedding(6, 4)(x, pos), complex_rope(x, pos.expand(2, 3, 5)))
    frac = torch.tensor([0.5, 1.25, -3.0, 2.0, 1e3], dtype=dtype)
    assert_close(rotary_embedding(x, frac), complex_rope(x, frac))


def test_rotary_large_positions_float32(gen):
    """Angles are formed in float32 at least; at position 1e4 the error stays ~1e-3 * |x|."""
    x = randn(1, 1, 4, 16, gen=gen, dtype=torch.float32)
    pos = torch.arange(10_000, 10_004)
    got = rotary_embedding(x, pos)
    torch.testing.assert_close(got, complex_rope(x, pos), rtol=0, atol=5e-3)
    torch.testing.assert_close(RotaryEmbedding(16)(x, pos), complex_rope(x, pos), rtol=0,
                               atol=5e-3)


def test_rotary_half_precision_is_computed_in_float32(gen):
    x = randn(2, 2, 7, 8, gen=gen, dtype=torch.float32)
    for dt in (torch.float16, torch.bfloat16):
        got = rotary_embedding(x.to(dt))
        assert got.dtype == dt
        torch.testing.assert_close(got.float(), complex_rope(x.to(dt).float(), torch.arange(7)),
                                   rtol=0, atol=2e-2 if dt == torch.bfloat16 else 3e-3)
        rope = RotaryEmbedding(8).half()  # buffers become float16: the module rebuilds them
        assert_close(rope(x.to(dt)), got)
        assert rope.cos_cached.dtype == torch.float32


def test_layouts_differ_by_a_fixed_permutation(gen):
    """interleaved pairs (2i, 2i+1); half pairs (i, i + D/2): same rotation, features permuted."""
    x = randn(2, 9, 10, gen=gen)
    perm = torch.cat([torch.arange(0, 10, 2), torch.arange(1, 10, 2)])
    assert_close(rotary_embedding(x[..., perm], interleaved=False),
                 rotary_embedding(x)[..., perm])


# --------------------------------------------------------------------------- properties
@st.composite
def rope_case(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(1, 9))
    d = 2 * draw(st.integers(1, 6))
    base = draw(st.sampled_from([10.0, 1000.0, 10000.0]))
    gen = torch.Generator().manual_seed(seed)
    pos_q = torch.randint(-50, 50, (n,), generator=gen)
    pos_k = torch.randint(-50, 50, (n,), generator=gen)
    return gen, n, d, base, pos_q, pos_k, draw(st.integers(-1000, 1000))


@given(rope_case(), st.booleans())
def test_scores_depend_only_on_relative_position(case, interleaved):
    """Shift every query and key position by t: all scores stay the same."""
    gen, n, d, base, pos_q, pos_k, t = case
    q, k = randn(2, n, d, gen=gen), randn(2, n, d, gen=gen)

    def scores(pq, pk):
        rq = rotary_embedding(q, pq, base=base, interleaved=interleaved)
        rk = rotary_embedding(k, pk, base=base, interleaved=interleaved)
        return rq @ rk.transpose(-2, -1)  # (2, N, N)

    torch.testing.assert_close(scores(pos_q + t, pos_k + t), scores(pos_q, pos_k),
                               rtol=1e-9, atol=1e-9)


@given(rope_case())
def test_rotary_preserves_norms_and_is_invertible(case):
    gen, n, d, base, pos_q, _, _ = case
    x = randn(3, n, d, gen=gen)
    r = rotary_embedding(x, pos_q, base=base)
    assert_close(r.norm(dim=-1), x.norm(dim=-1))
    assert_close(rotary_embedding(r, -pos_q, base=base), x)  # rotating back


def test_scores_of_constant_content_are_toeplitz(gen):
    """The same q at every position against the same k at every position: score(m, n) is a
    function of m - n only, i.e. constant along every diagonal of the score matrix."""
    n, d = 12, 16
    q = randn(1, d, gen=gen).expand(n, d)
    k = randn(1, d, gen=gen).expand(n, d)
    s = rotary_embedding(q) @ rotary_embedding(k).T  # (N, N)
    for off in range(-n + 1, n):
        diag = torch.diagonal(s, off)
        assert_close(diag, diag[:1].expand_as(diag))
    # ... which the additive sinusoidal encoding does not give
    p = sinusoidal_encoding(n, d, dtype=torch.float64)
    s_add = (q + p) @ (k + p).T
    assert (torch.diagonal(s_add, 1) - torch.diagonal(s_add, 1)[0]).abs().max() > 1e-2


def test_rotary_at_position_zero_is_identity(gen):
    x = randn(2, 1, 8, gen=gen)
    assert torch.equal(rotary_embedding(x), x)


def test_rotary_does_not_modify_input(gen):
    x = randn(2, 5, 8, gen=gen)
    before = x.clone()
    rotary_embedding(x)
    RotaryEmbedding(8)(x)
    assert torch.equal(x, before)


# --------------------------------------------------------------------------- module and cache
def test_rotary_module_offset_and_cache_growth(gen):
    rope = RotaryEmbedding(8, max_len=4)
    assert rope.max_len == 4 and len(list(rope.parameters())) == 0
    assert rope.state_dict() == {}  # the cache is not persistent
    x = randn(2, 3, 6, 8, gen=gen, dtype=torch.float32)
    expected = complex_rope(x, torch.arange(5, 11))
    assert_close(rope(x, offset=5), expected)
    assert rope.max_len == 16  # grown to the next power of two >= 11
    assert_close(rope(x, torch.arange(5, 11)), expected)
    assert_close(rope(x.double(), offset=5), complex_rope(x.double(), torch.arange(5, 11)))


@pytest.mark.parametrize("device", DEVICES)
def test_rotary_module_follows_device(device, gen):
    rope = RotaryEmbedding(8, 32).to(device)
    x = randn(2, 2, 5, 8, gen=gen, dtype=torch.float32, device=device)
    out = rope(x)
    assert out.device == x.device
    assert_close(out, complex_rope(x, torch.arange(5)))


def test_rotary_gradients_flow(gen):
    x = randn(2, 4, 8, gen=gen).requires_grad_()
    (rotary_embedding(x) ** 2).sum().backward()
    assert_close(x.grad, 2 * x.detach())  # |Rx|^2 = |x|^2 for a rotation R


# --------------------------------------------------------------------------- sinusoidal shift
@pytest.mark.parametrize("dim", [2, 8, 64])
@pytest.mark.parametrize("k", [0, 1, 5, 37, -3])
@pytest.mark.parametrize("base", [10000.0, 100.0])
def test_shift_matrix_moves_every_position(dim, k, base):
    n = 80
    p = sinusoidal_encoding(n + 40, dim, base=base, dtype=torch.float64)
    m = sinusoidal_shift_matrix(k, dim, base=base, dtype=torch.float64)
    src = torch.arange(max(0, -k), n)
    assert_close(p[src + k], p[src] @ m.T)  # P[p + k] = M_k P[p] for every p at once


def test_shift_matrix_is_the_least_squares_map_and_independent_of_p():
    """Fit a linear map P[p] -> P[p + k] on two disjoint ranges of p: both fits are M_k."""
    dim, k, base = 8, 3, 50.0  # a small base keeps the fit well conditioned
    p = sinusoidal_encoding(400, dim, base=base, dtype=torch.float64)
    m = sinusoidal_shift_matrix(k, dim, base=base, dtype=torch.float64)
    for rows in (torch.arange(0, 150), torch.arange(200, 390)):
        fit = torch.linalg.lstsq(p[rows], p[rows + k]).solution.T  # P[rows] @ fit.T = P[rows+k]
        torch.testing.assert_close(fit, m, rtol=0, atol=1e-8)


def test_shift_matrix_structure():
    dim = 16
    m3 = sinusoidal_shift_matrix(3, dim, dtype=torch.float64)
    m5 = sinusoidal_shift_matrix(5, dim, dtype=torch.float64)
    assert_close(m3 @ m5, sinusoidal_shift_matrix(8, dim, dtype=torch.float64))  # group law
    assert_close(m3 @ m3.T, torch.eye(dim, dtype=torch.float64))  # orthogonal
    assert_close(sinusoidal_shift_matrix(0, dim, dtype=torch.float64),
                 torch.eye(dim, dtype=torch.float64))
    off_block = m3.clone()
    for i in range(0, dim, 2):
        off_block[i:i + 2, i:i + 2] = 0
    assert (off_block == 0).all()  # block diagonal with 2x2 blocks
    w = rotary_frequencies(dim, dtype=torch.float64)
    assert_close(m3[2:4, 2:4], torch.tensor([[math.cos(3 * w[1]), math.sin(3 * w[1])],
                                             [-math.sin(3 * w[1]), math.cos(3 * w[1])]],
                                            dtype=torch.float64))


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_reported_clearly(gen):
    x = randn(2, 5, 7, gen=gen)
    with pytest.raises(ValueError, match="even last dim"):
        rotary_embedding(x)
    with pytest.raises(ValueError, match="even int"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="even int"):
        sinusoidal_shift_matrix(2, 7)
    x = randn(2, 3, 5, 8, gen=gen)
    with pytest.raises(ValueError, match=r"last axis N=5"):
        rotary_embedding(x, torch.arange(4))
    with pytest.raises(ValueError, match=r"\(B, 1, N\)"):
        rotary_embedding(x, torch.zeros(2, 5, dtype=torch.long).add(torch.arange(5)))
    with pytest.raises(TypeError, match="integer or float"):
        rotary_embedding(x, torch.ones(5, dtype=torch.bool))
    with pytest.raises(TypeError, match="must be integers"):
        RotaryEmbedding(8)(x, torch.arange(5.0))
    with pytest.raises(ValueError, match="head_dim=6"):
        RotaryEmbedding(6)(x)
    with pytest.raises(ValueError, match="offset"):
        RotaryEmbedding(8)(x, offset=-1)
    with pytest.raises(ValueError, match="base"):
        rotary_embedding(x, base=1.0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        rotary_embedding([[1.0, 2.0]])
