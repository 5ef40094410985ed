"""Explorer 4.1 (book/explorers/04_alignment.json): the sentences, weights, AER and BLEU.

- the sentences are test pairs of the chapters' corpus, with their gold links, and span the
  test half's source lengths;
- the stored weights of a few sentences equal a fresh teacher-forced pass of the shipped
  checkpoints, and the outputs a fresh greedy decoding;
- every sentence's AER, recomputed from the stored weights and gold links by the small
  implementation below (not attention_lib's), is the stored one, and so is its BLEU
  (attention_lib.metrics.sentence_bleu on the stored tokens);
- what the chapter's caption quotes is in the data.
The committed file equals a fresh run: tests/test_explorer_data.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attention_lib import pretrained
from attention_lib.data import make_corpus
from attention_lib.metrics import sentence_bleu
from attention_lib.seq2seq import teacher_forced_attention, translate
from explorers import OUT, load
from explorers.ch04_alignment import dense

ROOT = Path(__file__).resolve().parents[1]
DATA = load("04_alignment")
RUNS = [(b, m) for b in DATA["budgets"] for m in ("bahdanau", "luong")]
HALF_STEP = 0.5 / DATA["scale"]  # largest rounding error of a stored weight


@pytest.fixture(scope="module")
def corpus():
    c = DATA["corpus"]
    return make_corpus(c["n_pairs"], seed=c["seed"], max_len=c["max_len"])


def aer_by_hand(weights: list[list[float]], gold: list[list[int]]) -> tuple[float, int]:
    """AER (Och & Ney 2003) of the argmax links of ``weights`` against sure links ``gold``
    (no possible-only links, so P = S): 1 - (|A&S| + |A&P|) / (|A| + |S|). Also |A&S|."""
    a = set()
    for t, row in enumerate(weights):
        best = max(row)
        a.add((row.index(best), t))  # the first largest weight, as torch.argmax
    s = {tuple(link) for link in gold}
    hits = len(a & s)
    return 1 - (hits + hits) / (len(a) + len(s)), hits


def test_sentences_are_test_pairs_across_the_lengths(corpus):
    sentences = DATA["sentences"]
    assert 30 <= len(sentences) <= 40
    half = corpus.splits["test"][::2]
    assert DATA["test_half"] == len(half)
    test = set(corpus.splits["test"])
    pairs = [s["pair"] for s in sentences]
    assert len(set(pairs)) == len(pairs) and all(i in test for i in pairs)
    for s in sentences:
        p = corpus.pairs[s["pair"]]
        assert s["src"] == p.src_text and s["tgt"] == p.tgt_text
        assert s["gold"] == [list(link) for link in p.alignment] and s["monotone"] == p.monotone
    # the length range of the test half, with no wide gap, in order
    lens = [len(s["src"].split()) for s in sentences]
    half_lens = [len(corpus.pairs[i].src) for i in half]
    assert lens == sorted(lens)
    assert (lens[0], lens[-1]) == (min(half_lens), max(half_lens))
    assert max(b - a for a, b in zip(lens, lens[1:])) <= 3
    assert sum(n > 30 for n in lens) >= 10 and sum(n <= 10 for n in lens) >= 5
    # chapter 4's examples, and the figure opens on the first
    notes = {s["note"]: s["src"] for s in sentences if s["note"]}
    assert notes["chapter 4's example"] == "the famous child always reads some books ."
    assert "but he" in notes["chapter 4's 'mais il' example"]
    assert sentences[DATA["first"]]["src"] == "the famous child always reads some books ."


def test_weights_and_outputs_are_the_shipped_models(corpus):
    """Shortest, chapter 4's two examples and the longest, all four runs: a fresh pass of
    the checkpoints agrees with the stored weights to their rounding."""
    sentences = DATA["sentences"]
    picks = [0, len(sentences) - 1] + [k for k, s in enumerate(sentences) if s["note"]]
    index = [sentences[k]["pair"] for k in picks]
    for budget, model in RUNS:
        name = DATA["budgets"][budget]["checkpoints"][model]
        m, ckpt = pretrained.load_seq2seq(name, len(corpus.src_vocab), len(corpus.tgt_vocab))
        assert ckpt["steps"] == DATA["budgets"][budget]["steps"]
        with torch.no_grad():
            fresh = teacher_forced_attention(m, corpus, index)
        outs = translate(m, corpus, index)
        for k, w, out in zip(picks, fresh, outs):
            s = sentences[k]
            nt, ns = len(s["tgt"].split()), len(s["src"].split())
            stored = torch.tensor(dense(s, budget, model), dtype=torch.float64)
            assert stored.shape == (nt, ns)
            gap = (w[:nt, :ns].double() - stored).abs().max().item()
            assert gap <= HALF_STEP + 1e-5, (budget, model, k, gap)
            assert " ".join(out) == s["runs"][budget][model]["out"], (budget, model, k)


def test_rows_are_weights_over_the_words():
    """Each row is a softmax over the source words and the source <eos>, whose column (like
    the <eos> row) is cropped, as the chapters crop it: at most 1 is left on the words."""
    for s in DATA["sentences"]:
        for budget, model in RUNS:
            for row in dense(s, budget, model):
                assert all(0 <= v <= 1 for v in row)
                assert 0 < sum(row) <= 1 + HALF_STEP * len(row)


def test_aer_recomputed_by_hand_from_the_stored_weights():
    perfect = 0
    for s in DATA["sentences"]:
        for budget, model in RUNS:
            run = s["runs"][budget][model]
            aer, hits = aer_by_hand(dense(s, budget, model), s["gold"])
            assert run["aer"] == pytest.approx(aer, rel=5e-4, abs=1e-9), (s["src"], budget, model)
            assert run["hits"] == hits
            perfect += aer == 0
    assert 0 < perfect < len(DATA["sentences"]) * len(RUNS)  # the figure shows both


def test_bleu_is_the_library_on_the_stored_tokens():
    for s in DATA["sentences"]:
        for budget, model in RUNS:
            run = s["runs"][budget][model]
            want = sentence_bleu(run["out"].split(), s["tgt"].split())
            assert run["bleu"] == pytest.approx(want, rel=5e-4, abs=1e-9)


def test_the_file_is_small():
    assert (OUT / "04_alignment.json").stat().st_size < 150 * 1024


def test_what_the_caption_quotes():
    """The numbers of the caption of Explorer 4.1, read from the data."""
    sentences = DATA["sentences"]
    first = DATA["first"]
    famous = sentences[first]
    tgt = famous["tgt"].split()
    lit = tgt.index("lit")
    bench = famous["runs"]["benchmark"]
    assert bench["bahdanau"]["aer"] == 0 and bench["luong"]["aer"] == 0.125
    assert bench["luong"]["hits"] == 7
    missed = [t for t, row in enumerate(dense(famous, "benchmark", "luong"))
              if [row.index(max(row)), t] not in famous["gold"]]
    assert missed == [lit]
    # two back: the 'mais il' sentence
    mais = sentences[first - 2]
    assert mais["note"] == "chapter 4's 'mais il' example"
    src, il = mais["src"].split(), mais["tgt"].split().index("il")
    for model, word, weight in (("bahdanau", "but", 0.995), ("luong", "he", 1.0)):
        row = dense(mais, "benchmark", model)[il]
        assert (src[row.index(max(row))], max(row)) == (word, weight)
    quick = mais["runs"]["quick"]["bahdanau"]
    assert quick["out"].split()[-2] == "nage"
    assert (round(quick["bleu"], 2), round(quick["aer"], 2)) == (0.30, 0.57)
    # one forward: at 400 steps, every link right and the translation wrong
    nxt = sentences[first - 1]["runs"]["quick"]["luong"]
    assert sentences[first - 1]["src"] == "i read our good empty letter ."
    assert (nxt["aer"], nxt["out"], round(nxt["bleu"], 2)) == (0, "je ris .", 0.09)
    cells = json.loads((ROOT / "notebooks" / "04_bahdanau.ipynb").read_text())["cells"]
    caption = next("".join(c["source"]) for c in cells if c.get("id") == "explorer-alignment")
    for quoted in ("0.00 and Luong's 0.13", "(0.995)", "(1.000)", "BLEU 0.30, AER 0.57",
                   "(AER 0.00)", "(BLEU 0.09)", "Thirty test sentences of 3 to 60",
                   "<em>je ris .</em>", "previous</em> twice", "Press <em>next</em>"):
        assert quoted in caption, quoted
