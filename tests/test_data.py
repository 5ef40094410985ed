"""attention_lib.data: the synthetic English->French corpus with gold alignments.

The grammar's output is checked against the lexicon by independent means: French agreement
is re-derived here from the noun, adjective and verb tables (not with the generator's helper
functions), surface rules (elision, contraction, word adjacency) are checked on the token
strings, and a few sentences are worked out by hand, alignment included.
"""
from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import torch

from attention_lib import grammar as G
from attention_lib import lexicon as LX
from attention_lib.data import (
    Corpus,
    Vocab,
    bucket_batches,
    detokenize,
    make_batch,
    make_corpus,
    pad_sequences,
    split_indices,
    tokenize,
)
from attention_lib.grammar import Pair, sample_pair
from attention_lib.lexicon import ADJECTIVES, NOUNS, VERBS
from attention_lib.masks import padding_mask


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return make_corpus(3000, seed=0)


@pytest.fixture(scope="module")
def rendered():
    """2000 sentences as the generator writes them, with each French token's controller
    (the index of the token it must agree with, -1 for none)."""
    rng = random.Random(11)
    return [G._render(G._grow(rng, rng.randint(3, 60))) for _ in range(2000)]


# --------------------------------------------------------------------------- lexicon tables
FR_NOUN = {}  # French noun form -> set of (gender, plural)
EN_NOUN = {}  # English noun form -> (Noun, plural)
for _n in NOUNS:
    FR_NOUN.setdefault(_n.fr, set()).add((_n.gender, False))
    FR_NOUN.setdefault(_n.fr_pl, set()).add((_n.gender, True))
    EN_NOUN[_n.en], EN_NOUN[_n.en_pl] = (_n, False), (_n, True)
FR_ADJ = {f: a for a in ADJECTIVES for f in a.forms + ((a.m_sg_vowel,) if a.m_sg_vowel else ())}
EN_ADJ = {a.en: a for a in ADJECTIVES}
FR_BE = ("suis", "est", "sommes", "êtes", "sont")
FR_VERB = {f: v.fr for v in VERBS for f in v.fr}
for _f in FR_BE:
    FR_VERB[_f] = FR_BE
EN_VERB = {}
for _v in VERBS:
    EN_VERB[_v.en] = EN_VERB[_v.en3] = _v
# French subject pronoun -> index of the verb form it takes (je, il, nous, vous, ils)
FR_PRON = {"je": 0, "j'": 0, "il": 1, "elle": 1, "nous": 2, "vous": 3, "ils": 4}
VOWELS = set("aeiouyhàâäéèêëîïôöùûüœ")
DET_SG_M = {"le", "l'", "un", "ce", "cet", "mon", "notre", "votre", "du", "au"}
DET_SG_F = {"la", "l'", "une", "cette", "ma", "mon", "notre", "votre"}
DET_PL = {"les", "des", "de", "d'", "ces", "mes", "nos", "vos", "aux"}
DETS = DET_SG_M | DET_SG_F | DET_PL


def adj_form(a, gender, plural, next_word=None):
    """The form of adjective ``a`` for a noun of this gender and number (and next word)."""
    if not plural and gender == "m" and a.m_sg_vowel and next_word and next_word[0] in VOWELS:
        return a.m_sg_vowel
    return a.forms[2 * plural + (gender == "f")]


def det_ok(det, gender, plural, next_word, before_adj):
    """Whether determiner ``det`` fits a noun of this gender/number, given the next word."""
    vowel = next_word[0] in VOWELS
    ok = det in (DET_PL if plural else DET_SG_M if gender == "m" else DET_SG_F)
    if det in ("le", "la", "ce", "ma"):
        ok &= not vowel
    if det in ("l'", "cet"):
        ok &= vowel
    if det == "mon" and gender == "f":
        ok &= vowel and not plural
    if det in ("de", "d'"):
        ok &= before_adj
    return ok


