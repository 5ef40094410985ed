"""Exercises of chapter 3, "Scoring functions" (``exercises/03_scoring_functions.ipynb``).

1. ``masked_softmax`` -- softmax that ignores masked keys; zeros on fully masked rows.
2. ``scaled_dot_product_attention`` -- softmax(q k^T / sqrt(D)) v with a bool mask.
3. ``concat_score`` -- Luong's concat score without building the concatenation.
4. ``multi_head_scores`` -- scaled dot scores of H heads at once: split, transpose, scale.
5. ``answer_dot_std`` -- predict: the spread of q.k for D = 256.
6. ``my_saturation_dim`` -- open-ended: when does unscaled attention become one-hot?

The references are :mod:`attention_lib.functional`'s functions, computed in float64.
"""
from __future__ import annotations

import math

import torch

from attention_lib.functional import (
    concat_score,
    dot_score,
    masked_softmax,
    reference_attention,
    scaled_dot_score,
)
from attention_lib.layers import split_heads
from attention_lib.masks import causal_mask

from ..cases import draw_sizes, generator, randn, random_mask
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check

ASSIGNMENT_NAME = "03_scoring_functions"

_NAN_HINT = ("NaN on a fully masked row: filling every score of a row with -inf makes softmax "
             "compute 0/0. A query with nothing to attend to must get weights (and output) 0: "
             "e.g. use 0 instead of a row max of -inf, and divide only where the sum is > 0")
_D2L_HINT = ("a fully masked row gets uniform weights: filling masked scores with a large "
             "negative number (-1e6, -1e9) instead of -inf makes every score of an empty row "
             "equal, so the query attends to padding. Such a row must be all zeros")
_INVERTED_HINT = ("your output matches an INVERTED mask: here True means 'may attend' (the "
                  "convention of torch's scaled_dot_product_attention), so keep the scores "
                  "where the mask is True")
_AFTER_HINT = ("the mask is applied AFTER the softmax: the kept weights no longer sum to 1. "
               "Mask the scores (-inf where the mask is False) BEFORE normalising")
_IGNORED_HINT = "the mask is ignored: masked keys must get weight exactly 0"
_DIM_HINT = ("softmax over the wrong axis: each query's weights must sum to 1 over the KEYS, "
             "the last axis of the scores (dim=-1), not over the queries (dim=-2)")


def _dtname(dtype) -> str:
    return str(dtype).replace("torch.", "")


# =========================================================================== masked softmax
def _ms_ref(scores, mask=None):
    return masked_softmax(scores, mask)


def _fill_softmax(value):
    def fn(scores, mask=None):
        return scores if mask is None else scores.masked_fill(~mask, value)
    return lambda scores, mask=None: fn(scores, mask).softmax(-1)


def _has_mask(case: Case) -> bool:
    return len(case.args) > 1 and case.args[1] is not None


MS_MISTAKES = [
    Mistake("inverted mask", _INVERTED_HINT,
            lambda scores, mask=None: masked_softmax(scores, ~mask), applies=_has_mask),
    Mistake("mask after softmax", _AFTER_HINT,
            lambda scores, mask=None: scores.softmax(-1) * mask, applies=_has_mask),
    Mistake("mask ignored", _IGNORED_HINT, lambda scores, mask=None: scores.softmax(-1),
            applies=_has_mask),
    Mistake("NaN on fully masked rows", _NAN_HINT, _fill_softmax(float("-inf")),
            applies=_has_mask),
    Mistake("large negative fill", _D2L_HINT, _fill_softmax(-1e6), applies=_has_mask),
    Mistake("zero fill", "masked scores were set to 0, which is not small enough: a masked key "
                         "must get weight exactly 0, so its score must be -inf",
            _fill_softmax(0.0), applies=_has_mask),
    Mistake("softmax over the queries", _DIM_HINT,
            lambda scores, mask=None: masked_softmax(scores, mask, dim=-2)),
]


#: Sizes for the mask checks: several queries and keys, so that a mask has something to hide.
_MASK_RANGES = dict(Nq=(2, 6), Nk=(3, 7), D=(2, 8))


