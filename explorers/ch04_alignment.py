"""Chapters 4 and 5: Bahdanau's and Luong's attention beside the gold alignment, per sentence.

The corpus is the one of chapters 1, 4 and 5 (``make_corpus(30_000, seed=0, max_len=60)``)
and the models are the shipped checkpoints the chapters load, at two budgets: the benchmark
runs of 2400 steps (``bahdanau``, chapter 4's heatmaps, and ``luong``, the general score with
input feeding) and the quick runs of 400 steps (``bahdanau_quick`` and ``luong_quick``,
chapters 4 and 5). For each sentence, exactly as the chapters measure them:

- the weights are ``teacher_forced_attention`` (row t = the step that predicts reference
  word t), cropped to the real words (no <eos> row or column, no padding), so a row sums
  to 1 less what the step gave the source <eos>;
- the sentence's AER is ``attention_aer`` of those weights against the gold links (one link
  per target word, at its largest weight);
- the output is the greedy ``translate`` and its BLEU is ``sentence_bleu`` against the
  reference.

The sentences: chapter 4's two worked examples (*the famous child always reads some books .*
and its *but he* -> *mais il* sentence), and one sentence of each of 28 source lengths spread
evenly from 3 to 60 words, the first of that length in the half of the test split that the
chapters evaluate on (``corpus.splits["test"][::2]``).

Weights are stored as integer thousandths (3 decimals), each row as ``[first, [k, ...]]``:
the run of cells from its first to its last non-zero one, starting at column ``first``;
every other cell rounds to 0. A sentence is only taken if rounding keeps every row's largest
weight where it was, so the AER read off the stored weights is the chapters' AER.
"""
from __future__ import annotations

import torch

from attention_lib import pretrained
from attention_lib.data import make_corpus
from attention_lib.metrics import attention_aer, hard_alignment, sentence_bleu
from attention_lib.seq2seq import teacher_forced_attention, translate
from explorers import explorer, rounded

CORPUS = dict(n_pairs=30_000, seed=0, max_len=60)
SCALE = 1000  # weights are stored as round(SCALE * w)
N_SPREAD = 28  # sentences chosen by source length, besides chapter 4's examples
#: budget -> (steps, {model: shipped checkpoint})
BUDGETS = {
    "benchmark": (2400, {"bahdanau": "bahdanau", "luong": "luong"}),
    "quick": (400, {"bahdanau": "bahdanau_quick", "luong": "luong_quick"}),
}
FAMOUS = "the famous child always reads some books ."


def corpus():
    """The corpus of chapters 1, 4 and 5 (the checkpoints' vocabularies come from it)."""
    return make_corpus(CORPUS["n_pairs"], seed=CORPUS["seed"], max_len=CORPUS["max_len"])


def load_models(c) -> dict:
    """{(budget, model): the shipped model}, in eval mode on the CPU."""
    out = {}
    for budget, (steps, names) in BUDGETS.items():
        for model, name in names.items():
            m, ckpt = pretrained.load_seq2seq(name, len(c.src_vocab), len(c.tgt_vocab))
            assert ckpt["steps"] == steps and ckpt["corpus_kwargs"]["seed"] == CORPUS["seed"]
            out[budget, model] = m
    return out


def candidates(c) -> list[list[int]]:
    """Candidate pair indices, one list per slot, best first: chapter 4's two examples,
    then, for each of ``N_SPREAD`` source lengths spread evenly over the test half, every
    sentence of that length in order."""
    test = c.splits["test"][::2]
    famous = [i for i in c.splits["test"] if c.pairs[i].src_text == FAMOUS]
    but_he = [i for i in test if "but he" in c.pairs[i].src_text
              and "mais il" in c.pairs[i].tgt_text and len(c.pairs[i].src) <= 12]
    lens = [len(c.pairs[i].src) for i in test]
    lo, hi = min(lens), max(lens)
    spread = [round(lo + k * (hi - lo) / (N_SPREAD - 1)) for k in range(N_SPREAD)]
    slots = [famous, but_he]
    for n in spread:
        slots.append([i for i in test if len(c.pairs[i].src) == n])
    return slots


