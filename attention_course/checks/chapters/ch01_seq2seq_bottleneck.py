"""Exercises of chapter 1, "The fixed-length bottleneck" (exercises/01_seq2seq_bottleneck.ipynb).

1. ``encoder_summary`` -- the summary c of a padded batch from bidirectional GRU states:
   the last REAL forward state and the first backward state.
2. ``clipped_precision`` -- BLEU's clipped n-gram precision of one hypothesis.
3. ``answer_summary_size`` -- predict: how many numbers the decoder sees of a 40-word sentence.
4. ``my_gloss_bleu`` -- open-ended: the BLEU of the right French words in English word order.

The references are plain float64 computations (and :mod:`attention_lib.metrics` for BLEU).
Cho et al. (2014); Papineni et al. (2002), eq. 1.
"""
from __future__ import annotations

import math
from collections import Counter

import torch

from attention_lib.metrics import corpus_bleu

from ..cases import draw_sizes, generator, randn
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check

ASSIGNMENT_NAME = "01_seq2seq_bottleneck"


def _dtname(dtype) -> str:
    return str(dtype).replace("torch.", "")


# =========================================================================== 1. summary
def _sum_ref(states, lengths):
    b, n, two_h = states.shape
    h = two_h // 2
    last = (lengths - 1).clamp(min=0)  # (B,): index of the last real token
    fwd = states[torch.arange(b), last, :h]  # (B, H): forward GRU after the last real word
    bwd = states[:, 0, h:]  # (B, H): backward GRU after reading back to the first word
    return torch.cat([fwd, bwd], dim=-1)  # (B, 2H)


def _sum_variant(*, fwd_at="last real", bwd_at="first", swap=False):
    def fn(states, lengths):
        b, n, two_h = states.shape
        h = two_h // 2
        rows = torch.arange(b)
        fi = {"last real": lengths - 1, "padded end": torch.full_like(lengths, n - 1),
              "first": torch.zeros_like(lengths)}[fwd_at]
        bi = {"first": torch.zeros_like(lengths), "last real": lengths - 1,
              "padded end": torch.full_like(lengths, n - 1)}[bwd_at]
        fwd, bwd = states[rows, fi, :h], states[rows, bi, h:]
        return torch.cat([bwd, fwd] if swap else [fwd, bwd], dim=-1)
    return fn


def _has_padding(case: Case) -> bool:
    states, lengths = case.args
    return bool((lengths < states.shape[1]).any())


SUM_MISTAKES = [
    Mistake("padded end", "you took the forward state at the last POSITION of the padded batch; "
                          "for a sentence of length L the forward GRU has read the sentence at "
                          "position L - 1 (what comes after is padding)",
            _sum_variant(fwd_at="padded end"), applies=_has_padding),
    Mistake("backward at the end", "the backward GRU reads right to left, so it has read the whole "
                                   "sentence at position 0, not at the end",
            _sum_variant(bwd_at="last real")),
    Mistake("halves swapped", "the forward half comes first: c = [forward final; backward final], "
                              "and the first H features of each state are the forward GRU's",
            _sum_variant(swap=True)),
]


def _sum_case(seed, dtype, *, sizes=None, full=False, lengths=None, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 4), N=(1, 8), H=(1, 5))
    b, n, h = s["B"], s["N"], s["H"]
    if lengths is None:
        lengths = torch.full((b,), n) if full else torch.randint(1, n + 1, (b,), generator=g)
    lengths = torch.as_tensor(lengths)
    states = randn(g, b, n, 2 * h, dtype=dtype)
    states = states * (torch.arange(n)[None, :, None] < lengths[:, None, None])  # zero padding
    label = f"states ({b}, {n}, {2 * h}), lengths {lengths.tolist()}, {_dtname(dtype)}"
    case = Case((states, lengths), label=label)
    if grad:
        case.wrt, case.upstream = (0,), randn(g, b, 2 * h, dtype=dtype)
    return case


