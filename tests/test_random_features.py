"""Random feature attention (``attention_lib.efficient.random_features``), tested statistically.

* every estimator is unbiased: the mean over many independent draws of ``phi(x) . phi(y)``
  is within a few standard errors of the exact kernel (softmax kernel: positive and trig
  features, iid and orthogonal; Gaussian kernel: both random Fourier feature forms;
  arc-cosine kernel: ReLU features against Cho and Saul's closed form);
* the measured MSE agrees with Lemma 2 of Choromanski et al. (2021) and falls as 1/m
  (log-log slope -1); orthogonal features have a lower MSE than iid ones;
* FAVOR+ features are positive, and stabilising them changes nothing but the overflow;
* orthogonal projections: rows orthogonal within a block, each row N(0, I) marginally;
* causal variants: recurrent form == parallel form (functional and modules, gated RFA too);
* as m grows the attention output approaches the exact attention it estimates;
* bad input fails at the boundary with a message naming the argument.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_rejected, rand_mask, randn
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DEVICES, assert_close

from attention_lib import MultiHeadAttention, reference_attention
from attention_lib import masks as M
from attention_lib.efficient import linear as L
from attention_lib.efficient import random_features as R


def iid_draws(num_draws: int, m: int, d: int, gen) -> torch.Tensor:
    """num_draws independent iid projections (num_draws, m, D)."""
    return torch.randn(num_draws, m, d, generator=gen, dtype=torch.float64)


def orth_draws(num_draws: int, m: int, d: int, gen) -> torch.Tensor:
    """num_draws independent orthogonal projections (num_draws, m, D), m a multiple of D:
    the blocks of one long projection are independent, so consecutive m rows are one draw."""
    assert m % d == 0
    return R.random_projection(num_draws * m, d, generator=gen, orthogonal=True,
                               dtype=torch.float64).reshape(num_draws, m, d)


def pair(d: int, norm_x: float, norm_y: float, cos: float, gen):
    """Vectors x, y in R^d with the given norms and cosine."""
    u = torch.nn.functional.normalize(randn(d, gen=gen), dim=0)
    w = randn(d, gen=gen)
    w = torch.nn.functional.normalize(w - (w @ u) * u, dim=0)
    return norm_x * u, norm_y * (cos * u + math.sqrt(1 - cos * cos) * w)


def estimates(x, y, projections, kind):
    """phi(x) . phi(y) for each projection in the stack (R, m, D) -> (R,)."""
    fx = R.softmax_kernel_features(x.expand(projections.shape[0], 1, -1), projections, kind=kind)
    fy = R.softmax_kernel_features(y.expand(projections.shape[0], 1, -1), projections, kind=kind)
    return (fx * fy).sum(-1)[:, 0]


# --------------------------------------------------------------------------- unbiasedness
@pytest.mark.parametrize("kind", ["positive", "trig"])
@pytest.mark.parametrize("orthogonal", [False, True])
@pytest.mark.parametrize("cos", [-0.8, 0.0, 0.9])
def test_softmax_kernel_estimate_is_unbiased(kind, orthogonal, cos, gen):
    d, m, draws = 6, 6, 3000
    x, y = pair(d, 0.8, 0.9, cos, gen)
    proj = (orth_draws if orthogonal else iid_draws)(draws, m, d, gen)
    est = estimates(x, y, proj, kind)
    exact = torch.exp(x @ y)
    se = est.std() / math.sqrt(draws)
    assert abs(est.mean() - exact) < 4 * se, (est.mean().item(), exact.item(), se.item())


@pytest.mark.parametrize("with_offset", [False, True])
def test_random_fourier_features_estimate_the_gaussian_kernel(with_offset, gen):
    d, m, draws, sigma = 5, 4, 4000, 1.5
    x, y = randn(d, gen=gen), randn(d, gen=gen)
    proj = iid_draws(draws, m, d, gen)
    offset = (torch.rand(draws, 1, m, generator=gen, dtype=torch.float64) * 2 * math.pi
              if with_offset else None)
    if with_offset:
        fx = torch.stack([R.gaussian_rff(x[None], p, offset=o[0], sigma=sigma)
                          for p, o in zip(proj, offset)])
        fy = torch.stack([R.gaussian_rff(y[None], p, offset=o[0], sigma=sigma)
                          for p, o in zip(proj, offset)])
    else:
        fx = R.gaussian_rff(x.expand(draws, 1, d), proj, sigma=sigma)
        fy = R.gaussian_rff(y.expand(draws, 1, d), proj, sigma=sigma)
    est = (fx * fy).sum(-1).flatten()
    exact = torch.exp(-((x - y) ** 2).sum() / (2 * sigma**2))
    assert abs(est.mean() - exact) < 4 * est.std() / math.sqrt(draws)
    assert fx.shape[-1] == (m if with_offset else 2 * m)


def test_relu_features_estimate_the_arccos_kernel(gen):
    d, m, draws = 5, 8, 4000
    x, y = randn(3, d, gen=gen), randn(3, d, gen=gen)
    proj = iid_draws(draws, m, d, gen)
    est = (R.arccos_features(x.expand(draws, 3, d), proj)
           * R.arccos_features(y.expand(draws, 3, d), proj)).sum(-1)  # (draws, 3)
    exact = R.arccos_kernel(x, y)
    assert (abs(est.mean(0) - exact) < 4 * est.std(0) / math.sqrt(draws)).all()
    # the closed form at its corners: k(x, x) = |x|^2, k(x, -x) = 0
    assert_close(R.arccos_kernel(x, x), (x * x).sum(-1))
    assert_close(R.arccos_kernel(x, -x), torch.zeros(3, dtype=torch.float64))


# --------------------------------------------------------------------------- MSE
@pytest.mark.parametrize("kind", ["positive", "trig"])
@pytest.mark.parametrize("cos", [-0.9, 0.0, 0.7])
def test_mse_matches_lemma_2(kind, cos, gen):
    d, m, draws = 4, 8, 8000
    x, y = pair(d, 0.7, 0.8, cos, gen)
    err2 = (estimates(x, y, iid_draws(draws, m, d, gen), kind) - torch.exp(x @ y)) ** 2
    closed = R.softmax_kernel_mse(x, y, m, kind=kind)
    se = err2.std() / math.sqrt(draws)
    assert abs(err2.mean() - closed) < 4 * se, (err2.mean().item(), closed.item(), se.item())
    assert abs(err2.mean() / closed - 1) < 0.15


def test_mse_falls_as_one_over_m(gen):
    d, draws = 4, 3000
    x, y = pair(d, 0.7, 0.8, 0.3, gen)
    ms = [2, 4, 8, 16, 32, 64, 128]
    for kind in ("positive", "trig"):
        mse = [((estimates(x, y, iid_draws(draws, m, d, gen), kind) - torch.exp(x @ y)) ** 2)
               .mean().item() for m in ms]
        slope = torch.tensor([math.log(e) for e in mse]).diff().sum() / math.log(ms[-1] / ms[0])
        assert -1.12 < slope < -0.88, (kind, slope, mse)


def test_positive_mse_vanishes_where_the_kernel_does_and_trig_does_not():
    """Lemma 2 along x = r u, y = r w with cos(u, w) = -0.9: SM(x, y) = exp(-0.9 r^2) -> 0."""
    r = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0], dtype=torch.float64)[:, None]
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)
    w = torch.tensor([-0.9, math.sqrt(1 - 0.81)], dtype=torch.float64)
    x, y = r * u, r * w
    pos = R.softmax_kernel_mse(x, y, 16, kind="positive")
    trig = R.softmax_kernel_mse(x, y, 16, kind="trig")
    assert pos[-1] < 1e-4 * pos[0] and pos[-1] < 1e-7  # -> 0 with the kernel
    assert (trig.diff() > 0).all() and trig[-1] > 1e6  # grows without bound
    # at x = -y the positive estimator is exact (w . (x + y) = 0): MSE 0
    assert (R.softmax_kernel_mse(x, -x, 16, kind="positive") == 0).all()
    # and where the kernel is large (x = y), the positive estimator is the worse one
    assert (R.softmax_kernel_mse(x, x, 16, kind="positive")
            > R.softmax_kernel_mse(x, x, 16, kind="trig")).all()


@pytest.mark.parametrize("kind,ratio", [("positive", 0.9), ("trig", 0.5)])
def test_orthogonal_features_have_lower_mse(kind, ratio, gen):
    """Choromanski et al. (2021), Theorem 2 (positive); Yu et al. (2016) (trig)."""
    d, m, draws = 16, 16, 4000
    x, y = pair(d, 0.6, 0.6, 0.5, gen)
    exact = torch.exp(x @ y)
    iid = ((estimates(x, y, iid_draws(draws, m, d, gen), kind) - exact) ** 2).mean()
    orth = ((estimates(x, y, orth_draws(draws, m, d, gen), kind) - exact) ** 2).mean()
    assert orth < ratio * iid, (orth.item(), iid.item())


# --------------------------------------------------------------------------- projections
def test_orthogonal_projection_rows(gen):
    d, m = 8, 20  # three blocks, the last one cut to 4 rows
    w = R.random_projection(m, d, generator=gen, orthogonal=True, dtype=torch.float64)
    assert w.shape == (m, d)
    unit = w / w.norm(dim=1, keepdim=True)
    for start in range(0, m, d):
        block = unit[start:start + d]
        assert_close(block @ block.T, torch.eye(block.shape[0], dtype=torch.float64))
    # norms are not all equal (chi-distributed, not a fixed sqrt(d))
    assert w.norm(dim=1).std() > 0.1


@pytest.mark.parametrize("orthogonal", [False, True])
def test_projection_rows_are_standard_normal(orthogonal, gen):
    d, m, draws = 4, 8, 1000
    # blocks of D rows are independent draws, so one long projection holds `draws` of them
    rows = R.random_projection(draws * m, d, generator=gen, orthogonal=orthogonal,
                               dtype=torch.float64)
    n = rows.shape[0]
    assert (rows.mean(0).abs() < 4 / math.sqrt(n)).all()
    cov = rows.T @ rows / n
    assert (cov - torch.eye(d, dtype=torch.float64)).abs().max() < 6 * math.sqrt(2 / n)
    assert abs((rows**2).sum(1).mean() - d) < 4 * math.sqrt(2 * d / n)  # E|w|^2 = d (chi^2)


def test_projection_is_reproducible_and_only_from_the_generator():
    a = R.random_projection(12, 5, generator=torch.Generator().manual_seed(7), orthogonal=True)
    torch.manual_seed(123)  # the global RNG plays no part
    b = R.random_projection(12, 5, generator=torch.Generator().manual_seed(7), orthogonal=True)
    c = R.random_projection(12, 5, generator=torch.Generator().manual_seed(8), orthogonal=True)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32


# --------------------------------------------------------------------------- FAVOR+ features
def test_favor_features_are_positive_and_stabilisation_cancels(gen):
    q, k, v = (randn(2, 2, 30, 8, gen=gen) * 3 for _ in range(3))
    proj = R.random_projection(32, 8, generator=gen, dtype=torch.float64)
    for causal in (False, True):
        phi_q, phi_k = R.performer_features(q, k, proj, causal=causal)
        assert (phi_q > 0).all() and (phi_k > 0).all()
        assert phi_q.max() <= 1 / math.sqrt(32) + 1e-12  # exp(<= 0) / sqrt(m) per query
        a = R.performer_attention(q, k, v, proj, is_causal=causal, eps=0.0)
        b = R.performer_attention(q, k, v, proj, is_causal=causal, stabilize=False, eps=0.0)
        assert_close(a, b)
    # float32, large inputs: unstabilised, products of features underflow and the output is
    # wrong; stabilised, it is the float64 answer
    for scale in (2.0, 6.0):
        big = (q * scale).float(), (k * scale).float(), v.float()
        exact = R.performer_attention(q * scale, k * scale, v, proj)
        stable = R.performer_attention(*big, proj.float())
        torch.testing.assert_close(stable, exact.float(), rtol=1e-3, atol=1e-3)
    unstable = R.performer_attention(*big, proj.float(), stabilize=False)
    assert (unstable - exact.float()).abs().max() > 0.1


def test_trig_features_take_both_signs(gen):
    x = randn(50, 8, gen=gen)
    proj = R.random_projection(16, 8, generator=gen, dtype=torch.float64)
    f = R.softmax_kernel_features(x, proj, kind="trig")
    assert f.shape == (50, 32) and (f < 0).any() and (f > 0).any()


# --------------------------------------------------------------------------- convergence
def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _mean_error(fn, ms, draws, gen):
    return [sum(fn(m, torch.Generator().manual_seed(1000 * r + m)) for r in range(draws)) / draws
            for m in ms]


@pytest.mark.parametrize("is_causal", [False, True])
def test_performer_approaches_softmax_attention(is_causal, gen):
    q, k, v = (randn(1, 2, 64, 16, gen=gen) for _ in range(3))
    q, k = q * 0.5, k * 0.5  # an input scale where random features work (see chapter 15)
    ref = reference_attention(q, k, v, is_causal=is_causal)
    for orthogonal in (False, True):
        def err(m, g, orthogonal=orthogonal):
            p = R.random_projection(m, 16, generator=g, orthogonal=orthogonal,
                                    dtype=torch.float64)
            return _rel(R.performer_attention(q, k, v, p, is_causal=is_causal), ref)
        e16, e256, e4096 = _mean_error(err, [16, 256, 4096], 3, gen)
        assert e256 < 0.5 * e16 and e4096 < 0.5 * e256 and e4096 < 0.1, (e16, e256, e4096)


def test_performer_scale_argument(gen):
    q, k, v = (randn(1, 1, 20, 8, gen=gen) for _ in range(3))
    p = R.random_projection(8192, 8, generator=gen, orthogonal=True, dtype=torch.float64)
    ref = reference_attention(q, k, v, scale=0.1)
    assert _rel(R.performer_attention(q, k, v, p, scale=0.1), ref) < 0.05
    assert _rel(R.performer_attention(q, k, v, p, scale=0.1), ref) < \
        _rel(R.performer_attention(q, k, v, p), ref)


def test_rfa_gaussian_approaches_softmax_on_normalised_inputs(gen):
    q, k, v = (randn(1, 2, 48, 8, gen=gen) for _ in range(3))
    sigma = 0.8
    qn, kn = (torch.nn.functional.normalize(t, dim=-1) for t in (q, k))
    ref = reference_attention(qn, kn, v, scale=1 / sigma**2)

    def err(m, g):
        p = R.random_projection(m, 8, generator=g, dtype=torch.float64)
        return _rel(R.rfa_attention(q, k, v, p, sigma=sigma), ref)
    e64, e1024, e16384 = _mean_error(err, [64, 1024, 16384], 3, gen)
    assert e1024 < 0.5 * e64 and e16384 < 0.5 * e1024 and e16384 < 0.1, (e64, e1024, e16384)


def test_rfa_arccos_approaches_arccos_kernel_attention(gen):
    q, k, v = (randn(1, 1, 40, 6, gen=gen) for _ in range(3))
    qn, kn = (torch.nn.functional.normalize(t, dim=-1) for t in (q, k))
    kern = R.arccos_kernel(qn[..., :, None, :], kn[..., None, :, :])  # (1, 1, Nq, Nk), dense
    ref = (kern / kern.sum(-1, keepdim=True)) @ v

    def err(m, g):
        p = R.random_projection(m, 6, generator=g, dtype=torch.float64)
        return _rel(R.rfa_attention(q, k, v, p, kernel="arccos"), ref)
    e16, e256, e4096 = _mean_error(err, [16, 256, 4096], 3, gen)
    assert e256 < 0.5 * e16 and e4096 < 0.5 * e256 and e4096 < 0.05, (e16, e256, e4096)


def test_per_head_projection_and_sigma(gen):
    q, k, v = (randn(2, 3, 10, 4, gen=gen) for _ in range(3))
    proj = torch.stack([R.random_projection(8, 4, generator=gen, dtype=torch.float64)
                        for _ in range(3)])  # (H, m, D)
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64).view(3, 1, 1)
    out = R.rfa_attention(q, k, v, proj, sigma=sigma)
    for h in range(3):
        one = R.rfa_attention(q[:, h:h + 1], k[:, h:h + 1], v[:, h:h + 1], proj[h],
                              sigma=float(sigma[h]))
        assert_close(out[:, h:h + 1], one)


# --------------------------------------------------------------------------- recurrent forms
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["positive", "trig"])
def test_causal_performer_recurrent_equals_parallel(device, kind, gen):
    q, k, v = (randn(2, 2, 33, 8, gen=gen, device=device) for _ in range(3))
    proj = R.random_projection(16, 8, generator=gen, dtype=torch.float64, device=device)
    keep = rand_mask((2, 1, 1, 33), gen, p=0.7, device=device)
    par = R.performer_attention(q, k, v, proj, keep, is_causal=True, kind=kind, chunk_size=8)
    qs, ks = q * 8 ** -0.25, k * 8 ** -0.25
    phi_q, phi_k = R.performer_features(qs, ks, proj, kind=kind, causal=True)
    assert_close(L.kernel_attention_recurrent(phi_q, phi_k, v, keep, eps=0.0), par)


@given(n=st.integers(1, 40), chunk=st.integers(1, 48), masked=st.booleans(),
       extremes=st.booleans(), seed=st.integers(0, 2**16))
def test_gated_recurrent_equals_parallel(n, chunk, masked, extremes, seed):
    gen = torch.Generator().manual_seed(seed)
    phi_q, phi_k = randn(2, 2, n, 5, gen=gen).exp(), randn(2, 2, n, 5, gen=gen).exp()
    v = randn(2, 2, n, 3, gen=gen)
    gate = torch.rand(2, 2, n, generator=gen, dtype=torch.float64)
    if extremes:  # gates of exactly 0 (forget everything) and 1 (write nothing)
        gate[..., ::3] = 0.0
        gate[..., 1::4] = 1.0
    keep = rand_mask((2, 1, 1, n), gen, p=0.7, keep_first=False) if masked else None
    par, sp = L.gated_kernel_attention(phi_q, phi_k, v, gate, keep, chunk_size=chunk,
                                       return_state=True)
    rec, sr = L.gated_kernel_attention_recurrent(phi_q, phi_k, v, gate, keep, return_state=True)
    assert_close(par, rec)
    assert_close(sp.kv, sr.kv)
    assert_close(sp.k_sum, sr.k_sum)


def test_gated_with_unit_gates_is_plain_and_matches_dense_decay(gen):
    n = 12
    phi_q, phi_k = randn(1, 1, n, 4, gen=gen).exp(), randn(1, 1, n, 4, gen=gen).exp()
    v = randn(1, 1, n, 2, gen=gen)
    gate = torch.rand(1, 1, n, generator=gen, dtype=torch.float64)
    # dense definition: key j reaches query t >= j with weight (1 - g_j) prod_{l=j+1}^{t} g_l
    wgt = torch.zeros(n, n, dtype=torch.float64)
    for t in range(n):
        for j in range(t + 1):
            wgt[t, j] = (1 - gate[0, 0, j]) * torch.prod(gate[0, 0, j + 1:t + 1])
    s = (phi_q[0, 0] @ phi_k[0, 0].T) * wgt
    expected = (s @ v[0, 0]) / s.sum(-1, keepdim=True)
    assert_close(L.gated_kernel_attention(phi_q, phi_k, v, gate, eps=0.0, chunk_size=5)[0, 0],
                 expected)
    # g = 0 everywhere: only the current position is remembered -> output = v_t
    zero = L.gated_kernel_attention(phi_q, phi_k, v, torch.zeros(1, 1, n, dtype=torch.float64),
                                    eps=0.0, chunk_size=5)
    assert_close(zero, v)


def layer(embed_dim, num_heads, num_features, **kw):
    """A multi-head Performer / RFA layer: MultiHeadAttention with RandomFeatures."""
    rf = R.RandomFeatures(num_heads, embed_dim // num_heads, num_features, **kw)
    return MultiHeadAttention(embed_dim, num_heads, attn_fn=rf)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["performer", "performer-trig", "rfa", "rfa-arccos",
                                     "gated-rfa"])
def test_modules_step_equals_causal_forward(device, variant, gen):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    kw = {"performer": {}, "performer-trig": {"feature": "trig"},
          "rfa": {"feature": "gaussian", "orthogonal": False},
          "rfa-arccos": {"feature": "arccos", "orthogonal": False},
          "gated-rfa": {"feature": "gaussian", "orthogonal": False, "gated": True}}[variant]
    mod = layer(16, 2, 12, generator=g, **kw).double().to(device)
    x = randn(3, 10, 16, gen=gen, device=device)
    par = mod(x, is_causal=True)
    state, outs = None, []
    for t in range(10):
        y, state = R.random_feature_step(mod, x[:, t], state)
        outs.append(y)
    assert_close(torch.stack(outs, 1), par)
    num_f = 12 if variant in ("performer", "rfa-arccos") else 24  # sin and cos: 2m features
    assert state.kv.shape == (3, 2, num_f, 8) and state.k_sum.shape == (3, 2, num_f)


def test_module_padding_and_redraw(gen):
    torch.manual_seed(0)
    mod = layer(16, 4, 32, generator=torch.Generator().manual_seed(1)).double()
    rf = mod.attn_fn
    x = randn(2, 9, 16, gen=gen)
    keep = M.key_mask(torch.tensor([9, 5]), 9)
    out = mod(x, attn_mask=keep)
    assert_close(out[1:, :5], mod(x[1:, :5]))  # padded keys contribute nothing
    before = rf.projection.clone()
    rf.redraw(torch.Generator().manual_seed(2))
    assert not torch.equal(before, rf.projection)
    assert not torch.allclose(mod(x, attn_mask=keep), out)  # a new draw, new output
    rf.redraw(torch.Generator().manual_seed(1))
    # same generator seed, same draw (the first one was made in float32, then cast)
    torch.testing.assert_close(rf.projection.float(), before.float())
    assert "attn_fn.projection" in mod.state_dict() and not any(
        p is rf.projection for p in mod.parameters())


def test_gated_module_learns_its_gate_and_sigma(gen):
    torch.manual_seed(0)
    mod = layer(8, 2, 16, feature="gaussian", orthogonal=False, gated=True,
                generator=torch.Generator().manual_seed(0))
    mod(torch.randn(2, 6, 8), is_causal=True).square().sum().backward()
    rf = mod.attn_fn
    assert rf.gate_weight.grad.abs().sum() > 0 and rf.gate_bias.grad.abs().sum() > 0
    assert rf.log_sigma.grad.abs().sum() > 0
    assert not rf.projection.requires_grad and rf.projection.grad is None


def test_gradcheck_performer_rfa_and_gated():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (randn(1, 1, 5, 3, gen=gen).requires_grad_() for _ in range(3))
    proj = R.random_projection(4, 3, generator=gen, dtype=torch.float64)
    for causal in (False, True):
        for kind in ("positive", "trig"):
            assert torch.autograd.gradcheck(lambda a, b, c, causal=causal, kind=kind:
                                            R.performer_attention(a, b, c, proj,
                                                                  is_causal=causal, kind=kind,
                                                                  chunk_size=4), (q, k, v))
        assert torch.autograd.gradcheck(lambda a, b, c, causal=causal: R.rfa_attention(
            a, b, c, proj, is_causal=causal, sigma=0.7), (q, k, v))
    gate = torch.rand(1, 1, 5, generator=gen, dtype=torch.float64).requires_grad_()
    phi_q, phi_k = (randn(1, 1, 5, 4, gen=gen).exp().requires_grad_() for _ in range(2))
    assert torch.autograd.gradcheck(lambda a, b, c, g: L.gated_kernel_attention(
        a, b, c, g, chunk_size=4), (phi_q, phi_k, v, gate))


# --------------------------------------------------------------------------- bad input
def f(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


Q, K, V, P = f(2, 3, 4, 8), f(2, 3, 6, 8), f(2, 3, 6, 5), f(16, 8)
G = torch.Generator().manual_seed(0)
CASES = {
    "projection D": (lambda: R.performer_attention(Q, K, V, f(16, 7)), ValueError,
                     r"projection \(m, D\) must have the same D as query"
                     r".*\(16, 7\).*\(2, 3, 4, 8\)"),
    "projection rank": (lambda: R.performer_attention(Q, K, V, f(16)), ValueError,
                        r"projection must be 2-D or 3-D"),
    "per-head projection H": (lambda: R.performer_attention(Q, K, V, f(2, 16, 8)), ValueError,
                              r"per-head projection \(H, m, D\) needs query .* same H"),
    "kind": (lambda: R.performer_attention(Q, K, V, P, kind="cos"), ValueError,
             r"kind must be one of \('positive', 'trig', 'optimized'\), got 'cos'"),
    "kernel": (lambda: R.rfa_attention(Q, K, V, P, kernel="laplace"), ValueError,
               r"kernel must be one of \('gaussian', 'arccos'\), got 'laplace'"),
    "scale": (lambda: R.performer_attention(Q, K, V, P, scale=-1.0), ValueError,
              r"scale must be a positive float"),
    "gate without causal": (lambda: R.rfa_attention(Q, K, V, P, gate=f(2, 3, 6)), ValueError,
                            r"gate needs is_causal=True"),
    "gate range": (lambda: L.gated_kernel_attention(K, K, V, f(2, 3, 6) + 2), ValueError,
                   r"gate values must lie in \[0, 1\]"),
    "gate shape": (lambda: L.gated_kernel_attention(K, K, V, f(2, 3, 5)), ValueError,
                   r"gate must be \(B, H, N\) = \(2, 3, 6\).*got \(2, 3, 5\)"),
    "generator": (lambda: R.random_projection(4, 4, generator=0), TypeError,
                  r"generator must be a torch.Generator, got int"),
    "num_features": (lambda: R.random_projection(0, 4, generator=G), ValueError,
                     r"num_features must be an int >= 1, got 0"),
    "offset length": (lambda: R.gaussian_rff(f(3, 8), P, offset=f(5)), ValueError,
                      r"offset must have m = 16 entries"),
    "mse m": (lambda: R.softmax_kernel_mse(f(3), f(3), 0), ValueError,
              r"num_features must be an int >= 1"),
    "mask": (lambda: R.performer_attention(Q, K, V, P, torch.ones(2, 1, 4, 6, dtype=torch.bool)),
             ValueError, r"attn_mask must hide whole keys, shape \(B, H, 1, Nk\) = .* got "
                         r"\(2, 1, 4, 6\)"),
    "module feature": (lambda: R.RandomFeatures(2, 4, feature="exp"), ValueError,
                       r"feature must be one of"),
    "gated performer": (lambda: R.RandomFeatures(2, 4, feature="positive", gated=True),
                        ValueError, r"gated=True is gated RFA"),
    "gated non-causal": (lambda: layer(8, 2, 4, feature="gaussian", gated=True)(f(1, 3, 8)),
                         ValueError, r"call it with is_causal=True"),
    "module input": (lambda: layer(8, 2, 4)(f(1, 3, 6)), ValueError,
                     r"query must have last dim E=8, got shape \(1, 3, 6\)"),
    "module step": (lambda: R.random_feature_step(layer(8, 2, 4), f(1, 3, 8)), ValueError,
                    r"x must be 2-D \(B, E\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_rejected_with_a_clear_message(case):
    assert_rejected(*CASES[case], case=case)


# --------------------------------------------------------------------------- FAVOR++
def estimates_a(x, y, projections, a):
    """Optimised positive features (FAVOR++) with parameter a, per projection (R,)."""
    n = projections.shape[0]
    fx = R.softmax_kernel_features(x.expand(n, 1, -1), projections, kind="optimized", a=a)
    fy = R.softmax_kernel_features(y.expand(n, 1, -1), projections, kind="optimized", a=a)
    return (fx * fy).sum(-1)[:, 0]


@pytest.mark.parametrize("a", [-0.05, -0.15, -0.3])
@pytest.mark.parametrize("cos", [-0.6, 0.8])
def test_optimized_features_are_unbiased_for_every_a_and_match_their_mse(a, cos, gen):
    d, m, draws = 4, 8, 8000
    x, y = pair(d, 0.9, 1.0, cos, gen)
    est = estimates_a(x, y, iid_draws(draws, m, d, gen), a)
    exact = torch.exp(x @ y)
    assert abs(est.mean() - exact) < 4 * est.std() / math.sqrt(draws)
    err2 = (est - exact) ** 2
    closed = R.softmax_kernel_mse(x, y, m, kind="optimized", a=a)
    assert abs(err2.mean() - closed) < 4 * err2.std() / math.sqrt(draws)
    assert abs(err2.mean() / closed - 1) < 0.2


def test_optimized_with_a_zero_is_favor_plus(gen):
    x, p = randn(3, 5, gen=gen), randn(7, 5, gen=gen)
    assert_close(R.softmax_kernel_features(x, p, kind="optimized", a=0.0),
                 R.softmax_kernel_features(x, p, kind="positive"))
    y = randn(3, 5, gen=gen)
    assert_close(R.softmax_kernel_mse(x, y, 7, kind="optimized", a=0.0),
                 R.softmax_kernel_mse(x, y, 7, kind="positive"))


def test_optimal_a_minimises_the_closed_form_mse(gen):
    """For one pair, rho = |x + y|^2 / D and a* minimises MSE_opt over a grid of a < 1/8;
    at large |x + y| the minimum is far below FAVOR+'s (a = 0)."""
    d = 16
    x, y = pair(d, 2.0, 2.0, 0.3, gen)
    a_star = R.optimal_a(x[None, None, None], y[None, None, None]).item()
    grid = torch.linspace(-1.0, 0.12, 2000, dtype=torch.float64)
    mse = torch.stack([R.softmax_kernel_mse(x, y, 64, kind="optimized", a=float(a))
                       for a in grid])
    best = grid[mse.argmin()].item()
    assert abs(best - a_star) < 2e-3, (best, a_star)
    ratio = R.softmax_kernel_mse(x, y, 64, kind="optimized", a=a_star) / \
        R.softmax_kernel_mse(x, y, 64, kind="positive")
    assert ratio < 0.2, ratio