def quantize(w: torch.Tensor) -> list[list[int]]:
    return (w.double() * SCALE).round().long().tolist()


def sparse_rows(q: list[list[int]]) -> list:
    """Each row as [first, cells from the first to the last non-zero one]."""
    out = []
    for row in q:
        nz = [j for j, v in enumerate(row) if v]
        out.append([nz[0], row[nz[0]:nz[-1] + 1]])
    return out


def dense(sentence: dict, budget: str, model: str, scale: int = SCALE) -> list[list[float]]:
    """The inverse of :func:`sparse_rows`: one stored run of ``sentence`` as the full
    (target words, source words) matrix of weights (what the tests compare with)."""
    ns = len(sentence["src"].split())
    out = []
    for first, cells in sentence["runs"][budget][model]["weights"]:
        row = [0.0] * ns
        for k, v in enumerate(cells):
            row[first + k] = v / scale
        out.append(row)
    return out


def weights_of(models, c, index) -> dict:
    """{(budget, model): [cropped (Nt, Ns) teacher-forced weights, one per pair]}."""
    out = {}
    for key, m in models.items():
        w = teacher_forced_attention(m, c, index)
        out[key] = [wi[:len(c.pairs[i].tgt), :len(c.pairs[i].src)] for wi, i in zip(w, index)]
    return out


def rounding_keeps_argmax(w: torch.Tensor) -> bool:
    """True when the first largest stored (rounded) weight of every row is the row's argmax:
    the links read off the JSON are then the links the chapters read."""
    q = quantize(w)
    return all(max(range(len(r)), key=lambda j: (r[j], -j)) == a
               for r, a in zip(q, w.argmax(1).tolist()))


def choose(models, c) -> list[int]:
    """The first candidate of each slot whose weights survive rounding (see above)."""
    slots = candidates(c)
    chosen, pos = [None] * len(slots), [0] * len(slots)
    while None in chosen:
        open_ = [k for k, v in enumerate(chosen) if v is None]
        trial = [slots[k][pos[k]] for k in open_]
        w = weights_of(models, c, trial)
        for n, k in enumerate(open_):
            if trial[n] not in chosen and all(rounding_keeps_argmax(ws[n]) for ws in w.values()):
                chosen[k] = trial[n]
            else:
                pos[k] += 1  # IndexError here: a slot without a usable sentence
    return chosen


@explorer("04_alignment")
def alignment() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same sums in the same order on every machine
    try:
        c = corpus()
        models = load_models(c)
        index = choose(models, c)
        weights = weights_of(models, c, index)
        outputs = {key: translate(m, c, index) for key, m in models.items()}
    finally:
        torch.set_num_threads(threads)
    sentences = []
    for n, i in enumerate(index):
        p = c.pairs[i]
        runs = {}
        for (budget, model), ws in weights.items():
            w, out = ws[n], outputs[budget, model][n]
            gold = set(p.alignment)
            runs.setdefault(budget, {})[model] = {
                "weights": sparse_rows(quantize(w)),
                "aer": rounded(attention_aer([w], [p.alignment]), 4),
                "hits": sum(link in gold for link in hard_alignment(w)),
                "out": " ".join(out),
                "bleu": rounded(sentence_bleu(out, list(p.tgt)), 4),
            }
        note = {0: "chapter 4's example", 1: "chapter 4's 'mais il' example"}.get(n)
        sentences.append({"pair": i, "src": p.src_text, "tgt": p.tgt_text,
                          "gold": [list(link) for link in p.alignment],
                          "monotone": p.monotone, "note": note, "runs": runs})
    order = sorted(range(len(sentences)), key=lambda k: (len(sentences[k]["src"].split()), k))
    return {
        "corpus": CORPUS,
        "test_half": len(c.splits["test"][::2]),
        "scale": SCALE,
        "budgets": {b: {"steps": steps, "checkpoints": names}
                    for b, (steps, names) in BUDGETS.items()},
        "first": order.index(0),
        "sentences": [sentences[k] for k in order],
    }
