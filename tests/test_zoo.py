"""The catalogue of every attention variant (``attention_lib.efficient.zoo``) that chapter 17 and
``benchmarks/efficient.py`` compare: each variant computes what its target says, the targets
are the exact attentions they name (checked against ``reference_attention``), and
``measure`` / ``sweep`` report consistent records."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_rejected, randn
from tolerances import assert_close

from attention_lib import reference_attention
from attention_lib.efficient import zoo
from attention_lib.masks import sliding_window_mask

WINDOW = 16


@pytest.fixture
def qkv(gen):
    return [randn(2, 2, 96, 8, gen=gen, dtype=torch.float32) for _ in range(3)]


@pytest.mark.parametrize("is_causal", [False, True])
def test_targets_are_the_attentions_they_name(is_causal, gen):
    q, k, v = (randn(1, 2, 40, 8, gen=gen) for _ in range(3))
    t = zoo.targets(q, k, v, is_causal=is_causal, window=5)
    assert_close(t["full"], reference_attention(q, k, v, is_causal=is_causal))
    assert_close(t["window"], reference_attention(q, k, v, sliding_window_mask(40, 5),
                                                  is_causal=is_causal))
    qn, kn = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    assert_close(t["normalized"], reference_attention(qn, kn, v, is_causal=is_causal, scale=1.0))


@pytest.mark.parametrize("is_causal", [False, True])
def test_every_variant_runs_and_exact_ones_equal_their_target(is_causal, qkv):
    q, k, v = qkv
    cat = zoo.catalog(head_dim=8, window=WINDOW, flash_block=32, num_features=32, bucket_size=32)
    res = zoo.measure(cat, q, k, v, is_causal=is_causal, repeats=1, window=WINDOW)
    expected = {name for name, var in cat.items() if var.causal or not is_causal}
    assert set(res) == expected and ("favor++" in res) == ("linformer" in res) == (not is_causal)
    for name, r in res.items():
        family = cat[name].family
        if family in ("exact", "sparse"):
            assert r["error_vs_target"] < 1e-5, (name, r)
        assert (r["error_vs_target"] is None) == (cat[name].target is None)
        assert r["time_s"] > 0 and r["peak_bytes"] > 0 and r["largest_bytes"] > 0
        assert r["time_min_s"] <= r["time_s"]
    # sliding window: exact for its pattern, not for full attention (N = 96 > 2 * 16 + 1)
    assert res["local"]["error_vs_full"] > 1e-3
    # the estimates are estimates: a real error against full attention
    for name in ("performer", "rfa", "linear", "uniform", "linformer", "lsh", "sinkhorn"):
        assert name not in res or res[name]["error_vs_full"] > 1e-3, name


def test_uniform_baseline_is_the_mean_of_the_visible_values(qkv):
    q, k, v = qkv
    uniform = zoo.catalog(head_dim=8)["uniform"]
    assert_close(uniform.build(96, False)(q, k, v), v.mean(-2, keepdim=True).expand_as(v))
    causal = uniform.build(96, True)(q, k, v)
    for i in (0, 5, 95):
        assert_close(causal[..., i, :], v[..., : i + 1, :].mean(-2))


def test_random_feature_variants_share_one_reproducible_projection(qkv):
    q, k, v = qkv
    a = zoo.catalog(head_dim=8, num_features=16, seed=3)["performer"].build(96, False)(q, k, v)
    b = zoo.catalog(head_dim=8, num_features=16, seed=3)["performer"].build(96, False)(q, k, v)
    c = zoo.catalog(head_dim=8, num_features=16, seed=4)["performer"].build(96, False)(q, k, v)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sweep_records_are_consistent():
    records = zoo.sweep([48, 96], names=["naive", "sdpa", "local", "linear"], repeats=1,
                        head_dim=8, window=WINDOW)
    assert len(records) == 8
    for r in records:
        assert {"name", "family", "n", "causal", "time_s", "peak_bytes", "error_vs_full",
                "error_vs_target", "speedup_vs_sdpa", "memory_vs_naive"} <= set(r)
        if r["name"] == "sdpa":
            assert r["speedup_vs_sdpa"] == 1.0
        if r["name"] == "naive":
            assert r["memory_vs_naive"] == 1.0
            # the naive path builds (B, H, N, N) float32 scores: the tracker must see them
            assert r["largest_bytes"] >= 2 * r["n"] ** 2 * 4
    seen = []
    zoo.sweep([32], names=["sdpa"], repeats=1, head_dim=8, progress=seen.append)
    assert len(seen) == 1 and seen[0].startswith("N = 32: sdpa")


def test_relative_error():
    ref = torch.tensor([3.0, 4.0])
    assert zoo.relative_error(ref, ref) == 0.0
    assert zoo.relative_error(torch.zeros(2), ref) == pytest.approx(1.0)
    assert zoo.relative_error(torch.zeros(2), torch.zeros(2)) == 0.0


CASES = {
    "unknown name": (lambda: zoo.sweep([16], names=["nope"]), ValueError,
                     r"unknown variant name\(s\) \['nope'\]; known: "),
    "bad size": (lambda: zoo.sweep([0], names=["sdpa"]), ValueError,
                 r"sizes must be an int >= 1, got 0"),
    "bad window": (lambda: zoo.catalog(window=0), ValueError,
                   r"window must be an int >= 1, got 0"),
    "bad repeats": (lambda: zoo.measure(zoo.catalog(head_dim=4), *[torch.ones(1, 1, 4, 4)] * 3,
                                        repeats=0), ValueError,
                    r"repeats must be an int >= 1, got 0"),
    "bad clock": (lambda: zoo.measure(zoo.catalog(head_dim=4), *[torch.ones(1, 1, 4, 4)] * 3,
                                      clock="gpu"), ValueError,
                  r"clock must be 'wall' or 'cpu', got 'gpu'"),
    "bad qkv": (lambda: zoo.targets(torch.ones(1, 4, 4), torch.ones(1, 4, 4),
                                    torch.ones(1, 4, 4)), ValueError, r"query must be 4-D"),
    "shape mismatch": (lambda: zoo.relative_error(torch.ones(2), torch.ones(3)), ValueError,
                       r"out and ref must have the same shape, got \(2,\) and \(3,\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_rejected_with_a_clear_message(case):
    assert_rejected(*CASES[case], case=case)


def test_sweep_cpu_clock_times_every_variant():
    records = zoo.sweep([32, 64], names=["naive", "sdpa"], repeats=3, head_dim=8, clock="cpu")
    assert {(r["name"], r["n"]) for r in records} == {(a, b) for a in ("naive", "sdpa")
                                                      for b in (32, 64)}
    assert all(r["time_s"] >= 0 and r["time_min_s"] <= r["time_s"] for r in records)
