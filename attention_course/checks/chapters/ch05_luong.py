"""Exercises of chapter 5, "Luong attention" (``exercises/05_luong.ipynb``).

1. ``luong_attentional_state`` -- general score of s_t, masked softmax, context, and
   h~_t = tanh(W_c [c_t; s_t]).
2. ``local_p_weights`` -- local-p: softmax inside a window around p_t, times a Gaussian.
3. ``answer_gaussian_edge`` -- predict: the Gaussian factor at the edge of the window.
4. ``my_half_width`` -- open-ended: how wide must a window around the diagonal be?

The references are :mod:`attention_lib.functional` and the local-p formulas of
:class:`attention_lib.seq2seq.LuongDecoder`, computed in float64. Luong et al. (2015),
eq. 5, 8-10.
"""
from __future__ import annotations

import math

import torch

from attention_lib.functional import general_score, masked_softmax
from attention_lib.masks import padding_mask

from ..cases import draw_sizes, generator, randn, uniform
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check

ASSIGNMENT_NAME = "05_luong"


def _dtname(dtype) -> str:
    return str(dtype).replace("torch.", "")


# =========================================================================== 1. attentional state
def _ls_ref(s, enc, src_mask, w_a, w_c):
    scores = general_score(s[:, None], enc, w_a)[:, 0]  # (B, Ns)
    alpha = masked_softmax(scores, src_mask)  # (B, Ns)
    context = (alpha[:, :, None] * enc).sum(1)  # (B, Henc)
    return torch.tanh(torch.cat([context, s], dim=-1) @ w_c.T)  # (B, Hout)


def _ls_variant(*, order="cs", act=torch.tanh, keep=lambda m: m, bilinear="good"):
    def fn(s, enc, src_mask, w_a, w_c):
        if bilinear == "transposed":
            scores = (enc @ w_a @ s[:, :, None])[..., 0]  # h^T W s
        else:
            scores = (s[:, None, :] @ w_a @ enc.transpose(1, 2))[:, 0]  # s^T W h
        alpha = masked_softmax(scores, keep(src_mask))
        context = (alpha[:, :, None] * enc).sum(1)
        both = torch.cat([context, s] if order == "cs" else [s, context], dim=-1)
        return act(both @ w_c.T)
    return fn


def _padded(case: Case) -> bool:
    return not bool(case.args[2].all())


def _square(case: Case) -> bool:
    s, enc = case.args[0], case.args[1]
    return s.shape[-1] == enc.shape[-1]


LS_MISTAKES = [
    Mistake("[s; c] instead of [c; s]", "the attentional state is tanh(W_c [c_t; s_t]): the "
                                        "context comes FIRST in the concatenation, then the "
                                        "decoder state",
            _ls_variant(order="sc")),
    Mistake("no tanh", "h~_t = tanh(W_c [c_t; s_t]): you left out the tanh",
            _ls_variant(act=lambda x: x)),
    Mistake("inverted mask", "your output matches an INVERTED mask: src_mask is True at the real "
                             "source words", _ls_variant(keep=lambda m: ~m), applies=_padded),
    Mistake("mask ignored", "the padding gets weight: mask the scores of the padding positions "
                            "with -inf before the softmax",
            _ls_variant(keep=lambda m: torch.ones_like(m)), applies=_padded),
    Mistake("W_a transposed", "the general score is s_t^T W_a h_j with W_a of shape "
                              "(Hdec, Henc): you computed h_j^T W_a s_t",
            _ls_variant(bilinear="transposed"), applies=_square),
]


