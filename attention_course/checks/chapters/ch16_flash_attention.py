"""Exercises of chapter 16, "FlashAttention" (``exercises/16_flash_attention.ipynb``).

1. ``merge_softmax_states`` -- merge two online-softmax states (max, sum, output) of the same
   queries over two disjoint sets of keys.
2. ``tiled_attention`` -- exact attention by tiles with the online softmax, never (N, N).
3. ``answer_causal_tiles`` -- predict: how many tiles causal FlashAttention computes.
4. ``my_flash_memory_n`` -- open-ended: from which N on does FlashAttention need 10x less
   memory than the reference?

The references are :func:`~attention_lib.functional.reference_attention` and
:mod:`attention_lib.efficient.flash`, in float64. Milakov and Gimelshein (2018); Dao et al.
(2022), FlashAttention, Algorithm 1.
"""
from __future__ import annotations

import torch

from attention_lib.efficient.flash import flash_attention, tile_schedule
from attention_lib.efficient.memory import peak_memory
from attention_lib.functional import masked_softmax, reference_attention

from ..cases import generator, integer, randn
from ..compare import compare_tensors, match_mistake, shape_hint
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
    DIM_HINT,
    NO_SCALE_HINT,
    dtname,
    half_of_scores_resident,
    qkv_case,
    quarter_of_scores,
)

ASSIGNMENT_NAME = "16_flash_attention"

_NO_RESCALE_HINT = ("the partial sums are added without rescaling: a sum (and output) computed "
                    "under the old maximum m_a must be multiplied by exp(m_a - m) before it is "
                    "added to one computed under the new maximum m = max(m_a, m_b)")
_INVERSE_RESCALE_HINT = ("the rescaling factor is inverted: it is exp(m_a - m) <= 1 (the old "
                         "maximum minus the new one), not exp(m - m_a)")
_UNNORMALISED_HINT = ("the merged output is not renormalised: each state's output is an "
                      "average (already divided by its sum), so weight it by its rescaled sum "
                      "and divide by the merged sum")
_AVERAGE_HINT = ("the outputs are averaged with equal weights: weight each by its share of the "
                 "merged sum, l_a exp(m_a - m) / l and l_b exp(m_b - m) / l")
_EMPTY_NAN_HINT = ("NaN when both states are empty (max -inf): exp(-inf - (-inf)) = NaN. Use 0 "
                   "instead of a maximum of -inf before subtracting, and give an empty merged "
                   "state (-inf, 0, zeros)")


# =========================================================================== 1. merge
def _pack(m, l, o):
    return torch.cat([m.unsqueeze(-1), l.unsqueeze(-1), o], dim=-1)  # (..., 2 + Dv)


def _merge(m_a, l_a, o_a, m_b, l_b, o_b, *, rescale="good", renorm=True, average=False,
           guard=True):
    m = torch.maximum(m_a, m_b)
    ms = torch.where(torch.isfinite(m), m, torch.zeros_like(m)) if guard else m
    if rescale == "good":
        a, b = torch.exp(m_a - ms), torch.exp(m_b - ms)
    elif rescale == "inverse":
        a, b = torch.exp(ms - m_a), torch.exp(ms - m_b)
        a, b = torch.nan_to_num(a, posinf=0.0), torch.nan_to_num(b, posinf=0.0)
    else:
        a, b = torch.ones_like(m), torch.ones_like(m)
    l = l_a * a + l_b * b
    acc = o_a * (l_a * a).unsqueeze(-1) + o_b * (l_b * b).unsqueeze(-1)
    if average:
        o = (o_a + o_b) / 2
    elif not renorm:
        o = acc
    elif guard:
        o = torch.where(l.unsqueeze(-1) > 0, acc / torch.where(l > 0, l, torch.ones_like(l))
                        .unsqueeze(-1), torch.zeros_like(acc))
    else:
        o = acc / l.unsqueeze(-1)
    return _pack(m, l, o)


def _merge_ref(m_a, l_a, o_a, m_b, l_b, o_b):
    return _merge(m_a, l_a, o_a, m_b, l_b, o_b)


MERGE_MISTAKES = [
    Mistake("no rescaling", _NO_RESCALE_HINT,
            lambda *s: _merge(*s, rescale="none")),
    Mistake("inverse rescaling", _INVERSE_RESCALE_HINT,
            lambda *s: _merge(*s, rescale="inverse")),
    Mistake("output not renormalised", _UNNORMALISED_HINT, lambda *s: _merge(*s, renorm=False)),
    Mistake("outputs averaged", _AVERAGE_HINT, lambda *s: _merge(*s, average=True)),
    Mistake("NaN on empty states", _EMPTY_NAN_HINT, lambda *s: _merge(*s, guard=False)),
]


