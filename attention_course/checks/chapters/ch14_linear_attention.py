"""Exercises of chapter 14, "Linear attention" (``exercises/14_linear_attention.ipynb``).

1. ``elu_plus_one`` -- the feature map of Katharopoulos et al., elu(x) + 1.
2. ``linear_attention_elu`` -- non-causal linear attention phi(Q) (phi(K)^T V), normalised,
   with a key padding mask, never building the (N, N) matrix.
3. ``causal_linear_recurrence`` -- causal linear attention as a recurrent network, equal to
   the parallel form, with a state of fixed size.
4. ``answer_flop_ratio`` -- predict: how many times more FLOPs the quadratic order costs.
5. ``my_linear_memory_n`` -- open-ended: from which N on does linear attention use ten times
   less memory than softmax attention?

The references are :mod:`attention_lib.efficient.linear`'s functions with ``eps=0``, in float64.
Katharopoulos, Vyas, Pappas and Fleuret (2020), "Transformers are RNNs", eq. 4-9.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attention_lib.efficient.linear import elu_feature_map, linear_attention
from attention_lib.efficient.memory import peak_memory
from attention_lib.functional import reference_attention

from ..cases import generator, randn
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check
from ._part3 import (
    NORMALISER_HINT,
    QUADRATIC_HINT,
    dtname,
    half_of_scores_resident,
    itemsize,
    qkv_case,
    quarter_of_scores,
)

ASSIGNMENT_NAME = "14_linear_attention"

_NO_FEATURE_HINT = ("your output matches linear attention with NO feature map (phi(x) = x): "
                    "apply phi = elu + 1 to the queries and to the keys first")
_INVERTED_HINT = ("your output matches an INVERTED key padding mask: True means 'a real key' "
                  "(may be attended to); the keys where it is False must contribute nothing")
_IGNORED_HINT = "the key padding mask is ignored: padded keys must contribute nothing"
_NAN_HINT = ("NaN where every key is masked: then phi(q)^T z = 0 and 0 / 0 = NaN. A query with "
             "nothing to attend to must get zeros: divide only where the normaliser is > 0")


# =========================================================================== 1. elu + 1
def _elu_ref(x):
    return elu_feature_map(x)


ELU_MISTAKES = [
    Mistake("plain elu", "you forgot the + 1: elu(x) alone is negative for x < 0, and features "
                         "must be positive so that every weight is", lambda x: F.elu(x)),
    Mistake("relu + 1", "relu(x) + 1 is 1 for every x < 0 (no gradient there); elu(x) + 1 is "
                        "exp(x) for x < 0", lambda x: F.relu(x) + 1),
    Mistake("relu", "relu(x) is not elu(x) + 1: for x < 0 it is 0 (a query could attend to "
                    "nothing), for x > 0 it misses the + 1", lambda x: F.relu(x)),
    Mistake("exp", "exp(x) is elu(x) + 1 only for x < 0; for x >= 0, elu(x) + 1 = x + 1",
            lambda x: torch.exp(x)),
]


def _x_case(seed, dtype, *, shape=None, scale=2.0, grad=False):
    g = generator(seed)
    shape = shape or tuple(int(s) for s in torch.randint(1, 6, (3,), generator=g))
    x = randn(g, *shape, dtype=dtype, scale=scale)
    case = Case((x,), label=f"x {tuple(shape)}, {dtname(dtype)}, entries of both signs")
    if grad:
        case.wrt, case.upstream = (0,), randn(g, *shape, dtype=dtype)
    return case


def _elu_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (same as x) and dtype", "shape",
                     lambda: [_x_case(1, f32, shape=(2, 3, 4, 5))], values=False),
        output_check("values, float64", "values", lambda: [_x_case(s, f64) for s in (11, 12)]),
        output_check("values, float32", "values", lambda: [_x_case(21, f32)]),
        output_check("large inputs (|x| up to ~100): positive and finite", "edge cases",
                     lambda: [_x_case(31, f64, shape=(4, 6), scale=40.0)]),
        grad_check("gradients: exp(x) for x < 0, 1 for x > 0",
                   lambda: [_x_case(41, f64, shape=(3, 4), grad=True)]),
        trace_check("built from torch operations, not the library's feature map", "rules",
                    lambda: [_x_case(51, f64)],
                    forbid=("attention_lib.efficient.linear.elu_feature_map",)),
    ]


ELU_PLUS_ONE = Exercise(
    "elu_plus_one", "function", "The feature map phi(x) = elu(x) + 1 of linear attention.",
    _elu_checks(), signature="elu_plus_one(x)", reference=_elu_ref, mistakes=ELU_MISTAKES,
    forbid=("attention_lib.efficient.linear.elu_feature_map",))


# =========================================================================== 2. non-causal
def _la_ref(query, key, value, attn_mask=None):
    return linear_attention(query, key, value, attn_mask, feature_map="elu", eps=0.0)


def _la_variant(*, phi=elu_feature_map, normalise=True, mask_fn=None, safe=True):
    def fn(query, key, value, attn_mask=None):
        pq, pk = phi(query), phi(key)  # (B, H, N, F)
        m = attn_mask if mask_fn is None else mask_fn(attn_mask)
        if m is not None:
            pk = pk * m.transpose(-1, -2).to(pk.dtype)  # (B, H, Nk, 1)
        num = pq @ (pk.transpose(-2, -1) @ value)  # (B, H, Nq, Dv)
        if not normalise:
            return num
        den = pq @ pk.sum(-2).unsqueeze(-1)  # (B, H, Nq, 1)
        if safe:
            return num / torch.where(den == 0, torch.ones_like(den), den)
        return num / den
    return fn


def _has_mask(case: Case) -> bool:
    return len(case.args) > 3 and case.args[3] is not None


LA_MISTAKES = [
    Mistake("no normaliser", NORMALISER_HINT, _la_variant(normalise=False)),
    Mistake("no feature map", _NO_FEATURE_HINT, _la_variant(phi=lambda x: x)),
    Mistake("inverted mask", _INVERTED_HINT, _la_variant(mask_fn=lambda m: ~m),
            applies=_has_mask),
    Mistake("mask ignored", _IGNORED_HINT, _la_variant(mask_fn=lambda m: None),
            applies=_has_mask),
    Mistake("NaN on fully masked rows", _NAN_HINT, _la_variant(safe=False), applies=_has_mask),
]

_LA_RANGES = dict(N=(1, 8), Nk=(2, 9), D=(1, 6), Dv=(1, 5))


def _la_case(seed, dtype, *, sizes=None, mask=None, grad=False):
    """mask: None | 'padding' | 'empty' (batch element 0 has no real key)."""
    g = generator(seed + 500)
    c = qkv_case(seed, dtype, sizes=sizes, ranges=_LA_RANGES, same_n=False, grad=grad)
    if mask is not None:
        b, nk = c.meta["B"], c.meta["Nk"]
        lengths = torch.randint(1, nk + 1, (b,), generator=g)
        if mask == "empty":
            lengths[0] = 0
        m = (torch.arange(nk) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Nk)
        c.args = c.args + (m,)
        c.label += f", attn_mask (B, 1, 1, Nk) with lengths {lengths.tolist()}"
    return c


def _la_checks():
    f64, f32 = torch.float64, torch.float32
    big = dict(B=1, H=2, N=2048, Nk=2048, D=8, Dv=8)
    return [
        output_check("output shape (B, H, Nq, Dv) and dtype", "shape",
                     lambda: [_la_case(1, f32, sizes=dict(B=2, H=3, N=4, Nk=6, D=5, Dv=3))],
                     values=False),
        output_check("values without a mask, float64", "values",
                     lambda: [_la_case(s, f64) for s in (11, 12, 13)]),
        output_check("values without a mask, float32", "values",
                     lambda: [_la_case(s, f32) for s in (21, 22)]),
        output_check("key padding mask (B, 1, 1, Nk): padded keys contribute nothing", "masks",
                     lambda: [_la_case(s, f64, mask="padding") for s in (31, 32)]),
        output_check("a batch element whose keys are all masked gets zeros, not NaN",
                     "edge cases", lambda: [_la_case(41, f64, mask="empty")]),
        grad_check("gradients of query, key and value, with a key padding mask",
                   lambda: [_la_case(51, f64, mask="padding", grad=True,
                                     sizes=dict(B=2, H=2, N=3, Nk=5, D=3, Dv=2))]),
        trace_check("no (Nq, Nk) tensor: N = 2048", "efficiency",
                    lambda: [_la_case(61, f64, sizes=big)], max_bytes=quarter_of_scores,
                    max_rss=half_of_scores_resident,
                    explain=QUADRATIC_HINT),
        trace_check("built from torch operations, not the library's linear attention", "rules",
                    lambda: [_la_case(71, f64, mask="padding")],
                    forbid=("attention_lib.efficient.linear.linear_attention",
                            "attention_lib.efficient.linear.kernel_attention")),
    ]


LINEAR_ATTENTION_ELU = Exercise(
    "linear_attention_elu", "function",
    "Non-causal linear attention with phi = elu + 1, normalised, with a key padding mask, "
    "in O(N).",
    _la_checks(), signature="linear_attention_elu(query, key, value, attn_mask=None)",
    reference=_la_ref, mistakes=LA_MISTAKES,
    forbid=("attention_lib.efficient.linear.linear_attention",))


# =========================================================================== 3. recurrence
def _rec_ref(query, key, value):
    return linear_attention(query, key, value, is_causal=True, feature_map="elu", eps=0.0)


def _rec_variant(*, phi=elu_feature_map, normalise=True, causal=True, shift=0):
    def fn(query, key, value):
        pq, pk = phi(query), phi(key)
        a = pq @ pk.transpose(-2, -1)  # (B, H, N, N), fine for the small cases of the hints
        if causal:
            a = a.tril(-shift)
        num = a @ value
        if not normalise:
            return num
        den = a.sum(-1, keepdim=True)
        return num / torch.where(den == 0, torch.ones_like(den), den)
    return fn


REC_MISTAKES = [
    Mistake("no normaliser", NORMALISER_HINT, _rec_variant(normalise=False)),
    Mistake("not causal", "query t sees the FUTURE keys too: the state after step t may hold "
                          "only keys 1 ... t (your output equals the non-causal form)",
            _rec_variant(causal=False)),
    Mistake("read before write", "query t must see key t: add phi(k_t) v_t^T (and phi(k_t)) to "
                                 "the state BEFORE reading it with phi(q_t)",
            _rec_variant(shift=1)),
    Mistake("no feature map", _NO_FEATURE_HINT, _rec_variant(phi=lambda x: x)),
]


def _rec_case(seed, dtype, *, sizes=None, grad=False):
    return qkv_case(seed, dtype, sizes=sizes, ranges=dict(N=(1, 9)), grad=grad)


def _rec_limit(case: Case) -> int:
    """Four times the largest input: the state (F, Dv) and the stacked output fit, but no
    (N, N) matrix and no (N, F, Dv) tensor of every prefix state."""
    m = case.meta
    return 4 * m["B"] * m["H"] * m["N"] * max(m["D"], m["Dv"]) * itemsize(case.dtype)


def _rec_checks():
    f64, f32 = torch.float64, torch.float32
    big = dict(B=1, H=2, N=256, D=8, Dv=8)
    return [
        output_check("output shape (B, H, N, Dv) and dtype", "shape",
                     lambda: [_rec_case(1, f32, sizes=dict(B=2, H=3, N=5, D=4, Dv=3))],
                     values=False),
        output_check("equals the parallel causal form, float64", "values",
                     lambda: [_rec_case(s, f64) for s in (11, 12, 13)]),
        output_check("equals the parallel causal form, float32", "values",
                     lambda: [_rec_case(s, f32) for s in (21, 22)]),
        output_check("one position (N = 1): the output is the value", "edge cases",
                     lambda: [_rec_case(31, f64, sizes=dict(B=2, H=1, N=1, D=3, Dv=2))]),
        grad_check("gradients of query, key and value (through the recurrence)",
                   lambda: [_rec_case(41, f64, grad=True, sizes=dict(B=1, H=2, N=5, D=3, Dv=2))]),
        trace_check("a state of fixed size: no (N, N) matrix, no (N, F, Dv) prefix states",
                    "efficiency", lambda: [_rec_case(51, f64, sizes=big)], max_bytes=_rec_limit,
                    explain="you built a tensor that grows with N times the state: an (N, N) "
                            "matrix, or every prefix state at once (a cumsum of outer products, "
                            "(N, F, Dv)). Keep ONE state S (F, Dv) and z (F,), update them at "
                            "each step and read them with phi(q_t)"),
        trace_check("built from torch operations, not the library's linear attention", "rules",
                    lambda: [_rec_case(61, f64)],
                    forbid=("attention_lib.efficient.linear.linear_attention",
                            "attention_lib.efficient.linear.kernel_attention",
                            "attention_lib.efficient.linear.linear_attention_recurrent",
                            "attention_lib.efficient.linear.kernel_attention_recurrent",
                            "attention_lib.efficient.linear.kernel_attention_step")),
    ]


CAUSAL_LINEAR_RECURRENCE = Exercise(
    "causal_linear_recurrence", "function",
    "Causal linear attention (phi = elu + 1) as a recurrence over positions, equal to the "
    "parallel form.",
    _rec_checks(), signature="causal_linear_recurrence(query, key, value)",
    reference=_rec_ref, mistakes=REC_MISTAKES,
    forbid=("attention_lib.efficient.linear.linear_attention",))


# =========================================================================== 4. answer
FLOP_QUESTION = dict(N=1024, D=32, Dv=64)


def flop_ratio(N: int, D: int, Dv: int) -> float:
    """FLOPs of (phi(Q) phi(K)^T) V over those of phi(Q) (phi(K)^T V), F = D features."""
    return (2 * N * N * D + 2 * N * N * Dv) / (2 * N * D * Dv + 2 * N * D * Dv)


ANSWER_FLOP_RATIO = Exercise(
    "answer_flop_ratio", "answer",
    "Predict the FLOP ratio of the quadratic order to the linear order at N=1024, D=32, Dv=64.",
    [answer_check("your prediction matches the FLOP count", lambda: flop_ratio(**FLOP_QUESTION),
                  rtol=0.01,
                  wrong=[(1024 / 32, "N / D is the ratio when Dv = D; here Dv = 2 D: count "
                                     "both products of each order"),
                         (1024 / 64, "N / Dv is the ratio only when D = Dv; count both "
                                     "products of each order"),
                         (1 / 24, "that is the inverse: the quadratic order is the EXPENSIVE "
                                  "one"),
                         (1024.0, "that is N; the head sizes matter too")])],
    signature="answer_flop_ratio = <number>")


# =========================================================================== 5. experiment
MEMORY_DIMS = tuple(2**i for i in range(4, 13))  # 16 ... 4096
_MEM = {}


def memory_ratio(n: int, d: int = 64, seed: int = 0) -> float:
    """Peak memory of softmax attention / that of linear attention, (1, 1, n, d) float32."""
    g = generator(seed + n)
    q, k, v = (torch.randn(1, 1, n, d, generator=g) for _ in range(3))
    soft = peak_memory(reference_attention, q, k, v).peak_bytes
    lin = peak_memory(linear_attention, q, k, v).peak_bytes
    return soft / lin


def tenfold_memory_n() -> int:
    """The smallest N in :data:`MEMORY_DIMS` where linear attention needs 10x less memory."""
    if "n" not in _MEM:
        _MEM["n"] = next((n for n in MEMORY_DIMS if memory_ratio(n) >= 10), MEMORY_DIMS[-1])
    return _MEM["n"]


def _judge_mem_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the length you measured")
    if bad:
        return bad
    if value not in MEMORY_DIMS:
        return Verdict(False, f"{value:g} is not one of the lengths of the experiment "
                              f"(16, 32, ..., 4096)")
    return Verdict(True, f"N = {int(value)}")


def _judge_mem_value(ex, cases, outcomes):
    v = _judge_mem_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = tenfold_memory_n()
    if not truth / 2 <= value <= truth * 2:
        side = "too small" if value < truth else "too large"
        return Verdict(False, f"N = {int(value)} is {side}: measure the peak memory of both "
                              f"functions with peak_memory at every length of the list",
                       hint="softmax attention's memory grows as N^2, linear attention's as N: "
                            "their ratio doubles each time N doubles")
    return Verdict(True, f"N = {int(value)} agrees with the measurement (within a factor 2)")


_ONE = [Case(label="the value of my_linear_memory_n")]
MY_LINEAR_MEMORY_N = Exercise(
    "my_linear_memory_n", "experiment",
    "Open-ended: from which N on does linear attention need 10x less memory than softmax?",
    [Check("a length of the experiment (a power of 2)", "shape", _ONE, _judge_mem_form,
           probe="value"),
     Check("agrees with the measurement within a factor 2", "values", _ONE, _judge_mem_value,
           probe="value")],
    signature="my_linear_memory_n = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: linear attention",
    [ELU_PLUS_ONE, LINEAR_ATTENTION_ELU, CAUSAL_LINEAR_RECURRENCE, ANSWER_FLOP_RATIO,
     MY_LINEAR_MEMORY_N]))
