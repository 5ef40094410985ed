"""Exercises of chapter 15, "Random feature attention" (``exercises/15_random_features.ipynb``).

1. ``random_fourier_features`` -- sin/cos features of the Gaussian kernel (Rahimi and Recht,
   2007); unbiasedness checked statistically with a fixed generator.
2. ``positive_random_features`` -- the positive features of FAVOR+ for exp(x . y)
   (Choromanski et al., 2021, Lemma 1); unbiasedness checked the same way.
3. ``performer_attention_per_head`` -- Performer attention with one random projection per head.
4. ``answer_trig_mse`` -- predict: the Lemma 2 mean squared error of the trigonometric estimator.
5. ``my_performer_features`` -- open-ended: how many features for a 20% error?

The references are :mod:`attention_lib.efficient.random_features`' functions, in float64.
"""
from __future__ import annotations

import math

import torch

from attention_lib.efficient.random_features import (
    gaussian_rff,
    performer_attention,
    random_projection,
    softmax_kernel_features,
    softmax_kernel_mse,
)
from attention_lib.functional import reference_attention

from ..cases import generator, randn
from ..compare import as_tensor
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import (
    answer_check,
    grad_check,
    measured_number,
    number_of,
    output_check,
    status_problem,
    trace_check,
)
from ._part3 import (
    NORMALISER_HINT,
    QUADRATIC_HINT,
    dtname,
    half_of_scores_resident,
    qkv_case,
    quarter_of_scores,
)

ASSIGNMENT_NAME = "15_random_features"

_NO_SQRT_M_HINT = ("the features are not divided by sqrt(m): phi(x) . phi(y) is then a SUM over "
                   "the m frequencies instead of an average, m times too large")


# =========================================================================== helpers
def _x_w_case(seed, dtype, *, sizes=None, grad=False, scale=1.0):
    """x (..., D) and a projection (m, D) with N(0, 1) rows."""
    g = generator(seed)
    s = sizes or dict(B=int(torch.randint(1, 3, (), generator=g)),
                      N=int(torch.randint(1, 6, (), generator=g)),
                      D=int(torch.randint(1, 6, (), generator=g)),
                      m=int(torch.randint(1, 9, (), generator=g)))
    x = randn(g, s["B"], s["N"], s["D"], dtype=dtype, scale=scale)
    w = randn(g, s["m"], s["D"], dtype=dtype)
    case = Case((x, w), label=f"x ({s['B']}, {s['N']}, {s['D']}), projection ({s['m']}, "
                              f"{s['D']}), {dtname(dtype)}", meta=dict(s))
    if grad:
        case.wrt = (0,)
    return case


def _pairs_case(seed, m, d=3, pairs=16, scale=0.5):
    """x and y stacked as (2, P, D), and a projection (m, D) drawn with a fixed generator."""
    g = generator(seed)
    xy = randn(g, 2, pairs, d, scale=scale)
    w = random_projection(m, d, generator=generator(seed + 1), dtype=torch.float64)
    return Case((xy, w), label=f"{pairs} pairs (x, y) stacked as (2, {pairs}, {d}), projection "
                                f"({m}, {d}) drawn with a fixed generator, float64",
                meta={"m": m})


