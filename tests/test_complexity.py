"""The measuring tools of chapter 9 against independent references and closed forms.

* the three layers against ``F.conv1d`` written as a loop, an ``nn.GRUCell`` loop and
  ``nn.MultiheadAttention`` (one head) with copied weights;
* counted FLOPs against the closed form (and the attention's against ``attention_cost``),
  the GRU's count against a counted ``GRUCell`` loop, on real and on meta tensors;
* sequential steps against chains whose critical path is known, and their growth in N;
* path lengths against the closed forms ceil(|i - j| / (k // 2)), i - j + 1 and 1;
* ``fit_exponent`` and ``crossover`` against exact power laws.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_rejected, randn
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import DEVICES, assert_close
from torch import nn

from attention_lib import complexity as C
from attention_lib.multihead import attention_cost


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one torch thread (on a busy 2-core machine, every parallel region of a
    small op would wait for a core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _x(n, d, gen, b=2, dtype=torch.float64, device="cpu"):
    return randn(b, n, d, gen=gen, dtype=dtype, device=device)


# --------------------------------------------------------------------------- layers
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_conv_layer_is_a_same_length_convolution(k, device, gen):
    n, d = 9, 3
    layer = C.make_layer("conv", d, kernel_size=k, generator=gen, dtype=torch.float64,
                         device=device)
    x = _x(n, d, gen, device=device)
    w, bias = layer.conv.weight, layer.conv.bias  # (d_out, d_in, k), (d_out,)
    expected = torch.zeros_like(x)
    for i in range(n):
        expected[:, i] = bias
        for t in range(k):
            j = i + t - k // 2
            if 0 <= j < n:
                expected[:, i] += x[:, j] @ w[:, :, t].T
    assert_close(layer(x), expected)


def _cell_from(gru: nn.GRU) -> nn.GRUCell:
    cell = nn.GRUCell(gru.input_size, gru.hidden_size, dtype=gru.weight_ih_l0.dtype)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(gru, name + "_l0"))
    return cell


def _cell_loop(cell, x):
    h = torch.zeros(x.shape[0], cell.hidden_size, dtype=x.dtype, device=x.device)
    outs = []
    for t in range(x.shape[1]):
        h = cell(x[:, t], h)
        outs.append(h)
    return torch.stack(outs, dim=1)


def test_recurrent_layer_is_a_gru_cell_loop(gen):
    n, d = 7, 4
    layer = C.make_layer("rnn", d, generator=gen, dtype=torch.float64)
    x = _x(n, d, gen)
    cell = _cell_from(layer.gru)
    assert_close(layer(x), _cell_loop(cell, x))
    assert_close(layer(x, max_steps=n), layer(x))
    assert_close(layer(x, max_steps=3 * n), layer(x))
    steps = 3
    truncated = layer(x, max_steps=steps)
    for i in range(n):  # output i: the cell run over inputs i - steps + 1 .. i from zero
        window = x[:, max(0, i - steps + 1): i + 1]
        assert_close(truncated[:, i], _cell_loop(cell, window)[:, -1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("is_causal", [False, True])
def test_self_attention_layer_matches_torch_multihead_attention(is_causal, device, gen):
    n, d = 6, 8
    layer = C.make_layer("attention", d, generator=gen, dtype=torch.float64, device=device)
    ref = nn.MultiheadAttention(d, 1, batch_first=True, dtype=torch.float64, device=device)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([layer.q_proj.weight, layer.k_proj.weight,
                                            layer.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([layer.q_proj.bias, layer.k_proj.bias,
                                          layer.v_proj.bias]))
        ref.out_proj.weight.copy_(layer.out_proj.weight)
        ref.out_proj.bias.copy_(layer.out_proj.bias)
    x = _x(n, d, gen, device=device)
    # nn.MultiheadAttention's attn_mask has the opposite polarity: True = may NOT attend
    hide = torch.ones(n, n, dtype=torch.bool, device=device).triu(1) if is_causal else None
    expected = ref(x, x, x, attn_mask=hide, need_weights=False)[0]
    assert_close(layer(x, is_causal=is_causal), expected)


def test_make_layer_is_reproducible_and_stack_layers_independent(gen):
    for kind in C.LAYER_KINDS:
        a = C.make_layer(kind, 4, generator=torch.Generator().manual_seed(3))
        b = C.make_layer(kind, 4, generator=torch.Generator().manual_seed(3))
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.equal(pa, pb), kind
    stack = C.stack_layers("conv", 4, 3, generator=gen)
    assert len(stack) == 3
    assert not torch.equal(stack[0].conv.weight, stack[1].conv.weight)
    x = torch.randn(2, 5, 4, generator=gen)
    assert stack(x).shape == (2, 5, 4)


def test_bad_inputs_are_rejected():
    assert_rejected(lambda: C.make_layer("lstm", 4), ValueError, r"kind.*conv.*lstm")
    assert_rejected(lambda: C.make_layer("conv", 4, kernel_size=4), ValueError,
                    r"kernel_size must be odd.*4")
    assert_rejected(lambda: C.make_layer("rnn", 0), ValueError, r"d_model.*0")
    layer = C.make_layer("attention", 4)
    assert_rejected(lambda: layer(torch.randn(5, 4)), ValueError, r"x must be 3-D.*\(5, 4\)")
    assert_rejected(lambda: layer(torch.randn(1, 5, 3)), ValueError,
                    r"x must have last dim d_model=4, got shape \(1, 5, 3\)")
    assert_rejected(lambda: layer(torch.ones(1, 5, 4, dtype=torch.long)), TypeError,
                    r"x must be a floating-point")
    rnn = C.make_layer("rnn", 4)
    assert_rejected(lambda: rnn(torch.randn(1, 5, 4), max_steps=0), ValueError, r"max_steps")
    assert_rejected(lambda: C.layer_flops("conv", 0, 4), ValueError, r"seq_len")
    assert_rejected(lambda: C.path_lengths("conv", 4, max_layers=0), ValueError, r"max_layers")
    assert_rejected(lambda: C.max_path_length(torch.full((3, 3), -1)), ValueError,
                    r"paths \(3, 3\) connects no pair")
    assert_rejected(lambda: C.count_flops(3), TypeError, r"fn must be callable")
    assert_rejected(lambda: C.sequential_steps(layer, torch.randn(1, 5, 4, device="meta")),
                    ValueError, r"meta")


# --------------------------------------------------------------------------- FLOPs
@settings(max_examples=25)
@given(kind=st.sampled_from(C.LAYER_KINDS), n=st.integers(1, 40), d=st.integers(1, 12),
       k=st.sampled_from([1, 3, 5, 7]), b=st.integers(1, 3))
def test_counted_flops_equal_the_closed_form(kind, n, d, k, b):
    layer = C.make_layer(kind, d, kernel_size=k, device="meta")
    x = torch.empty(b, n, d, device="meta")
    assert C.count_flops(layer, x) == C.layer_flops(kind, n, d, kernel_size=k, batch_size=b)


def test_attention_flops_agree_with_attention_cost():
    for n, d in ((16, 8), (7, 32)):
        assert C.layer_flops("attention", n, d, batch_size=2) == sum(
            attention_cost(2, n, d, 1).flops.values())


def test_gru_count_equals_a_counted_gru_cell_loop(gen):
    """FlopCounterMode sees nn.GRU on the CPU (it runs as one addmm per step plus one for the
    input projections); its total equals that of an explicit GRUCell loop."""
    n, d = 11, 6
    layer = C.make_layer("rnn", d, generator=gen)
    x = torch.randn(2, n, d, generator=gen)
    cell = _cell_from(layer.gru)
    assert C.count_flops(layer, x) == C.count_flops(_cell_loop, cell, x) == 12 * 2 * n * d * d


def test_real_and_meta_counts_agree(gen):
    for kind in C.LAYER_KINDS:
        real = C.count_flops(C.make_layer(kind, 6, generator=gen), torch.randn(1, 10, 6))
        meta = C.count_flops(C.make_layer(kind, 6, device="meta"),
                             torch.empty(1, 10, 6, device="meta"))
        assert real == meta > 0, kind


# --------------------------------------------------------------------------- sequential steps
def test_sequential_steps_of_known_chains():
    x = torch.randn(8)

    def chain(t, m):
        for _ in range(m):
            t = t * 1.5
        return t

    def fan(t, m):  # m independent ops on the input, then one that joins two of them
        outs = [t * i for i in range(m)]
        return outs[0] + outs[-1]

    def inplace(t, m):
        t = t.clone()
        for _ in range(m):
            t.mul_(2).add_(1)
        return t

    def views(t):
        return t.view(2, 4).transpose(0, 1)[1:].unsqueeze(0) * 2  # views cost nothing

    assert [C.sequential_steps(chain, x, m) for m in (1, 5, 17)] == [1, 5, 17]
    assert C.sequential_steps(fan, x, 9) == 2
    assert C.sequential_steps(inplace, x, 4) == 1 + 2 * 4
    assert C.sequential_steps(views, x) == 1


def test_sequential_steps_grow_as_n_for_the_gru_only(gen):
    d, ns = 4, (4, 8, 16, 32)
    for kind in C.LAYER_KINDS:
        layer = C.make_layer(kind, d, generator=gen)
        steps = [C.sequential_steps(layer, torch.randn(1, n, d, generator=gen)) for n in ns]
        if kind == "rnn":  # a fixed number of dependent ops per step: exactly a n + b, a > 0
            per_step = (steps[1] - steps[0]) / (ns[1] - ns[0])
            assert per_step >= 1
            assert all(s == steps[0] + per_step * (n - ns[0]) for s, n in zip(steps, ns))
        else:
            assert len(set(steps)) == 1 and steps[0] >= 1, (kind, steps)


# --------------------------------------------------------------------------- path length
@pytest.mark.parametrize("k", [3, 5])
def test_conv_path_lengths_are_ceil_distance_over_half_kernel(k):
    n = 11
    paths = C.path_lengths("conv", n, 3, kernel_size=k)
    expected = torch.tensor([[max(1, math.ceil(abs(i - j) / (k // 2))) for j in range(n)]
                             for i in range(n)])
    assert torch.equal(paths, expected)
    assert C.max_path_length(paths) == math.ceil((n - 1) / (k // 2))


def test_rnn_path_lengths_count_cell_steps():
    n = 9
    paths = C.path_lengths("rnn", n, 3)
    expected = torch.tensor([[i - j + 1 if j <= i else -1 for j in range(n)] for i in range(n)])
    assert torch.equal(paths, expected)
    assert C.max_path_length(paths) == n


def test_attention_path_length_is_one():
    paths = C.path_lengths("attention", 10, 3)
    assert torch.equal(paths, torch.ones(10, 10, dtype=torch.long))


def test_path_lengths_stop_at_max_layers():
    paths = C.path_lengths("conv", 10, 2, max_layers=3)
    assert int(paths.max()) == 3 and int((paths < 0).sum()) > 0
    assert C.max_path_length(paths) == 3


# --------------------------------------------------------------------------- fits
@given(p=st.floats(-3, 3), c=st.floats(0.01, 100),
       xs=st.lists(st.integers(1, 10_000), min_size=2, max_size=8, unique=True))
def test_fit_exponent_recovers_a_power_law(p, c, xs):
    assert abs(C.fit_exponent(xs, [c * x**p for x in xs]) - p) < 1e-9


def test_fit_exponent_rejects_what_it_cannot_fit():
    assert_rejected(lambda: C.fit_exponent([1, 2], [1]), ValueError, r"same length")
    assert_rejected(lambda: C.fit_exponent([2, 2], [1, 3]), ValueError, r"two distinct")
    assert_rejected(lambda: C.fit_exponent([1, 2], [0, 3]), ValueError, r"ys must be positive")


def test_crossover_of_known_curves():
    xs = [1, 2, 4, 8, 16]
    # x^2 overtakes 4x at x = 4 exactly; between grid points the log-log interpolation of two
    # power laws is exact: x^2 overtakes 6x at 6
    assert C.crossover(xs, [x * x for x in xs], [4 * x for x in xs]) == 4
    assert abs(C.crossover(xs, [x * x for x in xs], [6 * x for x in xs]) - 6) < 1e-9
    assert C.crossover(xs, [x for x in xs], [2 * x for x in xs]) is None
    assert_rejected(lambda: C.crossover([2, 1], [1, 1], [1, 1]), ValueError, r"increasing")


# --------------------------------------------------------------------------- measuring
def test_measure_layer(gen):
    n, d = 64, 8
    layer = C.make_layer("attention", d, generator=gen)
    cost = C.measure_layer(layer, torch.randn(1, n, d, generator=gen), repeats=1)
    assert cost.flops == C.layer_flops("attention", n, d)
    assert cost.time_s > 0 and cost.sequential_steps >= 1
    assert cost.peak_bytes >= n * n * 4  # the (N, N) float32 scores were allocated
    quick = C.measure_layer(layer, torch.randn(1, n, d), repeats=1, steps=False)
    assert quick.sequential_steps is None


def test_time_call_runs_warmup_plus_repeats():
    calls = []
    assert C.time_call(lambda: calls.append(1), repeats=3, warmup=2) >= 0
    assert len(calls) == 5
    x = torch.randn(64, 64)
    assert C.time_call(lambda: x @ x, repeats=2, clock="cpu", reduce="min") >= 0
    assert_rejected(lambda: C.time_call(lambda: None, clock="gpu"), ValueError, r"clock")
    assert_rejected(lambda: C.time_call(lambda: None, reduce="mean"), ValueError, r"reduce")


# --------------------------------------------------------------- restricted self-attention
def test_restricted_attention_is_attention_inside_the_band():
    """Vaswani et al.'s restricted self-attention: the projections of SelfAttentionLayer
    around reference_attention with a band mask |i - j| <= r // 2, computed blockwise."""
    from attention_lib.functional import reference_attention
    from attention_lib.masks import sliding_window_mask

    gen = torch.Generator().manual_seed(0)
    for n, r in ((1, 3), (7, 5), (20, 9), (33, 17)):
        layer = C.make_layer("restricted", 6, kernel_size=r, generator=gen, dtype=torch.float64)
        x = _x(n, 6, gen)
        q, k, v = (p(x)[:, None] for p in (layer.q_proj, layer.k_proj, layer.v_proj))
        ref = layer.out_proj(reference_attention(q, k, v, sliding_window_mask(n, r // 2))[:, 0])
        assert_close(layer(x), ref, torch.float64)
    assert_rejected(lambda: C.make_layer("restricted", 4, kernel_size=4), ValueError, r"odd")


def test_restricted_attention_flops_and_paths():
    """FLOPs counted = the closed form, linear in n and in r; paths ceil(|i - j| / (r // 2))."""
    for n, r, d in ((1, 5, 3), (5, 17, 2), (32, 9, 4), (100, 5, 8)):
        counted = C.count_flops(C.make_layer("restricted", d, kernel_size=r),
                                torch.randn(1, n, d))
        assert counted == C.layer_flops("restricted", n, d, kernel_size=r)
    assert C.layer_flops("restricted", 512, 4, kernel_size=9) == 2 * C.layer_flops(
        "restricted", 256, 4, kernel_size=9)
    for n, r in ((8, 5), (13, 9)):
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        expected = ((i - j).abs() + r // 2 - 1).div(r // 2, rounding_mode="floor").clamp(min=1)
        assert torch.equal(C.path_lengths("restricted", n, kernel_size=r), expected)
