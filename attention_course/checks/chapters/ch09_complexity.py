"""Exercises of chapter 9, "Self-attention, convolution and recurrence"
(``exercises/09_complexity.ipynb``).

1. ``layer_flop_counts`` -- the FLOPs of one convolution, GRU and self-attention layer in
   closed form, for many sizes at once; the reference counts them with ``FlopCounterMode``.
2. ``conv_path_lengths`` -- the fewest stacked convolutions connecting input j to output i;
   the reference reads them off gradients (:func:`attention_lib.complexity.path_lengths`).
3. ``answer_attention_conv_crossover`` -- predict: the length at which self-attention costs as
   many FLOPs as a convolution of kernel size 9, at d = 64.
4. ``my_attention_time_exponent`` -- open-ended: the time exponent of self-attention measured
   on your own machine.

Vaswani et al. (2017), section 4 and Table 1.
"""
from __future__ import annotations

import functools
import math

import torch

from attention_lib.complexity import count_flops, make_layer, path_lengths

from ..cases import draw_sizes, generator
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, measured_number, number_of, output_check, trace_check

ASSIGNMENT_NAME = "09_complexity"

#: The column order of :func:`layer_flop_counts`' output.
KINDS = ("conv", "rnn", "attention")


# =========================================================================== 1. FLOP counts
@functools.lru_cache(maxsize=512)
def counted_flops(kind: str, n: int, d: int, k: int = 3) -> int:
    """FLOPs of one call of ``make_layer(kind, d, kernel_size=k)`` on a (1, n, d) input,
    counted by ``FlopCounterMode`` on the ``meta`` device (shapes only: free at any size)."""
    layer = make_layer(kind, d, kernel_size=k, device="meta")
    return count_flops(layer, torch.empty(1, n, d, device="meta"))


def _flops_ref(seq_len, d_model, kernel_size):
    rows = [[counted_flops(kind, int(n), int(d), int(k)) for kind in KINDS]
            for n, d, k in zip(seq_len.tolist(), d_model.tolist(), kernel_size.tolist())]
    return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), 3)  # (M, 3)


def _flops_variant(*, conv=None, rnn=None, attention=None, halve=False):
    def fn(seq_len, d_model, kernel_size):
        n, d, k = (t.double() for t in (seq_len, d_model, kernel_size))
        cols = [conv(n, d, k) if conv else 2 * k * n * d * d,
                rnn(n, d) if rnn else 12 * n * d * d,
                attention(n, d) if attention else 8 * n * d * d + 4 * n * n * d]
        out = torch.stack(cols, dim=-1)  # (M, 3)
        return out / 2 if halve else out
    return fn


FLOP_MISTAKES = [
    Mistake("multiply-adds counted once", "every count is half the truth: a multiply-add is TWO "
                                          "FLOPs (one multiplication, one addition), as "
                                          "FlopCounterMode counts them",
            _flops_variant(halve=True)),
    Mistake("attention without projections", "the self-attention layer also has four d x d "
                                             "projections (queries, keys, values, output): "
                                             "8 n d^2 FLOPs on top of the scores and the "
                                             "weighted sum",
            _flops_variant(attention=lambda n, d: 4 * n * n * d)),
    Mistake("attention without the output projection", "four projections, not three: the "
                                                       "output projection after the weighted "
                                                       "sum is a d x d product too",
            _flops_variant(attention=lambda n, d: 6 * n * d * d + 4 * n * n * d)),
    Mistake("attention without the weighted sum", "softmax(scores) @ V is a product of an "
                                                  "(n, n) and an (n, d) matrix: 2 n^2 d FLOPs, "
                                                  "as many as the scores Q K^T",
            _flops_variant(attention=lambda n, d: 8 * n * d * d + 2 * n * n * d)),
    Mistake("GRU state side missing", "each of the GRU's three gates multiplies the input AND "
                                      "the previous state by a d x d matrix: 6 products of "
                                      "2 d^2 FLOPs per position",
            _flops_variant(rnn=lambda n, d: 6 * n * d * d)),
    Mistake("convolution without the kernel size", "each output of the convolution reads a "
                                                   "window of k inputs: 2 k d^2 FLOPs per "
                                                   "position, not 2 d^2",
            _flops_variant(conv=lambda n, d, k: 2 * n * d * d)),
]


