"""The exercise checks of Part III (chapters 11, 14, 15, 16) beyond what tests/test_checks.py
runs for every chapter (solutions pass, stubs fail, known mistakes get their hints):

* the efficiency tier fails a correct implementation that builds the (N, N) matrix (or every
  prefix state), and nothing else fails;
* the statistical checks of the random features accept an unbiased estimator and reject a
  biased one, and their error shrinks as the number of features grows;
* the targets of the predict-then-verify questions and of the open-ended experiments agree
  with independent computations.
"""
from __future__ import annotations

import math

import torch

from attention_course.checks import get_exercise, run_checks
from attention_course.checks.chapters import ch11_sparse_attention as ch11
from attention_course.checks.chapters import ch14_linear_attention as ch14
from attention_course.checks.chapters import ch15_random_features as ch15
from attention_course.checks.chapters import ch16_flash_attention as ch16


def _failed_tiers(name, fn):
    report = run_checks(get_exercise(name), fn)
    return [r.tier for r in report.results if not r.passed], report


def _dense_softmax(q, k, v, keep=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, Nq, Nk)
    if keep is not None:
        s = s.masked_fill(~keep, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# --------------------------------------------------------------------------- efficiency tier
def test_dense_window_attention_fails_only_efficiency():
    def dense(query, key, value, window):
        i = torch.arange(query.shape[-2])
        return _dense_softmax(query, key, value, (i[:, None] - i[None, :]).abs() <= window)
    failed, report = _failed_tiers("blocked_window_attention", dense)
    assert failed == ["efficiency"], report.format()
    assert "3 window" in report.format()  # the explanation says how to block it


def test_quadratic_linear_attention_fails_only_efficiency():
    def quadratic(query, key, value, attn_mask=None):
        fq, fk = torch.nn.functional.elu(query) + 1, torch.nn.functional.elu(key) + 1
        a = fq @ fk.transpose(-2, -1)  # (B, H, Nq, Nk): the quadratic order
        if attn_mask is not None:
            a = a * attn_mask
        den = a.sum(-1, keepdim=True)
        return (a @ value) / torch.where(den > 0, den, torch.ones_like(den))
    failed, report = _failed_tiers("linear_attention_elu", quadratic)
    assert failed == ["efficiency"], report.format()
    assert "phi(Q) (phi(K)^T V)" in report.format()


def test_cumsum_recurrence_fails_only_efficiency():
    def cumsum(query, key, value):
        fq, fk = torch.nn.functional.elu(query) + 1, torch.nn.functional.elu(key) + 1
        states = torch.cumsum(fk.unsqueeze(-1) * value.unsqueeze(-2), dim=2)  # (B,H,N,F,Dv)
        norms = torch.cumsum(fk, dim=2)  # (B, H, N, F)
        num = (fq.unsqueeze(-2) @ states).squeeze(-2)
        return num / (fq * norms).sum(-1, keepdim=True)
    failed, report = _failed_tiers("causal_linear_recurrence", cumsum)
    assert failed == ["efficiency"], report.format()


def test_quadratic_performer_fails_only_efficiency():
    def quadratic(query, key, value, projections):
        r = query.shape[-1] ** -0.25

        def phi(x):
            x = x * r
            return torch.exp(torch.einsum("bhnd,hmd->bhnm", x, projections)
                             - (x * x).sum(-1, keepdim=True) / 2)
        a = phi(query) @ phi(key).transpose(-2, -1)  # (B, H, Nq, Nk)
        return (a @ value) / a.sum(-1, keepdim=True)
    failed, report = _failed_tiers("performer_attention_per_head", quadratic)
    assert failed == ["efficiency"], report.format()


def test_dense_attention_fails_tiled_efficiency():
    def dense(query, key, value, block_size, is_causal=False):
        nq, nk = query.shape[-2], key.shape[-2]
        keep = torch.ones(nq, nk, dtype=torch.bool).tril() if is_causal else None
        return _dense_softmax(query, key, value, keep)
    failed, report = _failed_tiers("tiled_attention", dense)
    assert failed == ["efficiency"], report.format()


def test_library_shortcuts_fail_the_rules():
    from attention_lib.efficient.flash import flash_attention
    from attention_lib.efficient.sparse import sliding_window_attention
    failed, _ = _failed_tiers("blocked_window_attention",
                              lambda q, k, v, window: sliding_window_attention(q, k, v, window))
    assert failed == ["rules"]
    failed, _ = _failed_tiers("tiled_attention",
                              lambda q, k, v, block_size, is_causal=False: flash_attention(
                                  q, k, v, is_causal=is_causal, block_q=block_size,
                                  block_k=block_size))
    assert "rules" in failed


# --------------------------------------------------------------------------- statistics
def _estimate_result(name, fn):
    report = run_checks(get_exercise(name), fn)
    return next(r for r in report.results if r.name.startswith("unbiased"))


def test_statistical_check_accepts_unbiased_and_rejects_biased_features():
    def cos_offset_free(x, projection):  # the same layout, but cos(Wx) twice: biased
        p = x @ projection.T
        return torch.cat([p.cos(), p.cos()], -1) / math.sqrt(projection.shape[0])

    def permuted(x, projection):  # cos before sin: wrong layout, still unbiased
        p = x @ projection.T
        return torch.cat([p.cos(), p.sin()], -1) / math.sqrt(projection.shape[0])
    assert not _estimate_result("random_fourier_features", cos_offset_free).passed
    assert _estimate_result("random_fourier_features", permuted).passed

    def no_norm(x, projection):
        return torch.exp(x @ projection.T) / math.sqrt(projection.shape[0])
    assert not _estimate_result("positive_random_features", no_norm).passed


def test_random_feature_error_shrinks_with_the_number_of_features():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 200, 3, generator=g, dtype=torch.float64) * 0.5
    truth = torch.exp((x * y).sum(-1))
    errors = []
    for m in (16, 256, 4096):
        w = torch.randn(m, 3, generator=g, dtype=torch.float64)
        est = (ch15._pos_ref(x, w) * ch15._pos_ref(y, w)).sum(-1)
        errors.append(float((est - truth).abs().mean()))
    assert errors[0] > errors[1] > errors[2]