def _scores_case(seed, dtype, *, mask=None, sizes=None, scale=1.0, label_extra=""):
    """mask: None | 'padding' | 'causal' | 'random' | 'empty' (random with fully masked rows)."""
    g = generator(seed)
    ranges = dict(B=(1, 3), H=(1, 3), Nq=(1, 6), Nk=(1, 7))
    if mask is not None:
        ranges.update(Nq=_MASK_RANGES["Nq"], Nk=_MASK_RANGES["Nk"])
    s = sizes or draw_sizes(g, **ranges)
    b, h, nq, nk = s["B"], s["H"], s["Nq"], s["Nk"]
    scores = randn(g, b, h, nq, nk, dtype=dtype, scale=scale)
    label = f"scores (B, H, Nq, Nk) = ({b}, {h}, {nq}, {nk}), {_dtname(dtype)}"
    m = _make_mask(g, mask, b, h, nq, nk)
    if m is None:
        return Case((scores,), label=label + ", no mask" + label_extra)
    return Case((scores, m), label=label + f", {_mask_label(mask, m)}" + label_extra)


def _make_mask(g, kind, b, h, nq, nk):
    if kind is None:
        return None
    if kind == "padding":
        lengths = torch.randint(1, nk + 1, (b,), generator=g)
        return (torch.arange(nk) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Nk)
    if kind == "causal":
        return causal_mask(nq, nk)  # (Nq, Nk)
    m = random_mask(g, b, h, nq, nk, keep_first=(kind == "random"))
    if kind == "empty":
        m[:, :, 0, :] = False  # query 0 of every (batch, head) may attend to nothing
    return m


def _mask_label(kind, m) -> str:
    shape = "(" + ", ".join(map(str, m.shape)) + ")"
    return {"padding": f"key padding mask {shape}", "causal": f"causal mask {shape}",
            "random": f"random mask {shape}",
            "empty": f"random mask {shape} with fully masked rows"}[kind]


def _ms_checks():
    f64, f32 = torch.float64, torch.float32
    fixed = dict(B=2, H=3, Nq=4, Nk=5)
    square = lambda g: dict(B=2, H=2, Nq=5, Nk=5)  # noqa: E731
    grad_case = _scores_case(61, f64, mask="empty", sizes=dict(B=2, H=2, Nq=3, Nk=4))
    grad_case.wrt, grad_case.upstream = (0,), randn(generator(62), 2, 2, 3, 4)
    return [
        output_check("output shape and dtype (mask (B, 1, 1, Nk))", "shape",
                     lambda: [_scores_case(1, f32, mask="padding", sizes=fixed)], values=False),
        output_check("values without a mask, float64", "values",
                     lambda: [_scores_case(s, f64) for s in (11, 12, 13)]),
        output_check("values without a mask, float32", "values",
                     lambda: [_scores_case(s, f32) for s in (21, 22)]),
        output_check("key padding mask (B, 1, 1, Nk): padding gets exactly 0", "masks",
                     lambda: [_scores_case(s, f64, mask="padding") for s in (31, 32)],
                     exact_zeros=True),
        output_check("causal mask (Nq, Nk), broadcast over batch and heads", "masks",
                     lambda: [_scores_case(33, f64, mask="causal", sizes=square(None))],
                     exact_zeros=True),
        output_check("fully masked rows give zeros, not NaN", "edge cases",
                     lambda: [_scores_case(41, f64, mask="empty")]),
        output_check("large scores (std 1e4) do not overflow", "edge cases",
                     lambda: [_scores_case(42, f32, mask="random", scale=1e4)]),
        grad_check("gradients, including a fully masked row (finite, not NaN)",
                   [grad_case]),
        trace_check("built from torch operations, not attention_lib's masked_softmax", "rules",
                    lambda: [_scores_case(71, f64, mask="random")],
                    forbid=("attention_lib.functional.masked_softmax",)),
    ]


MASKED_SOFTMAX = Exercise(
    "masked_softmax", "function",
    "Softmax over the keys that ignores masked entries and gives zeros on fully masked rows.",
    _ms_checks(), signature="masked_softmax(scores, mask=None)", reference=_ms_ref,
    mistakes=MS_MISTAKES, forbid=("attention_lib.functional.masked_softmax",))


# =========================================================================== SDPA
def _sdpa_ref(query, key, value, attn_mask=None):
    return reference_attention(query, key, value, attn_mask)


def _sdpa_variant(*, scale=None, weights=None):
    def fn(query, key, value, attn_mask=None):
        d = query.shape[-1]
        sc = (1 / math.sqrt(d)) if scale is None else scale(d)
        s = query @ key.transpose(-2, -1) * sc
        w = weights(s, attn_mask) if weights else masked_softmax(s, attn_mask)
        return w @ value
    return fn