def _ls_case(seed, dtype, *, sizes=None, full=False, grad=False, square=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 4), Ns=(2, 8), Hdec=(1, 6), Henc=(1, 6), Hout=(1, 5))
    b, ns, hdec, henc, hout = (s[k] for k in ("B", "Ns", "Hdec", "Henc", "Hout"))
    if square:
        henc = hdec
    lengths = torch.full((b,), ns) if full else torch.randint(1, ns + 1, (b,), generator=g)
    mask = padding_mask(lengths, ns)  # (B, Ns)
    st, enc = randn(g, b, hdec, dtype=dtype), randn(g, b, ns, henc, dtype=dtype)
    w_a = randn(g, hdec, henc, dtype=dtype, scale=(hdec * henc) ** -0.25)
    w_c = randn(g, hout, henc + hdec, dtype=dtype, scale=(henc + hdec) ** -0.5)
    label = (f"s ({b}, {hdec}), enc ({b}, {ns}, {henc}), source lengths {lengths.tolist()}, "
             f"w_c ({hout}, {henc + hdec}), {_dtname(dtype)}")
    case = Case((st, enc, mask, w_a, w_c), label=label)
    if grad:
        case.wrt, case.upstream = (0, 1, 3, 4), randn(g, b, hout, dtype=dtype)
    return case


LS_FORBID = ("attention_lib.functional.general_score", "attention_lib.functional.masked_softmax",
             "attention_lib.seq2seq.LuongDecoder")


def _ls_checks():
    f64, f32 = torch.float64, torch.float32
    fixed = dict(B=3, Ns=6, Hdec=4, Henc=5, Hout=3)
    return [
        output_check("output shape (B, Hout) and dtype", "shape",
                     lambda: [_ls_case(1, f32, sizes=fixed)], values=False),
        output_check("values without padding, float64", "values",
                     lambda: [_ls_case(12, f64, full=True, square=True),
                              _ls_case(11, f64, full=True)]),
        output_check("values, float32", "values", lambda: [_ls_case(s, f32) for s in (21, 22)]),
        output_check("padded sources: padding gets no weight", "masks",
                     lambda: [_ls_case(s, f64) for s in (31, 32)]),
        output_check("a one-word source", "edge cases",
                     lambda: [_ls_case(41, f64, sizes=dict(B=2, Ns=1, Hdec=3, Henc=2, Hout=2))]),
        grad_check("gradients of s, enc, w_a and w_c",
                   lambda: [_ls_case(51, f64, sizes=dict(B=2, Ns=4, Hdec=3, Henc=2, Hout=2),
                                     grad=True)]),
        trace_check("built from torch operations, not the library's scores or decoder", "rules",
                    lambda: [_ls_case(61, f64)], forbid=LS_FORBID),
    ]


LUONG_ATTENTIONAL_STATE = Exercise(
    "luong_attentional_state", "function",
    "Luong's global attention with the general score, and the attentional state "
    "tanh(W_c [c; s]).",
    _ls_checks(), signature="luong_attentional_state(s, enc, src_mask, w_a, w_c)",
    reference=_ls_ref, mistakes=LS_MISTAKES, forbid=LS_FORBID)


# =========================================================================== 2. local-p
def _lp_parts(scores, center, half_width):
    j = torch.arange(scores.shape[-1], dtype=scores.dtype)[None, :]  # (1, Ns)
    dist = j - center[:, None]  # (B, Ns)
    return dist, dist.abs() <= half_width


def _lp_ref(scores, center, half_width):
    dist, inside = _lp_parts(scores, center, half_width)
    sigma = half_width / 2
    return masked_softmax(scores, inside) * torch.exp(-dist**2 / (2 * sigma**2))  # (B, Ns)


def _lp_variant(*, sigma=lambda d: d / 2, gauss=True, window=True, strict=False, inside=False):
    def fn(scores, center, half_width):
        dist, keep = _lp_parts(scores, center, half_width)
        if strict:
            keep = dist.abs() < half_width
        if not window:
            keep = torch.ones_like(keep)
        g = torch.exp(-dist**2 / (2 * sigma(half_width) ** 2))
        if inside:  # the Gaussian inside the softmax, as a log-bias
            return masked_softmax(scores - dist**2 / (2 * sigma(half_width) ** 2), keep)
        w = masked_softmax(scores, keep)
        return w * g if gauss else w
    return fn


