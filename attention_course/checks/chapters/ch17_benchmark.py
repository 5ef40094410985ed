"""Exercises of chapter 17, "Which attention, when?" (``exercises/17_benchmark.ipynb``).

1. ``relative_frobenius_error`` -- the error measure of the chapter's tables,
   ||out - ref||_F / ||ref||_F.
2. ``uniform_attention`` -- the chapter's baseline: every query gets the mean of the values it
   may see (causal: a running mean), in O(N D) time and memory.
3. ``fit_exponent`` -- the growth exponent of a cost curve: the slope of a least-squares line
   through (log N, log cost).
4. ``answer_naive_mib`` -- predict: the tracked peak memory of the textbook implementation
   (``naive``) at N = 2048.
5. ``my_workload_pick`` -- open-ended: the variant you would pick for a stated workload, with
   its measured memory.

The references are :func:`attention_lib.efficient.zoo.relative_error`, the ``uniform`` entry
of :func:`attention_lib.efficient.zoo.catalog` and an ordinary least-squares fit, in float64.
Tay et al. (2021), Long Range Arena, Table 2, for the comparison the chapter draws.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from attention_lib.efficient import zoo
from attention_lib.efficient.memory import peak_memory

from ..cases import draw_sizes, generator, integer, randn, uniform
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, number_of, output_check, status_problem, trace_check
from ._part3 import dtname, itemsize

ASSIGNMENT_NAME = "17_benchmark"


# =========================================================================== 1. error measure
def _norm(x):
    return x.reshape(-1).norm()


def _rfe_ref(out, ref):
    """||out - ref||_F / ||ref||_F; the absolute error ||out - ref||_F when ref is all zeros."""
    diff, size = _norm(out - ref), _norm(ref)
    return diff / size if bool(size > 0) else diff


RFE_MISTAKES = [
    Mistake("squared", "your value is the SQUARE of the relative error: take the square root "
                       "of each sum of squares, ||x||_F = sqrt(sum of x^2), before dividing",
            lambda out, ref: _norm(out - ref) ** 2 / _norm(ref) ** 2),
    Mistake("relative to out", "you divide by the norm of `out`: the error is relative to the "
                               "REFERENCE, ||out - ref||_F / ||ref||_F (an output that is far "
                               "too large must not make its own error look small)",
            lambda out, ref: _norm(out - ref) / _norm(out)),
    Mistake("entrywise", "you average the entrywise relative errors |out - ref| / |ref|: one "
                         "entry of ref near 0 then dominates everything. Take the norm of the "
                         "whole difference and divide by the norm of the whole reference",
            lambda out, ref: ((out - ref).abs() / ref.abs()).mean()),
    Mistake("per row", "you take the norm over the last axis only and average the rows: the "
                       "Frobenius norm runs over EVERY entry of the tensor (reshape(-1).norm())",
            lambda out, ref: ((out - ref).norm(dim=-1) / ref.norm(dim=-1)).mean()),
    Mistake("absolute", "your value is the ABSOLUTE error ||out - ref||_F: divide it by "
                        "||ref||_F so that it does not depend on the scale of the values",
            lambda out, ref: _norm(out - ref)),
]


def _rfe_case(seed, dtype, *, shape=None, ref_zero=False, same=False, grad=False):
    g = generator(seed)
    if shape is None:
        s = draw_sizes(g, B=(1, 2), H=(1, 3), N=(1, 9), D=(1, 6))
        shape = (s["B"], s["H"], s["N"], s["D"])
    ref = randn(g, *shape, dtype=dtype, scale=0.0 if ref_zero else 1.0)
    out = ref.clone() if same else ref + randn(g, *shape, dtype=dtype, scale=0.3)
    label = f"out and ref {tuple(shape)}, {dtname(dtype)}"
    if ref_zero:
        label += ", ref all zeros (the answer is then the absolute error ||out||_F)"
    if same:
        label += ", out equal to ref"
    case = Case((out, ref), label=label)
    if grad:
        case.wrt, case.upstream = (0, 1), torch.ones((), dtype=dtype)
    return case


def _rfe_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output is a 0-dim tensor of the inputs' dtype", "shape",
                     lambda: [_rfe_case(1, f32, shape=(2, 3, 4, 5))], values=False),
        output_check("values, float64", "values",
                     lambda: [_rfe_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, float32", "values", lambda: [_rfe_case(s, f32) for s in (21, 22)]),
        output_check("out equal to ref: exactly 0", "edge cases",
                     lambda: [_rfe_case(31, f64, same=True)], exact_zeros=True),
        output_check("ref all zeros: the absolute error, not inf or NaN", "edge cases",
                     lambda: [_rfe_case(32, f64, ref_zero=True, shape=(2, 3))]),
        grad_check("gradients with respect to out and ref",
                   lambda: [_rfe_case(41, f64, shape=(2, 2, 3, 4), grad=True)]),
        trace_check("built from torch operations, not the library's relative_error", "rules",
                    lambda: [_rfe_case(51, f64)],
                    forbid=("attention_lib.efficient.zoo.relative_error",)),
    ]


RELATIVE_FROBENIUS_ERROR = Exercise(
    "relative_frobenius_error", "function",
    "The relative error ||out - ref||_F / ||ref||_F of the chapter's tables, as a 0-dim tensor.",
    _rfe_checks(), signature="relative_frobenius_error(out, ref)", reference=_rfe_ref,
    mistakes=RFE_MISTAKES, forbid=("attention_lib.efficient.zoo.relative_error",))


# =========================================================================== 2. uniform
def _uniform_ref(value, is_causal=False):
    n = value.shape[-2]
    if not is_causal:
        return value.mean(-2, keepdim=True).expand_as(value).clone()
    counts = torch.arange(1, n + 1, dtype=value.dtype, device=value.device)
    return value.cumsum(-2) / counts[:, None]


def _is_causal(case: Case) -> bool:
    return bool(case.kwargs.get("is_causal", False))


def _wrong_axis(value, is_causal=False):
    if not is_causal:
        return value.mean(-1, keepdim=True).expand_as(value)
    counts = torch.arange(1, value.shape[-1] + 1, dtype=value.dtype)
    return value.cumsum(-1) / counts


UNIFORM_MISTAKES = [
    Mistake("wrong axis", "you average over the wrong axis (the features, dim=-1): the average "
                          "runs over the POSITIONS, the keys' axis N (dim=-2), and every query "
                          "gets a vector of size Dv", _wrong_axis),
    Mistake("causal divides by N", "the causal running mean divides by N: query i (counting "
                                   "from 0) sees i + 1 values, so divide the running sum by "
                                   "i + 1 (torch.arange(1, N + 1))",
            lambda value, is_causal=False: value.cumsum(-2) / value.shape[-2],
            applies=_is_causal),
    Mistake("causal ignored", "with is_causal=True query i may only see values 0 ... i; your "
                              "output averages all N of them (a running mean: cumsum over the "
                              "positions divided by i + 1)",
            lambda value, is_causal=False: value.mean(-2, keepdim=True).expand_as(value),
            applies=_is_causal),
    Mistake("causal excludes itself", "query i sees itself too: the running mean at position i "
                                      "averages values 0 ... i (i + 1 of them), not 0 ... i - 1",
            lambda value, is_causal=False: torch.cat(
                [torch.zeros_like(value[..., :1, :]), value.cumsum(-2)[..., :-1, :]], -2)
            / torch.arange(1, value.shape[-2] + 1, dtype=value.dtype)[:, None],
            applies=_is_causal),
]


def _uniform_case(seed, dtype, *, causal=False, sizes=None, grad=False):
    g = generator(seed)
    s = dict(sizes) if sizes else draw_sizes(g, B=(1, 2), H=(1, 3), N=(1, 9), Dv=(1, 5))
    v = randn(g, s["B"], s["H"], s["N"], s["Dv"], dtype=dtype)
    case = Case((v,), {"is_causal": causal} if causal else {},
                label=f"value {tuple(v.shape)}, {dtname(dtype)}"
                      + (", is_causal=True" if causal else ""), meta=s)
    if grad:
        case.wrt, case.upstream = (0,), randn(g, *v.shape, dtype=dtype)
    return case


def _uniform_limit(case: Case) -> int:
    """Four times the value tensor: the running sum and the output fit, no (N, N) matrix."""
    m = case.meta
    return 4 * m["B"] * m["H"] * m["N"] * m["Dv"] * itemsize(case.dtype)


def _uniform_checks():
    f64, f32 = torch.float64, torch.float32
    big = dict(B=1, H=2, N=1024, Dv=4)
    return [
        output_check("output shape (B, H, N, Dv) and dtype", "shape",
                     lambda: [_uniform_case(1, f32, sizes=dict(B=2, H=3, N=5, Dv=4))],
                     values=False),
        output_check("values, not causal, float64", "values",
                     lambda: [_uniform_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, not causal, float32", "values",
                     lambda: [_uniform_case(21, f32)]),
        output_check("is_causal=True: query i averages values 0 ... i, float64", "masks",
                     lambda: [_uniform_case(s, f64, causal=True) for s in (31, 32, 33)]),
        output_check("is_causal=True, float32", "masks",
                     lambda: [_uniform_case(34, f32, causal=True,
                                            sizes=dict(B=2, H=2, N=7, Dv=3))]),
        output_check("one position (N = 1): the output is the value, causal or not",
                     "edge cases",
                     lambda: [_uniform_case(41, f64, sizes=dict(B=2, H=1, N=1, Dv=3)),
                              _uniform_case(42, f64, causal=True,
                                            sizes=dict(B=1, H=2, N=1, Dv=2))]),
        grad_check("gradient of value, causal",
                   lambda: [_uniform_case(51, f64, causal=True, grad=True,
                                          sizes=dict(B=1, H=2, N=6, Dv=3))]),
        trace_check("O(N D) memory: no (N, N) matrix, causal, N = 1024", "efficiency",
                    lambda: [_uniform_case(61, f64, causal=True, sizes=big)],
                    max_bytes=_uniform_limit,
                    explain="you built a tensor that grows like N^2 (e.g. a lower-triangular "
                            "(N, N) averaging matrix): the running mean is a cumsum over the "
                            "positions divided by 1, 2, ..., N, nothing larger than value"),
    ]


UNIFORM_ATTENTION = Exercise(
    "uniform_attention", "function",
    "The chapter's baseline: every query gets the mean of the values it may see; causal: a "
    "running mean.", _uniform_checks(), signature="uniform_attention(value, is_causal=False)",
    reference=_uniform_ref, mistakes=UNIFORM_MISTAKES)


# =========================================================================== 3. exponent
def _slope(x, y):
    xc, yc = x - x.mean(), y - y.mean()
    return (xc * yc).sum() / (xc * xc).sum()


def _fit_ref(sizes, measurements):
    return _slope(sizes.log(), measurements.log())


FIT_MISTAKES = [
    Mistake("linear space", "you fitted a line to the raw numbers (cost against N): a power law "
                            "cost = c N^p is a straight line only in log-log space. Fit "
                            "log(cost) against log(N); the exponent p is that line's slope",
            lambda sizes, measurements: _slope(sizes, measurements)),
    Mistake("semi-log", "only the costs are in log space: log(cost) against N is the fit for an "
                        "EXPONENTIAL growth. Take the log of the sizes too",
            lambda sizes, measurements: _slope(sizes, measurements.log())),
    Mistake("swapped axes", "you regressed log(N) on log(cost) (the axes swapped): the slope "
                            "of the fit of y = log(cost) on x = log(N) is "
                            "sum((x - mean x)(y - mean y)) / sum((x - mean x)^2)",
            lambda sizes, measurements: _slope(measurements.log(), sizes.log())),
    Mistake("endpoints", "you used the first and the last point only: a least-squares fit uses "
                         "every point, so that one noisy measurement cannot decide the exponent",
            lambda sizes, measurements: (measurements[-1].log() - measurements[0].log())
            / (sizes[-1].log() - sizes[0].log())),
]


def _fit_case(seed, dtype, *, points=None, noise=0.2, constant=None, grad=False):
    g = generator(seed)
    k = points or integer(g, 3, 8)
    start = integer(g, 4, 8)
    sizes = 2.0 ** torch.arange(start, start + k, dtype=torch.float64)
    p = float(uniform(g, 1, low=0.3, high=2.5))
    c = constant if constant is not None else float(uniform(g, 1, low=1e-4, high=1e-2))
    jitter = torch.exp(randn(g, k, scale=noise)) if noise else torch.ones(k, dtype=torch.float64)
    meas = c * sizes ** p * jitter
    label = (f"{k} sizes 2^{start} ... 2^{start + k - 1}, costs c N^p "
             f"{'times noise' if noise else 'exactly'}, {dtname(dtype)}")
    case = Case((sizes.to(dtype), meas.to(dtype)), label=label)
    if grad:
        case.wrt, case.upstream = (1,), torch.ones((), dtype=dtype)
    return case


def _fit_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output is a 0-dim tensor of the inputs' dtype", "shape",
                     lambda: [_fit_case(1, f32)], values=False),
        output_check("an exact power law: the exponent p itself, float64", "values",
                     lambda: [_fit_case(s, f64, noise=0.0) for s in (11, 12)]),
        output_check("noisy costs: the least-squares slope, float64", "values",
                     lambda: [_fit_case(s, f64) for s in (21, 22, 23)]),
        output_check("noisy costs, float32", "values", lambda: [_fit_case(31, f32)]),
        output_check("two points only", "edge cases", lambda: [_fit_case(41, f64, points=2)]),
        output_check("tiny costs (c = 1e-30, float64): the exponent does not depend on c",
                     "edge cases", lambda: [_fit_case(42, f64, constant=1e-30)]),
        grad_check("gradient with respect to the costs",
                   lambda: [_fit_case(51, f64, points=5, grad=True)]),
    ]


FIT_EXPONENT = Exercise(
    "fit_exponent", "function",
    "The exponent p of cost ~ c N^p: the slope of a least-squares line through "
    "(log N, log cost).", _fit_checks(), signature="fit_exponent(sizes, measurements)",
    reference=_fit_ref, mistakes=FIT_MISTAKES)


# =========================================================================== 4. answer
NAIVE_QUESTION = dict(B=1, H=2, N=2048, D=64)
_TRUTH: dict = {}


def _qkv(n: int, seed: int = 0, *, b: int = 1, h: int = 2, d: int = 64):
    g = generator(seed + n)
    return tuple(torch.randn(b, h, n, d, generator=g) for _ in range(3))


def naive_mib() -> float:
    """Tracked peak memory (MiB) of one non-causal call of the catalog's ``naive`` variant at
    :data:`NAIVE_QUESTION`, float32 (measured with ``peak_memory``)."""
    if "naive" not in _TRUTH:
        q = NAIVE_QUESTION
        fn = zoo.catalog(head_dim=q["D"])["naive"].build(q["N"], False)
        qkv = _qkv(q["N"], b=q["B"], h=q["H"], d=q["D"])
        _TRUTH["naive"] = peak_memory(fn, *qkv).peak_bytes / 2**20
    return _TRUTH["naive"]


ANSWER_NAIVE_MIB = Exercise(
    "answer_naive_mib", "answer",
    "Predict the tracked peak memory (MiB) of naive attention at B=1, H=2, N=2048, D=64, "
    "float32.",
    [answer_check("your prediction matches the measured peak memory", naive_mib, rtol=0.05,
                  wrong=[(32.0, "32 MiB is ONE (B, H, N, N) float32 matrix; count the tensors "
                                "that are alive at the same time: the softmax weights are "
                                "computed while the scores still exist"),
                         (16.0, "16 MiB is one N x N float32 matrix of ONE head; there are "
                                "H = 2 heads, and the scores and the weights are alive at once"),
                         (128.0, "float32 takes 4 bytes per entry, not 8"),
                         (0.5, "0.5 MiB is the output (B, H, N, D); the (N, N) matrices are "
                               "what naive attention pays for")])],
    signature="answer_naive_mib = <number>")


# =========================================================================== 5. experiment
WORKLOAD = dict(B=1, H=2, N=2048, D=64, max_error=1e-3)


def variant_stats(name: str) -> Tuple[Optional[float], Optional[float]]:
    """(relative error against full causal softmax attention, tracked peak MiB) of one causal
    call of catalog variant ``name`` at :data:`WORKLOAD`; (None, None) when it has no causal
    form."""
    key = ("variant", name)
    if key not in _TRUTH:
        w = WORKLOAD
        variant = zoo.catalog(head_dim=w["D"])[name]
        if not variant.causal:
            _TRUTH[key] = (None, None)
        else:
            q, k, v = _qkv(w["N"], seed=1, b=w["B"], h=w["H"], d=w["D"])
            stats = peak_memory(variant.build(w["N"], True), q, k, v)
            full = zoo.targets(q, k, v, is_causal=True)["full"]
            _TRUTH[key] = (zoo.relative_error(stats.result, full), stats.peak_bytes / 2**20)
    return _TRUTH[key]


def _pick(oc: Any) -> Tuple[Optional[str], Optional[float], Optional[str]]:
    out = oc.get("output")
    if out is None:
        return None, None, "not answered yet: replace None by (variant name, measured MiB)"
    if not (isinstance(out, dict) and out.get("__type__") in ("tuple", "list")
            and out.get("len") == 2):
        return None, None, "expected a pair (variant name, measured MiB), e.g. (\"name\", 1.5)"
    name, mib = out["items"]
    if not isinstance(name, str):
        return None, None, "the first item must be the variant's name, a string"
    value, msg = number_of(mib)
    if value is None:
        return None, None, "the second item must be a number (MiB): " + msg
    return name, value, None


def _judge_pick_form(ex, cases, outcomes):
    oc = outcomes[0] if outcomes else None
    bad = status_problem(ex, oc)
    if bad:
        return bad
    name, mib, msg = _pick(oc)
    if msg:
        return Verdict(False, msg)
    names = sorted(zoo.catalog(head_dim=WORKLOAD["D"]))
    if name not in names:
        return Verdict(False, f"{name!r} is not a variant of zoo.catalog(): one of "
                              f"{', '.join(names)}")
    if not mib > 0:
        return Verdict(False, "the memory must be a positive number of MiB")
    return Verdict(True, f"{name}, {mib:g} MiB")


def _judge_pick_error(ex, cases, outcomes):
    v = _judge_pick_form(ex, cases, outcomes)
    if not v.passed:
        return v
    name, _, _ = _pick(outcomes[0])
    err, _ = variant_stats(name)
    if err is None:
        return Verdict(False, f"{name} has no causal form, and the workload is causal")
    if not err <= WORKLOAD["max_error"]:
        return Verdict(False, f"{name} is {err:.2g} away from softmax attention (relative "
                              f"error): the workload allows at most {WORKLOAD['max_error']:g}",
                       hint="measure each candidate's error with your relative_frobenius_error "
                            "against the exact causal output before looking at its memory")
    return Verdict(True, f"{name} meets the error bound")


def _judge_pick_mib(ex, cases, outcomes):
    v = _judge_pick_form(ex, cases, outcomes)
    if not v.passed:
        return v
    name, mib, _ = _pick(outcomes[0])
    _, truth = variant_stats(name)
    if truth is None:
        return Verdict(False, f"{name} has no causal form, so there is nothing to measure")
    if not truth / 2 <= mib <= truth * 2:
        side = "too small" if mib < truth else "too large"
        return Verdict(False, f"{mib:g} MiB is {side} for {name} at this workload: measure it "
                              f"with peak_memory on (1, 2, 2048, 64) float32 inputs, causal",
                       hint="peak_memory(...).peak_bytes is in bytes; 1 MiB = 2**20 bytes")
    return Verdict(True, f"{mib:g} MiB agrees with the measurement (within a factor 2)")


_ONE = [Case(label="the value of my_workload_pick")]
MY_WORKLOAD_PICK = Exercise(
    "my_workload_pick", "experiment",
    "Open-ended: the variant you would pick for a causal workload at N = 2048 that must stay "
    "within 1e-3 of softmax attention, with its measured memory.",
    [Check("a pair (variant of the catalog, positive MiB)", "shape", _ONE, _judge_pick_form,
           probe="value"),
     Check("the variant is causal and within 1e-3 of softmax attention", "values", _ONE,
           _judge_pick_error, probe="value"),
     Check("the memory agrees with the measurement within a factor 2", "values", _ONE,
           _judge_pick_mib, probe="value")],
    signature="my_workload_pick = <(name, MiB)>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: which attention, when?",
    [RELATIVE_FROBENIUS_ERROR, UNIFORM_ATTENTION, FIT_EXPONENT, ANSWER_NAIVE_MIB,
     MY_WORKLOAD_PICK]))