def _state(scores, values):
    """The online-softmax state of ``scores`` (B, H, Nq, n) and ``values`` (B, H, n, Dv)."""
    m = scores.amax(-1)  # (B, H, Nq)
    ms = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(scores - ms.unsqueeze(-1))
    l = e.sum(-1)
    o = (e @ values) / torch.where(l > 0, l, torch.ones_like(l)).unsqueeze(-1)
    return m, l, o


def _merge_case(seed, dtype, *, sizes=None, empty=None, scale=1.0):
    """Two states of the same queries over two disjoint sets of keys.

    empty: None | 'a' (state a read no key) | 'both' | 'rows' (some queries saw no key in a).
    """
    g = generator(seed)
    s = sizes or dict(B=integer(g, 1, 2), H=integer(g, 1, 3), Nq=integer(g, 1, 5),
                      Na=integer(g, 1, 6), Nb=integer(g, 1, 6), Dv=integer(g, 1, 4))
    b, h, nq, na, nb, dv = (s[k] for k in ("B", "H", "Nq", "Na", "Nb", "Dv"))
    sa = randn(g, b, h, nq, na, scale=scale)
    sb = randn(g, b, h, nq, nb, scale=scale) + 1.0  # a different maximum than a's
    va, vb = randn(g, b, h, na, dv), randn(g, b, h, nb, dv)
    inf = float("-inf")
    if empty in ("a", "both"):
        sa = torch.full_like(sa, inf)
    if empty == "both":
        sb = torch.full_like(sb, inf)
    if empty == "rows":
        sa[:, :, 0] = inf
    args = tuple(t.to(dtype) for t in _state(sa, va) + _state(sb, vb))
    label = (f"two states of ({b}, {h}, {nq}) queries with Dv = {dv}, over {na} and {nb} keys, "
             f"{dtname(dtype)}")
    label += {None: "", "a": "; state a read no key (max -inf, sum 0)",
              "both": "; neither state read a key", "rows": "; query 0 saw no key in a",
              }[empty] + (f"; scores of scale {scale:g}" if scale != 1.0 else "")
    return Case(args, label=label, meta=dict(s))


def _as_state(out):
    """(m, l, o) tensors from a sanitized output, or (None, message)."""
    if isinstance(out, dict) and isinstance(out.get("items"), list):
        items = out["items"]
        if len(items) != 3:
            return None, f"expected a tuple (max, sum, output), got {out.get('len', len(items))} " \
                         f"items"
        if all(isinstance(t, torch.Tensor) and type(t) is torch.Tensor for t in items):
            return tuple(items), None
        return None, "expected a tuple of three tensors (max, sum, output)"
    if isinstance(out, torch.Tensor):
        return None, "expected a tuple (max, sum, output), got a single tensor"
    return None, f"expected a tuple (max, sum, output), got {out!r:.60}"


def _judge_merge_case(ex, case, oc, *, values=True):
    bad = status_problem(ex, oc)
    if bad:
        return bad
    got, msg = _as_state(oc.get("output"))
    if got is None:
        return Verdict(False, msg)
    m_a, _, o_a = case.args[:3]
    want = (tuple(m_a.shape), tuple(m_a.shape), tuple(o_a.shape))
    for t, w, what in zip(got, want, ("max", "sum", "output")):
        if tuple(t.shape) != w:
            return Verdict(False, f"the merged {what} has shape {tuple(t.shape)}, expected {w}",
                           hint=shape_hint(t.shape, w))
        if t.dtype != case.dtype:
            return Verdict(False, f"the merged {what} has dtype {t.dtype}, expected "
                                  f"{case.dtype} (the dtype of the inputs)")
    if not values:
        return Verdict(True, "three tensors of the right shapes and dtype")
    from ..compare import expected_output
    expected = expected_output(ex, case)
    actual = _pack(*got)
    lines = compare_tensors(actual, expected, case.dtype,
                            what="the merged state [max, sum, output...]")
    if lines is None:
        return Verdict(True)
    mk = match_mistake(ex, case, actual, expected)
    return Verdict(False, lines[0], mk.hint if mk else None,
                   lines[1:] + ["(the state is shown packed as [max, sum, output...] along the "
                                "last axis)"])


