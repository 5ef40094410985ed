"""Exercises of chapter 4, "Bahdanau attention" (``exercises/04_bahdanau.ipynb``).

1. ``bahdanau_context`` -- one decoder step: additive scores, masked softmax, context vector.
2. ``hard_alignment_aer`` -- the alignment error rate of an attention matrix read by argmax.
3. ``answer_additive_scores`` -- predict: how many additive scores one translation computes.
4. ``my_diagonal_aer`` -- open-ended: the AER of the diagonal baseline on the course corpus.

The references are :mod:`attention_lib.functional` and :mod:`attention_lib.metrics`, computed
in float64. Bahdanau et al. (2014), appendix A.1.2; Och and Ney (2003), eq. 6.
"""
from __future__ import annotations

import math

import torch

from attention_lib.functional import additive_score, masked_softmax
from attention_lib.masks import padding_mask
from attention_lib.metrics import alignment_error_rate, diagonal_attention, hard_alignment

from ..cases import draw_sizes, generator, randn
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check

ASSIGNMENT_NAME = "04_bahdanau"


def _dtname(dtype) -> str:
    return str(dtype).replace("torch.", "")


# =========================================================================== 1. context
def _bc_ref(s_prev, enc, src_mask, w_s, w_h, v):
    scores = additive_score(s_prev[:, None], enc, w_s, w_h, v)[:, 0]  # (B, Ns)
    weights = masked_softmax(scores, src_mask)  # (B, Ns)
    return (weights[:, :, None] * enc).sum(1)  # (B, Henc)


def _bc_variant(*, act=torch.tanh, keep=lambda m: m, dim=-1, after=False):
    def fn(s_prev, enc, src_mask, w_s, w_h, v):
        hidden = act((s_prev @ w_s.T)[:, None, :] + enc @ w_h.T)  # (B, Ns, A)
        scores = hidden @ v  # (B, Ns)
        if after:
            weights = scores.softmax(-1) * src_mask
        else:
            weights = masked_softmax(scores, keep(src_mask), dim=dim)
        return (weights[:, :, None] * enc).sum(1)
    return fn


def _padded(case: Case) -> bool:
    return not bool(case.args[2].all())


BC_MISTAKES = [
    Mistake("inverted mask", "your output matches an INVERTED mask: src_mask is True at the real "
                             "source words, the ones the decoder may attend to",
            _bc_variant(keep=lambda m: ~m), applies=_padded),
    Mistake("mask after softmax", "the mask is applied AFTER the softmax: the kept weights no "
                                  "longer sum to 1. Mask the scores (-inf) BEFORE normalising",
            _bc_variant(after=True), applies=_padded),
    Mistake("mask ignored", "the padding gets weight: mask the scores of the padding positions "
                            "(src_mask False) with -inf before the softmax",
            _bc_variant(keep=lambda m: torch.ones_like(m)), applies=_padded),
    Mistake("no tanh", "the additive score is v^T tanh(W_s s + W_h h_j): you left out the tanh",
            _bc_variant(act=lambda x: x)),
    Mistake("softmax over the batch", "softmax over the wrong axis: each example's weights must "
                                      "sum to 1 over its SOURCE positions (the last axis of the "
                                      "(B, Ns) scores), not over the batch",
            _bc_variant(dim=0)),
]


def _bc_case(seed, dtype, *, sizes=None, full=False, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 4), Ns=(2, 8), Hdec=(1, 6), Henc=(1, 6), A=(2, 6))
    b, ns, hdec, henc, a = (s[k] for k in ("B", "Ns", "Hdec", "Henc", "A"))
    lengths = torch.full((b,), ns) if full else torch.randint(1, ns + 1, (b,), generator=g)
    mask = padding_mask(lengths, ns)  # (B, Ns), True = real source word
    s_prev, enc = randn(g, b, hdec, dtype=dtype), randn(g, b, ns, henc, dtype=dtype)
    w_s = randn(g, a, hdec, dtype=dtype, scale=hdec ** -0.5)
    w_h = randn(g, a, henc, dtype=dtype, scale=henc ** -0.5)
    v = randn(g, a, dtype=dtype)
    label = (f"s_prev ({b}, {hdec}), enc ({b}, {ns}, {henc}), source lengths "
             f"{lengths.tolist()}, attention size {a}, {_dtname(dtype)}")
    case = Case((s_prev, enc, mask, w_s, w_h, v), label=label)
    if grad:
        case.wrt, case.upstream = (0, 1, 3, 4, 5), randn(g, b, henc, dtype=dtype)
    return case


BC_FORBID = ("attention_lib.functional.additive_score", "attention_lib.functional.masked_softmax",
             "attention_lib.layers.AdditiveAttention", "attention_lib.seq2seq.BahdanauDecoder")