def _estimate_check(name, kernel, spread, what):
    """Values tier: phi(x) . phi(y), averaged over m frequencies, estimates ``kernel(x, y)``.

    Passes when the mean absolute error over the pairs is below 4 standard errors,
    ``4 spread / sqrt(m)`` (``spread`` bounds the standard deviation of one frequency's term).
    """
    def judge(ex, cases, outcomes):
        for case, oc in zip(cases, outcomes):
            bad = status_problem(ex, oc)
            if bad:
                return bad
            out, msg = as_tensor(oc.get("output"))
            if out is None:
                return Verdict(False, msg)
            xy = case.args[0]
            if out.dim() < 2 or tuple(out.shape[:2]) != tuple(xy.shape[:2]):
                return Verdict(False, f"features of shape {tuple(out.shape)} for x of shape "
                                      f"{tuple(xy.shape)}: expected (2, {xy.shape[1]}, F)")
            est = (out[0].double() * out[1].double()).sum(-1)  # (P,)
            truth = kernel(xy[0], xy[1])
            err = float((est - truth).abs().mean())
            bound = 4 * spread / math.sqrt(case.meta["m"])
            if not err <= bound:
                ratio = float(est.mean() / truth.mean())
                return Verdict(False, f"phi(x) . phi(y) does not estimate {what}: mean absolute "
                                      f"error {err:.3g} over {len(truth)} pairs with m = "
                                      f"{case.meta['m']} frequencies (allowed: {bound:.3g}); "
                                      f"on average the estimate is {ratio:.3g} times the kernel")
        return Verdict(True, "mean absolute error below 4 standard errors")
    return Check(name, "values", lambda: [_pairs_case(7, 2048)], judge, probe="call")


# =========================================================================== 1. RFF
def _rff_ref(x, projection):
    return gaussian_rff(x, projection)


def _sincos(x, w, scale, order="sc"):
    p = x @ w.transpose(-2, -1)  # (..., m)
    parts = [torch.sin(p), torch.cos(p)] if order == "sc" else [torch.cos(p), torch.sin(p)]
    return torch.cat(parts, -1) * scale(w.shape[0])


RFF_MISTAKES = [
    Mistake("no 1/sqrt(m)", _NO_SQRT_M_HINT, lambda x, projection: _sincos(
        x, projection, lambda m: 1.0)),
    Mistake("sqrt(2/m)", "sqrt(2/m) is the scale of the single-cosine features cos(w.x + b); "
                         "with both sin and cos, sin^2 + cos^2 = 1 and the scale is 1/sqrt(m)",
            lambda x, projection: _sincos(x, projection, lambda m: math.sqrt(2.0 / m))),
    Mistake("cos before sin", "the order is [sin(W x), cos(W x)]: the m sines first, then the "
                              "m cosines (the kernel estimate is the same, the layout is not)",
            lambda x, projection: _sincos(x, projection, lambda m: m ** -0.5, order="cs")),
]


def _gauss(x, y):
    return torch.exp(-0.5 * ((x - y) ** 2).sum(-1))


def _rff_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (..., 2m) and dtype", "shape",
                     lambda: [_x_w_case(1, f32, sizes=dict(B=2, N=3, D=4, m=5))], values=False),
        output_check("values, float64", "values", lambda: [_x_w_case(s, f64) for s in (11, 12)]),
        output_check("values, float32", "values", lambda: [_x_w_case(21, f32)]),
        _estimate_check("unbiased: phi(x) . phi(y) estimates exp(-|x - y|^2 / 2) (m = 2048)",
                        _gauss, 1.0, "the Gaussian kernel"),
        output_check("one frequency (m = 1) and x = 0", "edge cases",
                     lambda: [_x_w_case(31, f64, sizes=dict(B=1, N=2, D=3, m=1)),
                              _x_w_case(32, f64, sizes=dict(B=1, N=2, D=2, m=4), scale=0.0)]),
        grad_check("gradient of x", lambda: [_x_w_case(41, f64, grad=True)]),
        trace_check("built from torch operations, not the library's features", "rules",
                    lambda: [_x_w_case(51, f64)],
                    forbid=("attention_lib.efficient.random_features.gaussian_rff",
                            "attention_lib.efficient.random_features.softmax_kernel_features",
                            "attention_lib.efficient.random_features.rfa_features")),
    ]


RANDOM_FOURIER_FEATURES = Exercise(
    "random_fourier_features", "function",
    "Random Fourier features m^{-1/2} [sin(Wx), cos(Wx)] of the Gaussian kernel.",
    _rff_checks(), signature="random_fourier_features(x, projection)", reference=_rff_ref,
    mistakes=RFF_MISTAKES,
    forbid=("attention_lib.efficient.random_features.gaussian_rff",))


