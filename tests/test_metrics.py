"""attention_lib.metrics: BLEU against sacrebleu and d2l, alignment error rate by hand.

BLEU is checked against ``sacrebleu.corpus_bleu`` (tokenize="none", every smoothing method,
with and without effective order) on random corpora, and against ``d2l.bleu`` sentence by
sentence with d2l's weights; where the three definitions coincide they give one number, and a
worked example shows where they part. AER is checked on hand-computed cases (Och & Ney 2003,
eq. 6) and the uniform baseline against an exhaustive enumeration.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention_lib.metrics import (
    DEFAULT_LENGTH_BUCKETS,
    alignment_error_rate,
    attention_aer,
    bleu_by_length,
    bleu_score,
    corpus_bleu,
    d2l_weights,
    diagonal_attention,
    hard_alignment,
    sentence_bleu,
    uniform_attention,
    uniform_baseline_aer,
)
from attention_lib.utils import import_d2l

sacrebleu = pytest.importorskip("sacrebleu")


@pytest.fixture(scope="module")
def d2l():
    return import_d2l()


def sacre(hyps, refs, **kw) -> float:
    """sacrebleu on our token lists: joined by spaces, no tokenizer, 0..1 scale."""
    return sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]],
                                 tokenize="none", force=True, **kw).score / 100


# A small alphabet so that n-grams match often; sentences of 0..9 tokens.
sentence = st.lists(st.sampled_from("abcde"), min_size=0, max_size=9)
corpora = st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.lists(sentence, min_size=n, max_size=n),
    st.lists(sentence.filter(len), min_size=n, max_size=n)))


# --------------------------------------------------------------------------- vs sacrebleu
@pytest.mark.parametrize("smooth", ["none", "exp", "floor", "add-k"])
@given(corpus=corpora)
def test_corpus_bleu_matches_sacrebleu(smooth, corpus):
    hyps, refs = corpus
    assert corpus_bleu(hyps, refs, smooth=smooth) == pytest.approx(
        sacre(hyps, refs, smooth_method=smooth), abs=1e-12)


@given(corpus=corpora)
def test_effective_order_matches_sacrebleu(corpus):
    hyps, refs = corpus
    ours = corpus_bleu(hyps, refs, effective_order=True)
    theirs = sacrebleu.metrics.BLEU(tokenize="none", effective_order=True, force=True)
    expected = theirs.corpus_score([" ".join(h) for h in hyps],
                                   [[" ".join(r) for r in refs]]).score / 100
    assert ours == pytest.approx(expected, abs=1e-12)


def test_default_is_sacrebleu_default_and_statistics():
    hyps = [["le", "chat", "noir", "dort", "."], ["il", "lit", "."]]
    refs = [["le", "chat", "noir", "dort", "bien", "."], ["il", "lit", "le", "livre", "."]]
    s = bleu_score(hyps, refs)
    ref = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]],
                                tokenize="none")
    assert s.score == pytest.approx(ref.score / 100, abs=1e-12) == corpus_bleu(hyps, refs)
    assert list(s.counts) == ref.counts and list(s.totals) == ref.totals
    assert s.precisions == pytest.approx([p / 100 for p in ref.precisions])
    # by hand: every unigram matches; bigrams "dort ." and "lit ." do not; bp = exp(1 - 11/8)
    assert s.counts[:2] == (8, 4) and s.totals == (8, 6, 4, 2)
    assert (s.hyp_len, s.ref_len) == (8, 11) and s.bp == pytest.approx(math.exp(1 - 11 / 8))
    assert float(s) == s.score


def test_ids_tensors_and_strings_give_the_same_score():
    hyps = [["a", "b", "c", "d"], ["b", "c"]]
    refs = [["a", "b", "c", "e"], ["b", "c", "d"]]
    ids = {w: i for i, w in enumerate("abcde")}
    as_ids = [[ids[w] for w in s] for s in hyps], [[ids[w] for w in s] for s in refs]
    as_tensors = [torch.tensor(s) for s in as_ids[0]], [torch.tensor(s) for s in as_ids[1]]
    as_strings = [" ".join(s) for s in hyps], [" ".join(s) for s in refs]
    want = corpus_bleu(hyps, refs)
    assert corpus_bleu(*as_ids) == corpus_bleu(*as_tensors) == corpus_bleu(*as_strings) == want


# --------------------------------------------------------------------------- vs d2l
@given(h=sentence.filter(len), r=sentence.filter(len), k=st.integers(1, 4))
def test_sentence_bleu_with_d2l_weights_matches_d2l(d2l, h, r, k):
    ours = sentence_bleu(h, r, max_order=k, weights=d2l_weights(k), smooth="none")
    assert ours == pytest.approx(d2l.bleu(" ".join(h), " ".join(r), k), abs=1e-12)


def test_where_definitions_coincide(d2l):
    ref = "le chat noir dort sur la table .".split()
    # identical sentences: 1 everywhere
    assert corpus_bleu([ref], [ref]) == 1.0
    assert sacre([ref], [ref]) == pytest.approx(1.0, abs=1e-12)
    assert d2l.bleu(" ".join(ref), " ".join(ref), 4) == 1.0
    # a truncated translation: every precision is 1, only the brevity penalty is left
    hyp = ref[:5]
    bp = math.exp(1 - len(ref) / len(hyp))
    assert corpus_bleu([hyp], [ref]) == pytest.approx(bp)
    assert sacre([hyp], [ref]) == pytest.approx(bp)
    assert d2l.bleu(" ".join(hyp), " ".join(ref), 4) == pytest.approx(bp)


def test_where_definitions_differ(d2l):
    """d2l weighs precisions 1/2, 1/4, 1/8, 1/16 and scores sentences; corpus BLEU weighs
    them 1/4 each and pools counts over the corpus."""
    hyp, ref = "a b c d x".split(), "a b c d e".split()
    # p1..p4 = 4/5, 3/4, 2/3, 1/2, no brevity penalty
    standard = (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    d2l_value = (4 / 5) ** 0.5 * (3 / 4) ** 0.25 * (2 / 3) ** 0.125 * (1 / 2) ** 0.0625
    assert corpus_bleu([hyp], [ref]) == pytest.approx(standard) == pytest.approx(0.668740, abs=1e-6)
    assert d2l.bleu(" ".join(hyp), " ".join(ref), 4) == pytest.approx(d2l_value)
    assert d2l_value == pytest.approx(0.757678, abs=1e-6)
    # pooled counts vs the mean of sentence scores: a perfect long sentence and a poor
    # short one
    hyps = [list("abcdefgh"), list("xy")]
    refs = [list("abcdefgh"), list("xz")]
    mean_d2l = sum(d2l.bleu(" ".join(h), " ".join(r), 4) for h, r in zip(hyps, refs)) / 2
    pooled = corpus_bleu(hyps, refs, smooth="none")
    assert pooled == pytest.approx(sacre(hyps, refs, smooth_method="none"))
    assert mean_d2l == pytest.approx(0.5)  # sentence 2: p2 = 0 gives 0
    assert pooled == pytest.approx((9 / 10 * 7 / 8 * 6 / 6 * 5 / 5) ** 0.25)
    assert abs(pooled - mean_d2l) > 0.4


# --------------------------------------------------------------------------- by length
def test_bleu_by_length_buckets():
    hyps = [["a"] * n for n in (5, 12, 12, 33, 50)]
    refs = [["a"] * 5, ["a"] * 12, ["b"] * 12, ["a"] * 33, ["a"] * 50]
    lengths = [5, 12, 15, 33, 50]
    got = bleu_by_length(hyps, refs, lengths)
    assert [(b.lo, b.hi, b.count) for b in got] == [(1, 10, 1), (11, 20, 2), (21, 30, 0),
                                                      (31, 45, 1), (46, None, 1)]
    assert got[0].bleu == 1.0 and got[3].bleu == 1.0 and got[4].bleu == 1.0
    assert got[1].bleu == pytest.approx(corpus_bleu(hyps[1:3], refs[1:3]))
    assert math.isnan(got[2].bleu)
    assert [b.label for b in got] == ["1-10", "11-20", "21-30", "31-45", "46+"]
    assert tuple((b.lo, b.hi) for b in got) == DEFAULT_LENGTH_BUCKETS
    one = bleu_by_length(hyps, refs, lengths, buckets=[(11, 20)], smooth="none")
    assert one[0].bleu == pytest.approx(corpus_bleu(hyps[1:3], refs[1:3], smooth="none"))


# --------------------------------------------------------------------------- AER by hand
def test_aer_perfect_disjoint_and_partial():
    gold = [(0, 0), (1, 2), (2, 1)]
    assert alignment_error_rate(gold, gold) == 0.0
    assert alignment_error_rate({(0, 1), (1, 0)}, gold) == 1.0
    # |A & S| = 2, |A| = 3, |S| = 3: 1 - (2 + 2) / (3 + 3) = 1/3
    assert alignment_error_rate([(0, 0), (1, 2), (2, 2)], gold) == pytest.approx(1 / 3)
    # with possible links: S = {(0,0)}, P = S + {(1,1)}, A = {(0,0), (1,1), (2,2)}
    # 1 - (1 + 2) / (3 + 1) = 1/4
    assert alignment_error_rate([(0, 0), (1, 1), (2, 2)], [(0, 0)],
                                [(0, 0), (1, 1)]) == pytest.approx(0.25)
    # sure links count as possible even when not listed there
    assert alignment_error_rate([(0, 0)], [(0, 0)], [(5, 5)]) == 0.0


def test_aer_pools_counts_over_a_corpus():
    pred = [[(0, 0)], [(0, 0), (1, 1), (2, 2), (3, 3)]]
    gold = [[(0, 1)], [(0, 0), (1, 1), (2, 2), (3, 3)]]
    # sentence AERs are 1 and 0 (mean 0.5); pooled: 1 - 2 * 4 / (5 + 5) = 0.2
    assert alignment_error_rate(pred, gold) == pytest.approx(0.2)
    assert alignment_error_rate(pred[0], gold[0]) == 1.0


def test_hard_alignment_argmax_and_threshold():
    w = torch.tensor([[0.7, 0.2, 0.1],    # target 0 -> source 0
                      [0.1, 0.3, 0.6],    # target 1 -> source 2
                      [0.4, 0.4, 0.2]])   # tie: the first, source 0
    assert hard_alignment(w) == {(0, 0), (2, 1), (0, 2)}
    assert hard_alignment(w, threshold=0.35) == {(0, 0), (2, 1), (0, 2), (1, 2)}
    assert hard_alignment(w, threshold=0.9) == set()
    assert hard_alignment(torch.zeros(0, 3)) == set()


def test_attention_aer_crops_eos_and_padding():
    gold = [[(0, 0), (1, 2), (2, 1)], [(0, 0), (1, 1)]]
    # sentence 0: 3 target words x 3 source words, + <eos> row and column, padded to 5 x 5
    w = torch.zeros(2, 5, 5)
    w[0, 0, 0] = w[0, 1, 2] = w[0, 2, 1] = 0.6
    w[0, :, 3] = 0.3             # the source <eos> takes some attention, never the most
    w[0, 3, 3] = 1.0             # the <eos> step looks at <eos>
    w[1, 0, 0] = w[1, 1, 1] = 0.9
    w[1, 0, 4] = w[1, 1, 4] = 1.0  # heavy weight on a padded column: cropped away
    assert attention_aer(w, gold, src_lens=[3, 2], tgt_lens=[3, 2]) == 0.0
    as_list = [w[0, :3, :3], w[1, :2, :2]]
    assert attention_aer(as_list, gold) == 0.0
    # uncropped, sentence 1 links both target words to padding: 2 of 5 links are wrong
    got = attention_aer([w[0, :3, :3], w[1, :2, :]], gold)
    assert got == pytest.approx(1 - 2 * 3 / (5 + 5))
    assert attention_aer(as_list, gold, threshold=0.5) == 0.0


def test_attention_aer_on_gold_matrices_and_baselines():
    from attention_lib.data import make_corpus
    pairs = make_corpus(200, seed=3).pairs
    gold = [p.alignment for p in pairs]
    src, tgt = [len(p.src) for p in pairs], [len(p.tgt) for p in pairs]
    mats = [p.alignment_matrix() for p in pairs]
    assert attention_aer(mats, gold, threshold=0.5) == 0.0
    # argmax keeps one source word per target word: many-to-one links cost a little
    floor = attention_aer(mats, gold)
    assert 0.0 < floor < 0.05
    uniform = uniform_baseline_aer(gold, src, tgt)
    diagonal = attention_aer([diagonal_attention(s, t) for s, t in zip(src, tgt)], gold)
    assert floor < diagonal < uniform and uniform > 0.9 and diagonal > 0.25


def test_uniform_baseline_is_the_expected_aer_of_random_ties():
    """Exhaustive: every way of breaking the ties of two uniform matrices, AER averaged."""
    gold = [[(0, 0), (1, 0), (2, 1)], [(0, 0), (1, 1)]]
    src, tgt = [3, 2], [2, 2]
    choices = [list(itertools.product(range(ns), repeat=nt)) for ns, nt in zip(src, tgt)]
    aers = [alignment_error_rate([{(i, j) for j, i in enumerate(c0)},
                                  {(i, j) for j, i in enumerate(c1)}], gold)
            for c0 in choices[0] for c1 in choices[1]]
    assert uniform_baseline_aer(gold, src, tgt) == pytest.approx(sum(aers) / len(aers))
    # by hand: E|A & S| = 3/3 + 2/2 = 2; 1 - 2 * 2 / (4 + 5) = 5/9
    assert uniform_baseline_aer(gold, src, tgt) == pytest.approx(5 / 9)


def test_uniform_and_diagonal_attention():
    u = uniform_attention(4, 3, dtype=torch.float64)
    assert u.shape == (3, 4) and torch.allclose(u.sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.equal(diagonal_attention(4, 4), torch.eye(4))
    d = diagonal_attention(6, 3)
    assert d.sum(1).tolist() == [1, 1, 1] and d.argmax(1).tolist() == [1, 3, 5]
    assert diagonal_attention(3, 6).argmax(1).tolist() == [0, 0, 1, 1, 2, 2]


# --------------------------------------------------------------------------- bad input
def test_bleu_bad_input():
    with pytest.raises(ValueError, match="references"):
        corpus_bleu([["a"]], [["a"], ["b"]])
    with pytest.raises(ValueError, match="empty"):
        corpus_bleu([], [])
    with pytest.raises(TypeError, match="single sentence"):
        corpus_bleu("a b", "a b")
    with pytest.raises(TypeError, match=r"hypotheses\[0\]"):
        corpus_bleu([3], [["a"]])
    with pytest.raises(ValueError, match="smooth"):
        corpus_bleu([["a"]], [["a"]], smooth="laplace")
    with pytest.raises(ValueError, match="weights"):
        corpus_bleu([["a"]], [["a"]], weights=(0.5, 0.5))
    with pytest.raises(ValueError, match="max_order"):
        corpus_bleu([["a"]], [["a"]], max_order=0)
    with pytest.raises(ValueError, match="1-D"):
        corpus_bleu([torch.zeros(2, 2)], [["a"]])
    with pytest.raises(ValueError, match="one entry per sentence"):
        bleu_by_length([["a"]], [["a"]], [1, 2])
    with pytest.raises(ValueError, match="overlap"):
        bleu_by_length([["a"]], [["a"]], [1], buckets=[(1, 10), (10, 20)])
    with pytest.raises(ValueError, match="hi < lo"):
        bleu_by_length([["a"]], [["a"]], [1], buckets=[(10, 1)])


def test_aer_bad_input():
    with pytest.raises(ValueError, match="not a link"):
        alignment_error_rate([(0, -1)], [(0, 0)])
    with pytest.raises(ValueError, match="not a link"):
        alignment_error_rate([[(0, 0)], [(1, 2, 3)]], [[(0, 0)], [(1, 1)]])
    with pytest.raises(ValueError, match="same sentences"):
        alignment_error_rate([[(0, 0)], [(1, 1)]], [[(0, 0)]])
    with pytest.raises(ValueError, match="undefined"):
        alignment_error_rate([], [])
    with pytest.raises(TypeError, match="collection"):
        alignment_error_rate("01", [(0, 0)])
    with pytest.raises(ValueError, match="2-D"):
        hard_alignment(torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match="floating"):
        hard_alignment(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="Tensor"):
        hard_alignment([[0.5, 0.5]])
    w = torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match="sentences"):
        attention_aer(w, [[(0, 0)]])
    with pytest.raises(ValueError, match="outside"):
        attention_aer(w, [[(0, 0)], [(3, 3)]], src_lens=[4, 3], tgt_lens=[4, 3])
    with pytest.raises(ValueError, match="do not fit"):
        attention_aer(w, [[(0, 0)], [(0, 0)]], src_lens=[4, 5], tgt_lens=[4, 4])
    with pytest.raises(ValueError, match="src_lens"):
        attention_aer(w, [[(0, 0)], [(0, 0)]], src_lens=[4])
    with pytest.raises(ValueError, match="outside"):
        uniform_baseline_aer([[(3, 0)]], [3], [1])
    with pytest.raises(ValueError, match="src_len"):
        uniform_attention(0, 3)