# --------------------------------------------------------------------------- lexicon
def test_lexicon_is_well_formed_and_unambiguous():
    assert len(NOUNS) >= 60 and len(ADJECTIVES) >= 25 and len(VERBS) >= 30
    assert {n.gender for n in NOUNS} == {"m", "f"}
    assert sum(a.pre for a in ADJECTIVES) >= 8 and sum(not a.pre for a in ADJECTIVES) >= 15
    assert all(len(v.fr) == 5 for v in VERBS)
    # no French (or English) form belongs to two word classes: agreement checks and gold
    # alignment lookups by form are then unambiguous
    fr_nouns = {f for n in NOUNS for f in (n.fr, n.fr_pl)}
    fr_adjs, fr_verbs = set(FR_ADJ), set(FR_VERB)
    assert not fr_nouns & fr_adjs and not fr_nouns & fr_verbs and not fr_adjs & fr_verbs
    assert not fr_nouns & DETS and not fr_adjs & DETS
    en_nouns, en_adjs, en_verbs = set(EN_NOUN), set(EN_ADJ), set(EN_VERB)
    assert not en_nouns & en_adjs and not en_nouns & en_verbs and not en_adjs & en_verbs
    assert len(en_nouns) == 2 * len(NOUNS)  # English singular and plural always differ
    # every h-initial French noun has a mute h (elided article): l'homme, l'hôtel
    assert {n.fr for n in NOUNS if n.fr[0] == "h"} <= {"homme", "hôtel", "histoire", "horloge"}


# --------------------------------------------------------------------------- hand-worked
def _np(en_noun, det="the", plural=False, pre=None, post=None, depth=0):
    np = G._NP(EN_NOUN[en_noun][0], plural, det, depth, False)
    np.pre = EN_ADJ[pre] if pre else None
    np.post = EN_ADJ[post] if post else None
    return np


def _render(*clauses, conjs=()):
    sent = G._Sentence()
    sent.clauses.extend(clauses)
    sent.conjs.extend(conjs)
    return G._render(sent)


def test_hand_worked_negation_adjectives_contraction():
    near = next(p for p in G._NP_PREPS if p.en == ("near",))
    cat = _np("cat", post="black")
    man = _np("man", pre="old")
    man.pp = (near, _np("house", depth=1))
    c = G._Clause(cat, EN_VERB["see"], obj=man)
    c.neg = True
    out = _render(c)
    assert " ".join(out.en) == "the black cat does not see the old man near the house ."
    assert " ".join(out.fr) == "le chat noir ne voit pas le vieil homme près de la maison ."
    assert sorted(out.links) == [(0, 0), (1, 2), (2, 1), (3, 4), (4, 3), (4, 5), (5, 4),
                                 (6, 6), (7, 7), (8, 8), (9, 9), (9, 10), (10, 11), (11, 12),
                                 (12, 13)]
    # le, noir -> chat; voit -> chat (its subject); le, vieil -> homme; la -> maison
    assert out.ctrl == [1, -1, 1, -1, 1, -1, 8, 8, -1, -1, -1, 12, -1, -1]


def test_hand_worked_clitic_and_adverb_move():
    c = G._Clause(G._SUBJ_PRONOUNS[0], EN_VERB["see"], obj=G._OBJ_PRONOUNS[0])
    c.adv = ("often", "souvent")
    out = _render(c)
    assert out.en == ["i", "often", "see", "him", "."]
    assert out.fr == ["je", "le", "vois", "souvent", "."]
    assert sorted(out.links) == [(0, 0), (1, 3), (2, 2), (3, 1), (4, 4)]
    c = G._Clause(G._SUBJ_PRONOUNS[0], EN_VERB["like"], obj=G._OBJ_PRONOUNS[1])
    assert _render(c).fr == ["je", "l'", "aime", "."]  # elision twice


def test_hand_worked_relative_clause_and_des():
    friend = _np("friend")
    boys = _np("boys", plural=True, depth=1)
    friend.pp = (LX._PREP_OF, boys)
    boys.rel = G._Clause(_np("girl"), EN_VERB["like"], rel="obj")
    out = _render(G._Clause(friend, EN_VERB["sleep"]))
    assert " ".join(out.en) == "the friend of the boys that the girl likes sleeps ."
    assert " ".join(out.fr) == "l' ami des garçons que la fille aime dort ."
    assert detokenize(out.fr) == "l'ami des garçons que la fille aime dort."
    assert sorted(out.links) == [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 5),
                                 (7, 6), (8, 7), (9, 8), (10, 9)]
    assert out.ctrl[8] == 1 and out.ctrl[7] == 6 and out.ctrl[2] == 3  # dort, aime, des