def _flops_case(seed, *, m=None, ranges=None, sizes=None):
    g = generator(seed)
    r = dict(n=(1, 48), d=(1, 32), k=(1, 9))
    r.update(ranges or {})
    if sizes is None:
        m = m or 5
        draws = [draw_sizes(g, **r) for _ in range(m)]
        sizes = [(s["n"], s["d"], 2 * (s["k"] // 2) + 1) for s in draws]  # odd k
    n, d, k = (torch.tensor(col, dtype=torch.int64) for col in zip(*sizes))
    label = "sizes (n, d, k) = " + ", ".join(f"({a}, {b}, {c})" for a, b, c in sizes)
    return Case((n, d, k), label=label, meta=dict(dtype=torch.int64))


FLOP_FORBID = ("attention_lib.complexity.layer_flops", "attention_lib.complexity.count_flops",
               "attention_lib.multihead.attention_cost",
               "torch.utils.flop_counter.FlopCounterMode.__enter__")


def _flops_checks():
    return [
        output_check("output shape (M, 3) and dtype int64", "shape",
                     lambda: [_flops_case(1, sizes=[(10, 4, 3), (20, 8, 5), (7, 2, 1),
                                                    (16, 16, 3)])], values=False),
        output_check("n = 64, d = 16, k = 3 (the chapter's sizes)", "values",
                     lambda: [_flops_case(11, sizes=[(64, 16, 3)])]),
        output_check("random sizes n <= 48, d <= 32, odd k <= 9", "values",
                     lambda: [_flops_case(s, m=6) for s in (12, 13, 14)]),
        output_check("one position (n = 1) and width 1 (d = 1)", "edge cases",
                     lambda: [_flops_case(31, sizes=[(1, 8, 3), (9, 1, 5), (1, 1, 1)])]),
        output_check("large sizes: counts beyond 2^31 (int64 all the way)",
                     "edge cases",
                     lambda: [_flops_case(32, sizes=[(40, 4096, 33), (96, 2048, 5)])]),
        trace_check("a closed form, not the library's counts or a FlopCounterMode", "rules",
                    lambda: [_flops_case(51, m=4)], forbid=FLOP_FORBID),
    ]


LAYER_FLOP_COUNTS = Exercise(
    "layer_flop_counts", "function",
    "FLOPs of one convolution, GRU and self-attention layer, in closed form, for many sizes.",
    _flops_checks(), signature="layer_flop_counts(seq_len, d_model, kernel_size)",
    reference=_flops_ref, mistakes=FLOP_MISTAKES, forbid=FLOP_FORBID)


# =========================================================================== 2. path lengths
def _path_ref(seq_len, kernel_size):
    """Read off gradients of stacks of 1, 2, ... convolutions (the chapter's method)."""
    with torch.enable_grad():  # the judges call references under no_grad
        return path_lengths("conv", int(seq_len), 3, kernel_size=int(kernel_size),
                            generator=torch.Generator().manual_seed(9))


def _path_variant(*, reach=lambda k: k // 2, diagonal_zero=False, floor_plus_one=False):
    def fn(seq_len, kernel_size):
        n, r = int(seq_len), reach(int(kernel_size))
        i = torch.arange(n)
        dist = (i[:, None] - i[None, :]).abs()  # (N, N)
        if r <= 0:
            return torch.where(dist == 0, 1, -1).to(torch.int64)
        if floor_plus_one:
            p = dist // r + 1
        else:
            p = (dist + r - 1) // r
            if not diagonal_zero:
                p = p.clamp(min=1)
        return p.to(torch.int64)
    return fn


def _reach_matters(case: Case) -> bool:
    n, k = case.args
    return k >= 3 and n >= 3


PATH_MISTAKES = [
    Mistake("reach k per layer", "a kernel of size k centred on position i reads i - k//2 .. "
                                 "i + k//2: each layer extends the reach by k // 2 positions "
                                 "on each side, not by k",
            _path_variant(reach=lambda k: k), applies=_reach_matters),
    Mistake("reach k - 1 per layer", "a kernel of size k reaches k // 2 positions to EACH side "
                                     "(k - 1 is the whole width of the window minus the "
                                     "centre, left and right together)",
            _path_variant(reach=lambda k: k - 1), applies=_reach_matters),
    Mistake("zero on the diagonal", "output i depends on input i only after ONE layer: the "
                                    "fewest layers is at least 1, also for j = i",
            _path_variant(diagonal_zero=True)),
    Mistake("floor plus one", "|i - j| // r + 1 is one layer too many when |i - j| is a "
                              "multiple of the reach r = k // 2: the fewest layers is "
                              "ceil(|i - j| / r), and at least 1",
            _path_variant(floor_plus_one=True), applies=_reach_matters),
]


def _path_case(seed, *, n=None, k=None):
    g = generator(seed)
    s = draw_sizes(g, n=(2, 14), h=(1, 4))
    n = n if n is not None else s["n"]
    k = k if k is not None else 2 * s["h"] + 1
    return Case((n, k), label=f"seq_len={n}, kernel_size={k}", meta=dict(dtype=torch.int64))


PATH_FORBID = ("attention_lib.complexity.path_lengths",
               "attention_lib.complexity.RecurrentLayer._window_states")


def _path_checks():
    return [
        output_check("output shape (N, N) and dtype int64", "shape",
                     lambda: [_path_case(1, n=6, k=3)], values=False),
        output_check("kernel size 3", "values",
                     lambda: [_path_case(11, n=5, k=3), _path_case(12, n=12, k=3)]),
        output_check("random lengths and odd kernel sizes 3 .. 9", "values",
                     lambda: [_path_case(s) for s in (13, 14, 15)]),
        output_check("one position (N = 1)", "edge cases", lambda: [_path_case(31, n=1, k=5)]),
        output_check("kernel size 1 never connects two positions: -1 off the diagonal",
                     "edge cases", lambda: [_path_case(32, n=5, k=1)]),
        output_check("a kernel wider than the sequence connects everything in one layer",
                     "edge cases", lambda: [_path_case(33, n=4, k=9)]),
        trace_check("not the library's path_lengths", "rules",
                    lambda: [_path_case(51, n=7, k=5)], forbid=PATH_FORBID),
    ]


CONV_PATH_LENGTHS = Exercise(
    "conv_path_lengths", "function",
    "The fewest stacked same-length convolutions of kernel size k from input j to output i.",
    _path_checks(), signature="conv_path_lengths(seq_len, kernel_size)", reference=_path_ref,
    mistakes=PATH_MISTAKES, forbid=PATH_FORBID)


# =========================================================================== 3. crossover
CROSSOVER_QUESTION = dict(d=64, k=9)


def measured_conv_crossover(d: int = CROSSOVER_QUESTION["d"],
                            k: int = CROSSOVER_QUESTION["k"]) -> int:
    """The smallest n at which self-attention's counted FLOPs reach the convolution's
    (bisection over n, counting both layers with ``FlopCounterMode``)."""
    def ahead(n):
        return counted_flops("attention", n, d) >= counted_flops("conv", n, d, k)
    lo, hi = 1, 1
    while not ahead(hi):
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ahead(mid) else (mid + 1, hi)
    return lo


_Q = CROSSOVER_QUESTION
ANSWER_ATTENTION_CONV_CROSSOVER = Exercise(
    "answer_attention_conv_crossover", "answer",
    "Predict the length at which self-attention costs as many FLOPs as a convolution of kernel "
    "size 9, at d = 64.",
    [answer_check("your prediction matches the counted FLOPs", measured_conv_crossover,
                  rtol=0.02,
                  wrong=[(float(_Q["d"]), "n = d is where self-attention overtakes the GRU "
                                          "(12 n d^2); the convolution costs 2 k n d^2"),
                         (float(_Q["k"] * _Q["d"] / 2), "that leaves out self-attention's "
                                                        "four projections, 8 n d^2: they "
                                                        "count too"),
                         (float((_Q["k"] - 4) * _Q["d"]), "set 8 n d^2 + 4 n^2 d equal to "
                                                          "2 k n d^2 and divide by 4 n d: "
                                                          "you are off by a factor 2")])],
    signature="answer_attention_conv_crossover = <number>")


# =========================================================================== 4. experiment
TIME_EXPONENT_RANGE = (0.9, 3.0)


def _judge_time_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the exponent you measured")
    if bad:
        return bad
    if not math.isfinite(value):
        return Verdict(False, f"{value:g} is not a finite number")
    return Verdict(True, f"exponent {value:.2f}")


def _judge_time_value(ex, cases, outcomes):
    v = _judge_time_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    lo, hi = TIME_EXPONENT_RANGE
    if not lo <= value <= hi:
        side = "low" if value < lo else "high"
        return Verdict(False, f"an exponent of {value:.2f} is too {side} to be a measurement of "
                              f"self-attention's time at lengths where its arithmetic "
                              f"dominates (expected between {lo} and {hi})",
                       hint="fit over lengths where one call takes at least a few milliseconds "
                            "(fixed costs per operation flatten the curve at small n), take the "
                            "median or the minimum of several runs, and fit log(time) against "
                            "log(n) with fit_exponent")
    return Verdict(True, f"{value:.2f} is a plausible measured exponent")


_ONE = [Case(label="the value of my_attention_time_exponent")]
MY_ATTENTION_TIME_EXPONENT = Exercise(
    "my_attention_time_exponent", "experiment",
    "Open-ended: the exponent p of time ~ n^p of self-attention, measured on your machine.",
    [Check("a finite number", "shape", _ONE, _judge_time_form, probe="value"),
     Check("a plausible measured exponent", "values", _ONE, _judge_time_value, probe="value")],
    signature="my_attention_time_exponent = <number>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: self-attention, convolution and recurrence",
    [LAYER_FLOP_COUNTS, CONV_PATH_LENGTHS, ANSWER_ATTENTION_CONV_CROSSOVER,
     MY_ATTENTION_TIME_EXPONENT]))