def _merge_check(name, tier, cases, *, values=True):
    def judge(ex, cs, outcomes):
        outcomes = list(outcomes) if isinstance(outcomes, (list, tuple)) else []
        for i, case in enumerate(cs):
            oc = outcomes[i] if i < len(outcomes) else None
            v = _judge_merge_case(ex, case, oc, values=values)
            if not v.passed:
                v.details.insert(0, f"case {i + 1} of {len(cs)}: {case.label}")
                return v
        return Verdict(True, f"{len(cs)} case{'s' if len(cs) != 1 else ''}")
    return Check(name, tier, cases, judge, probe="call")


def _merge_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        _merge_check("a tuple (max, sum, output) of the right shapes and dtype", "shape",
                     lambda: [_merge_case(1, f32, sizes=dict(B=2, H=3, Nq=4, Na=3, Nb=5,
                                                             Dv=2))], values=False),
        _merge_check("values, float64", "values",
                     lambda: [_merge_case(s, f64) for s in (11, 12, 13)]),
        _merge_check("values, float32", "values", lambda: [_merge_case(21, f32)]),
        _merge_check("large scores (std 1000): no overflow", "values",
                     lambda: [_merge_case(22, f64, scale=1000.0)]),
        _merge_check("merging with an empty state returns the other one", "edge cases",
                     lambda: [_merge_case(31, f64, empty="a"), _merge_case(32, f64,
                                                                           empty="rows")]),
        _merge_check("two empty states: (-inf, 0, zeros), not NaN", "edge cases",
                     lambda: [_merge_case(33, f64, empty="both")]),
        trace_check("built from torch operations, not the library's online softmax", "rules",
                    lambda: [_merge_case(41, f64)],
                    forbid=("attention_lib.efficient.flash.online_softmax",)),
    ]


# trace_check judges with judge_output_case (one tensor); the rules check only needs the
# forbidden calls, so it gets the merge judge on the outcome of its trace probe.
def _rules_merge(check: Check) -> Check:
    base = _merge_check(check.name, check.tier, check.cases)

    def judge(ex, cs, outcomes):
        v = base.judge(ex, cs, outcomes)
        if not v.passed:
            return Verdict(False, "the output must be right too: " + v.message, v.hint,
                           v.details)
        for oc in outcomes:
            called = (oc or {}).get("forbidden") or []
            if called:
                return Verdict(False, f"calls {', '.join(map(str, called[:3]))}",
                               hint="this exercise asks you to build it from torch "
                                    "operations: the library's version is what your code "
                                    "is compared with")
        return Verdict(True)
    check.judge = judge
    return check


_MERGE_CHECKS = _merge_checks()
_MERGE_CHECKS[-1] = _rules_merge(_MERGE_CHECKS[-1])

MERGE_SOFTMAX_STATES = Exercise(
    "merge_softmax_states", "function",
    "Merge two online-softmax states (max, sum, output) over disjoint sets of keys.",
    _MERGE_CHECKS, signature="merge_softmax_states(m_a, l_a, o_a, m_b, l_b, o_b)",
    reference=_merge_ref, mistakes=MERGE_MISTAKES,
    forbid=("attention_lib.efficient.flash.online_softmax",))


# =========================================================================== 2. tiles
def _tiled_ref(query, key, value, block_size, is_causal=False):
    return reference_attention(query, key, value, is_causal=is_causal)


def _tiled_variant(*, scale=lambda d: d ** -0.5, rescale=True, per_tile=False, future=False,
                   dim=-1):
    def fn(query, key, value, block_size, is_causal=False):
        d, nq, nk = query.shape[-1], query.shape[-2], key.shape[-2]
        s = query @ key.transpose(-2, -1) * scale(d)  # (B, H, Nq, Nk)
        if is_causal:
            i, j = torch.arange(nq)[:, None], torch.arange(nk)[None, :]
            s = s.masked_fill(~((j >= i) if future else (j <= i)), float("-inf"))
        if dim != -1:
            return masked_softmax(s, None, dim=dim) @ value
        if per_tile:  # each tile normalised on its own, the tiles averaged
            outs = [masked_softmax(s[..., k0:k0 + block_size], None)
                    @ value[..., k0:k0 + block_size, :] for k0 in range(0, nk, block_size)]
            return sum(outs) / len(outs)
        if not rescale:  # a running max, but what was summed under the old one is kept as is
            mx = torch.full(s.shape[:-1] + (1,), float("-inf"), dtype=s.dtype)
            tot = torch.zeros_like(mx)
            acc = torch.zeros(s.shape[:-1] + (value.shape[-1],), dtype=s.dtype)
            for k0 in range(0, nk, block_size):
                t = s[..., k0:k0 + block_size]
                mx = torch.maximum(mx, t.amax(-1, keepdim=True))
                e = torch.exp(t - torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx)))
                tot = tot + e.sum(-1, keepdim=True)
                acc = acc + e @ value[..., k0:k0 + block_size, :]
            return acc / torch.where(tot > 0, tot, torch.ones_like(tot))
        return masked_softmax(s, None) @ value
    return fn