def test_hand_worked_coordination_and_predicate():
    subj = G._Coord([_np("girl"), _np("mother")])
    c1 = G._Clause(subj, EN_VERB["speak"], iobj=_np("teachers", plural=True))
    c2 = G._Clause(_np("houses", plural=True), None, adj=EN_ADJ["beautiful"])
    c2.neg = True
    out = _render(c1, c2, conjs=[("but", "mais")])
    assert " ".join(out.en) == ("the girl and the mother speak to the teachers "
                                "but the houses are not beautiful .")
    assert " ".join(out.fr) == ("la fille et la mère parlent aux professeurs "
                                "mais les maisons ne sont pas belles .")
    # aux <- to, the (many-to-one); parlent agrees with the coordination ("et")
    assert (6, 6) in out.links and (7, 6) in out.links
    assert out.ctrl[5] == 2 and out.fr[2] == "et"


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_corpus_and_different_seed_differs():
    a, b = make_corpus(300, seed=1), make_corpus(300, seed=1)
    assert a.pairs == b.pairs and a.splits == b.splits
    assert a.src_vocab.itos == b.src_vocab.itos and a.tgt_vocab.itos == b.tgt_vocab.itos
    c = make_corpus(300, seed=2)
    assert len(set(a.pairs) & set(c.pairs)) < 30  # a few short sentences may coincide
    assert sample_pair(random.Random(5), 30) == sample_pair(random.Random(5), 30)


def test_translation_is_a_function_of_the_source():
    """The same English sentence always gets the same French one (else BLEU could not
    reach 1). Short lengths, where a sentence recurs often."""
    rng = random.Random(3)
    seen, repeats = {}, 0
    for _ in range(8000):
        out = G._render(G._grow(rng, rng.randint(3, 9)))
        src, tgt = " ".join(out.en), " ".join(out.fr)
        repeats += src in seen
        assert seen.setdefault(src, tgt) == tgt, src
    assert repeats > 1000  # the check had something to bite on


def test_grown_length_is_the_target():
    rng = random.Random(4)
    hit = 0
    for _ in range(400):
        target = rng.randint(3, 60)
        sent = G._grow(rng, target)
        out = G._render(sent)
        assert len(out.en) == sent.length <= target  # the tracked length is exact
        hit += len(out.en) == target
    assert hit >= 0.9 * 400


# --------------------------------------------------------------------------- alignment
def test_alignment_links_are_valid_and_cover_every_token(corpus):
    for p in corpus.pairs:
        assert list(p.alignment) == sorted(set(p.alignment))
        assert all(0 <= i < len(p.src) and 0 <= j < len(p.tgt) for i, j in p.alignment)
        assert {i for i, _ in p.alignment} == set(range(len(p.src))), p.src_text
        assert {j for _, j in p.alignment} == set(range(len(p.tgt))), p.tgt_text
        assert p.src[-1] == p.tgt[-1] == "." and (len(p.src) - 1, len(p.tgt) - 1) in p.alignment


def test_alignment_links_translate_content_words(corpus):
    """Each English noun / adjective / verb is linked to its translation in the lexicon."""
    checked = Counter()
    for p in corpus.pairs[:1500]:
        to = {}
        for i, j in p.alignment:
            to.setdefault(i, []).append(p.tgt[j])
        for i, w in enumerate(p.src):
            if w in EN_NOUN:
                n, plural = EN_NOUN[w]
                assert to[i] == [n.fr_pl if plural else n.fr], (p.src_text, w, to[i])
                checked["noun"] += 1
            elif w in EN_ADJ:
                a = EN_ADJ[w]
                assert len(to[i]) == 1 and to[i][0] in FR_ADJ and FR_ADJ[to[i][0]] is a
                checked["adj"] += 1
            elif w in EN_VERB:
                v = EN_VERB[w]
                assert len(to[i]) == 1 and to[i][0] in v.fr, (p.src_text, w, to[i])
                checked["verb"] += 1
    assert min(checked.values()) > 1000