def _mask_needed(case: Case) -> bool:
    return len(case.args) > 3 and case.args[3] is not None


SDPA_MISTAKES = [
    Mistake("no scale", "your output matches attention WITHOUT the 1/sqrt(D) scale: divide the "
                        "scores q k^T by sqrt(D), D = the last axis of the query",
            _sdpa_variant(scale=lambda d: 1.0)),
    Mistake("scale 1/D", "you scaled by 1/D: the scale is 1/sqrt(D)",
            _sdpa_variant(scale=lambda d: 1.0 / d)),
    Mistake("scale sqrt(D)", "you multiplied by sqrt(D): divide by it",
            _sdpa_variant(scale=lambda d: math.sqrt(d))),
    Mistake("softmax over the queries", _DIM_HINT,
            _sdpa_variant(weights=lambda s, m: masked_softmax(s, m, dim=-2))),
    Mistake("inverted mask", _INVERTED_HINT,
            _sdpa_variant(weights=lambda s, m: masked_softmax(s, ~m)), applies=_mask_needed),
    Mistake("mask after softmax", _AFTER_HINT,
            _sdpa_variant(weights=lambda s, m: s.softmax(-1) * m), applies=_mask_needed),
    Mistake("mask ignored", _IGNORED_HINT, _sdpa_variant(weights=lambda s, m: s.softmax(-1)),
            applies=_mask_needed),
    Mistake("NaN on fully masked rows", _NAN_HINT,
            _sdpa_variant(weights=lambda s, m: s.masked_fill(~m, float("-inf")).softmax(-1)),
            applies=_mask_needed),
    Mistake("large negative fill", _D2L_HINT,
            _sdpa_variant(weights=lambda s, m: s.masked_fill(~m, -1e6).softmax(-1)),
            applies=_mask_needed),
]


def _qkv_case(seed, dtype, *, mask=None, sizes=None, grad=False):
    g = generator(seed)
    ranges = dict(B=(1, 2), H=(1, 3), Nq=(1, 6), Nk=(1, 7), D=(1, 8), Dv=(1, 5))
    if mask is not None:
        ranges.update(_MASK_RANGES)
    s = sizes or draw_sizes(g, **ranges)
    b, h, nq, nk, d, dv = (s[k] for k in ("B", "H", "Nq", "Nk", "D", "Dv"))
    q, k, v = randn(g, b, h, nq, d, dtype=dtype), randn(g, b, h, nk, d, dtype=dtype), \
        randn(g, b, h, nk, dv, dtype=dtype)
    label = (f"query ({b}, {h}, {nq}, {d}), key ({b}, {h}, {nk}, {d}), value ({b}, {h}, {nk}, "
             f"{dv}), {_dtname(dtype)}")
    m = _make_mask(g, mask, b, h, nq, nk)
    args = (q, k, v) if m is None else (q, k, v, m)
    label += ", no mask" if m is None else f", {_mask_label(mask, m)}"
    case = Case(args, label=label)
    if grad:
        case.wrt, case.upstream = (0, 1, 2), randn(g, b, h, nq, dv, dtype=dtype)
    return case


SDPA_FORBID = ("torch.nn.functional.scaled_dot_product_attention", "op:scaled_dot_product",
               "attention_lib.functional.attention", "attention_lib.functional.reference_attention",
               "attention_lib.layers.DotProductAttention")


def _sdpa_checks():
    f64, f32 = torch.float64, torch.float32
    fixed = dict(B=2, H=3, Nq=4, Nk=6, D=8, Dv=5)
    return [
        output_check("output shape (B, H, Nq, Dv) and dtype", "shape",
                     lambda: [_qkv_case(1, f32, sizes=fixed)], values=False),
        output_check("values without a mask, float64", "values",
                     lambda: [_qkv_case(s, f64) for s in (11, 12, 13)]),
        output_check("values without a mask, float32", "values",
                     lambda: [_qkv_case(s, f32) for s in (21, 22)]),
        output_check("key padding mask (B, 1, 1, Nk)", "masks",
                     lambda: [_qkv_case(s, f64, mask="padding") for s in (31, 32)]),
        output_check("causal mask (Nq, Nk)", "masks",
                     lambda: [_qkv_case(33, f64, mask="causal",
                                        sizes=dict(B=2, H=2, Nq=5, Nk=5, D=4, Dv=3))]),
        output_check("fully masked rows give zeros, not NaN", "edge cases",
                     lambda: [_qkv_case(41, f64, mask="empty")]),
        output_check("one query and one key", "edge cases",
                     lambda: [_qkv_case(42, f64, sizes=dict(B=1, H=2, Nq=1, Nk=1, D=3, Dv=2))]),
        grad_check("gradients of query, key and value, with a fully masked row",
                   lambda: [_qkv_case(51, f64, mask="empty", grad=True,
                                      sizes=dict(B=2, H=2, Nq=3, Nk=4, D=5, Dv=3))]),
        trace_check("built from torch operations, not torch's or the library's attention",
                    "rules", lambda: [_qkv_case(61, f64, mask="random")], forbid=SDPA_FORBID),
    ]