def _sum_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, 2H) and dtype", "shape",
                     lambda: [_sum_case(1, f32, sizes=dict(B=3, N=6, H=4))], values=False),
        output_check("no padding, float64", "values",
                     lambda: [_sum_case(s, f64, full=True) for s in (11, 12)]),
        output_check("float32", "values", lambda: [_sum_case(21, f32)]),
        output_check("a padded batch: the last REAL forward state", "masks",
                     lambda: [_sum_case(s, f64) for s in (31, 32)]
                     + [_sum_case(33, f64, sizes=dict(B=3, N=7, H=2), lengths=[7, 2, 4])]),
        output_check("one-word sentences", "edge cases",
                     lambda: [_sum_case(41, f64, sizes=dict(B=2, N=5, H=3), lengths=[1, 1])]),
        grad_check("gradient with respect to the states",
                   lambda: [_sum_case(51, f64, sizes=dict(B=3, N=4, H=2), lengths=[4, 1, 2],
                                      grad=True)]),
    ]


ENCODER_SUMMARY = Exercise(
    "encoder_summary", "function",
    "The fixed-length summary of a padded batch: last real forward state, first backward state.",
    _sum_checks(), signature="encoder_summary(states, lengths)", reference=_sum_ref,
    mistakes=SUM_MISTAKES)


# =========================================================================== 2. precision
def _grams(tokens, n):
    t = [int(x) for x in tokens]
    return Counter(tuple(t[k:k + n]) for k in range(len(t) - n + 1))


def _prec(hyp, ref, n, *, clip=True, denom="hyp"):
    h, r = _grams(hyp, n), _grams(ref, n)
    total = sum(h.values()) if denom == "hyp" else sum(r.values())
    if total == 0:
        return torch.tensor(0.0, dtype=torch.float64)
    hit = sum(min(c, r[g]) if clip else (c if g in r else 0) for g, c in h.items())
    return torch.tensor(hit / total, dtype=torch.float64)


def _cp_ref(hypothesis, reference, n):
    return _prec(hypothesis, reference, n)


CP_MISTAKES = [
    Mistake("not clipped", "each hypothesis n-gram counts at most as often as it occurs in the "
                           "reference (the clipping of Papineni et al.): 'the the the' against "
                           "'the cat' matches the once, not three times",
            lambda hypothesis, reference, n: _prec(hypothesis, reference, n, clip=False)),
    Mistake("divided by the reference", "the precision divides by the number of n-grams of the "
                                        "HYPOTHESIS (how much of what it says is right), not of "
                                        "the reference",
            lambda hypothesis, reference, n: _prec(hypothesis, reference, n, denom="ref")),
    Mistake("unigrams only", "you counted single tokens whatever n is: an n-gram is a run of n "
                             "consecutive tokens",
            lambda hypothesis, reference, n: _prec(hypothesis, reference, 1)),
]


def _cp_case(seed, *, nh=None, nr=None, n=None, vocab=5, hyp=None, ref=None):
    g = generator(seed)
    s = draw_sizes(g, Nh=(1, 12), Nr=(1, 12), n=(1, 4))
    nh, nr, n = nh or s["Nh"], nr or s["Nr"], n or s["n"]
    h = torch.as_tensor(hyp) if hyp is not None else torch.randint(0, vocab, (nh,), generator=g)
    r = torch.as_tensor(ref) if ref is not None else torch.randint(0, vocab, (nr,), generator=g)
    label = f"hypothesis {h.tolist()}, reference {r.tolist()}, n={n}"
    return Case((h, r, n), label=label, meta=dict(dtype=torch.float64))


CP_FORBID = ("attention_lib.metrics.bleu_score", "attention_lib.metrics.corpus_bleu",
             "attention_lib.metrics.sentence_bleu", "attention_lib.metrics._ngrams")


def _cp_checks():
    return [
        output_check("a 0-d float64 tensor", "shape",
                     lambda: [_cp_case(1, nh=6, nr=7, n=2)], values=False),
        output_check("unigram precision", "values",
                     lambda: [_cp_case(s, n=1) for s in (11, 12)]),
        output_check("n = 2, 3, 4 on random token sequences", "values",
                     lambda: [_cp_case(13, n=2), _cp_case(14, n=3, vocab=3),
                              _cp_case(15, n=4, vocab=2, nh=12, nr=12)]),
        output_check("repeated words are clipped", "edge cases",
                     lambda: [_cp_case(31, hyp=[7, 7, 7, 7], ref=[7, 3, 7], n=1),
                              _cp_case(32, hyp=[1, 2, 1, 2, 1, 2], ref=[1, 2, 5], n=2)]),
        output_check("a hypothesis shorter than n has precision 0", "edge cases",
                     lambda: [_cp_case(33, hyp=[4, 2], ref=[4, 2, 9], n=3)]),
        trace_check("computed without attention_lib.metrics", "rules",
                    lambda: [_cp_case(51)], forbid=CP_FORBID),
    ]