def test_alignment_has_reorderings_and_many_to_one(corpus):
    pairs = corpus.pairs
    crossing = sum(not p.monotone for p in pairs) / len(pairs)
    assert 0.5 < crossing < 1.0  # most sentences reorder something, locally
    many_to_one = one_to_many = 0
    for p in pairs:
        tgt_deg = Counter(j for _, j in p.alignment)
        src_deg = Counter(i for i, _ in p.alignment)
        many_to_one += any(c > 1 for c in tgt_deg.values())
        one_to_many += any(c > 1 for c in src_deg.values())
    assert many_to_one > 0.3 * len(pairs) and one_to_many > 0.2 * len(pairs)
    # reordering stays local: a link moves few positions from the diagonal
    shifts = [abs(j - i) for p in pairs for i, j in p.alignment]
    assert sum(s <= 3 for s in shifts) / len(shifts) > 0.9


def test_alignment_matrix_and_monotone():
    p = Pair(("the", "black", "cat", "."), ("le", "chat", "noir", "."),
             ((0, 0), (1, 2), (2, 1), (3, 3)))
    m = p.alignment_matrix()
    assert m.shape == (4, 4) and m.dtype == torch.float32 and m.sum() == 4
    assert m[2, 1] == 1 and m[1, 2] == 1 and m[1, 1] == 0  # rows = target, cols = source
    assert not p.monotone
    assert Pair(("a", "."), ("b", "."), ((0, 0), (1, 1))).monotone


# --------------------------------------------------------------------------- French grammar
def _controller_feats(fr, k):
    """Features of the controller token fr[k]: ('noun', {(g, pl)}) or ('verb-person', idx)."""
    w = fr[k]
    if w in FR_NOUN:
        return FR_NOUN[w]
    if w in FR_PRON:
        return w
    assert w == "et", f"controller {w!r} is neither a noun, a pronoun nor 'et'"
    return w


def test_agreement_against_lexicon(rendered):
    """Every determiner, adjective and verb agrees with its controller, re-derived here from
    the lexicon tables: gender and number of the noun, person of the subject."""
    kinds = Counter()
    for out in rendered:
        fr, ctrl = out.fr, out.ctrl
        for k, (w, c) in enumerate(zip(fr, ctrl)):
            if w in FR_ADJ or w in FR_VERB:
                assert c >= 0, f"{w!r} agrees with nothing in {' '.join(fr)}"
            if c < 0:
                continue
            feats = _controller_feats(fr, c)
            if w in FR_VERB:
                forms = FR_VERB[w]
                if isinstance(feats, str):  # pronoun or coordination
                    person = 4 if feats == "et" else FR_PRON[feats]
                    assert w == forms[person], (w, feats, " ".join(fr))
                else:
                    assert w in {forms[4 if pl else 1] for _, pl in feats}, (w, " ".join(fr))
                kinds["verb"] += 1
            elif w in FR_ADJ:
                if isinstance(feats, str):
                    gender_number = {"il": {("m", False)}, "elle": {("f", False)},
                                     "ils": {("m", True)}}[feats]
                else:
                    gender_number = feats
                nxt = fr[k + 1] if k + 1 < len(fr) else "."
                pre_adj = c == k + 1  # stands right before its noun
                assert any(w == adj_form(FR_ADJ[w], g, pl, nxt if pre_adj else None)
                           for g, pl in gender_number), (w, fr[c], " ".join(fr))
                kinds["adj"] += 1
            else:
                assert w in DETS, (w, " ".join(fr))
                nxt = fr[k + 1]
                assert any(det_ok(w, g, pl, nxt, nxt in FR_ADJ) for g, pl in feats), \
                    (w, fr[c], " ".join(fr))
                kinds["det"] += 1
    assert min(kinds.values()) > 2000, kinds


