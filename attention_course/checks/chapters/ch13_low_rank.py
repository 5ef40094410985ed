"""Exercises of chapter 13, "Low-rank attention" (``exercises/13_low_rank.ipynb``).

1. ``rank_k_error`` -- the relative Frobenius error of the best rank-k approximation, from
   the singular values (Eckart and Young, 1936).
2. ``linformer_forward`` -- Linformer attention softmax(Q (E K)^T / sqrt(D)) (F V) with given
   projections E and F, never building the (Nq, Nk) matrix.
3. ``answer_energy_rank`` -- predict: how many singular values hold 90% of the energy of an
   attention matrix that mixes uniform attention and attention to oneself?
4. ``my_rank_for_error`` -- open-ended: which rank k does random attention at scale 2 need for
   a relative error of 0.2?

The references are :mod:`attention_lib.efficient.lowrank`'s ``best_rank_k_error``,
``linformer_attention`` and ``energy_rank``, in float64. Wang et al. (2020), "Linformer".
"""
from __future__ import annotations

import math

import torch

from attention_lib.efficient.lowrank import (
    attention_spectrum,
    best_rank_k_error,
    energy_rank,
    linformer_attention,
)

from ..cases import generator, integer, randn
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check
from ._part3 import (
    DIM_HINT,
    NO_SCALE_HINT,
    dtname,
    half_of_scores_resident,
    qkv_case,
    quarter_of_scores,
)

ASSIGNMENT_NAME = "13_low_rank"


# =========================================================================== 1. rank-k error
def _rk_ref(weights, k):
    return best_rank_k_error(weights, k)


def _rk_variant(how):
    def fn(weights, k):
        s = torch.linalg.svdvals(weights)  # (..., R)
        s2 = s * s
        if how == "not squared":
            return (s[..., k:].sum(-1) / s.sum(-1)).sqrt()
        if how == "no sqrt":
            return s2[..., k:].sum(-1) / s2.sum(-1)
        if how == "off by one":
            return (s2[..., k + 1:].sum(-1) / s2.sum(-1)).sqrt()
        if how == "absolute":
            return s2[..., k:].sum(-1).sqrt()
        return s[..., k] / s[..., 0]  # "spectral"
    return fn


RK_MISTAKES = [
    Mistake("singular values not squared",
            "the energy is the sum of the SQUARED singular values: ||P||_F^2 = sum_i s_i^2. "
            "Your output matches sqrt(sum_{i>k} s_i / sum_i s_i)",
            _rk_variant("not squared")),
    Mistake("no square root",
            "your output is the share of the energy that is lost, (sum_{i>k} s_i^2) / "
            "(sum_i s_i^2); the relative Frobenius error is its square root",
            _rk_variant("no sqrt")),
    Mistake("off by one",
            "off by one: the best rank-k matrix keeps s_1 ... s_k, and the error sums the "
            "others, which are s[k:] in Python (0-based), not s[k + 1:]",
            _rk_variant("off by one")),
    Mistake("absolute error",
            "that is the ABSOLUTE error ||P - P_k||_F = sqrt(sum_{i>k} s_i^2); divide by "
            "||P||_F = sqrt(sum_i s_i^2) for the relative error",
            _rk_variant("absolute")),
    Mistake("spectral norm",
            "s_{k+1} / s_1 is the relative error in the SPECTRAL norm; the exercise asks for the "
            "Frobenius norm, which sums the squares of ALL the discarded singular values",
            _rk_variant("spectral")),
]


def _attention_matrices(g, lead, nq, nk, dtype, scale=1.5):
    d = 4
    q = randn(g, *lead, nq, d, scale=scale)
    k = randn(g, *lead, nk, d, scale=scale)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1).to(dtype)


def _rk_case(seed, dtype, *, lead=None, nq=None, nk=None, k=None, grad=False, weights=None):
    g = generator(seed)
    lead = (integer(g, 1, 3),) if lead is None else tuple(lead)
    nq = integer(g, 2, 8) if nq is None else nq
    nk = integer(g, 2, 8) if nk is None else nk
    w = _attention_matrices(g, lead, nq, nk, dtype) if weights is None else weights.to(dtype)
    r = min(w.shape[-2:])
    kk = integer(g, 1, max(1, r - 1)) if k is None else k
    case = Case((w, kk), label=f"weights {tuple(w.shape)} (softmax attention matrices), "
                               f"{dtname(dtype)}, k={kk}")
    if grad:
        case.wrt, case.upstream = (0,), randn(g, *w.shape[:-2], dtype=dtype)
    return case