SCALED_DOT_PRODUCT_ATTENTION = Exercise(
    "scaled_dot_product_attention", "function",
    "softmax(q k^T / sqrt(D)) v with a bool mask (True = may attend); zeros on empty rows.",
    _sdpa_checks(), signature="scaled_dot_product_attention(query, key, value, attn_mask=None)",
    reference=_sdpa_ref, mistakes=SDPA_MISTAKES, forbid=SDPA_FORBID)


# =========================================================================== concat score
def _concat_ref(query, key, weight, v):
    return concat_score(query, key, weight, v)


def _additive(query, key, w_q, w_k, v, act=torch.tanh, reduce=None):
    hidden = act((query @ w_q.T).unsqueeze(-2) + (key @ w_k.T).unsqueeze(-3))  # (B, Nq, Nk, Hd)
    return hidden.sum(-1) if reduce == "sum" else hidden @ v


def _split(weight, dq):
    return weight[:, :dq], weight[:, dq:]


CONCAT_MISTAKES = [
    Mistake("halves swapped", "W = [W_q | W_k]: the FIRST Dq columns multiply the query and the "
                              "last Dk the key; you swapped them",
            lambda query, key, weight, v: _additive(
                query, key, *_split(weight, key.shape[-1])[::-1], v)),
    Mistake("no tanh", "the concat score is v^T tanh(W [q; k]): you left out the tanh",
            lambda query, key, weight, v: _additive(query, key, *_split(weight, query.shape[-1]),
                                                    v, act=lambda x: x)),
    Mistake("sum instead of v", "the hidden vector is reduced with v (a weighted sum, "
                                "hidden @ v), not summed",
            lambda query, key, weight, v: _additive(query, key, *_split(weight, query.shape[-1]),
                                                    v, reduce="sum")),
]


def _concat_case(seed, dtype, *, sizes=None, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 3), Nq=(1, 6), Nk=(1, 7), Dq=(1, 6), Dk=(1, 6), Hd=(1, 8))
    b, nq, nk, dq, dk, hd = (s[k] for k in ("B", "Nq", "Nk", "Dq", "Dk", "Hd"))
    q, k = randn(g, b, nq, dq, dtype=dtype), randn(g, b, nk, dk, dtype=dtype)
    w = randn(g, hd, dq + dk, dtype=dtype, scale=(dq + dk) ** -0.5)
    v = randn(g, hd, dtype=dtype, scale=hd ** -0.5)
    label = (f"query ({b}, {nq}, {dq}), key ({b}, {nk}, {dk}), weight ({hd}, {dq + dk}), "
             f"v ({hd},), {_dtname(dtype)}")
    case = Case((q, k, w, v), label=label, meta=dict(s))
    if grad:
        case.wrt, case.upstream = (0, 1, 2, 3), randn(g, b, nq, nk, dtype=dtype)
    return case


def _concat_limit(case: Case) -> int:
    m = case.meta
    item = torch.finfo(case.dtype).bits // 8
    return m["B"] * m["Nq"] * m["Nk"] * (m["Dq"] + m["Dk"]) * item // 2