def _many_tiles(case: Case) -> bool:
    return case.args[1].shape[-2] > case.args[3]


TILED_MISTAKES = [
    Mistake("no scale", NO_SCALE_HINT, _tiled_variant(scale=lambda d: 1.0)),
    Mistake("no rescaling", "the running sum and output are not rescaled when the running "
                            "maximum grows: multiply both by exp(m_old - m_new) before adding "
                            "the new tile", _tiled_variant(rescale=False), applies=_many_tiles),
    Mistake("tiles averaged", "each tile is normalised on its own and the tiles are averaged: "
                              "the softmax is over ALL the keys, so keep a running max, sum and "
                              "output across tiles and divide once at the end",
            _tiled_variant(per_tile=True), applies=_many_tiles),
    Mistake("future instead of past", "causal means key j <= query i: you kept the keys after "
                                      "the query instead", _tiled_variant(future=True),
            applies=lambda c: bool(c.kwargs.get("is_causal"))),
    Mistake("softmax over the queries", DIM_HINT, _tiled_variant(dim=-2)),
]


def _tiled_case(seed, dtype, block=None, *, sizes=None, causal=None, grad=False):
    g = generator(seed + 300)
    bs = integer(g, 1, 4) if block is None else block
    c = qkv_case(seed, dtype, sizes=sizes, ranges=dict(N=(1, 11), Nk=(1, 12)),
                 same_n=causal is not None and causal, extra=(bs,), grad=grad,
                 label_extra=f", block_size={bs}")
    if causal is not None:
        c.kwargs = {"is_causal": causal}
        c.label += f", is_causal={causal}"
    return c


def _tiled_checks():
    f64, f32 = torch.float64, torch.float32
    big = dict(B=1, H=2, N=2048, Nk=2048, D=8, Dv=8)
    return [
        output_check("output shape (B, H, Nq, Dv) and dtype", "shape",
                     lambda: [_tiled_case(1, f32, 2, sizes=dict(B=2, H=3, N=4, Nk=6, D=5,
                                                                 Dv=3))], values=False),
        output_check("values, float64, Nk a multiple of the block size", "values",
                     lambda: [_tiled_case(11, f64, 3, sizes=dict(B=2, H=2, N=5, Nk=9, D=4,
                                                                  Dv=3))]),
        output_check("values, random sizes and block sizes", "values",
                     lambda: [_tiled_case(s, f64) for s in (12, 13, 14)]),
        output_check("values, float32", "values",
                     lambda: [_tiled_case(21, f32, 2), _tiled_case(22, f32, 3)]),
        output_check("is_causal=True (key j <= query i)", "masks",
                     lambda: [_tiled_case(s, f64, causal=True) for s in (31, 32)]),
        output_check("block_size = 1, block_size >= Nk, one query", "edge cases",
                     lambda: [_tiled_case(41, f64, 1), _tiled_case(42, f64, 50),
                              _tiled_case(43, f64, 2, sizes=dict(B=1, H=1, N=1, Nk=5, D=3,
                                                                 Dv=2))]),
        grad_check("gradients of query, key and value",
                   lambda: [_tiled_case(51, f64, 2, grad=True, causal=True,
                                        sizes=dict(B=1, H=2, N=5, D=3, Dv=2))]),
        trace_check("no (Nq, Nk) tensor: N = 2048, block_size = 32", "efficiency",
                    lambda: [_tiled_case(61, f64, 32, sizes=big)], max_bytes=quarter_of_scores,
                    max_rss=half_of_scores_resident,
                    explain="you built a tensor as large as the (Nq, Nk) score matrix (or a "
                            "big part of it). Loop over blocks of keys, keep for every query a "
                            "running max, sum and output, and rescale them when the max grows"),
        trace_check("built from torch operations, not torch's or the library's attention",
                    "rules", lambda: [_tiled_case(71, f64, causal=True)],
                    forbid=("torch.nn.functional.scaled_dot_product_attention",
                            "op:scaled_dot_product",
                            "attention_lib.functional.reference_attention",
                            "attention_lib.functional.attention",
                            "attention_lib.efficient.flash.flash_attention",
                            "attention_lib.efficient.flash.flash_attention_lse",
                            "attention_lib.efficient.flash.online_softmax")),
    ]


