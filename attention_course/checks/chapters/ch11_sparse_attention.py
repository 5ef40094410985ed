"""Exercises of chapter 11, "Sparse attention patterns" (``exercises/11_sparse_attention.ipynb``).

1. ``local_window_mask`` -- the (N, N) bool mask of a sliding window, optionally causal.
2. ``blocked_window_attention`` -- sliding-window attention by blocks, never (N, N).
3. ``answer_bigbird_density`` -- predict: the fraction of nonzero blocks of a BigBird layout.
4. ``my_window_layers`` -- open-ended: how many stacked window layers connect every pair?

The references are :mod:`attention_lib.masks`' masks and
:func:`~attention_lib.functional.reference_attention` with a dense mask, in float64.
Beltagy et al. (2020), Longformer; Zaheer et al. (2020), BigBird.
"""
from __future__ import annotations

import torch

from attention_lib.functional import masked_softmax, reference_attention
from attention_lib.masks import bigbird_layout, random_blocks, sliding_window_mask

from ..cases import generator, integer
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check
from ._part3 import AFTER_HINT, NO_SCALE_HINT, half_of_scores_resident, qkv_case, quarter_of_scores

ASSIGNMENT_NAME = "11_sparse_attention"

_STRICT_HINT = ("the window is |i - j| <= window: keys at distance exactly `window` are inside "
                "it (you used a strict inequality)")
_INVERTED_HINT = ("your mask is INVERTED: True must mean 'may attend', i.e. the keys INSIDE the "
                  "window (the convention of torch's scaled_dot_product_attention)")
_ONE_SIDED_HINT = ("your window is one-sided: without is_causal, query i also sees the keys "
                   "AFTER it, i + 1 ... i + window")
_CAUSAL_DIR_HINT = ("causal means key j <= query i (the past), so the mask is lower "
                    "triangular: you kept the future instead")
_FULL_HINT = "the window is ignored: your output equals full (dense) attention"


# =========================================================================== 1. the mask
def _mask_ref(n, window, is_causal=False):
    return sliding_window_mask(n, window, is_causal=is_causal)


def _mask_variant(keep):
    def fn(n, window, is_causal=False):
        i = torch.arange(n)[:, None]
        j = torch.arange(n)[None, :]
        return keep(i, j, window, is_causal)
    return fn


def _good(i, j, w, c):
    return ((i - j).abs() <= w) & ((j <= i) if c else True)


MASK_MISTAKES = [
    Mistake("inverted mask", _INVERTED_HINT, _mask_variant(lambda i, j, w, c: ~_good(i, j, w, c))),
    Mistake("strict inequality", _STRICT_HINT,
            _mask_variant(lambda i, j, w, c: ((i - j).abs() < w) & ((j <= i) if c else True))),
    Mistake("one-sided window", _ONE_SIDED_HINT,
            _mask_variant(lambda i, j, w, c: (i - j >= 0) & (i - j <= w)),
            applies=lambda case: not case.kwargs.get("is_causal", False)),
    Mistake("future instead of past", _CAUSAL_DIR_HINT,
            _mask_variant(lambda i, j, w, c: ((i - j).abs() <= w) & (j >= i)),
            applies=lambda case: case.kwargs.get("is_causal", False)),
]


def _mask_case(n, window, is_causal=None):
    kwargs = {} if is_causal is None else {"is_causal": is_causal}
    label = f"n={n}, window={window}" + ("" if is_causal is None else f", is_causal={is_causal}")
    return Case((n, window), kwargs, label=label, meta={"dtype": torch.bool})


def _random_mask_cases(seed, count, is_causal=None):
    g = generator(seed)
    out = []
    for _ in range(count):
        n = integer(g, 2, 12)
        out.append(_mask_case(n, integer(g, 1, max(1, n - 2)), is_causal))
    return out


def _mask_checks():
    return [
        output_check("a (N, N) bool tensor", "shape", lambda: [_mask_case(7, 2)], values=False),
        output_check("values, random sizes and windows", "values",
                     lambda: _random_mask_cases(11, 3)),
        output_check("is_causal=True keeps only the window's past half", "masks",
                     lambda: _random_mask_cases(21, 2, is_causal=True)),
        output_check("window=0 (the diagonal) and window >= N (everything)", "edge cases",
                     lambda: [_mask_case(5, 0), _mask_case(4, 9), _mask_case(1, 0)]),
        trace_check("built from torch operations, not attention_lib's masks", "rules",
                    lambda: [_mask_case(9, 3)],
                    forbid=("attention_lib.masks.sliding_window_mask",
                            "attention_lib.masks.create_mask",
                            "attention_lib.masks.causal_mask")),
    ]