CLIPPED_PRECISION = Exercise(
    "clipped_precision", "function",
    "BLEU's clipped n-gram precision of one tokenised hypothesis against one reference.",
    _cp_checks(), signature="clipped_precision(hypothesis, reference, n)", reference=_cp_ref,
    mistakes=CP_MISTAKES, forbid=CP_FORBID)


# =========================================================================== 3. answer
ANSWER_SUMMARY_SIZE = Exercise(
    "answer_summary_size", "answer",
    "Predict how many numbers the plain decoder receives about a 40-word source sentence.",
    [answer_check("your prediction matches the model", lambda: 2.0 * 32, rtol=0.0, atol=0.5,
                  wrong=[(40.0 * 64, "that is every encoder state of the sentence, which is what "
                                     "attention will give the decoder; the plain decoder gets only "
                                     "the summary"),
                         (32.0, "the encoder is bidirectional: the summary concatenates the final "
                                "states of BOTH directions")])],
    signature="answer_summary_size = <number>")


# =========================================================================== 4. my_gloss_bleu
#: The experiment: on the test split of make_corpus(2000, seed=0, max_len=60), reorder the
#: words of each French reference into ENGLISH word order (each French word placed at the
#: smallest source position it is linked to; ties keep the French order) and score these
#: "glosses" against the references with corpus_bleu's defaults.
GLOSS_CORPUS = dict(num_pairs=2000, seed=0, max_len=60)
_GLOSS = {}


def english_order_gloss(pair) -> list:
    """The French words of ``pair`` in the order of the English words they translate."""
    first = {}
    for s_idx, t_idx in pair.alignment:
        first[t_idx] = min(first.get(t_idx, s_idx), s_idx)
    return [pair.tgt[t] for t in sorted(first, key=lambda t: (first[t], t))]


def gloss_bleu() -> float:
    if "v" not in _GLOSS:
        from attention_lib.data import make_corpus
        corpus = make_corpus(GLOSS_CORPUS["num_pairs"], seed=GLOSS_CORPUS["seed"],
                             max_len=GLOSS_CORPUS["max_len"])
        pairs = [corpus.pairs[i] for i in corpus.splits["test"]]
        _GLOSS["v"] = corpus_bleu([english_order_gloss(p) for p in pairs], [p.tgt for p in pairs])
    return _GLOSS["v"]


def _judge_gloss_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the BLEU you measured")
    if bad:
        return bad
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return Verdict(False, f"{value:g} is not a BLEU score on the scale of the course (0 to 1; "
                              f"divide a percentage by 100)")
    return Verdict(True, f"BLEU {value:.3f}")


def _judge_gloss_value(ex, cases, outcomes):
    v = _judge_gloss_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = gloss_bleu()
    if abs(value - truth) > 0.005:
        side = "too high" if value > truth else "too low"
        return Verdict(False, f"BLEU {value:.3f} is {side} (it must be within 0.005 of the "
                              f"measurement)",
                       hint="one corpus BLEU over the whole test split (corpus_bleu with its "
                            "defaults), not the mean of sentence scores; place each French word "
                            "at the SMALLEST English position it is linked to")
    return Verdict(True, f"BLEU {value:.3f} agrees with the measurement")


_ONE = [Case(label="the value of my_gloss_bleu")]
MY_GLOSS_BLEU = Exercise(
    "my_gloss_bleu", "experiment",
    "Open-ended: the BLEU of perfect French words in English word order.",
    [Check("a BLEU score between 0 and 1", "shape", _ONE, _judge_gloss_form, probe="value"),
     Check("agrees with the measurement within 0.005", "values", _ONE, _judge_gloss_value,
           probe="value")],
    signature="my_gloss_bleu = <number>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: the fixed-length bottleneck",
    [ENCODER_SUMMARY, CLIPPED_PRECISION, ANSWER_SUMMARY_SIZE, MY_GLOSS_BLEU]))