def _bc_checks():
    f64, f32 = torch.float64, torch.float32
    fixed = dict(B=3, Ns=6, Hdec=4, Henc=5, A=3)
    return [
        output_check("output shape (B, Henc) and dtype", "shape",
                     lambda: [_bc_case(1, f32, sizes=fixed)], values=False),
        output_check("values without padding, float64", "values",
                     lambda: [_bc_case(s, f64, full=True) for s in (11, 12)]),
        output_check("values, float32", "values", lambda: [_bc_case(s, f32) for s in (21, 22)]),
        output_check("padded sources: padding gets no weight", "masks",
                     lambda: [_bc_case(s, f64) for s in (31, 32, 33)]),
        output_check("a one-word source: the context is its encoder state", "edge cases",
                     lambda: [_bc_case(41, f64, sizes=dict(B=2, Ns=1, Hdec=3, Henc=2, A=4))]),
        grad_check("gradients of s_prev, enc, w_s, w_h and v",
                   lambda: [_bc_case(51, f64, sizes=dict(B=2, Ns=4, Hdec=3, Henc=2, A=3),
                                     grad=True)]),
        trace_check("built from torch operations, not the library's additive attention",
                    "rules", lambda: [_bc_case(61, f64)], forbid=BC_FORBID),
    ]


BAHDANAU_CONTEXT = Exercise(
    "bahdanau_context", "function",
    "One step of Bahdanau attention: additive scores of s_{t-1}, masked softmax, context.",
    _bc_checks(), signature="bahdanau_context(s_prev, enc, src_mask, w_s, w_h, v)",
    reference=_bc_ref, mistakes=BC_MISTAKES, forbid=BC_FORBID)


# =========================================================================== 2. AER
def _links(gold):
    """(src, tgt) links of a (Nt, Ns) bool gold matrix."""
    t, s = torch.nonzero(gold, as_tuple=True)
    return {(int(i), int(j)) for i, j in zip(s.tolist(), t.tolist())}


def _aer_ref(weights, gold):
    a, s = hard_alignment(weights.double()), _links(gold)
    return torch.tensor(alignment_error_rate(a, s), dtype=torch.float64)


def _aer_counts(weights, gold, by_column=False):
    if by_column:
        pred = torch.zeros_like(gold).scatter_(0, weights.argmax(0, keepdim=True), True)
    else:
        pred = torch.zeros_like(gold).scatter_(1, weights.argmax(1, keepdim=True), True)
    hit = float((pred & gold).sum())
    return hit, float(pred.sum()), float(gold.sum())


def _aer_variant(kind):
    def fn(weights, gold):
        hit, n_a, n_s = _aer_counts(weights, gold, by_column=(kind == "column"))
        value = {"column": 1 - 2 * hit / (n_a + n_s), "f1": 2 * hit / (n_a + n_s),
                 "precision": 1 - hit / n_a, "recall": 1 - hit / n_s}[kind]
        return torch.tensor(value, dtype=torch.float64)
    return fn


AER_MISTAKES = [
    Mistake("argmax over the target", "each TARGET word (a row of the weights) gets one link, to "
                                      "the source word it attends to most: take the argmax "
                                      "along the source axis (dim=1), one per row",
            _aer_variant("column")),
    Mistake("F1 instead of AER", "that is the F1 score of the links, 2|A & S| / (|A| + |S|); "
                                 "the error rate is one minus it",
            _aer_variant("f1")),
    Mistake("precision only", "you divided by |A| only (one minus the precision): AER divides "
                              "2 |A & S| by |A| + |S|",
            _aer_variant("precision")),
    Mistake("recall only", "you divided by |S| only (one minus the recall): AER divides "
                           "2 |A & S| by |A| + |S|",
            _aer_variant("recall")),
]


def _aer_case(seed, dtype, *, nt=None, ns=None, unaligned=False, perfect=False):
    g = generator(seed)
    s = draw_sizes(g, Nt=(2, 9), Ns=(2, 9))
    nt, ns = nt or s["Nt"], ns or s["Ns"]
    weights = torch.softmax(randn(g, nt, ns, scale=2.0), dim=-1)
    gold = torch.rand(nt, ns, generator=g) < 0.25
    gold[torch.arange(nt), torch.randint(0, ns, (nt,), generator=g)] = True  # >= 1 per row
    if unaligned:
        gold[::2] = False  # every other target word has no gold link
    if perfect:
        gold = torch.zeros(nt, ns, dtype=torch.bool)
        gold[torch.arange(nt), weights.argmax(1)] = True
    label = f"weights ({nt}, {ns}), {int(gold.sum())} gold links, {_dtname(dtype)}"
    if unaligned:
        label += ", some target words without a gold link"
    return Case((weights.to(dtype), gold), label=label)


AER_FORBID = ("attention_lib.metrics.alignment_error_rate", "attention_lib.metrics.hard_alignment",
              "attention_lib.metrics.attention_aer")