def _rk_checks():
    f64, f32 = torch.float64, torch.float32
    ones = torch.full((1, 6, 6), 1.0 / 6, dtype=torch.float64)
    return [
        output_check("output shape (...,): one number per matrix, dtype like weights", "shape",
                     lambda: [_rk_case(1, f32, lead=(2, 3), nq=5, nk=4, k=2)], values=False),
        output_check("values, float64, square and rectangular matrices", "values",
                     lambda: [_rk_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, float32", "values",
                     lambda: [_rk_case(21, f32, nq=7, nk=5, k=1), _rk_case(22, f32, k=2, nq=6,
                                                                           nk=6)]),
        output_check("k = 0 gives 1; k >= min(Nq, Nk) gives 0; a single 2-D matrix gives a "
                     "0-d tensor", "edge cases",
                     lambda: [_rk_case(31, f64, nq=4, nk=5, k=0), _rk_case(32, f64, nq=3, nk=5,
                                                                           k=3),
                              _rk_case(33, f64, lead=(), nq=5, nk=5, k=2)]),
        output_check("uniform attention (rank one): error 0 from k = 1 on", "edge cases",
                     lambda: [_rk_case(34, f64, weights=ones, k=1)]),
        grad_check("gradient of weights (through the singular values)",
                   lambda: [_rk_case(41, f64, lead=(2,), nq=5, nk=6, k=2, grad=True)]),
        trace_check("built from torch.linalg, not the library's best_rank_k_error", "rules",
                    lambda: [_rk_case(51, f64)],
                    forbid=("attention_lib.efficient.lowrank.best_rank_k_error",
                            "attention_lib.efficient.lowrank.best_rank_k",
                            "attention_lib.efficient.lowrank.energy_rank")),
    ]


RANK_K_ERROR = Exercise(
    "rank_k_error", "function",
    "Relative Frobenius error of the best rank-k approximation (Eckart-Young), from the SVD.",
    _rk_checks(), signature="rank_k_error(weights, k)", reference=_rk_ref, mistakes=RK_MISTAKES,
    forbid=("attention_lib.efficient.lowrank.best_rank_k_error",))


# =========================================================================== 2. Linformer
def _lf_ref(query, key, value, E, F):
    return linformer_attention(query, key, value, E, F)


def _lf_variant(how):
    def fn(query, key, value, E, F):
        d, kp = query.shape[-1], E.shape[-2]
        ek, fv = E @ key, F @ value  # (B, H, k, D), (B, H, k, Dv)
        scale = {"no scale": 1.0, "scale by k": kp ** -0.5}.get(how, d ** -0.5)
        if how == "swapped":
            ek, fv = F @ key, E @ value
        q = E @ query if how == "queries projected" else query
        s = q @ ek.transpose(-2, -1) * scale  # (B, H, Nq, k)
        return torch.softmax(s, dim=-2 if how == "dim" else -1) @ fv
    return fn


def _nq_is_nk(case: Case) -> bool:
    return case.meta.get("N") == case.meta.get("Nk")


LF_MISTAKES = [
    Mistake("no scale", NO_SCALE_HINT, _lf_variant("no scale")),
    Mistake("scale by k",
            "the scale is 1/sqrt(D), D = the head dimension (last axis of the query), not "
            "1/sqrt(k): projecting the keys changes how many there are, not their size",
            _lf_variant("scale by k")),
    Mistake("E and F swapped",
            "E projects the KEYS and F the VALUES: softmax(Q (E K)^T / sqrt(D)) (F V)",
            _lf_variant("swapped")),
    Mistake("softmax over the wrong dim", DIM_HINT, _lf_variant("dim")),
    Mistake("queries projected",
            "you projected the queries too: only the keys and values are projected along the "
            "sequence axis (to k positions); every query keeps its own output row, so the "
            "output is (B, H, Nq, Dv)", _lf_variant("queries projected"), applies=_nq_is_nk),
]


def _lf_case(seed, dtype, *, sizes=None, kp=None, grad=False, eye=False):
    g = generator(seed + 1300)
    c = qkv_case(seed, dtype, sizes=sizes, ranges=dict(N=(1, 8), Nk=(2, 9)),
                 same_n=sizes is not None and "Nk" not in sizes, grad=grad)
    nk = c.meta["Nk"]
    if eye:
        kk = nk
        e = torch.eye(nk, dtype=dtype)
        f = e.clone()
    else:
        kk = kp if kp is not None else integer(g, 1, nk)
        e = randn(g, kk, nk, dtype=dtype, scale=kk ** -0.5)
        f = randn(g, kk, nk, dtype=dtype, scale=kk ** -0.5)
    c.args = c.args + (e, f)
    c.label += f", E and F ({kk}, {nk})" + (" = the identity" if eye else "")
    c.meta["k"] = kk
    if grad:
        c.wrt = (0, 1, 2, 3, 4)
    return c


def _lf_checks():
    f64, f32 = torch.float64, torch.float32
    big = dict(B=1, H=2, N=2048, D=8, Dv=8)
    return [
        output_check("output shape (B, H, Nq, Dv) and dtype", "shape",
                     lambda: [_lf_case(1, f32, sizes=dict(B=2, H=3, N=6, D=4, Dv=5), kp=3)],
                     values=False),
        output_check("values, float64, self-attention (Nq = Nk)", "values",
                     lambda: [_lf_case(11, f64, sizes=dict(B=2, H=2, N=7, D=5, Dv=3), kp=3),
                              _lf_case(12, f64, sizes=dict(B=1, H=3, N=8, D=3, Dv=4), kp=2)]),
        output_check("values, random sizes, Nq and Nk may differ", "values",
                     lambda: [_lf_case(s, f64) for s in (13, 14)]),
        output_check("values, float32", "values",
                     lambda: [_lf_case(21, f32, sizes=dict(B=2, H=2, N=9, D=6, Dv=2), kp=4)]),
        output_check("E = F = I (k = N) is softmax attention; k = 1: every query gets F V",
                     "edge cases",
                     lambda: [_lf_case(31, f64, sizes=dict(B=1, H=2, N=6, D=3, Dv=2), eye=True),
                              _lf_case(32, f64, sizes=dict(B=2, H=1, N=5, D=4, Dv=3), kp=1)]),
        grad_check("gradients of query, key, value, E and F (E and F are learned)",
                   lambda: [_lf_case(41, f64, sizes=dict(B=1, H=2, N=5, D=3, Dv=2), kp=3,
                                     grad=True)]),
        trace_check("no (Nq, Nk) tensor: N = 2048, k = 16", "efficiency",
                    lambda: [_lf_case(51, f64, sizes=big, kp=16)], max_bytes=quarter_of_scores,
                    max_rss=half_of_scores_resident,
                    explain="you built the (N, N) scores (e.g. (Q K^T) E^T) or another tensor "
                            "as large: project the keys and values FIRST, E K (k, D) and F V "
                            "(k, Dv); then Q (E K)^T is only (N, k)"),
        trace_check("built from torch operations, not the library's Linformer", "rules",
                    lambda: [_lf_case(61, f64, sizes=dict(B=1, H=2, N=6, D=3, Dv=2), kp=2)],
                    forbid=("attention_lib.efficient.lowrank.linformer_attention",
                            "attention_lib.efficient.lowrank.linformer_weights",
                            "attention_lib.functional.reference_attention",
                            "torch.nn.functional.scaled_dot_product_attention",
                            "op:scaled_dot_product")),
    ]


LINFORMER_FORWARD = Exercise(
    "linformer_forward", "function",
    "Linformer attention softmax(Q (E K)^T / sqrt(D)) (F V) with given E, F, in O(N k).",
    _lf_checks(), signature="linformer_forward(query, key, value, E, F)", reference=_lf_ref,
    mistakes=LF_MISTAKES, forbid=("attention_lib.efficient.lowrank.linformer_attention",))


# =========================================================================== 3. answer
#: P = (1 - self_weight) * uniform + self_weight * identity, N x N.
ENERGY_QUESTION = dict(n=16, self_weight=0.25, energy=0.9)


def energy_question_matrix() -> torch.Tensor:
    q = ENERGY_QUESTION
    n, a = q["n"], q["self_weight"]
    return (1 - a) * torch.full((n, n), 1.0 / n, dtype=torch.float64) \
        + a * torch.eye(n, dtype=torch.float64)


def energy_rank_truth() -> float:
    return float(energy_rank(energy_question_matrix(), ENERGY_QUESTION["energy"]))


ANSWER_ENERGY_RANK = Exercise(
    "answer_energy_rank", "answer",
    "Predict the number of singular values holding 90% of the energy of 0.75 U + 0.25 I "
    "(N = 16).",
    [answer_check("your prediction matches the count from the singular values",
                  energy_rank_truth, rtol=0.0, atol=0.5,
                  wrong=[(1.0, "the largest singular value (1, for the all-ones direction) "
                               "holds only 1 / (1 + 15 / 16) of the energy, about 52%: the 15 "
                               "small ones, 0.25 each, together hold the rest"),
                         (16.0, "not all are needed: 90% of the energy is reached before the "
                                "last few of the 15 equal small singular values"),
                         (12.0, "close: you counted the small singular values that are needed, "
                                "but not the large one")])],
    signature="answer_energy_rank = <int>")


# =========================================================================== 4. experiment
RANK_SCALE, RANK_TARGET, RANK_N, RANK_D, RANK_COUNT = 2.0, 0.2, 128, 32, 8
RANK_TOLERANCE = 0.15  # relative: the seeds of the student's draws differ from ours


def mean_rank_k_errors(seed: int = 1300) -> torch.Tensor:
    """(N,) mean best rank-k error over RANK_COUNT random attention matrices at RANK_SCALE,
    entry j for k = j + 1."""
    g = generator(seed)
    shape = (RANK_COUNT, RANK_N, RANK_D)
    q, k = randn(g, *shape, scale=RANK_SCALE), randn(g, *shape, scale=RANK_SCALE)
    p = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(RANK_D), dim=-1)
    s2 = attention_spectrum(p).square()  # (count, N), one SVD per matrix
    total = s2.sum(-1, keepdim=True)
    tail = (total - s2.cumsum(-1)).clamp_min(0)  # entry j: sum_{i > j + 1} s_i^2
    return (tail / total).sqrt().mean(0)  # (N,)