# =========================================================================== 2. positive
def _pos_ref(x, projection):
    return softmax_kernel_features(x, projection, kind="positive")


def _pos_variant(half, scale=True):
    def fn(x, projection):
        p = x @ projection.transpose(-2, -1)  # (..., m)
        sq = (x * x).sum(-1, keepdim=True)  # (..., 1)
        out = torch.exp(p + half * sq)
        return out / math.sqrt(projection.shape[0]) if scale else out
    return fn


POS_MISTAKES = [
    Mistake("no 1/sqrt(m)", _NO_SQRT_M_HINT, _pos_variant(-0.5, scale=False)),
    Mistake("no norm term", "you left out exp(-|x|^2 / 2): E[exp(w . x) exp(w . y)] = "
                            "exp(|x + y|^2 / 2), not exp(x . y); the factor exp(-|x|^2 / 2) of "
                            "each side removes the extra exp(|x|^2 / 2 + |y|^2 / 2)",
            _pos_variant(0.0)),
    Mistake("plus instead of minus", "the norm term is exp(MINUS |x|^2 / 2)",
            _pos_variant(0.5)),
    Mistake("missing 1/2", "the norm term is exp(-|x|^2 / 2): you dropped the 1/2",
            _pos_variant(-1.0)),
]


def _softmax_kernel(x, y):
    return torch.exp((x * y).sum(-1))


def _pos_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (..., m) and dtype", "shape",
                     lambda: [_x_w_case(1, f32, sizes=dict(B=2, N=3, D=4, m=5))], values=False),
        output_check("values, float64", "values",
                     lambda: [_x_w_case(s, f64, scale=0.7) for s in (11, 12)]),
        output_check("values, float32", "values", lambda: [_x_w_case(21, f32, scale=0.7)]),
        _estimate_check("unbiased: phi(x) . phi(y) estimates exp(x . y) (m = 2048)",
                        _softmax_kernel, 3.0, "the softmax kernel exp(x . y)"),
        output_check("one frequency (m = 1) and x = 0 (every feature is m^(-1/2))",
                     "edge cases",
                     lambda: [_x_w_case(31, f64, sizes=dict(B=1, N=2, D=3, m=1)),
                              _x_w_case(32, f64, sizes=dict(B=1, N=2, D=2, m=4), scale=0.0)]),
        grad_check("gradient of x", lambda: [_x_w_case(41, f64, grad=True, scale=0.7)]),
        trace_check("built from torch operations, not the library's features", "rules",
                    lambda: [_x_w_case(51, f64)],
                    forbid=("attention_lib.efficient.random_features.softmax_kernel_features",
                            "attention_lib.efficient.random_features.performer_features")),
    ]


POSITIVE_RANDOM_FEATURES = Exercise(
    "positive_random_features", "function",
    "FAVOR+ positive features m^{-1/2} exp(Wx - |x|^2 / 2), unbiased for exp(x . y).",
    _pos_checks(), signature="positive_random_features(x, projection)", reference=_pos_ref,
    mistakes=POS_MISTAKES,
    forbid=("attention_lib.efficient.random_features.softmax_kernel_features",))


# =========================================================================== 3. per head
def _ph_ref(query, key, value, projections):
    return performer_attention(query, key, value, projections, kind="positive", eps=0.0)


def _ph_variant(*, proj=lambda p: p, qk_scale=lambda d: d ** -0.25, normalise=True):
    def fn(query, key, value, projections):
        w = proj(projections)  # (H, m, D) or (m, D)
        r = qk_scale(query.shape[-1])
        q, k = query * r, key * r

        def phi(x):
            return torch.exp(x @ w.transpose(-2, -1) - 0.5 * (x * x).sum(-1, keepdim=True))
        pq, pk = phi(q), phi(k)  # (B, H, N, m)
        num = pq @ (pk.transpose(-2, -1) @ value)  # (B, H, Nq, Dv)
        if not normalise:
            return num / w.shape[-2]
        den = pq @ pk.sum(-2).unsqueeze(-1)  # (B, H, Nq, 1)
        return num / den
    return fn


