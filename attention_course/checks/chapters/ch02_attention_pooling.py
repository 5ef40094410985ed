"""Exercises of chapter 2, "Queries, keys and values" (``exercises/02_attention_pooling.ipynb``).

1. ``nw_gaussian`` -- Nadaraya-Watson pooling with the Gaussian kernel, as a softmax.
2. ``boxcar_weights`` -- the boxcar kernel's weights: masked attention.
3. ``answer_huge_h`` -- predict: the soft lookup with a huge bandwidth.
4. ``loo_mse`` -- leave-one-out error of the Gaussian estimator: a diagonal mask.
5. ``my_setting`` -- open-ended: beat the Gaussian's leave-one-out error.

The references are :mod:`attention_lib.pooling`'s functions, computed in float64.
"""
from __future__ import annotations

import math

import torch

from attention_lib.functional import masked_softmax
from attention_lib.pooling import (
    KERNELS,
    kernel_weights,
    leave_one_out_mask,
    make_toy_data,
    nadaraya_watson,
)

from ..cases import draw_sizes, generator, randn, uniform
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, number_of, output_check, status_problem, trace_check

ASSIGNMENT_NAME = "02_attention_pooling"

#: The library functions the pooling exercises may not call (they compute the answer).
POOLING_FORBID = ("attention_lib.pooling.nadaraya_watson", "attention_lib.pooling.kernel_weights",
                  "attention_lib.pooling.kernel_scores", "attention_lib.pooling.NadarayaWatson")

# The thermometer of the chapter: hours (keys) and temperatures (values).
HOURS = (6.0, 9.0, 12.0, 15.0, 18.0)
TEMPS = (11.0, 16.0, 22.0, 23.0, 17.0)


def _sq_dist(q, k):
    return (q[:, None] - k[None, :]) ** 2  # (Nq, Nk)


def _h(bandwidth):
    return bandwidth if isinstance(bandwidth, torch.Tensor) else torch.tensor(float(bandwidth),
                                                                              dtype=torch.float64)


# =========================================================================== 1. nw_gaussian
def _nw_ref(queries, keys, values, bandwidth):
    return nadaraya_watson(queries, keys, values, kernel="gaussian", bandwidth=bandwidth)


def _nw_mistake(score_fn, dim=-1, normalise=True):
    def fn(queries, keys, values, bandwidth):
        s = score_fn(_sq_dist(queries, keys), _h(bandwidth))
        w = s.softmax(dim) if normalise else torch.exp(s)
        return w @ values
    return fn


def _nw_underflow(queries, keys, values, bandwidth):
    k = torch.exp(-_sq_dist(queries, keys) / (2 * _h(bandwidth) ** 2))
    return (k / k.sum(-1, keepdim=True)) @ values


def _nw_density(queries, keys, values, bandwidth):
    h = _h(bandwidth)
    k = torch.exp(-_sq_dist(queries, keys) / (2 * h**2)) / (math.sqrt(2 * math.pi) * h)
    return k @ values


_NORMALISE_HINT = ("the weights are not normalised: divide the kernel values by their sum over "
                   "the keys (or, equivalently, take a softmax of the scores over the keys)")
NW_MISTAKES = [
    Mistake("weights not normalised", _NORMALISE_HINT,
            _nw_mistake(lambda d2, h: -d2 / (2 * h**2), normalise=False)),
    Mistake("kernel density not normalised", _NORMALISE_HINT, _nw_density),
    Mistake("softmax over the queries",
            "you normalised over the queries (dim 0): each query's weights must sum to 1 over "
            "the keys, so take the softmax over the last axis (dim=-1)",
            _nw_mistake(lambda d2, h: -d2 / (2 * h**2), dim=0)),
    Mistake("missing 1/2", "the score is -(q - k)^2 / (2 h^2): you left out the factor 1/2",
            _nw_mistake(lambda d2, h: -d2 / h**2)),
    Mistake("h not squared", "the score divides by 2 h^2: you divided by 2 h (h not squared)",
            _nw_mistake(lambda d2, h: -d2 / (2 * h))),
    Mistake("multiplied by h", "the bandwidth divides the squared distance: you multiplied by it",
            _nw_mistake(lambda d2, h: -d2 * h**2 / 2)),
    Mistake("underflow", "NaN for queries far from every key: exp(-d^2 / (2 h^2)) underflows to "
                         "0 for every key and 0/0 = NaN. Compute the weights as a softmax of the "
                         "scores, which subtracts the largest score first",
            _nw_underflow),
    Mistake("ignores the queries", "every query gets the same output, the mean of the values: "
                                   "the weights must depend on the distance between the query "
                                   "and each key",
            lambda queries, keys, values, bandwidth: values.mean(0).expand(len(queries), -1)),
]