TILED_ATTENTION = Exercise(
    "tiled_attention", "function",
    "Exact softmax attention by blocks of keys with the online softmax, in O(N) memory.",
    _tiled_checks(), signature="tiled_attention(query, key, value, block_size, is_causal=False)",
    reference=_tiled_ref, mistakes=TILED_MISTAKES,
    forbid=("attention_lib.efficient.flash.flash_attention",))


# =========================================================================== 3. answer
TILES_QUESTION = dict(n=1024, block=128)


def causal_tiles() -> int:
    q = TILES_QUESTION
    sched = tile_schedule(q["n"], q["n"], q["block"], q["block"], is_causal=True)
    return int((sched > 0).sum())


ANSWER_CAUSAL_TILES = Exercise(
    "answer_causal_tiles", "answer",
    "Predict how many (128 x 128) tiles causal FlashAttention computes for N = 1024.",
    [answer_check("your prediction matches the tile schedule", causal_tiles, rtol=0.0,
                  atol=0.5,
                  wrong=[(64.0, "that is every tile: causal attention skips the tiles that lie "
                                "entirely above the diagonal (keys after every query of the "
                                "block)"),
                         (28.0, "the 8 tiles ON the diagonal are computed too (partly masked)"),
                         (32.0, "half of the tiles is not enough: the diagonal tiles are "
                                "computed as well")])],
    signature="answer_causal_tiles = <number>")


# =========================================================================== 4. experiment
FLASH_LENGTHS = tuple(2**i for i in range(6, 13))  # 64 ... 4096
_FLASH = {}


def flash_memory_ratio(n: int, d: int = 64, seed: int = 0) -> float:
    """Peak memory of reference_attention / that of flash_attention (blocks of 128),
    (1, 1, n, d) float32."""
    g = generator(seed + n)
    q, k, v = (torch.randn(1, 1, n, d, generator=g) for _ in range(3))
    return (peak_memory(reference_attention, q, k, v).peak_bytes
            / peak_memory(flash_attention, q, k, v).peak_bytes)


def tenfold_flash_n() -> int:
    if "n" not in _FLASH:
        _FLASH["n"] = next((n for n in FLASH_LENGTHS if flash_memory_ratio(n) >= 10),
                           FLASH_LENGTHS[-1])
    return _FLASH["n"]


def _judge_flash_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the length you measured")
    if bad:
        return bad
    if value not in FLASH_LENGTHS:
        return Verdict(False, f"{value:g} is not one of the lengths of the experiment "
                              f"(64, 128, ..., 4096)")
    return Verdict(True, f"N = {int(value)}")


def _judge_flash_value(ex, cases, outcomes):
    v = _judge_flash_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = tenfold_flash_n()
    if not truth / 2 <= value <= truth * 2:
        side = "too small" if value < truth else "too large"
        return Verdict(False, f"N = {int(value)} is {side}: measure the peak memory of both "
                              f"functions with peak_memory at every length of the list",
                       hint="the reference's memory grows as N^2 (the score matrix), "
                            "FlashAttention's as N")
    return Verdict(True, f"N = {int(value)} agrees with the measurement (within a factor 2)")


_ONE = [Case(label="the value of my_flash_memory_n")]
MY_FLASH_MEMORY_N = Exercise(
    "my_flash_memory_n", "experiment",
    "Open-ended: from which N on does FlashAttention need 10x less memory than the reference?",
    [Check("a length of the experiment (a power of 2)", "shape", _ONE, _judge_flash_form,
           probe="value"),
     Check("agrees with the measurement within a factor 2", "values", _ONE,
           _judge_flash_value, probe="value")],
    signature="my_flash_memory_n = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: FlashAttention",
    [MERGE_SOFTMAX_STATES, TILED_ATTENTION, ANSWER_CAUSAL_TILES, MY_FLASH_MEMORY_N]))