PH_MISTAKES = [
    Mistake("shared projection",
            "every head uses the SAME random projection (projections[0]): head h must use its "
            "own projections[h], so that the heads' estimation errors are independent",
            _ph_variant(proj=lambda p: p[0])),
    Mistake("no normaliser", NORMALISER_HINT, _ph_variant(normalise=False)),
    Mistake("no scale", "your output estimates softmax(q k^T) WITHOUT the 1/sqrt(D) scale: "
                        "multiply q and k by D^(-1/4) before the feature map, so that "
                        "(q D^(-1/4)) . (k D^(-1/4)) = q . k / sqrt(D)",
            _ph_variant(qk_scale=lambda d: 1.0)),
    Mistake("scaled twice", "q and k are each multiplied by D^(-1/4), not by D^(-1/2): the "
                            "product then carries 1/sqrt(D) once",
            _ph_variant(qk_scale=lambda d: d ** -0.5)),
]


def _ph_case(seed, dtype, *, sizes=None, m=None, grad=False):
    g = generator(seed + 700)
    c = qkv_case(seed, dtype, sizes=sizes, ranges=dict(H=(2, 3), N=(1, 7), Nk=(1, 8)),
                 same_n=False, grad=grad)
    mm = m or int(torch.randint(2, 9, (), generator=g))
    w = randn(g, c.meta["H"], mm, c.meta["D"], dtype=dtype)
    c.args = c.args + (w,)
    c.label += f", projections ({c.meta['H']}, {mm}, {c.meta['D']})"
    return c


def _ph_checks():
    f64, f32 = torch.float64, torch.float32
    big = dict(B=1, H=2, N=2048, Nk=2048, D=8, Dv=8)
    return [
        output_check("output shape (B, H, Nq, Dv) and dtype", "shape",
                     lambda: [_ph_case(1, f32, sizes=dict(B=2, H=3, N=4, Nk=5, D=6, Dv=3))],
                     values=False),
        output_check("values, float64", "values", lambda: [_ph_case(s, f64) for s in (11, 12)]),
        output_check("values, float32", "values", lambda: [_ph_case(21, f32)]),
        output_check("head h uses projections[h]: four heads, one frequency each", "values",
                     lambda: [_ph_case(31, f64, m=1, sizes=dict(B=1, H=4, N=3, Nk=4, D=2,
                                                                  Dv=2))]),
        output_check("one query, one key", "edge cases",
                     lambda: [_ph_case(41, f64, sizes=dict(B=1, H=2, N=1, Nk=1, D=3, Dv=2))]),
        grad_check("gradients of query, key and value",
                   lambda: [_ph_case(51, f64, grad=True, sizes=dict(B=1, H=2, N=3, Nk=4, D=3,
                                                                    Dv=2))]),
        trace_check("no (Nq, Nk) tensor: N = 2048", "efficiency",
                    lambda: [_ph_case(61, f64, m=16, sizes=big)], max_bytes=quarter_of_scores,
                    max_rss=half_of_scores_resident,
                    explain=QUADRATIC_HINT),
        trace_check("built from torch operations, not the library's Performer", "rules",
                    lambda: [_ph_case(71, f64)],
                    forbid=("attention_lib.efficient.random_features.performer_attention",
                            "attention_lib.efficient.random_features.performer_features",
                            "attention_lib.efficient.random_features.softmax_kernel_features",
                            "attention_lib.efficient.linear.kernel_attention")),
    ]


PERFORMER_ATTENTION_PER_HEAD = Exercise(
    "performer_attention_per_head", "function",
    "Performer (FAVOR+) attention estimating softmax(q k^T / sqrt(D)) v, one projection per "
    "head.",
    _ph_checks(), signature="performer_attention_per_head(query, key, value, projections)",
    reference=_ph_ref, mistakes=PH_MISTAKES,
    forbid=("attention_lib.efficient.random_features.performer_attention",))


# =========================================================================== 4. answer
MSE_QUESTION = dict(x=(1.0, 0.0), y=(-1.0, 0.0), m=64)