# --------------------------------------------------------------------------- targets
def test_bigbird_density_counts_blocks_by_hand():
    nb = ch11.BIGBIRD_QUESTION["num_blocks"]
    r = ch11.BIGBIRD_QUESTION["num_random"]
    # row 0 is global (all blocks); rows 1 and nb-1: global column + 2 band blocks + r random;
    # the other rows: global column + 3 band blocks + r random
    count = nb + 2 * (1 + 2 + r) + (nb - 3) * (1 + 3 + r)
    assert ch11.bigbird_density() == count / nb**2
    assert ch11.bigbird_density(seed=1) == ch11.bigbird_density(seed=2)  # layout-independent


def test_window_layers_is_the_graph_diameter():
    n, w = ch11.LAYERS_QUESTION["n"], ch11.LAYERS_QUESTION["window"]
    assert ch11.layers_to_connect(n, w) == math.ceil((n - 1) / w)


def test_flop_ratio_matches_the_formula_and_the_counter():
    from torch.utils.flop_counter import FlopCounterMode
    q = ch14.FLOP_QUESTION
    n, d, dv = q["N"], q["D"], q["Dv"]
    fq, fk = torch.empty(n, d, device="meta"), torch.empty(n, d, device="meta")
    v = torch.empty(n, dv, device="meta")
    counts = []
    for fn in (lambda: (fq @ fk.T) @ v, lambda: fq @ (fk.T @ v)):
        with FlopCounterMode(display=False) as c:
            fn()
        counts.append(c.get_total_flops())
    assert ch14.flop_ratio(**q) == counts[0] / counts[1] == n * (d + dv) / (2 * d * dv)


def test_trig_mse_matches_lemma_2_and_a_simulation():
    assert math.isclose(ch15.trig_mse(), math.exp(2) * (1 - math.exp(-4)) ** 2 / 128)
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([1.0, 0.0], dtype=torch.float64)
    w = torch.randn(20000, 64, 2, generator=g, dtype=torch.float64)
    est = math.e * torch.cos(w @ (2 * x)).mean(-1)
    mse = float(((est - math.exp(-1)) ** 2).mean())
    assert abs(mse - ch15.trig_mse()) < 0.05 * ch15.trig_mse()


def test_causal_tiles_counts_the_lower_triangle():
    blocks = ch16.TILES_QUESTION["n"] // ch16.TILES_QUESTION["block"]
    assert ch16.causal_tiles() == blocks * (blocks + 1) // 2


def test_open_ended_targets_are_inside_their_lists():
    assert ch14.tenfold_memory_n() in ch14.MEMORY_DIMS[1:-1]
    assert ch14.memory_ratio(ch14.tenfold_memory_n() // 2) < 10 <= ch14.memory_ratio(
        ch14.tenfold_memory_n())
    assert ch16.tenfold_flash_n() in ch16.FLASH_LENGTHS[1:-1]
    m = ch15.features_for_target()
    assert m in ch15.FEATURE_COUNTS[1:-1]
    assert ch15.performer_error(8) > ch15.ERROR_TARGET >= ch15.performer_error(m)