def _concat_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, Nq, Nk) and dtype (Dq != Dk)", "shape",
                     lambda: [_concat_case(1, f32, sizes=dict(B=2, Nq=3, Nk=5, Dq=4, Dk=6, Hd=7))],
                     values=False),
        output_check("values, float64, random inputs", "values",
                     lambda: [_concat_case(11, f64, sizes=dict(B=2, Nq=3, Nk=4, Dq=5, Dk=5, Hd=6))]
                     + [_concat_case(s, f64) for s in (12, 13)]),
        output_check("values, float32", "values", lambda: [_concat_case(s, f32) for s in (21, 22)]),
        grad_check("gradients of query, key, weight and v",
                   lambda: [_concat_case(31, f64, grad=True,
                                         sizes=dict(B=2, Nq=3, Nk=4, Dq=3, Dk=5, Hd=4))]),
        trace_check("never builds the concatenation [q; k] of every pair", "efficiency",
                    lambda: [_concat_case(41, f64, sizes=dict(B=2, Nq=16, Nk=16, Dq=32, Dk=32,
                                                              Hd=4))],
                    max_bytes=_concat_limit,
                    explain="you built the concatenation [q; k] for every query-key pair, "
                            "(B, Nq, Nk, Dq + Dk) numbers. Split W = [W_q | W_k]: then "
                            "W [q; k] = W_q q + W_k k, computed once per query and once per key"),
        trace_check("built from torch operations, not attention_lib's scores", "rules",
                    lambda: [_concat_case(51, f64)],
                    forbid=("attention_lib.functional.concat_score",
                            "attention_lib.functional.additive_score")),
    ]


CONCAT_SCORE = Exercise(
    "concat_score", "function",
    "Luong's concat score v^T tanh(W [q; k]) for all pairs, computed in the split form.",
    _concat_checks(), signature="concat_score(query, key, weight, v)", reference=_concat_ref,
    mistakes=CONCAT_MISTAKES,
    forbid=("attention_lib.functional.concat_score", "attention_lib.functional.additive_score"))


# =========================================================================== multi-head scores
def _mh_ref(query, key, num_heads):
    return scaled_dot_score(split_heads(query, num_heads), split_heads(key, num_heads))


def _mh_variant(split, scale):
    def fn(query, key, num_heads):
        qh, kh = split(query, num_heads), split(key, num_heads)  # (B, H, N, D)
        return dot_score(qh, kh) * scale(query.shape[-1], qh.shape[-1])
    return fn


def _view_only(x, h):
    b, n, e = x.shape
    return x.reshape(b, h, n, e // h)  # the mistake: no transpose


def _interleaved(x, h):
    b, n, e = x.shape
    return x.reshape(b, n, e // h, h).permute(0, 3, 1, 2)


MH_MISTAKES = [
    Mistake("view without transpose",
            "your heads are scrambled: x.view(B, H, N, D) reinterprets the memory of (B, N, H*D) "
            "without moving the head axis, so each 'head' mixes positions. Split the last axis "
            "first, then swap axes: x.view(B, N, H, D).transpose(1, 2)",
            _mh_variant(_view_only, lambda e, d: d ** -0.5)),
    Mistake("scaled by the model dim", "the scale is 1/sqrt(D) with D the size of ONE head "
                                       "(H*D / H), not of the whole model",
            _mh_variant(split_heads, lambda e, d: e ** -0.5)),
    Mistake("no scale", "the scores are not scaled: divide by sqrt(D), D = the head size",
            _mh_variant(split_heads, lambda e, d: 1.0)),
    Mistake("heads interleaved", "you split the features as (D, H): head h must be the "
                                 "contiguous block of features h*D ... (h+1)*D - 1, i.e. "
                                 "x.view(B, N, H, D)",
            _mh_variant(_interleaved, lambda e, d: d ** -0.5)),
]


def _mh_case(seed, dtype, *, sizes=None, noncontig=False, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 3), H=(2, 4), Nq=(2, 6), Nk=(2, 6), D=(1, 5))
    b, h, nq, nk, d = (s[k] for k in ("B", "H", "Nq", "Nk", "D"))
    e = h * d
    if noncontig:  # last axis not contiguous: view() cannot split it
        q = randn(g, b, e, nq, dtype=dtype).transpose(1, 2)
        k = randn(g, b, e, nk, dtype=dtype).transpose(1, 2)
    else:
        q, k = randn(g, b, nq, e, dtype=dtype), randn(g, b, nk, e, dtype=dtype)
    label = (f"query ({b}, {nq}, {e}), key ({b}, {nk}, {e}), num_heads={h} (head size {d}), "
             f"{_dtname(dtype)}" + (", non-contiguous inputs" if noncontig else ""))
    case = Case((q, k, h), label=label)
    if grad:
        case.wrt, case.upstream = (0, 1), randn(g, b, h, nq, nk, dtype=dtype)
    return case


def _mh_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, H, Nq, Nk) and dtype", "shape",
                     lambda: [_mh_case(1, f32, sizes=dict(B=2, H=3, Nq=4, Nk=5, D=6))],
                     values=False),
        output_check("values with one head (plain scaled dot scores)", "values",
                     lambda: [_mh_case(11, f64, sizes=dict(B=2, H=1, Nq=3, Nk=4, D=6))]),
        output_check("values with several heads, float64", "values",
                     lambda: [_mh_case(s, f64) for s in (12, 13, 14)]),
        output_check("values with several heads, float32", "values",
                     lambda: [_mh_case(s, f32) for s in (21, 22)]),
        output_check("non-contiguous inputs", "edge cases",
                     lambda: [_mh_case(31, f64, noncontig=True)]),
        grad_check("gradients of query and key",
                   lambda: [_mh_case(41, f64, grad=True, sizes=dict(B=2, H=2, Nq=3, Nk=4, D=3))]),
    ]


