"""The exercise checks of chapters 12 and 13 beyond what tests/test_checks.py runs for every
chapter (solutions pass, stubs fail, known mistakes get their hints):

* the efficiency tier fails a correct Linformer that builds the (N, N) scores, and nothing
  else fails; the rules tier fails the library's own functions, and nothing else fails;
* the truths of the predict-then-verify questions and of the open-ended experiments agree
  with independent computations (closed forms, a simulation, the library's best_rank_k).
"""
from __future__ import annotations

import math

import torch

from attention_course.checks import get_exercise, run_checks
from attention_course.checks.chapters import ch12_learned_sparsity as ch12
from attention_course.checks.chapters import ch13_low_rank as ch13
from attention_lib.efficient import clustered, lowrank, sinkhorn


def _failed_tiers(name, fn):
    report = run_checks(get_exercise(name), fn)
    return [r.tier for r in report.results if not r.passed], report


# --------------------------------------------------------------------------- tiers
def test_quadratic_linformer_fails_only_efficiency():
    def quadratic(query, key, value, E, F):
        scores = (query @ key.transpose(-2, -1)) @ E.T / math.sqrt(query.shape[-1])  # via N x N
        return torch.softmax(scores, dim=-1) @ (F @ value)
    failed, report = _failed_tiers("linformer_forward", quadratic)
    assert failed == ["efficiency"], report.format()
    assert "project the keys and values FIRST" in report.format()


def test_library_shortcuts_fail_only_the_rules():
    cases = {
        "lsh_buckets": lambda x, rotations: clustered.lsh_hash(x, rotations),
        "route_to_centroids": lambda x, centroids: clustered.route(x, centroids),
        "sinkhorn_log": lambda log_alpha, n_iters=20: sinkhorn.sinkhorn_normalize(log_alpha,
                                                                                  n_iters),
        "rank_k_error": lambda weights, k: lowrank.best_rank_k_error(weights, k),
        "linformer_forward": lambda query, key, value, E, F: lowrank.linformer_attention(
            query, key, value, E, F),
    }
    for name, fn in cases.items():
        failed, report = _failed_tiers(name, fn)
        assert failed == ["rules"], (name, report.format())


def test_sinkhorn_with_log_softmax_passes():
    def via_softmax(log_alpha, n_iters=20):  # another correct formulation
        out = log_alpha
        for _ in range(n_iters):
            out = torch.log_softmax(out, dim=-1)
            out = torch.log_softmax(out, dim=-2)
        return out
    assert run_checks(get_exercise("sinkhorn_log"), via_softmax).passed


# --------------------------------------------------------------------------- truths
def test_collision_probability_by_simulation():
    # an independent simulation: one Gaussian direction per round, sign test
    q = ch12.COLLISION_QUESTION
    g = torch.Generator().manual_seed(0)
    trials, d = 200_000, 3
    x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    y = torch.tensor([math.cos(q["angle"]), math.sin(q["angle"]), 0.0], dtype=torch.float64)
    r = torch.randn(trials, q["rounds"], d, generator=g, dtype=torch.float64)
    met = ((r @ x > 0) == (r @ y > 0)).any(-1).double().mean().item()
    assert abs(met - ch12.collision_rounds_truth()) < 0.005  # ~5 standard errors
    assert abs(ch12.collision_rounds_truth() - 19 / 27) < 1e-12


def test_energy_rank_closed_form():
    q = ch13.ENERGY_QUESTION
    n, a = q["n"], q["self_weight"]
    # eigenvalues: 1 for the all-ones vector, a for the n - 1 vectors orthogonal to it
    energy = [1.0] + [a * a] * (n - 1)
    total, acc, r = sum(energy), 0.0, 0
    while acc < q["energy"] * total:
        acc, r = acc + energy[r], r + 1
    assert ch13.energy_rank_truth() == r == 13
    assert acc - q["energy"] * total > 1e-3  # not a borderline count


def test_lsh_rounds_target_is_inside_the_list_and_errors_fall():
    truth = ch12.rounds_for_target()
    errors = [ch12.lsh_error(r) for r in ch12.ROUNDS if r <= truth]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert ch12.ROUNDS[0] < truth < ch12.ROUNDS[-1]
    assert ch12.lsh_error(truth) <= ch12.ROUNDS_TARGET < ch12.lsh_error(truth // 2)


def test_rank_for_target_matches_best_rank_k():
    k = ch13.rank_for_target()
    g = torch.Generator().manual_seed(1300)
    shape = (ch13.RANK_COUNT, ch13.RANK_N, ch13.RANK_D)
    q = torch.randn(shape, generator=g, dtype=torch.float64) * ch13.RANK_SCALE
    kk = torch.randn(shape, generator=g, dtype=torch.float64) * ch13.RANK_SCALE
    p = torch.softmax(q @ kk.mT / math.sqrt(ch13.RANK_D), dim=-1)
    err = lambda r: lowrank.best_rank_k_error(p, r).mean().item()
    assert err(k) <= ch13.RANK_TARGET < err(k - 1)
    assert 0.2 * ch13.RANK_N < k < 0.8 * ch13.RANK_N  # not at an end of the range
    # a student's own draws (another seed) land well within the tolerance
    other = torch.Generator().manual_seed(7)
    q2 = torch.randn(shape, generator=other, dtype=torch.float64) * ch13.RANK_SCALE
    k2 = torch.randn(shape, generator=other, dtype=torch.float64) * ch13.RANK_SCALE
    p2 = torch.softmax(q2 @ k2.mT / math.sqrt(ch13.RANK_D), dim=-1)
    s2 = torch.linalg.svdvals(p2).square()
    mean_err = ((s2.sum(-1, keepdim=True) - s2.cumsum(-1)).clamp_min(0)
                / s2.sum(-1, keepdim=True)).sqrt().mean(0)
    k_other = int((mean_err <= ch13.RANK_TARGET).nonzero()[0, 0]) + 1
    assert abs(k_other - k) <= ch13.RANK_TOLERANCE * k / 2


def test_float_buckets_are_told_to_stay_integers():
    def float_buckets(x, rotations):
        return clustered.lsh_hash(x, rotations).float()
    report = run_checks(get_exercise("lsh_buckets"), float_buckets)
    assert not report.results[0].passed and "expected torch.int64" in report.results[0].message