def trig_mse() -> float:
    q = MSE_QUESTION
    x = torch.tensor(q["x"], dtype=torch.float64)
    y = torch.tensor(q["y"], dtype=torch.float64)
    return float(softmax_kernel_mse(x, y, q["m"], kind="trig"))


ANSWER_TRIG_MSE = Exercise(
    "answer_trig_mse", "answer",
    "Predict the MSE of the trigonometric estimate of exp(x . y), x = (1, 0), y = (-1, 0), "
    "m = 64.",
    [answer_check("your prediction matches Lemma 2 (and the simulation)", trig_mse, rtol=0.02,
                  wrong=[(0.0, "that is the POSITIVE estimator's MSE, which vanishes here "
                               "because x + y = 0; the question is about the trigonometric one"),
                         (2 * trig_mse(), "with m frequencies the trigonometric map has 2m "
                                          "features: the factor is 1 / (2m), not 1 / m"),
                         (math.exp(-1.0), "that is the kernel exp(x . y) itself, not the mean "
                                          "squared error of its estimate")])],
    signature="answer_trig_mse = <number>")


# =========================================================================== 5. experiment
FEATURE_COUNTS = tuple(2**i for i in range(3, 13))  # 8 ... 4096
ERROR_TARGET = 0.2


def performer_error(m: int, draws: int = 6, seed: int = 1000) -> float:
    """Mean relative error of shared-projection Performer attention on (1, 1, 64, 16) inputs
    (queries and keys N(0, 0.25), values N(0, 1)), over ``draws`` projections."""
    g = generator(seed + m)
    q, k, v = (torch.randn(1, 1, 64, 16, generator=g, dtype=torch.float64) for _ in range(3))
    q, k = q * 0.5, k * 0.5
    exact = reference_attention(q, k, v)
    errs = []
    for _ in range(draws):
        w = random_projection(m, 16, generator=g, dtype=torch.float64)
        approx = performer_attention(q, k, v, w)
        errs.append(float((approx - exact).norm() / exact.norm()))
    return sum(errs) / len(errs)


_FEAT = {}


def features_for_target() -> int:
    if "m" not in _FEAT:
        _FEAT["m"] = next((m for m in FEATURE_COUNTS if performer_error(m) <= ERROR_TARGET),
                          FEATURE_COUNTS[-1])
    return _FEAT["m"]


def _judge_feat_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the number of features")
    if bad:
        return bad
    if value not in FEATURE_COUNTS:
        return Verdict(False, f"{value:g} is not one of the feature counts of the experiment "
                              f"(8, 16, ..., 4096)")
    return Verdict(True, f"m = {int(value)}")


def _judge_feat_value(ex, cases, outcomes):
    v = _judge_feat_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = features_for_target()
    if not truth / 2 <= value <= truth * 2:
        side = "too small" if value < truth else "too large"
        return Verdict(False, f"m = {int(value)} is {side}: the measured error (averaged over "
                              f"several projections) crosses {ERROR_TARGET} "
                              f"{'later' if value < truth else 'earlier'}",
                       hint="one projection is noisy: average the error over several draws")
    return Verdict(True, f"m = {int(value)} agrees with the measurement (within a factor 2)")


_ONE = [Case(label="the value of my_performer_features")]
MY_PERFORMER_FEATURES = Exercise(
    "my_performer_features", "experiment",
    "Open-ended: how many random features does the Performer need for a 20% error?",
    [Check("a feature count of the experiment (a power of 2)", "shape", _ONE, _judge_feat_form,
           probe="value"),
     Check("agrees with the measurement within a factor 2", "values", _ONE, _judge_feat_value,
           probe="value")],
    signature="my_performer_features = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: random feature attention",
    [RANDOM_FOURIER_FEATURES, POSITIVE_RANDOM_FEATURES, PERFORMER_ATTENTION_PER_HEAD,
     ANSWER_TRIG_MSE, MY_PERFORMER_FEATURES]))
