"""attention_lib.pooling: Nadaraya-Watson kernel regression as attention pooling.

Every value is checked against an independent reference: explicit Python loops in float64
over the kernel functions, ``masked_softmax`` of the Gaussian score, and the two limits
(large bandwidth -> mean of the values, small bandwidth -> nearest neighbour).
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tolerances import FLOAT_DTYPES, assert_close

import attention_lib as al
from attention_lib import pooling
from attention_lib._validate import shape_str

KERNEL_NAMES = ["gaussian", "boxcar", "epanechnikov"]


def randn(*shape, gen, dtype=torch.float64, device="cpu"):
    """Standard-normal tensor drawn on the CPU from ``gen`` (the same values on any device)."""
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


# --------------------------------------------------------------------------- references
def loop_weights(q, k, kernel, h, mask=None):
    """Nadaraya-Watson weights by explicit loops in float64. q: (Nq, D), k: (Nk, D)."""
    K = pooling.KERNELS[kernel]
    q, k = q.double().cpu(), k.double().cpu()
    nq, nk = q.shape[0], k.shape[0]
    w = torch.zeros(nq, nk, dtype=torch.float64)
    for i in range(nq):
        raw = []
        for j in range(nk):
            dist = math.sqrt(sum((float(q[i, d]) - float(k[j, d])) ** 2
                                 for d in range(q.shape[1])))
            allowed = True if mask is None else bool(mask[i, j])
            raw.append(float(K(torch.tensor(dist / h, dtype=torch.float64))) if allowed else 0.0)
        total = sum(raw)
        for j in range(nk):
            w[i, j] = raw[j] / total if total > 0 else 0.0
    return w


def loop_nw(q, k, v, kernel, h, mask=None):
    """Pooled values by loops. q: (Nq, D), k: (Nk, D), v: (Nk, Dv) -> (Nq, Dv) float64."""
    w = loop_weights(q, k, kernel, h, mask)
    v = v.double().cpu()
    out = torch.zeros(w.shape[0], v.shape[1], dtype=torch.float64)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out[i] += w[i, j] * v[j]
    return out


# --------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_kernels_are_symmetric_densities(kernel):
    K = pooling.KERNELS[kernel]
    u = torch.linspace(-6, 6, 120001, dtype=torch.float64)
    k = K(u)
    assert (k >= 0).all()
    assert_close(k, K(-u))
    assert abs(torch.trapezoid(k, u).item() - 1.0) < 1e-3


def test_kernel_formulas_at_points():
    u = torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    assert_close(al.gaussian_kernel(u), torch.exp(-u ** 2 / 2) / math.sqrt(2 * math.pi))
    assert al.boxcar_kernel(u).tolist() == [0.5, 0.5, 0.5, 0.0]
    assert_close(al.epanechnikov_kernel(u),
                 torch.tensor([0.75, 0.75 * 0.75, 0.0, 0.0], dtype=torch.float64))


# --------------------------------------------------------------------------- weights
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("h", [0.3, 1.0, 2.5])
def test_weights_match_loops_scalar_features(kernel, h, gen, device):
    q = randn(7, gen=gen, device=device) * 2
    k = randn(11, gen=gen, device=device) * 2
    w = al.kernel_weights(q, k, kernel=kernel, bandwidth=h)
    assert w.shape == (7, 11) and w.device.type == device
    assert_close(w.cpu(), loop_weights(q[:, None], k[:, None], kernel, h))


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_weights_match_loops_vector_features(kernel, gen):
    q = randn(5, 3, gen=gen)
    k = randn(9, 3, gen=gen)
    w = al.kernel_weights(q, k, kernel=kernel, bandwidth=1.7)
    assert_close(w, loop_weights(q, k, kernel, 1.7))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_gaussian_weights_are_masked_softmax_of_negative_squared_distance(dtype, gen):
    q, k, h = randn(6, gen=gen, dtype=dtype), randn(8, gen=gen, dtype=dtype), 0.7
    expected = al.masked_softmax(-(q[:, None] - k[None, :]) ** 2 / (2 * h ** 2))
    w = al.kernel_weights(q, k, bandwidth=h)
    assert w.dtype == dtype
    assert_close(w, expected)


def test_gaussian_scores_and_support():
    q, k = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 2.0, 3.0])
    s, support = al.kernel_scores(q, k, kernel="gaussian", bandwidth=2.0)
    assert support is None
    assert_close(s, -(q[:, None] - k[None]) ** 2 / 8)
    s, support = al.kernel_scores(q, k, kernel="boxcar", bandwidth=2.0)
    assert support.tolist() == [[True, True, False], [True, True, True]]
    assert (s == 0).all()


def test_batched_leading_axes_broadcast(gen):
    q = randn(2, 1, 4, 3, gen=gen)     # (B, H, Nq, D) with H broadcast
    k = randn(1, 3, 6, 3, gen=gen)
    v = randn(2, 3, 6, 5, gen=gen)
    out, w = al.nadaraya_watson(q, k, v, bandwidth=1.3, return_weights=True)
    assert out.shape == (2, 3, 4, 5) and w.shape == (2, 3, 4, 6)
    for b in range(2):
        for hh in range(3):
            assert_close(out[b, hh], loop_nw(q[b, 0], k[0, hh], v[b, hh], "gaussian", 1.3))


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_weights_are_a_distribution_and_output_in_convex_hull(kernel, gen):
    q = randn(20, gen=gen)
    k = randn(30, gen=gen)
    v = randn(30, gen=gen)
    out, w = al.nadaraya_watson(q, k, v, kernel=kernel, bandwidth=3.0, return_weights=True)
    assert (w >= 0).all()
    assert_close(w.sum(-1), torch.ones(20, dtype=w.dtype))
    assert (out >= v.min() - 1e-12).all() and (out <= v.max() + 1e-12).all()


# --------------------------------------------------------------------------- estimator
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_nadaraya_watson_matches_loops(kernel, gen, device):
    q = randn(6, gen=gen, device=device)
    k = randn(10, gen=gen, device=device)
    v = randn(10, gen=gen, device=device)
    out = al.nadaraya_watson(q, k, v, kernel=kernel, bandwidth=0.9)
    assert out.shape == (6,)
    assert_close(out.cpu(), loop_nw(q[:, None], k[:, None], v[:, None], kernel, 0.9)[:, 0])
    v2 = randn(10, 4, gen=gen, device=device)
    out2 = al.nadaraya_watson(q, k, v2, kernel=kernel, bandwidth=0.9)
    assert out2.shape == (6, 4)
    assert_close(out2.cpu(), loop_nw(q[:, None], k[:, None], v2, kernel, 0.9))


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_large_bandwidth_is_average_pooling(kernel, gen):
    q, k, v = randn(5, gen=gen), randn(12, gen=gen), randn(12, 3, gen=gen)
    out = al.nadaraya_watson(q, k, v, kernel=kernel, bandwidth=1e4)
    assert_close(out, v.mean(0).expand(5, 3).contiguous(), dtype=torch.float32)


def test_small_bandwidth_is_nearest_neighbour(gen):
    q, k, v = randn(15, gen=gen), randn(12, gen=gen), randn(12, gen=gen)
    nearest = (q[:, None] - k[None]).abs().argmin(-1)
    out, w = al.nadaraya_watson(q, k, v, bandwidth=1e-4, return_weights=True)
    assert_close(out, v[nearest])
    assert_close(w, torch.nn.functional.one_hot(nearest, 12).double())


def test_compact_kernel_with_exact_keys_is_exact_lookup():
    k = torch.arange(5.0)
    v = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])
    for kernel in ("boxcar", "epanechnikov"):
        assert al.nadaraya_watson(k, k, v, kernel=kernel, bandwidth=0.5).tolist() == v.tolist()


@pytest.mark.parametrize("kernel", ["boxcar", "epanechnikov"])
def test_empty_window_gives_zeros_not_nan(kernel):
    q = torch.tensor([0.0, 10.0])
    k = torch.tensor([0.1, 0.2])
    v = torch.tensor([1.0, 2.0])
    out, w = al.nadaraya_watson(q, k, v, kernel=kernel, bandwidth=1.0, return_weights=True)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert out[1].item() == 0.0 and (w[1] == 0).all()
    assert abs(w[0].sum().item() - 1.0) < 1e-6


def test_leave_one_out_mask_excludes_self(gen):
    x = randn(8, gen=gen)
    y = randn(8, gen=gen)
    mask = al.leave_one_out_mask(8)
    assert mask.shape == (8, 8) and mask.dtype == torch.bool
    assert not mask.diagonal().any() and mask.sum().item() == 8 * 7
    out, w = al.nadaraya_watson(x, x, y, bandwidth=0.5, attn_mask=mask, return_weights=True)
    assert (w.diagonal() == 0).all()
    assert_close(out, loop_nw(x[:, None], x[:, None], y[:, None], "gaussian", 0.5, mask)[:, 0])
    # the same as predicting each point from the other seven, one at a time
    for i in range(8):
        others = torch.cat([torch.arange(i), torch.arange(i + 1, 8)])
        alone = al.nadaraya_watson(x[i:i + 1], x[others], y[others], bandwidth=0.5)
        assert_close(out[i:i + 1], alone)


def test_mask_broadcasts_and_combines_with_support():
    q = torch.tensor([0.0, 1.0])
    k = torch.tensor([0.0, 0.5, 5.0])
    keep_keys = torch.tensor([False, True, True])  # (Nk,) broadcasts over queries
    w = al.kernel_weights(q, k, kernel="boxcar", bandwidth=1.0, attn_mask=keep_keys)
    assert w.tolist() == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]


def test_inputs_are_not_modified(gen):
    q, k, v = randn(4, gen=gen), randn(6, gen=gen), randn(6, gen=gen)
    copies = [t.clone() for t in (q, k, v)]
    al.nadaraya_watson(q, k, v, kernel="epanechnikov", bandwidth=0.8)
    for t, c in zip((q, k, v), copies):
        assert torch.equal(t, c)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_bandwidth_gradient_matches_finite_differences(kernel, gen):
    q, k, v = randn(6, gen=gen), randn(9, gen=gen), randn(9, gen=gen)
    h = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    loss = al.nadaraya_watson(q, k, v, kernel=kernel, bandwidth=h).pow(2).sum()
    (g,) = torch.autograd.grad(loss, h)
    eps = 1e-6

    def f(x):
        return al.nadaraya_watson(q, k, v, kernel=kernel, bandwidth=x).pow(2).sum().item()

    fd = (f(1.3 + eps) - f(1.3 - eps)) / (2 * eps)
    assert abs(g.item() - fd) < 1e-6 * max(1.0, abs(fd))


def test_gradients_stay_finite_on_the_window_edge():
    q = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    k = torch.tensor([0.0, 2.0], dtype=torch.float64)  # |q1 - k0| = |q1 - k1| = h exactly
    h = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    out = al.nadaraya_watson(q, k, torch.tensor([1.0, 2.0], dtype=torch.float64),
                             kernel="epanechnikov", bandwidth=h)
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(h.grad).all()


# --------------------------------------------------------------------------- module
def test_module_matches_functional_and_learns(gen, device):
    x, y = al.make_toy_data(40, generator=gen, dtype=torch.float64)
    x, y = x.to(device), y.to(device)
    model = al.NadarayaWatson(bandwidth=2.0).to(device)
    assert abs(model.bandwidth.item() - 2.0) < 1e-6
    assert [n for n, _ in model.named_parameters()] == ["log_bandwidth"]
    mask = al.leave_one_out_mask(40, device=device)
    out = model(x, x, y, mask)
    assert_close(out, al.nadaraya_watson(x, x, y, bandwidth=2.0, attn_mask=mask),
                 dtype=torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(x, x, y, mask), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert 0.05 < model.bandwidth.item() < 2.0


def test_module_without_mask_collapses_bandwidth(gen):
    """Queries = training keys and no leave-one-out mask: the loss rewards h -> 0."""
    x, y = al.make_toy_data(30, generator=gen)
    model = al.NadarayaWatson(bandwidth=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(model(x, x, y), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert model.bandwidth.item() < 0.05 and losses[-1] < 0.5 * losses[0]


def test_module_fixed_bandwidth_and_repr():
    model = al.NadarayaWatson(0.25, kernel="boxcar", learnable=False)
    assert list(model.parameters()) == []
    assert "log_bandwidth" in dict(model.named_buffers())
    assert "boxcar" in repr(model) and "0.25" in repr(model)


# --------------------------------------------------------------------------- toy data
def test_toy_data_is_deterministic_sorted_and_noisy():
    x1, y1 = al.make_toy_data(50, generator=torch.Generator().manual_seed(3))
    x2, y2 = al.make_toy_data(50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == y1.shape == (50,) and x1.dtype == torch.float32
    assert (x1[1:] >= x1[:-1]).all() and x1.min() >= 0 and x1.max() <= 5
    resid = y1 - al.toy_function(x1)
    assert 0.3 < resid.std().item() < 0.7
    x0, y0 = al.make_toy_data(10, noise=0.0, generator=torch.Generator().manual_seed(0))
    assert_close(y0, al.toy_function(x0))


# --------------------------------------------------------------------------- property
@given(nq=st.integers(1, 6), nk=st.integers(1, 6), h=st.floats(0.05, 20.0),
       kernel=st.sampled_from(KERNEL_NAMES), seed=st.integers(0, 2 ** 16))
def test_rows_sum_to_one_or_are_empty(nq, nk, h, kernel, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = randn(nq, 2, gen=g), randn(nk, 2, gen=g)
    w = al.kernel_weights(q, k, kernel=kernel, bandwidth=h)
    sums = w.sum(-1)
    assert not torch.isnan(w).any() and (w >= 0).all()
    assert ((sums - 1).abs() < 1e-9).logical_or(sums == 0).all()
    if kernel == "gaussian":
        assert ((sums - 1).abs() < 1e-9).all()


# --------------------------------------------------------------------------- bad input
def _qkv():
    return torch.zeros(3), torch.zeros(4), torch.zeros(4)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(kernel="cosine"), ValueError, ["kernel", "gaussian", "cosine"]),
    (dict(bandwidth=0.0), ValueError, ["bandwidth", "positive"]),
    (dict(bandwidth=-1.0), ValueError, ["bandwidth", "positive"]),
    (dict(bandwidth=float("nan")), ValueError, ["bandwidth"]),
    (dict(bandwidth=float("inf")), ValueError, ["bandwidth"]),
    (dict(bandwidth="1.0"), TypeError, ["bandwidth", "str"]),
    (dict(bandwidth=True), TypeError, ["bandwidth"]),
    (dict(bandwidth=torch.ones(2)), ValueError, ["bandwidth", shape_str((2,))]),
    (dict(bandwidth=torch.tensor(1)), TypeError, ["bandwidth", "int64"]),
    (dict(attn_mask=torch.ones(3, 4)), TypeError, ["attn_mask", "bool"]),
    (dict(attn_mask=torch.ones(3, 5, dtype=torch.bool)), ValueError,
     ["attn_mask", "(3, 5)", "(3, 4)"]),
])
def test_bad_arguments(kwargs, exc, words):
    q, k, v = _qkv()
    with pytest.raises(exc) as info:
        al.nadaraya_watson(q, k, v, **kwargs)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("q, k, v, exc, words", [
    ([0.0, 1.0], torch.zeros(4), torch.zeros(4), TypeError, ["queries", "list"]),
    (torch.zeros(3), torch.zeros(4, dtype=torch.long), torch.zeros(4), TypeError,
     ["keys", "int64"]),
    (torch.zeros(3), torch.zeros(4), torch.zeros(5), ValueError,
     ["Nk", shape_str((4,)), shape_str((5,))]),
    (torch.zeros(3), torch.zeros(4, 2), torch.zeros(4), ValueError,
     ["both", shape_str((3,)), "(4, 2)"]),
    (torch.zeros(3, 2), torch.zeros(4, 3), torch.zeros(4, 1), ValueError,
     ["feature dim", "(3, 2)", "(4, 3)"]),
    (torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(4), ValueError,
     ["values", shape_str((4,))]),
    (torch.zeros(()), torch.zeros(4), torch.zeros(4), ValueError, ["queries", "()"]),
    (torch.zeros(0), torch.zeros(4), torch.zeros(4), ValueError, ["empty"]),
    (torch.zeros(3), torch.zeros(4), torch.zeros(4, 2, 2), ValueError, ["values", "(4, 2, 2)"]),
    (torch.zeros(3), torch.zeros(4, dtype=torch.float64), torch.zeros(4), TypeError,
     ["dtype", "float32", "float64"]),
    (torch.zeros(3), torch.zeros(4), torch.zeros(4, dtype=torch.float64), TypeError,
     ["values", "float64"]),
    (torch.zeros(2, 3, 2), torch.zeros(4, 5, 2), torch.zeros(4, 5, 1), ValueError,
     ["leading", "(2, 3, 2)", "(4, 5, 2)"]),
])
def test_bad_shapes_and_types(q, k, v, exc, words):
    with pytest.raises(exc) as info:
        al.nadaraya_watson(q, k, v)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("call, exc, words", [
    (lambda: al.NadarayaWatson(0.0), ValueError, ["bandwidth"]),
    (lambda: al.NadarayaWatson(-2.0), ValueError, ["bandwidth"]),
    (lambda: al.NadarayaWatson(1.0, kernel="tophat"), ValueError, ["kernel", "tophat"]),
    (lambda: al.leave_one_out_mask(1), ValueError, ["n", ">= 2"]),
    (lambda: al.leave_one_out_mask(3.0), ValueError, ["n"]),
    (lambda: al.make_toy_data(0), ValueError, ["n"]),
    (lambda: al.make_toy_data(5, low=2.0, high=1.0), ValueError, ["low", "high"]),
    (lambda: al.make_toy_data(5, noise=-0.1), ValueError, ["noise"]),
])
def test_bad_constructor_arguments(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))