def test_surface_agreement_and_elision(corpus):
    """Rules read off the token strings alone, without the generator's annotations."""
    seen = Counter()
    for p in corpus.pairs:
        fr = p.tgt
        for k in range(len(fr) - 1):
            w, nxt = fr[k], fr[k + 1]
            vowel = nxt[0] in VOWELS
            # elision: the short forms before a vowel, the full forms never
            if w in ("le", "la", "je", "ne", "que", "ce", "de"):
                assert not vowel, " ".join(fr)
            if w in ("l'", "j'", "n'", "qu'", "d'", "cet"):
                assert vowel, " ".join(fr)
                seen["elision"] += 1
            # negation takes no indefinite object (French would need "pas de")
            if w == "pas":
                assert nxt not in ("un", "une", "des", "de", "d'"), " ".join(fr)
            # contraction: de le / de les / à le / à les never appear
            assert not (w in ("de", "à") and nxt in ("le", "les")), " ".join(fr)
            # determiner + noun, determiner + adjective + noun, noun + adjective
            if w in DETS and nxt in FR_NOUN and not (w in ("le", "la", "les", "l'")
                                                    and k > 0 and fr[k - 1] in FR_PRON):
                assert any(det_ok(w, g, pl, nxt, False) for g, pl in FR_NOUN[nxt]), " ".join(fr)
                seen["det+noun"] += 1
            if (w in DETS and nxt in FR_ADJ and k + 2 < len(fr) and fr[k + 2] in FR_NOUN):
                noun = fr[k + 2]
                assert any(det_ok(w, g, pl, nxt, True)
                           and nxt == adj_form(FR_ADJ[nxt], g, pl, noun)
                           for g, pl in FR_NOUN[noun]), " ".join(fr)
                seen["det+adj+noun"] += 1
            if w in FR_NOUN and nxt in FR_ADJ:
                assert any(nxt == adj_form(FR_ADJ[nxt], g, pl) for g, pl in FR_NOUN[w]), \
                    " ".join(fr)
                seen["noun+adj"] += 1
            # a subject pronoun's verb (after ne and an object pronoun, if any)
            if w in FR_PRON and (k == 0 or fr[k - 1] in ("et", "mais", "que", "qu'")):
                m = k + 1
                while fr[m] in ("ne", "n'", "le", "la", "les", "l'"):
                    m += 1
                assert fr[m] == FR_VERB[fr[m]][FR_PRON[w]], " ".join(fr)
                seen["pronoun+verb"] += 1
    assert min(seen.values()) > 300, seen


def test_corpus_shows_every_phenomenon(corpus):
    words = Counter(w for p in corpus.pairs for w in p.tgt)
    for w in ("du", "des", "au", "aux", "l'", "d'", "qu'", "n'", "j'", "cet", "qui", "que",
              "pas", "bel", "vieil", "nouvel", "devant", "près", "côté", "souvent", "mais",
              "et", "chaque", "de"):
        assert words[w] > 0, w
    src_words = Counter(w for p in corpus.pairs for w in p.src)
    for w in ("does", "not", "an", "these", "some", "front", "for", "him", "her", "them"):
        assert src_words[w] > 0, w


# --------------------------------------------------------------------------- lengths, splits
def test_length_histogram_covers_3_to_60(corpus):
    hist = Counter(len(p.src) for p in corpus.pairs)
    assert set(range(3, 61)) <= set(hist) and max(hist) == 60 and min(hist) == 3
    long = sum(c for n, c in hist.items() if 31 <= n <= 60)
    assert long > 0.4 * len(corpus.pairs)  # long sentences are common
    assert sum(c for n, c in hist.items() if 31 <= n <= 45) > 0.2 * len(corpus.pairs)
    assert min(hist[n] for n in range(8, 61)) > 20  # no gaps


def test_lengths_reach_beyond_60():
    c = make_corpus(60, seed=0, min_len=61, max_len=80)
    lens = c.lengths()
    assert min(lens) >= 61 and max(lens) > 70