def _edge_on_window(case: Case) -> bool:
    scores, center, d = case.args
    dist, _ = _lp_parts(scores.double(), center.double(), d)
    return bool((dist.abs() == d).any())


LP_MISTAKES = [
    Mistake("sigma = D", "Luong et al. set sigma = D / 2 (half the half-width): you used "
                         "sigma = D, a Gaussian twice as wide", _lp_variant(sigma=lambda d: d)),
    Mistake("Gaussian missing", "after the softmax inside the window, multiply each weight by "
                                "exp(-(j - p_t)^2 / (2 sigma^2)), which favours the words near "
                                "p_t", _lp_variant(gauss=False)),
    Mistake("window missing", "the softmax runs only over the window [p_t - D, p_t + D]: mask "
                              "the scores of the words outside it before normalising",
            _lp_variant(window=False)),
    Mistake("Gaussian inside the softmax", "the Gaussian multiplies the weights AFTER the "
                                           "softmax (so they no longer sum to 1); you added its "
                                           "logarithm to the scores, which renormalises",
            _lp_variant(inside=True)),
    Mistake("strict window", "the window includes its ends: |j - p_t| <= D, not < D",
            _lp_variant(strict=True), applies=_edge_on_window),
]


def _lp_case(seed, dtype, *, sizes=None, d=None, center=None, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 4), Ns=(2, 12))
    b, ns = s["B"], s["Ns"]
    d = d or int(torch.randint(1, 5, (), generator=g))
    scores = randn(g, b, ns, dtype=dtype)
    if center is None:
        c = uniform(g, b, low=0.0, high=ns - 1.0, dtype=dtype)
    else:
        c = torch.as_tensor(center, dtype=dtype)
    label = (f"scores ({b}, {ns}), centers {[round(float(x), 2) for x in c]}, half_width={d}, "
             f"{_dtname(dtype)}")
    case = Case((scores, c, d), label=label)
    if grad:
        case.wrt, case.upstream = (0, 1), randn(g, b, ns, dtype=dtype)
    return case


LP_FORBID = ("attention_lib.functional.masked_softmax", "attention_lib.seq2seq.LuongDecoder")