def test_optimal_a_ignores_padded_keys(gen):
    q, k = randn(1, 2, 5, 4, gen=gen), randn(1, 2, 7, 4, gen=gen)
    mask = torch.tensor([True] * 4 + [False] * 3)[None, None, None, :]
    k_junk = k.clone()
    k_junk[..., 4:, :] = 100.0
    assert_close(R.optimal_a(q, k_junk, mask), R.optimal_a(q, k[..., :4, :]))
    assert (R.optimal_a(q, k) <= 0).all()


def test_favor_plus_plus_attention_converges_and_beats_favor_plus(gen):
    """With many features it converges; with few, at norms where FAVOR+'s variance grows, the
    optimised features' attention error is lower, averaged over projections."""
    q, k, v = (randn(1, 2, 64, 8, gen=gen) * 0.6 for _ in range(3))
    exact = reference_attention(q, k, v)
    errs = {"positive": [], "optimized": []}
    for _ in range(24):
        p = R.random_projection(64, 8, generator=gen, dtype=torch.float64)
        for kind in errs:
            out = R.performer_attention(q, k, v, p, kind=kind)
            errs[kind].append(((out - exact).norm() / exact.norm()).item())
    mean = {kind: sum(e) / len(e) for kind, e in errs.items()}
    assert mean["optimized"] < 0.85 * mean["positive"], mean
    big = R.random_projection(8192, 8, generator=gen, dtype=torch.float64)
    out = R.performer_attention(q, k, v, big, kind="optimized")
    assert ((out - exact).norm() / exact.norm()).item() < 0.15