_RANK = {}


def rank_for_target() -> int:
    if "k" not in _RANK:
        err = mean_rank_k_errors()
        _RANK["k"] = int((err <= RANK_TARGET).nonzero()[0, 0]) + 1
    return _RANK["k"]


def _judge_rank_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the rank you measured")
    if bad:
        return bad
    if value != int(value) or not 1 <= value <= RANK_N:
        return Verdict(False, f"{value:g} is not a rank between 1 and N = {RANK_N}")
    return Verdict(True, f"k = {int(value)}")


def _judge_rank_value(ex, cases, outcomes):
    v = _judge_rank_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = rank_for_target()
    if abs(value - truth) > RANK_TOLERANCE * truth:
        side = "too small" if value < truth else "too large"
        return Verdict(False, f"k = {int(value)} is {side}: the mean best rank-k error of "
                              f"random attention at scale {RANK_SCALE:g} crosses "
                              f"{RANK_TARGET} {'later' if value < truth else 'earlier'}",
                       hint="average the error over the matrices first, then take the "
                            "SMALLEST k whose mean error is <= the target; check your "
                            "rank_k_error first (its check must pass)")
    return Verdict(True, f"k = {int(value)} agrees with the measurement (within "
                         f"{RANK_TOLERANCE:.0%})")


_ONE = [Case(label="the value of my_rank_for_error")]
MY_RANK_FOR_ERROR = Exercise(
    "my_rank_for_error", "experiment",
    "Open-ended: which rank k does random attention at scale 2 need for a relative error of "
    "0.2?",
    [Check("a rank between 1 and N = 128", "shape", _ONE, _judge_rank_form, probe="value"),
     Check("agrees with the measurement within 15%", "values", _ONE, _judge_rank_value,
           probe="value")],
    signature="my_rank_for_error = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: low-rank attention",
    [RANK_K_ERROR, LINFORMER_FORWARD, ANSWER_ENERGY_RANK, MY_RANK_FOR_ERROR]))