def _lp_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, Ns) and dtype", "shape",
                     lambda: [_lp_case(1, f32, sizes=dict(B=3, Ns=9), d=2)], values=False),
        output_check("values, float64", "values", lambda: [_lp_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, float32", "values", lambda: [_lp_case(s, f32) for s in (21, 22)]),
        output_check("words outside the window get exactly 0 (ends included)", "masks",
                     lambda: [_lp_case(31, f64, sizes=dict(B=3, Ns=12), d=2,
                                       center=[3.0, 7.5, 0.0])], exact_zeros=True),
        output_check("a window wider than the sentence, centre at the ends", "edge cases",
                     lambda: [_lp_case(41, f64, sizes=dict(B=2, Ns=5), d=8,
                                       center=[0.0, 4.0])]),
        grad_check("gradients of the scores and of the centre p_t",
                   lambda: [_lp_case(51, f64, sizes=dict(B=2, Ns=7), d=3, center=[2.3, 4.6],
                                     grad=True)]),
        trace_check("built from torch operations, not the library's softmax or decoder",
                    "rules", lambda: [_lp_case(61, f64)], forbid=LP_FORBID),
    ]


LOCAL_P_WEIGHTS = Exercise(
    "local_p_weights", "function",
    "Local-p weights: softmax inside [p - D, p + D], times exp(-(j - p)^2 / (2 (D/2)^2)).",
    _lp_checks(), signature="local_p_weights(scores, center, half_width)", reference=_lp_ref,
    mistakes=LP_MISTAKES, forbid=LP_FORBID)


# =========================================================================== 3. answer
ANSWER_GAUSSIAN_EDGE = Exercise(
    "answer_gaussian_edge", "answer",
    "Predict the Gaussian factor of local-p at the edge of the window, |j - p_t| = D.",
    [answer_check("your prediction matches the formula", lambda: math.exp(-2.0), rtol=0.02,
                  wrong=[(math.exp(-0.5), "that is sigma = D; Luong et al. use sigma = D / 2, "
                                          "so the edge is two standard deviations away"),
                         (0.0, "the window cuts the weights off BEYOND the edge; at the edge "
                               "the Gaussian is small but not 0"),
                         (1.0, "that is the factor at the centre p_t")])],
    signature="answer_gaussian_edge = <number>")


# =========================================================================== 4. my_half_width
#: The experiment's data: the test split of make_corpus(2000, seed=0, max_len=60). A target
#: word is covered by a window of half-width D around the diagonal centre
#: p_t = (t + 1/2) * Ns / Nt - 1/2 when every one of its gold source links j has
#: |j - p_t| <= D. The answer is the smallest D covering at least 90% of the target words.
WIDTH_CORPUS = dict(num_pairs=2000, seed=0, max_len=60)
WIDTH_LEVEL = 0.9


def coverage(half_width: int) -> float:
    """Fraction of the test split's target words with a gold link, all of whose links are
    within ``half_width`` of the diagonal centre."""
    dists = _link_distances()
    return sum(1 for d in dists if d <= half_width) / len(dists)


_WIDTH = {}


def _link_distances():
    if "d" not in _WIDTH:
        from attention_lib.data import make_corpus
        corpus = make_corpus(WIDTH_CORPUS["num_pairs"], seed=WIDTH_CORPUS["seed"],
                             max_len=WIDTH_CORPUS["max_len"])
        out = []
        for i in corpus.splits["test"]:
            p = corpus.pairs[i]
            ns, nt = len(p.src), len(p.tgt)
            by_tgt = {}
            for s_idx, t_idx in p.alignment:
                by_tgt.setdefault(t_idx, []).append(s_idx)
            for t_idx, srcs in by_tgt.items():
                centre = (t_idx + 0.5) * ns / nt - 0.5
                out.append(max(abs(s_idx - centre) for s_idx in srcs))
        _WIDTH["d"] = out
    return _WIDTH["d"]


def smallest_half_width(level: float = WIDTH_LEVEL) -> int:
    return next(d for d in range(0, 61) if coverage(d) >= level)


def _judge_width_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the half-width you measured")
    if bad:
        return bad
    if not (value == int(value) and 0 <= value <= 60):
        return Verdict(False, f"{value:g} is not a half-width (an integer from 0 to 60)")
    return Verdict(True, f"D = {int(value)}")


def _judge_width_value(ex, cases, outcomes):
    v = _judge_width_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = smallest_half_width()
    if int(value) != truth:
        side = "too small" if value < truth else "larger than needed"
        return Verdict(False, f"D = {int(value)} is {side}: measure the fraction of target words "
                              f"whose gold links all fall in the window, for D = 0, 1, 2, ...",
                       hint="the centre of target word t is (t + 1/2) * Ns / Nt - 1/2 and a "
                            "link j is inside when |j - centre| <= D; skip target words "
                            "without a gold link")
    return Verdict(True, f"D = {int(value)}, as measured")


_ONE = [Case(label="the value of my_half_width")]
MY_HALF_WIDTH = Exercise(
    "my_half_width", "experiment",
    "Open-ended: the smallest window half-width around the diagonal covering 90% of the words.",
    [Check("a half-width (an integer from 0 to 60)", "shape", _ONE, _judge_width_form,
           probe="value"),
     Check("agrees with the measurement", "values", _ONE, _judge_width_value, probe="value")],
    signature="my_half_width = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: Luong attention",
    [LUONG_ATTENTIONAL_STATE, LOCAL_P_WEIGHTS, ANSWER_GAUSSIAN_EDGE, MY_HALF_WIDTH]))