def _nw_case(seed, dtype, label=None, *, nq=None, nk=None, dv=None, h=None, far=False,
             grad=False):
    g = generator(seed)
    s = draw_sizes(g, Nq=(1, 9), Nk=(1, 12), Dv=(1, 4))
    nq, nk, dv = nq or s["Nq"], nk or s["Nk"], dv or s["Dv"]
    keys = uniform(g, nk, low=0.0, high=5.0, dtype=dtype)
    queries = uniform(g, nq, low=-1.0, high=6.0, dtype=dtype)
    if far:
        queries = torch.tensor([-20.0, 30.0, 2.5], dtype=dtype)
        nq = 3
    values = randn(g, nk, dv, dtype=dtype)
    h = float(uniform(g, low=0.3, high=2.0)) if h is None else h
    label = label or (f"Nq={nq}, Nk={nk}, Dv={dv}, bandwidth={h:.3g}, "
                      f"{str(dtype).replace('torch.', '')}")
    if grad:
        bw = torch.tensor(h, dtype=dtype)
        return Case((queries, keys, values, bw), label=label + " (bandwidth as a 0-d tensor)",
                    wrt=(0, 2, 3), upstream=randn(g, nq, dv, dtype=dtype))
    return Case((queries, keys, values, h), label=label)


def _nw_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (Nq, Dv) and dtype", "shape",
                     lambda: [_nw_case(1, f32, nq=7, nk=11, dv=3)], values=False),
        output_check("values, float64, random inputs", "values",
                     lambda: [_nw_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, float32", "values", lambda: [_nw_case(s, f32) for s in (21, 22)]),
        output_check("a single key: every query gets its value", "edge cases",
                     lambda: [_nw_case(31, f64, nk=1)]),
        output_check("queries far from every key: the nearest key's value, not NaN",
                     "edge cases", lambda: [_nw_case(32, f64, far=True, h=0.1,
                                                     label="queries -20 and 30, keys in [0, 5], "
                                                           "bandwidth 0.1, float64")]),
        output_check("a huge bandwidth: the mean of the values", "edge cases",
                     lambda: [_nw_case(33, f64, h=1e4)]),
        grad_check("gradients with respect to queries, values and bandwidth",
                   lambda: [_nw_case(41, f64, nq=5, nk=8, dv=2, h=0.7, grad=True)]),
        trace_check("computed with torch operations, not attention_lib.pooling", "rules",
                    lambda: [_nw_case(51, f64)], forbid=POOLING_FORBID),
    ]


NW_GAUSSIAN = Exercise(
    "nw_gaussian", "function",
    "Nadaraya-Watson pooling with the Gaussian kernel, written as a softmax of scores.",
    _nw_checks(), signature="nw_gaussian(queries, keys, values, bandwidth)",
    reference=_nw_ref, mistakes=NW_MISTAKES, forbid=POOLING_FORBID)


# =========================================================================== 2. boxcar_weights
def _box_ref(queries, keys, bandwidth):
    return kernel_weights(queries, keys, kernel="boxcar", bandwidth=bandwidth)


def _inside(queries, keys, bandwidth, strict=False, width=1.0):
    d = (queries[:, None] - keys[None, :]).abs()
    lim = width * _h(bandwidth)
    return (d < lim) if strict else (d <= lim)


def _normalise_rows(m, dim=-1):
    m = m.double()
    s = m.sum(dim, keepdim=True)
    return m / torch.where(s > 0, s, torch.ones_like(s))


BOX_MISTAKES = [
    Mistake("inverted mask", "your weights are spread over the keys OUTSIDE the window: the "
                             "mask is inverted. Keep the keys with |q - k| <= h",
            lambda queries, keys, bandwidth: _normalise_rows(~_inside(queries, keys, bandwidth))),
    Mistake("indicator not normalised", "these are the kernel values, not weights: divide each "
                                        "row by its sum so that it sums to 1",
            lambda queries, keys, bandwidth: _inside(queries, keys, bandwidth).double()),
    Mistake("kernel not normalised", "these are the kernel values K(u) = 1/2, not weights: divide "
                                     "each row by its sum so that it sums to 1",
            lambda queries, keys, bandwidth: 0.5 * _inside(queries, keys, bandwidth).double()),
    Mistake("NaN on empty rows", "NaN on a query with no key in its window: its row sums to 0, "
                                 "and 0/0 = NaN. Such a row must be all zeros (divide by the sum "
                                 "only where it is positive, or use a masked softmax)",
            lambda queries, keys, bandwidth: (lambda m: m / m.sum(-1, keepdim=True))(
                _inside(queries, keys, bandwidth).double())),
    Mistake("strict inequality", "a key at distance exactly h is inside the window: the boxcar "
                                 "kernel is 1/2 for |u| <= 1, so use <=, not <",
            lambda queries, keys, bandwidth: _normalise_rows(
                _inside(queries, keys, bandwidth, strict=True))),
    Mistake("normalised over the queries", "each row (one query) must sum to 1 over the keys: "
                                           "you normalised the columns (dim 0)",
            lambda queries, keys, bandwidth: _normalise_rows(_inside(queries, keys, bandwidth),
                                                             dim=0)),
    Mistake("window of width h", "the window is |q - k| <= h, a half-width of h (total width "
                                 "2h); yours has half-width h/2",
            lambda queries, keys, bandwidth: _normalise_rows(
                _inside(queries, keys, bandwidth, width=0.5))),
]


def _box_case(seed, dtype, *, nq=None, nk=None, h=None, empty=False):
    g = generator(seed)
    s = draw_sizes(g, Nq=(1, 8), Nk=(1, 12))
    nq, nk = nq or s["Nq"], nk or s["Nk"]
    h = float(uniform(g, low=0.6, high=2.0)) if h is None else h
    keys = uniform(g, nk, low=0.0, high=5.0, dtype=dtype)
    # queries near a key, so that no row is empty (unless asked for)
    near = keys[torch.randint(0, nk, (nq,), generator=g)]
    queries = (near + uniform(g, nq, low=-h / 2, high=h / 2, dtype=dtype)).to(dtype)
    label = f"Nq={nq}, Nk={nk}, bandwidth={h:.3g}, {str(dtype).replace('torch.', '')}"
    if empty:
        queries = torch.cat([queries, torch.tensor([12.0], dtype=dtype)])
        label += ", plus a query at 12 with no key in its window"
    return Case((queries, keys, h), label=label)


def _box_checks():
    f64, f32 = torch.float64, torch.float32
    exact = Case((torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.5, 2.5, 3.0, 1.25]), 0.5),
                 label="queries [1, 2], keys [0.5, 1.5, 2.5, 3, 1.25], bandwidth 0.5: keys at "
                       "distance exactly 0.5")
    return [
        output_check("output shape (Nq, Nk) and dtype", "shape",
                     lambda: [_box_case(1, f32, nq=4, nk=9)], values=False),
        output_check("values, float64, random inputs", "values",
                     lambda: [_box_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, float32", "values", lambda: [_box_case(s, f32) for s in (21, 22)]),
        output_check("keys outside the window get exactly 0", "masks",
                     lambda: [_box_case(31, f32, nq=6, nk=20, h=0.4)], exact_zeros=True),
        output_check("a query with no key in its window gets zeros, not NaN", "edge cases",
                     lambda: [_box_case(41, f64, empty=True)]),
        output_check("a key at distance exactly h is inside the window", "edge cases",
                     lambda: [exact]),
        trace_check("computed with torch operations, not attention_lib.pooling", "rules",
                    lambda: [_box_case(51, f64)], forbid=POOLING_FORBID),
    ]


BOXCAR_WEIGHTS = Exercise(
    "boxcar_weights", "function",
    "The attention weights of the boxcar kernel: uniform inside the window, masked outside.",
    _box_checks(), signature="boxcar_weights(queries, keys, bandwidth)", reference=_box_ref,
    mistakes=BOX_MISTAKES, forbid=POOLING_FORBID)


# =========================================================================== 3. answer_huge_h
def _huge_h_truth() -> float:
    hours = torch.tensor(HOURS, dtype=torch.float64)
    temps = torch.tensor(TEMPS, dtype=torch.float64)
    return float(nadaraya_watson(torch.tensor([13.0], dtype=torch.float64), hours, temps,
                                 bandwidth=1000.0))


ANSWER_HUGE_H = Exercise(
    "answer_huge_h", "answer",
    "Predict the soft lookup of the thermometer at 13 h with a bandwidth of 1000 hours.",
    [answer_check("your prediction matches the soft lookup", _huge_h_truth, rtol=0.0, atol=0.05,
                  wrong=[(22.0, "that is the reading of the nearest key, the limit h -> 0; with "
                                "a huge h every key is 'near'"),
                         (sum(TEMPS), "that is the sum of the readings; the weights sum to 1, so "
                                      "the result is an average")])],
    signature="answer_huge_h = <number>")


# =========================================================================== 4. loo_mse
def _loo_ref(x, y, bandwidth):
    pred = nadaraya_watson(x, x, y, bandwidth=bandwidth, attn_mask=leave_one_out_mask(len(x)))
    return ((pred - y) ** 2).mean()


def _loo_variant(kind):
    def fn(x, y, bandwidth):
        h = _h(bandwidth)
        s = -_sq_dist(x, x) / (2 * h**2)
        eye = torch.eye(len(x), dtype=torch.bool)
        if kind == "no mask":
            w = s.softmax(-1)
        elif kind == "after":
            w = s.softmax(-1) * ~eye
        elif kind == "inverted":
            w = masked_softmax(s, eye)
        elif kind == "dim0":
            w = masked_softmax(s, ~eye, dim=0)
        else:
            w = masked_softmax(s, ~eye)
        err = (w @ y - y) ** 2
        if kind == "sum":
            return err.sum()
        if kind == "rmse":
            return err.mean().sqrt()
        return err.mean()
    return fn


LOO_MISTAKES = [
    Mistake("no mask", "this is the training MSE: each point also attends to itself. Mask the "
                       "diagonal (query i may not attend to key i) with -inf before the softmax "
                       "(a fill of 0 changes nothing: the diagonal's score is already 0)",
            _loo_variant("no mask")),
    Mistake("mask after softmax", "you zeroed the diagonal AFTER the softmax, so the remaining "
                                  "weights no longer sum to 1: mask the scores before "
                                  "normalising", _loo_variant("after")),
    Mistake("inverted mask", "every point attends only to itself (MSE 0): the mask is inverted; "
                             "True must mean 'may attend'", _loo_variant("inverted")),
    Mistake("softmax over the queries", "normalise each row (one query) over the keys: "
                                        "softmax over the last axis", _loo_variant("dim0")),
    Mistake("sum instead of mean", "the mean squared error divides the sum by n",
            _loo_variant("sum")),
    Mistake("root mean square", "return the mean squared error, not its square root",
            _loo_variant("rmse")),
]


def _loo_case(seed, dtype, *, n=None, h=None, dup=False, grad=False, spaced=False):
    g = generator(seed)
    n = n or draw_sizes(g, n=(2, 30))["n"]
    h = float(uniform(g, low=0.2, high=1.5)) if h is None else h
    if spaced:
        x = torch.arange(n, dtype=torch.float64) * 0.5 + uniform(g, n, low=0.0, high=0.2)
    else:
        x, _ = uniform(g, n, low=0.0, high=5.0).sort()
    if dup:
        x[1] = x[0]
    y = 2 * torch.sin(x) + x.clamp(min=0) ** 0.8 + 0.5 * randn(g, n)
    x, y = x.to(dtype), y.to(dtype)
    label = f"n={n}, bandwidth={h:.3g}, {str(dtype).replace('torch.', '')}"
    if dup:
        label += ", x[0] == x[1]"
    if grad:
        return Case((x, y, torch.tensor(h, dtype=dtype)),
                    label=label + " (bandwidth as a 0-d tensor)", wrt=(1, 2),
                    upstream=torch.tensor(1.0, dtype=dtype))
    return Case((x, y, h), label=label)


def _loo_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("a 0-d tensor (one number) of the inputs' dtype", "shape",
                     lambda: [_loo_case(1, f32, n=10)], values=False),
        output_check("values, float64, random inputs", "values",
                     lambda: [_loo_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, float32", "values", lambda: [_loo_case(s, f32) for s in (21, 22)]),
        output_check("each point is predicted from the others only (tiny bandwidth)", "masks",
                     lambda: [_loo_case(31, f64, n=12, h=0.01, spaced=True)]),
        output_check("two points: each predicts the other", "edge cases",
                     lambda: [_loo_case(41, f64, n=2)]),
        output_check("two equal inputs", "edge cases", lambda: [_loo_case(42, f64, n=9, dup=True)]),
        grad_check("gradients with respect to the targets and the bandwidth",
                   lambda: [_loo_case(51, f64, n=8, h=0.6, grad=True)]),
        trace_check("computed with torch operations, not attention_lib.pooling", "rules",
                    lambda: [_loo_case(61, f64)], forbid=POOLING_FORBID),
    ]


LOO_MSE = Exercise(
    "loo_mse", "function",
    "Leave-one-out mean squared error of Gaussian Nadaraya-Watson: mask the diagonal.",
    _loo_checks(), signature="loo_mse(x, y, bandwidth)", reference=_loo_ref,
    mistakes=LOO_MISTAKES, forbid=POOLING_FORBID)


# =========================================================================== 5. my_setting
#: The chapter's training data: ``make_toy_data(50, noise=0.5)`` from a generator seeded 0.
def chapter_data():
    return make_toy_data(50, noise=0.5, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)


def loo_of_setting(kernel: str, bandwidth: float) -> float:
    """Leave-one-out MSE of Nadaraya-Watson with ``kernel`` and ``bandwidth`` on the chapter's
    data."""
    x, y = chapter_data()
    pred = nadaraya_watson(x, x, y, kernel=kernel, bandwidth=float(bandwidth),
                           attn_mask=leave_one_out_mask(len(x)))
    return float(((pred - y) ** 2).mean())


_GRID = {}


def best_gaussian_on_grid() -> float:
    """The best leave-one-out MSE of the Gaussian kernel over ``logspace(-2, 1, 61)``."""
    if "best" not in _GRID:
        _GRID["best"] = min(loo_of_setting("gaussian", float(h))
                            for h in torch.logspace(-2, 1, 61, dtype=torch.float64))
    return _GRID["best"]


def _setting(outcomes):
    oc = outcomes[0] if isinstance(outcomes, (list, tuple)) and outcomes else None
    out = oc.get("output") if isinstance(oc, dict) else None
    if not (isinstance(out, dict) and out.get("__type__") == "dict"):
        return None, None, None
    items = out.get("items") or {}
    kernel = items.get("kernel")
    h, _ = number_of(items.get("bandwidth"))
    return kernel, h, items


def _judge_setting_form(ex, cases, outcomes):
    bad = status_problem(ex, outcomes[0] if outcomes else None)
    if bad:
        return bad
    out = outcomes[0].get("output")
    if out is None:
        return Verdict(False, "not done yet: set my_setting = dict(kernel=..., bandwidth=...)")
    kernel, h, items = _setting(outcomes)
    if items is None:
        return Verdict(False, "my_setting must be a dict like dict(kernel='gaussian', "
                              "bandwidth=0.3)")
    if kernel not in KERNELS:
        return Verdict(False, f"my_setting['kernel'] must be one of {sorted(KERNELS)}, got "
                              f"{str(kernel)[:40]!r}")
    if h is None or not (math.isfinite(h) and h > 0):
        return Verdict(False, "my_setting['bandwidth'] must be a positive number")
    return Verdict(True, f"kernel {kernel!r}, bandwidth {h:g}")


def _judge_setting_value(ex, cases, outcomes):
    v = _judge_setting_form(ex, cases, outcomes)
    if not v.passed:
        return v
    kernel, h, _ = _setting(outcomes)
    mse, best = loo_of_setting(kernel, h), best_gaussian_on_grid()
    if not mse < best:
        return Verdict(False, f"leave-one-out MSE {mse:.4f} does not beat the best Gaussian "
                              f"bandwidth of the grid ({best:.4f})",
                       hint="compare the kernels at their own best bandwidths: sweep h for each")
    return Verdict(True, f"leave-one-out MSE {mse:.4f} < {best:.4f} (best Gaussian on the grid)")


_ONE = [Case(label="the value of my_setting")]
MY_SETTING = Exercise(
    "my_setting", "experiment",
    "Open-ended: find a kernel and bandwidth whose leave-one-out MSE beats the best Gaussian.",
    [Check("a dict with a kernel name and a positive bandwidth", "shape", _ONE,
           _judge_setting_form, probe="value"),
     Check("its leave-one-out MSE beats the best Gaussian bandwidth of the grid", "values",
           _ONE, _judge_setting_value, probe="value")],
    signature="my_setting = dict(kernel=<name>, bandwidth=<number>)")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: queries, keys and values",
    [NW_GAUSSIAN, BOXCAR_WEIGHTS, ANSWER_HUGE_H, LOO_MSE, MY_SETTING]))