def test_splits_disjoint_and_stratified(corpus):
    tr, va, te = (corpus.splits[k] for k in ("train", "valid", "test"))
    assert sorted(tr + va + te) == list(range(len(corpus.pairs)))
    assert (len(tr), len(va), len(te)) == (2400, 300, 300)
    src = {k: {corpus.pairs[i].src for i in corpus.splits[k]} for k in corpus.splits}
    tgt = {k: {corpus.pairs[i].tgt for i in corpus.splits[k]} for k in corpus.splits}
    assert not src["test"] & src["train"] and not src["valid"] & src["train"]
    assert not src["test"] & src["valid"]
    assert not tgt["test"] & tgt["train"] and not tgt["valid"] & tgt["train"]
    # stratified: every split covers the long range in proportion
    for k in ("valid", "test"):
        lens = corpus.lengths(k)
        assert abs(sum(lens) / len(lens) - sum(corpus.lengths()) / len(corpus.pairs)) < 1.0
        assert sum(31 <= n <= 45 for n in lens) > 0.2 * len(lens)


def test_split_indices_proportions():
    lengths = [i % 7 for i in range(1000)]
    parts = split_indices(lengths, (0.5, 0.3, 0.2), seed=0)
    assert [len(p) for p in parts] == [500, 300, 200]
    for n in range(7):  # stratified: each length split in the same proportions (+-1)
        got = [sum(lengths[i] == n for i in p) for p in parts]
        total = sum(got)
        assert all(abs(g - f * total) <= 1 for g, f in zip(got, (0.5, 0.3, 0.2)))


# --------------------------------------------------------------------------- tokens, vocab
def test_tokenize_detokenize():
    assert tokenize("L'homme ne l’aime pas.") == ["l'", "homme", "ne", "l'", "aime", "pas", "."]
    assert tokenize("The black cat, I think, sleeps!") == [
        "the", "black", "cat", ",", "i", "think", ",", "sleeps", "!"]
    assert detokenize(["l'", "homme", "dort", "."]) == "l'homme dort."


def test_tokenize_round_trips_the_corpus(corpus):
    for p in corpus.pairs[:500]:
        assert tuple(tokenize(detokenize(p.src))) == p.src
        assert tuple(tokenize(detokenize(p.tgt))) == p.tgt


def test_vocab_specials_and_round_trip(corpus):
    v = corpus.tgt_vocab
    assert v.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert 300 < len(corpus.src_vocab) < len(v) < 800
    unknown = total = 0
    for p in corpus.split("test"):
        ids = v.encode(p.tgt, bos=True, eos=True)
        assert ids[0] == 1 and ids[-1] == 2
        expected = tuple(w if w in v else "<unk>" for w in p.tgt)
        assert tuple(v.decode(ids)) == expected
        assert tuple(v.decode(ids + [0, 0])) == expected
        unknown += ids.count(3)
        total += len(p.tgt)
    assert unknown / total < 1e-3  # a closed lexicon: the training split has nearly every word
    assert v.encode(["zzz-unknown"]) == [3] and v["zzz-unknown"] == 3
    assert v.decode([5, 2, 6]) == [v.itos[5]]  # stops at <eos>
    assert v.decode([1, 5, 2, 6], strip=False) == ["<bos>", v.itos[5], "<eos>", v.itos[6]]
    assert v.decode(torch.tensor([5, 6])) == [v.itos[5], v.itos[6]]


def test_vocab_build_is_ordered_by_frequency():
    v = Vocab.build([["b", "a", "b"], ["c", "b", "a"], ["d"]], min_freq=1)
    assert v.itos[4:] == ["b", "a", "c", "d"]
    assert Vocab.build([["b", "a", "b"]], min_freq=2).itos[4:] == ["b"]
    # vocabularies are built on the training split only
    c = make_corpus(30, seed=0)
    train_words = {w for p in c.split("train") for w in p.tgt}
    assert set(c.tgt_vocab.itos[4:]) == train_words


# --------------------------------------------------------------------------- padding, batches
def test_pad_sequences_and_mask():
    ids, lens = pad_sequences([[5, 6, 7], [8], [9, 10]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]] and lens.tolist() == [3, 1, 2]
    assert ids.dtype == lens.dtype == torch.long
    assert torch.equal(padding_mask(lens), ids != 0)