LOCAL_WINDOW_MASK = Exercise(
    "local_window_mask", "function",
    "The (N, N) bool mask of a sliding window |i - j| <= window (and j <= i if causal).",
    _mask_checks(), signature="local_window_mask(n, window, is_causal=False)",
    reference=_mask_ref, mistakes=MASK_MISTAKES,
    forbid=("attention_lib.masks.sliding_window_mask",))


# =========================================================================== 2. blocked
def _bw_ref(query, key, value, window):
    n = query.shape[-2]
    return reference_attention(query, key, value, sliding_window_mask(n, window))


def _bw_variant(*, keep=None, scale=None, after=False):
    def fn(query, key, value, window):
        n, d = query.shape[-2], query.shape[-1]
        i = torch.arange(n)[:, None]
        j = torch.arange(n)[None, :]
        m = (i - j).abs() <= window if keep is None else keep(i, j, window)
        s = query @ key.transpose(-2, -1) * (d ** -0.5 if scale is None else scale(d))
        if after:
            return (s.softmax(-1) * m) @ value
        return masked_softmax(s, m) @ value
    return fn


BW_MISTAKES = [
    Mistake("no scale", NO_SCALE_HINT, _bw_variant(scale=lambda d: 1.0)),
    Mistake("window ignored", _FULL_HINT, _bw_variant(keep=lambda i, j, w: (i - j).abs() >= 0)),
    Mistake("strict inequality", _STRICT_HINT,
            _bw_variant(keep=lambda i, j, w: (i - j).abs() < w)),
    Mistake("one-sided window", _ONE_SIDED_HINT,
            _bw_variant(keep=lambda i, j, w: (i - j >= 0) & (i - j <= w))),
    Mistake("mask after softmax", AFTER_HINT, _bw_variant(after=True)),
]

_BW_RANGES = dict(N=(2, 13), D=(1, 6), Dv=(1, 5))


def _bw_case(seed, dtype, window=None, *, sizes=None, grad=False):
    g = generator(seed + 1000)
    w = integer(g, 1, 4) if window is None else window
    c = qkv_case(seed, dtype, sizes=sizes, ranges=_BW_RANGES, extra=(w,), grad=grad,
                 label_extra=f", window={w}")
    c.meta["window"] = w
    return c


def _bw_checks():
    f64, f32 = torch.float64, torch.float32
    big = dict(B=1, H=2, N=2048, D=8, Dv=8)
    return [
        output_check("output shape (B, H, N, Dv) and dtype", "shape",
                     lambda: [_bw_case(1, f32, 2, sizes=dict(B=2, H=3, N=9, D=4, Dv=5))],
                     values=False),
        output_check("values, float64, N a multiple of the window", "values",
                     lambda: [_bw_case(11, f64, 3, sizes=dict(B=2, H=2, N=12, D=4, Dv=3)),
                              _bw_case(12, f64, 2, sizes=dict(B=1, H=3, N=8, D=5, Dv=2))]),
        output_check("values, random sizes (N not a multiple of the window)", "values",
                     lambda: [_bw_case(s, f64) for s in (13, 14, 15)]),
        output_check("values, float32", "values", lambda: [_bw_case(s, f32) for s in (21, 22)]),
        output_check("window=0 (each query sees itself) and window >= N (full attention)",
                     "edge cases",
                     lambda: [_bw_case(31, f64, 0, sizes=dict(B=1, H=2, N=5, D=3, Dv=2)),
                              _bw_case(32, f64, 9, sizes=dict(B=2, H=1, N=6, D=3, Dv=4)),
                              _bw_case(33, f64, 2, sizes=dict(B=1, H=1, N=1, D=2, Dv=2))]),
        grad_check("gradients of query, key and value",
                   lambda: [_bw_case(41, f64, 2, sizes=dict(B=1, H=2, N=7, D=3, Dv=2),
                                     grad=True)]),
        trace_check("no (N, N) tensor: N = 2048, window = 8", "efficiency",
                    lambda: [_bw_case(51, f64, 8, sizes=big)], max_bytes=quarter_of_scores,
                    max_rss=half_of_scores_resident,
                    explain="you built a tensor as large as the (N, N) score matrix (or a big "
                            "part of it). Cut the sequence into blocks of `window` queries: "
                            "block b needs only the keys of blocks b-1, b, b+1, so the scores "
                            "are (B, H, N / window, window, 3 window): O(N window)"),
        trace_check("built from torch operations, not the library's attention", "rules",
                    lambda: [_bw_case(61, f64, 2)],
                    forbid=("attention_lib.efficient.sparse.sliding_window_attention",
                            "attention_lib.functional.reference_attention",
                            "torch.nn.functional.scaled_dot_product_attention",
                            "op:scaled_dot_product")),
    ]