def _aer_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("a 0-d tensor of the weights' dtype", "shape",
                     lambda: [_aer_case(1, f32, nt=5, ns=6)], values=False),
        output_check("random weights and gold links, float64", "values",
                     lambda: [_aer_case(s, f64) for s in (11, 12, 13, 14)]),
        output_check("float32 weights", "values", lambda: [_aer_case(s, f32) for s in (21, 22)]),
        output_check("a perfect alignment gives 0", "edge cases",
                     lambda: [_aer_case(31, f64, perfect=True)]),
        output_check("target words without a gold link", "edge cases",
                     lambda: [_aer_case(32, f64, nt=7, ns=5, unaligned=True)]),
        output_check("more target words than source words, and the reverse", "edge cases",
                     lambda: [_aer_case(33, f64, nt=9, ns=3), _aer_case(34, f64, nt=2, ns=8)]),
        trace_check("computed with torch operations, not attention_lib.metrics", "rules",
                    lambda: [_aer_case(51, f64)], forbid=AER_FORBID),
    ]


HARD_ALIGNMENT_AER = Exercise(
    "hard_alignment_aer", "function",
    "Alignment error rate of the argmax links of an attention matrix against gold links.",
    _aer_checks(), signature="hard_alignment_aer(weights, gold)", reference=_aer_ref,
    mistakes=AER_MISTAKES, forbid=AER_FORBID)


# =========================================================================== 3. answer
SCORES_SRC, SCORES_TGT = 30, 35

ANSWER_ADDITIVE_SCORES = Exercise(
    "answer_additive_scores", "answer",
    "Predict how many additive scores v^T tanh(W s + U h) translating 30 words into 35 takes.",
    [answer_check("your prediction matches the count", lambda: float(SCORES_SRC * SCORES_TGT),
                  rtol=0.0, atol=0.5,
                  wrong=[(float(SCORES_SRC), "that is one target step: every one of the 35 "
                                             "steps scores all 30 source words again"),
                         (float(SCORES_TGT), "that is one score per target word; each target "
                                             "step scores EVERY source word"),
                         (float(SCORES_SRC + SCORES_TGT), "the scores multiply: 35 steps times "
                                                          "30 source words")])],
    signature="answer_additive_scores = <number>")


# =========================================================================== 4. my_diagonal_aer
#: The experiment's data: the test split of make_corpus(2000, seed=0, max_len=60).
DIAG_CORPUS = dict(num_pairs=2000, seed=0, max_len=60)


def diagonal_aer() -> float:
    """Mean over the test sentences of the AER of the diagonal baseline, read by argmax."""
    if "v" not in _DIAG:
        from attention_lib.data import make_corpus
        corpus = make_corpus(DIAG_CORPUS["num_pairs"], seed=DIAG_CORPUS["seed"],
                             max_len=DIAG_CORPUS["max_len"])
        values = []
        for i in corpus.splits["test"]:
            p = corpus.pairs[i]
            w = diagonal_attention(len(p.src), len(p.tgt), dtype=torch.float64)
            values.append(alignment_error_rate(hard_alignment(w), set(map(tuple, p.alignment))))
        _DIAG["v"] = sum(values) / len(values)
    return _DIAG["v"]


_DIAG = {}


def _judge_diag_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the AER you measured")
    if bad:
        return bad
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return Verdict(False, f"{value:g} is not an error rate (a number from 0 to 1)")
    return Verdict(True, f"AER {value:.3f}")


def _judge_diag_value(ex, cases, outcomes):
    v = _judge_diag_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = diagonal_aer()
    if abs(value - truth) > 0.01:
        side = "too high" if value > truth else "too low"
        return Verdict(False, f"AER {value:.3f} is {side} for the diagonal baseline on the test "
                              f"split (it must be within 0.01 of the measurement)",
                       hint="average the AER of each test sentence, with the gold links as "
                            "(Nt, Ns) matrices (p.alignment_matrix() > 0)")
    return Verdict(True, f"AER {value:.3f} agrees with the measurement")


_ONE = [Case(label="the value of my_diagonal_aer")]
MY_DIAGONAL_AER = Exercise(
    "my_diagonal_aer", "experiment",
    "Open-ended: measure the AER of the diagonal baseline on the test split of the corpus.",
    [Check("an error rate (a number from 0 to 1)", "shape", _ONE, _judge_diag_form,
           probe="value"),
     Check("agrees with the measurement within 0.01", "values", _ONE, _judge_diag_value,
           probe="value")],
    signature="my_diagonal_aer = <number>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: Bahdanau attention",
    [BAHDANAU_CONTEXT, HARD_ALIGNMENT_AER, ANSWER_ADDITIVE_SCORES, MY_DIAGONAL_AER]))