def _check_batch(b, corpus):
    B = b.src.shape[0]
    assert b.src_len.shape == b.tgt_len.shape == b.index.shape == (B,)
    assert b.tgt_in.shape == b.tgt_out.shape and b.src.shape[1] == int(b.src_len.max())
    assert b.tgt_in.shape[1] == int(b.tgt_len.max())
    src_mask, tgt_mask = padding_mask(b.src_len), padding_mask(b.tgt_len)
    assert torch.equal(b.src != 0, src_mask) and torch.equal(b.tgt_out != 0, tgt_mask)
    assert torch.equal(b.tgt_in != 0, tgt_mask)
    assert (b.tgt_in[:, 0] == 1).all()
    rows = torch.arange(B)
    assert (b.src[rows, b.src_len - 1] == 2).all() and (b.tgt_out[rows, b.tgt_len - 1] == 2).all()
    # teacher forcing: the input is the output shifted right by one
    assert torch.equal(b.tgt_in[:, 1:][tgt_mask[:, 1:]], b.tgt_out[:, :-1][tgt_mask[:, 1:]])
    for r in range(B):
        p = corpus.pairs[int(b.index[r])]
        assert int(b.src_len[r]) == len(p.src) + 1 and int(b.tgt_len[r]) == len(p.tgt) + 1
        assert tuple(corpus.src_vocab.decode(b.src[r])) == p.src
        assert tuple(corpus.tgt_vocab.decode(b.tgt_out[r])) == p.tgt


def test_batches_shapes_masks_and_coverage(corpus):
    gen = torch.Generator().manual_seed(0)
    seen = []
    for b in corpus.batches("valid", batch_size=32, generator=gen):
        _check_batch(b, corpus)
        seen += b.index.tolist()
    assert sorted(seen) == sorted(corpus.splits["valid"])  # each pair once per epoch


def test_bucketing_reduces_padding_and_is_reproducible(corpus):
    def padding(bucket):
        gen = torch.Generator().manual_seed(1)
        pads = total = 0
        for b in corpus.batches("train", batch_size=64, bucket=bucket, generator=gen):
            pads += int((b.src == 0).sum())
            total += b.src.numel()
        return pads / total
    assert padding(True) < 0.05 < 0.3 < padding(False)
    first = [b.index.tolist() for b in corpus.batches(
        "train", 64, generator=torch.Generator().manual_seed(7))]
    again = [b.index.tolist() for b in corpus.batches(
        "train", 64, generator=torch.Generator().manual_seed(7))]
    other = [b.index.tolist() for b in corpus.batches(
        "train", 64, generator=torch.Generator().manual_seed(8))]
    assert first == again and first != other


def test_batches_are_reiterable_epochs(corpus):
    loader = corpus.batches("valid", 64, generator=torch.Generator().manual_seed(3))
    epoch1 = [b.index.tolist() for b in loader]
    epoch2 = [b.index.tolist() for b in loader]
    assert len(loader) == len(epoch1) == 5 and epoch1 != epoch2  # 300 pairs: 4 x 64 + 44
    assert sorted(sum(epoch1, [])) == sorted(sum(epoch2, [])) == sorted(corpus.splits["valid"])
    again = corpus.batches("valid", 64, generator=torch.Generator().manual_seed(3))
    assert [b.index.tolist() for b in again] == epoch1
    assert [b.index.tolist() for b in again] == epoch2  # the same sequence of epochs
    assert len(corpus.batches("valid", 64, drop_last=True)) == 4
    plain = corpus.batches("valid", 100, shuffle=False, bucket=False)
    assert [b.index.tolist() for b in plain][0] == corpus.splits["valid"][:100]


def test_batches_feed_the_training_loop():
    """The Part I training loop takes a corpus loader as is (it cycles through epochs)."""
    from attention_lib.seq2seq import build_seq2seq
    from attention_lib.train import train_seq2seq
    small = make_corpus(30, seed=0, max_len=8)
    torch.manual_seed(0)
    model = build_seq2seq("bahdanau", len(small.src_vocab), len(small.tgt_vocab),
                          embed_dim=8, hidden_size=8)
    loader = small.batches("valid", 2, generator=torch.Generator().manual_seed(0))
    out = train_seq2seq(model, loader, steps=len(loader) + 1, progress=False)
    assert len(loader) == 2 and len(out["loss"]) == 3
    assert all(math.isfinite(x) for x in out["loss"])