BLOCKED_WINDOW_ATTENTION = Exercise(
    "blocked_window_attention", "function",
    "Sliding-window attention |i - j| <= window computed by blocks, in O(N window) memory.",
    _bw_checks(), signature="blocked_window_attention(query, key, value, window)",
    reference=_bw_ref, mistakes=BW_MISTAKES,
    forbid=("attention_lib.efficient.sparse.sliding_window_attention",))


# =========================================================================== 3. answer
#: The layout of the question: 1024 tokens in blocks of 64, a band of 3 blocks, 1 global block,
#: 3 random blocks per query block.
BIGBIRD_QUESTION = dict(num_blocks=16, num_random=3, window_blocks=1, num_global_blocks=1)


def bigbird_density(seed: int = 0) -> float:
    q = BIGBIRD_QUESTION
    rand = random_blocks(q["num_blocks"], q["num_random"], window_blocks=q["window_blocks"],
                         num_global_blocks=q["num_global_blocks"], generator=generator(seed))
    layout = bigbird_layout(q["num_blocks"], rand, window_blocks=q["window_blocks"],
                            num_global_blocks=q["num_global_blocks"])
    return float(layout.double().mean())


ANSWER_BIGBIRD_DENSITY = Exercise(
    "answer_bigbird_density", "answer",
    "Predict the fraction of nonzero blocks of a 16 x 16 BigBird layout.",
    [answer_check("your prediction matches the layout", bigbird_density, rtol=0.02,
                  wrong=[(112 / 256, "you gave every block row 7 blocks: the global block row "
                                     "attends to ALL 16 blocks, and rows 1 and 15 have only 2 "
                                     "band blocks besides the global one"),
                         (128 / 256, "you counted some blocks twice: the global column and "
                                     "the band overlap in rows 0 and 1"),
                         (46 / 256, "that is the band alone: add the global row and column "
                                    "and the 3 random blocks of every other row")])],
    signature="answer_bigbird_density = <number>")


# =========================================================================== 4. experiment
#: The question: N tokens, a two-sided window; how many stacked layers until every token's
#: output can depend on every input token?
LAYERS_QUESTION = dict(n=64, window=4)


def layers_to_connect(n: int, window: int) -> int:
    """Smallest L with (A^L)_{ij} > 0 for all i, j, A the window mask (self loops included)."""
    a = sliding_window_mask(n, window).double()
    reach = a.clone()
    layers = 1
    while not bool((reach > 0).all()) and layers <= n:
        reach = ((reach @ a) > 0).double()
        layers += 1
    return layers


def _judge_layers(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the number of layers")
    if bad:
        return bad
    if value != int(value) or value < 1:
        return Verdict(False, f"{value:g} is not a number of layers (a positive integer)")
    return Verdict(True, f"{int(value)} layers")


def _judge_layers_value(ex, cases, outcomes):
    v = _judge_layers(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = layers_to_connect(**LAYERS_QUESTION)
    if abs(value - truth) > 1:
        side = "too few" if value < truth else "too many"
        return Verdict(False, f"{int(value)} layers is {side}: stack the window mask (a boolean "
                              f"matrix product per layer) until no pair is left unconnected",
                       hint="information moves at most `window` positions per layer, in each "
                            "direction")
    return Verdict(True, f"{int(value)} layers agrees with the measurement")


_ONE = [Case(label="the value of my_window_layers")]
MY_WINDOW_LAYERS = Exercise(
    "my_window_layers", "experiment",
    "Open-ended: how many stacked sliding-window layers connect every pair of 64 tokens?",
    [Check("a number of layers (a positive integer)", "shape", _ONE, _judge_layers,
           probe="value"),
     Check("agrees with the measurement (within one layer)", "values", _ONE,
           _judge_layers_value, probe="value")],
    signature="my_window_layers = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: sparse attention patterns",
    [LOCAL_WINDOW_MASK, BLOCKED_WINDOW_ATTENTION, ANSWER_BIGBIRD_DENSITY, MY_WINDOW_LAYERS]))