MULTI_HEAD_SCORES = Exercise(
    "multi_head_scores", "function",
    "Scaled dot-product scores of H heads at once, from (B, N, H*D) inputs.",
    _mh_checks(), signature="multi_head_scores(query, key, num_heads)", reference=_mh_ref,
    mistakes=MH_MISTAKES)


# =========================================================================== answer: std of q.k
ANSWER_DOT_STD = Exercise(
    "answer_dot_std", "answer",
    "Predict the standard deviation of q.k for D = 256, entries independent N(0, 1).",
    [answer_check("your prediction matches the experiment", lambda: math.sqrt(256), rtol=0.05,
                  wrong=[(256.0, "that is the VARIANCE of q.k (a sum of D terms of variance 1); "
                                 "the standard deviation is its square root"),
                         (1.0, "that is the standard deviation AFTER dividing by sqrt(D)"),
                         (0.0, "that is the mean; the question asks for the spread")])],
    signature="answer_dot_std = <number>")


# =========================================================================== experiment
#: The measurement the experiment asks for: 256 random queries, each against 32 random keys,
#: unscaled dot-product scores, entries N(0, 1); mean of the largest weight of each query.
SATURATION_DIMS = tuple(2**i for i in range(1, 12))  # 2 ... 2048


def mean_max_weight(d: int, seed: int = 0, n_queries: int = 256, n_keys: int = 32) -> float:
    g = generator(seed + d)
    q = torch.randn(n_queries, 1, d, generator=g, dtype=torch.float64)
    k = torch.randn(n_queries, n_keys, d, generator=g, dtype=torch.float64)
    w = masked_softmax(dot_score(q, k))[:, 0]  # (n_queries, n_keys)
    return float(w.max(-1).values.mean())


_SAT = {}


def saturation_dim(threshold: float = 0.9) -> int:
    """The smallest D in :data:`SATURATION_DIMS` whose mean largest weight exceeds ``threshold``."""
    if threshold not in _SAT:
        _SAT[threshold] = next((d for d in SATURATION_DIMS if mean_max_weight(d) > threshold),
                               SATURATION_DIMS[-1])
    return _SAT[threshold]


def _judge_sat_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the dimension you measured")
    if bad:
        return bad
    if value not in SATURATION_DIMS:
        return Verdict(False, f"{value:g} is not one of the dimensions of the experiment "
                              f"(2, 4, ..., 2048)")
    return Verdict(True, f"D = {int(value)}")


def _judge_sat_value(ex, cases, outcomes):
    v = _judge_sat_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = saturation_dim()
    if not truth / 2 <= value <= truth * 2:
        side = "too small" if value < truth else "too large"
        return Verdict(False, f"D = {int(value)} is {side}: the measurement (mean of the largest "
                              f"weight over 256 random queries, 32 keys each) crosses 0.9 "
                              f"{'later' if value < truth else 'earlier'}",
                       hint="average the largest weight over many queries; one query is noisy")
    return Verdict(True, f"D = {int(value)} agrees with the measurement (within a factor 2)")


_ONE = [Case(label="the value of my_saturation_dim")]
MY_SATURATION_DIM = Exercise(
    "my_saturation_dim", "experiment",
    "Open-ended: from which D on does unscaled attention put > 90% of its weight on one key?",
    [Check("a dimension of the experiment (a power of 2)", "shape", _ONE, _judge_sat_form,
           probe="value"),
     Check("agrees with the measurement within a factor 2", "values", _ONE, _judge_sat_value,
           probe="value")],
    signature="my_saturation_dim = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: scoring functions",
    [MASKED_SOFTMAX, SCALED_DOT_PRODUCT_ATTENTION, CONCAT_SCORE, MULTI_HEAD_SCORES,
     ANSWER_DOT_STD, MY_SATURATION_DIM]))