def test_bucket_batches():
    lengths = [5, 1, 4, 2, 3, 9, 8]
    batches = bucket_batches(lengths, 3, shuffle=False)
    assert batches == [[1, 3, 4], [2, 0, 6], [5]]
    assert bucket_batches(lengths, 3, shuffle=False, drop_last=True) == [[1, 3, 4], [2, 0, 6]]
    shuffled = bucket_batches(lengths, 2, generator=torch.Generator().manual_seed(0))
    assert sorted(i for b in shuffled for i in b) == list(range(7))
    # batches are runs of the sorted lengths (1 2 | 3 4 | 5 8 | 9), served in random order
    assert sorted(sorted(lengths[i] for i in b) for b in shuffled) == [[1, 2], [3, 4], [5, 8], [9]]


def test_make_batch_and_device(corpus, device):
    pairs = corpus.split("test")[:5]
    b = make_batch(pairs, corpus.src_vocab, corpus.tgt_vocab, device=device)
    assert all(t.device.type == torch.device(device).type for t in (*b, b.index))
    src, src_len, tgt_in, tgt_out, tgt_len = b  # unpacks as the five training tensors
    assert src is b.src and tgt_len is b.tgt_len and len(b) == 5
    assert b.index.tolist() == [0, 1, 2, 3, 4]
    assert b.to("cpu").src.device.type == "cpu"
    b2 = corpus.batch(corpus.splits["test"][:5], device=device)
    assert torch.equal(b2.src, b.src) and b2.index.tolist() == corpus.splits["test"][:5]


def test_summary(corpus):
    s = corpus.summary()
    assert s["pairs"] == 3000 and s["n_train"] == 2400
    assert s["min_len"] == 3 and s["max_len"] == 60 and 28 < s["mean_len"] < 36


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, err, match", [
    (dict(n_pairs=2), ValueError, "n_pairs"),
    (dict(n_pairs=10.0), ValueError, "n_pairs"),
    (dict(n_pairs=10, min_len=2), ValueError, "min_len"),
    (dict(n_pairs=10, min_len=20, max_len=10), ValueError, "max_len"),
    (dict(n_pairs=10, seed="0"), TypeError, "seed"),
    (dict(n_pairs=10, fractions=(0.5, 0.5)), ValueError, "fractions"),
    (dict(n_pairs=10, fractions=(0.5, 0.4, 0.2)), ValueError, "fractions"),
    (dict(n_pairs=500, min_len=3, max_len=3), ValueError, "distinct pairs"),
])
def test_make_corpus_bad_input(kwargs, err, match):
    n = kwargs.pop("n_pairs")
    with pytest.raises(err, match=match):
        make_corpus(n, **kwargs)


def test_bad_input_messages(corpus):
    with pytest.raises(ValueError, match="length"):
        sample_pair(random.Random(0), 2)
    with pytest.raises(TypeError, match="rng"):
        sample_pair(0, 10)
    with pytest.raises(TypeError, match="not a string"):
        corpus.src_vocab.encode("the cat")
    with pytest.raises(ValueError, match="out of range"):
        corpus.src_vocab.decode([10_000])
    with pytest.raises(ValueError, match="1-D"):
        corpus.src_vocab.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="split"):
        corpus.split("dev")
    with pytest.raises(ValueError, match="batch_size"):
        next(corpus.batches("train", batch_size=0))
    with pytest.raises(ValueError, match="empty"):
        pad_sequences([])
    with pytest.raises(ValueError, match="empty"):
        make_batch([], corpus.src_vocab, corpus.tgt_vocab)
    with pytest.raises(TypeError, match="str"):
        tokenize(["a"])
    with pytest.raises(TypeError, match="tokenize"):
        Vocab.build(["the cat"])
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build([["a"]], min_freq=0)
