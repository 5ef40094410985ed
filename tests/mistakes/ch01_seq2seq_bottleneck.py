"""Buggy versions of the exercises of exercises/01_seq2seq_bottleneck.ipynb, written the way
a student would (independently of the variants in attention_course.checks.chapters.ch01_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
from collections import Counter

import torch


def _summary(states, lengths, how):
    h = states.shape[-1] // 2
    rows = range(states.shape[0])
    out = []
    for b in rows:
        last = int(lengths[b]) - 1
        if how == "padded end":
            fwd, bwd = states[b, -1, :h], states[b, 0, h:]
        elif how == "bwd end":
            fwd, bwd = states[b, last, :h], states[b, last, h:]
        else:
            fwd, bwd = states[b, last, :h], states[b, 0, h:]
        out.append(torch.cat([bwd, fwd]) if how == "swapped" else torch.cat([fwd, bwd]))
    return torch.stack(out)


def _precision(hyp, ref, n, how):
    if how == "unigram":
        n = 1
    h = Counter(zip(*[hyp.tolist()[i:] for i in range(n)]))
    r = Counter(zip(*[ref.tolist()[i:] for i in range(n)]))
    if how == "unclipped":
        hit = sum(c for g, c in h.items() if g in r)
    else:
        hit = sum(min(c, r[g]) for g, c in h.items())
    total = sum(r.values()) if how == "ref" else sum(h.values())
    return torch.tensor(hit / total if total else 0.0, dtype=torch.float64)


BUGGY = {
    ("encoder_summary", "padded end"): lambda s, L: _summary(s, L, "padded end"),
    ("encoder_summary", "backward at the end"): lambda s, L: _summary(s, L, "bwd end"),
    ("encoder_summary", "halves swapped"): lambda s, L: _summary(s, L, "swapped"),
    ("clipped_precision", "not clipped"): lambda h, r, n: _precision(h, r, n, "unclipped"),
    ("clipped_precision", "divided by the reference"): lambda h, r, n: _precision(h, r, n, "ref"),
    ("clipped_precision", "unigrams only"): lambda h, r, n: _precision(h, r, n, "unigram"),
}