def test_favor_plus_plus_causal_needs_a_and_then_recurrent_equals_parallel(gen):
    q, k, v = (randn(1, 2, 9, 4, gen=gen) for _ in range(3))
    p = R.random_projection(16, 4, generator=gen, dtype=torch.float64)
    assert_rejected(lambda: R.performer_attention(q, k, v, p, kind="optimized", is_causal=True),
                    ValueError, r"causal=True needs a given a: optimal_a would look at future")
    full = R.performer_attention(q, k, v, p, kind="optimized", is_causal=True, a=-0.1)
    for t in range(1, 10):  # no leakage: the first t outputs only see the first t positions
        prefix = R.performer_attention(q[..., :t, :], k[..., :t, :], v[..., :t, :], p,
                                       kind="optimized", is_causal=True, a=-0.1)
        assert_close(prefix, full[..., :t, :])
    assert_rejected(lambda: R.performer_attention(q, k, v, p, a=-0.1), ValueError,
                    r"a is FAVOR\+\+'s parameter: only for kind='optimized'")
    assert_rejected(lambda: R.softmax_kernel_features(q, p, kind="optimized", a=0.2), ValueError,
                    r"a must be a float < 1/8")
    assert_rejected(lambda: R.softmax_kernel_features(q, p, kind="optimized"), ValueError,
                    r"kind='optimized' needs a")
