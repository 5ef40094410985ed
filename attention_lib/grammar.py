"""The grammar behind the Part I corpus: an English/French lexicon and sentence pairs with
gold word alignments.

The chapters of Part I need a translation task on which (1) a plain GRU encoder-decoder
visibly fails on long sentences, (2) attention visibly fixes it, and (3) we can *measure*
whether what attention looks at is the right source word. Real corpora come without gold
alignments and need downloads; this module generates one instead, from a small grammar with a
real English/French lexicon:

* determiners that agree with the noun (le / la / l' / les, un / une, des, ce / cet / cette /
  ces, mon / ma / mes, ...), contracted with a preceding *de* or *a* (du, des, au, aux);
* adjectives that agree in gender and number (noir / noire / noirs / noires, beau / bel /
  belle / beaux / belles); most follow the noun in French (*the black cat* -> *le chat
  noir*), a few precede it as in English (grand, petit, bon, beau, vieux, ...);
* verbs conjugated by person and number in the present tense, negation *ne ... pas*,
  object pronouns before the verb (*I see her* -> *je la vois*), adverbs after the verb
  (*he often reads* -> *il lit souvent*);
* prepositional phrases (*near the house* -> *près de la maison*), relative clauses with
  *qui* / *que*, and coordination, so that sentences reach 60 tokens and more.

Word order is mostly monotone with local reorderings, so a soft alignment can be learned, and
the translation is a deterministic function of the source sentence. Every pair carries its
**gold word alignment**: links ``(src_index, tgt_index)``, one-to-many (*not* -> *ne*,
*pas*) and many-to-one (*of the* -> *du*, *in front of* -> *devant*) included; every token of
both sentences is linked (the final full stop to the full stop).

Lengths are counted in tokens, the final full stop included (``he sleeps .`` has length 3).
A pair's length is the length of its source sentence; generation targets a length drawn
uniformly from ``[min_len, max_len]`` and grows a sentence to exactly that length.

:func:`sample_pair` draws one :class:`Pair`; :mod:`attention_lib.data` turns many of them into
a corpus with vocabularies, padding, length buckets and splits.

Reference for gold alignments and AER: Och & Ney (2003), "A systematic comparison of various
statistical alignment models", Computational Linguistics 29(1).
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .lexicon import (
    _ADJ_BY_CAT,
    _ADVERBS,
    _ANIMATE,
    _ANY,
    _BE_EN,
    _BE_FR,
    _CONJS,
    _CONTRACT,
    _DET_EN,
    _DETS_PL_T,
    _DETS_SG_T,
    _EN_VOWELS,
    _LOC_PREPS,
    _NP_PREPS,
    _OBJ_PRONOUNS,
    _POST_BY_CAT,
    _PRE_BY_CAT,
    _PREP_OF_A,
    _PREP_TO,
    _PREP_TO_ANY,
    _SUBJ_PRONOUNS,
    _TIMES,
    VERBS,
    Link,
    _adj_form,
    _det_fr,
    _fr_vowel,
    _nouns_with,
    _ObjPron,
    _Prep,
    _Pron,
    _Table,
)

Tensor = torch.Tensor

__all__ = ["Pair", "sample_pair"]


# =========================================================================== tree
class _NP:
    __slots__ = ("noun", "plural", "det", "pre", "post", "pp", "rel", "depth", "in_rel")

    def __init__(self, noun, plural, det, depth, in_rel):
        self.noun, self.plural, self.det = noun, plural, det
        self.pre = self.post = self.pp = self.rel = None
        self.depth, self.in_rel = depth, in_rel


class _Coord:
    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items


class _Clause:
    __slots__ = ("subj", "verb", "obj", "iobj", "adj", "neg", "adv", "locs", "time", "rel")

    def __init__(self, subj, verb, obj=None, iobj=None, adj=None, rel=None):
        self.subj, self.verb, self.obj, self.iobj, self.adj = subj, verb, obj, iobj, adj
        self.neg, self.adv, self.time, self.rel = False, None, None, rel
        self.locs = []


class _Sentence:
    __slots__ = ("clauses", "conjs", "nps", "all_clauses", "length")

    def __init__(self):
        self.clauses, self.conjs, self.nps, self.all_clauses = [], [], [], []
        self.length = 1  # the full stop


def _en_len_np(np) -> int:
    if isinstance(np, (_Pron, _ObjPron)):
        return 1
    if isinstance(np, _Coord):
        return sum(_en_len_np(x) for x in np.items) + len(np.items) - 1
    n = 2 + (np.pre is not None) + (np.post is not None)
    if np.pp is not None:
        n += len(np.pp[0].en) + _en_len_np(np.pp[1])
    if np.rel is not None:
        n += _en_len_clause(np.rel)
    return n


def _en_len_clause(c: _Clause) -> int:
    n = 1 if c.rel else 0  # "that"
    if c.subj is not None:
        n += _en_len_np(c.subj)
    n += 1  # verb or "be"
    if c.verb is None:
        n += 1 + c.neg  # adjective, "not"
    else:
        n += 2 * c.neg + (c.verb.particle is not None)
        if c.obj is not None:
            n += _en_len_np(c.obj)
        if c.iobj is not None:
            n += 1 + _en_len_np(c.iobj)
    n += c.adv is not None
    for prep, np in c.locs:
        n += len(prep.en) + _en_len_np(np)
    if c.time is not None:
        n += len(c.time[0])
    return n


# =========================================================================== sampling
def _weighted(rng: random.Random, table: _Table):
    return table.items[bisect.bisect_right(table.cum, rng.random() * table.total)]


def _new_np(rng, sent, tags, depth, in_rel, no_some=False) -> _NP:
    noun = rng.choice(_nouns_with(tags))
    plural = rng.random() < 0.35
    det = _weighted(rng, _DETS_PL_T if plural else _DETS_SG_T)
    if no_some and det == "some":
        det = "the"
    np = _NP(noun, plural, det, depth, in_rel)
    sent.nps.append(np)
    return np


def _new_subject(rng, sent, in_rel, copula=False):
    """A subject: a pronoun (30%) or a new noun phrase. Copula subjects have a known gender."""
    if rng.random() < 0.3:
        pool = _SUBJ_PRONOUNS[2:4] + _SUBJ_PRONOUNS[5:] if copula else _SUBJ_PRONOUNS
        return rng.choice(pool)
    return _new_np(rng, sent, _ANY if copula else _ANIMATE, 0, in_rel)


def _new_clause(rng, sent, in_rel, budget) -> Optional[_Clause]:
    """A basic clause (subject, verb, objects) of at most ``budget`` English tokens."""
    for _ in range(6):
        r = rng.random()
        if r < 0.15:  # copula: "the cat is black"
            subj = _new_subject(rng, sent, in_rel, copula=True)
            cat = subj.noun.cat if isinstance(subj, _NP) else "person"
            c = _Clause(subj, None, adj=rng.choice(_ADJ_BY_CAT[cat]))
        else:
            verb = rng.choice(VERBS)
            c = _Clause(_new_subject(rng, sent, in_rel), verb)
            if verb.kind in ("tr", "ditr"):
                if (verb.kind == "tr" and rng.random() < 0.15
                        and ("person" in verb.obj or "animal" in verb.obj)):
                    c.obj = rng.choice(_OBJ_PRONOUNS)
                else:
                    c.obj = _new_np(rng, sent, verb.obj, 0, in_rel)
            if verb.kind == "ditr":
                c.iobj = _new_np(rng, sent, ("person",), 0, in_rel)
            elif verb.kind == "prep":
                c.iobj = _new_np(rng, sent, verb.obj, 0, in_rel, no_some=verb.iprep == "of")
        if _en_len_clause(c) <= budget:
            return c
        _forget(sent, c)
    if budget < 2:
        return None
    c = _Clause(rng.choice(_SUBJ_PRONOUNS), rng.choice(VERBS[:12]))  # "he sleeps"
    return c


def _forget(sent, node) -> None:
    """Drop the noun phrases of a rejected clause from the registry."""
    gone = set()

    def walk(x):
        if isinstance(x, _NP):
            gone.add(id(x))
            if x.pp is not None:
                walk(x.pp[1])
            if x.rel is not None:
                walk(x.rel)
        elif isinstance(x, _Coord):
            for y in x.items:
                walk(y)
        elif isinstance(x, _Clause):
            for y in (x.subj, x.obj, x.iobj):
                walk(y)
            for _, y in x.locs:
                walk(y)
    walk(node)
    if gone:
        sent.nps[:] = [np for np in sent.nps if id(np) not in gone]


# --- expansions: each returns the number of English tokens it added (0: not possible)
def _x_pre(rng, sent, room):
    cands = [np for np in sent.nps if np.pre is None and _PRE_BY_CAT[np.noun.cat]]
    if not cands or room < 1:
        return 0
    np = rng.choice(cands)
    np.pre = rng.choice(_PRE_BY_CAT[np.noun.cat])
    return 1


def _x_post(rng, sent, room):
    cands = [np for np in sent.nps if np.post is None and _POST_BY_CAT[np.noun.cat]]
    if not cands or room < 1:
        return 0
    np = rng.choice(cands)
    np.post = rng.choice(_POST_BY_CAT[np.noun.cat])
    return 1


def _x_pp(rng, sent, room):
    if room < 3:
        return 0
    cands = [np for np in sent.nps if np.pp is None and np.rel is None and np.depth < 2]
    if not cands:
        return 0
    np = rng.choice(cands)
    prep = rng.choice(_NP_PREPS)
    if len(prep.en) + 2 > room:
        prep = _NP_PREPS[0]
    inner = _new_np(rng, sent, prep.obj, np.depth + 1, np.in_rel, no_some=prep.contracts)
    np.pp = (prep, inner)
    return len(prep.en) + 2


def _x_rel(rng, sent, room):
    if room < 2:
        return 0
    cands = [np for np in sent.nps if np.rel is None and np.pp is None and not np.in_rel]
    if not cands:
        return 0
    np = rng.choice(cands)
    cat = np.noun.cat
    for _ in range(4):
        r = rng.random()
        if r < 0.5 and cat in _ANIMATE:  # subject relative: "that sleeps", "that sees X"
            verb = rng.choice(VERBS)
            c = _Clause(None, verb, rel="subj")
            if verb.kind in ("tr", "ditr"):
                c.obj = _new_np(rng, sent, verb.obj, np.depth, True)
            if verb.kind == "ditr":
                c.iobj = _new_np(rng, sent, ("person",), np.depth, True)
            elif verb.kind == "prep":
                c.iobj = _new_np(rng, sent, verb.obj, np.depth, True,
                                 no_some=verb.iprep == "of")
        elif r < 0.65:  # "that is black"
            c = _Clause(None, None, adj=rng.choice(_ADJ_BY_CAT[cat]), rel="subj")
        else:  # object relative: "that the boy reads"
            verbs = [v for v in VERBS if v.kind in ("tr", "ditr") and np.noun.tags & set(v.obj)]
            if not verbs:
                continue
            verb = rng.choice(verbs)
            subj = (rng.choice(_SUBJ_PRONOUNS) if rng.random() < 0.4
                    else _new_np(rng, sent, _ANIMATE, np.depth, True))
            c = _Clause(subj, verb, rel="obj")
            if verb.kind == "ditr":
                c.iobj = _new_np(rng, sent, ("person",), np.depth, True)
        n = _en_len_clause(c)
        if n <= room:
            np.rel = c
            sent.all_clauses.append(c)
            return n
        _forget(sent, c)
    return 0


def _x_adv(rng, sent, room):
    cands = [c for c in sent.all_clauses if c.adv is None and not c.neg]
    if not cands or room < 1:
        return 0
    rng.choice(cands).adv = rng.choice(_ADVERBS)
    return 1


def _indefinite_object(c: _Clause) -> bool:
    """French turns un/une/des into *de* after a negation (il ne mange pas de pommes); we
    keep negated clauses away from indefinite objects instead."""
    objs = c.obj.items if isinstance(c.obj, _Coord) else [c.obj]
    return any(isinstance(o, _NP) and o.det in ("a", "some") for o in objs)


def _x_neg(rng, sent, room):
    cands = [c for c in sent.all_clauses if not c.neg and c.adv is None
             and room >= (1 if c.verb is None else 2) and not _indefinite_object(c)]
    if not cands:
        return 0
    c = rng.choice(cands)
    c.neg = True
    return 1 if c.verb is None else 2


def _x_loc(rng, sent, room):
    cands = [c for c in sent.all_clauses if len(c.locs) < 2]
    if not cands or room < 3:
        return 0
    c = rng.choice(cands)
    prep = rng.choice(_LOC_PREPS)
    if len(prep.en) + 2 > room:
        prep = _LOC_PREPS[0]
    depth = 0 if c.rel is None else 1
    c.locs.append((prep, _new_np(rng, sent, prep.obj, depth, c.rel is not None,
                                 no_some=prep.contracts)))
    return len(prep.en) + 2


def _x_time(rng, sent, room):
    cands = [c for c in sent.clauses if c.time is None]
    if not cands:
        return 0
    t = rng.choice(_TIMES)
    if len(t[0]) > room:
        t = _TIMES[0]
        if len(t[0]) > room:
            return 0
    rng.choice(cands).time = t
    return len(t[0])


def _x_clause(rng, sent, room):
    if room < 3 or len(sent.clauses) >= 6:
        return 0
    c = _new_clause(rng, sent, False, room - 1)
    if c is None:
        return 0
    sent.clauses.append(c)
    sent.all_clauses.append(c)
    sent.conjs.append(rng.choice(_CONJS))
    return 1 + _en_len_clause(c)


def _x_coord(rng, sent, room):
    if room < 3:
        return 0
    cands = []
    for c in sent.clauses:
        if isinstance(c.subj, _NP) and c.verb is not None:
            cands.append((c, "subj"))
        if isinstance(c.obj, _NP):
            cands.append((c, "obj"))
    if not cands:
        return 0
    c, slot = rng.choice(cands)
    old = getattr(c, slot)
    tags = _ANIMATE if slot == "subj" else c.verb.obj
    new = _new_np(rng, sent, tags, 0, False)
    if c.neg and slot == "obj" and new.det in ("a", "some"):
        new.det = "the"
    setattr(c, slot, _Coord([old, new]))
    return 3


_EXPANSIONS = _Table(((_x_pre, 2.0), (_x_post, 3.0), (_x_pp, 2.0), (_x_rel, 2.0),
                      (_x_adv, 1.0), (_x_neg, 0.7), (_x_loc, 1.5), (_x_time, 0.7),
                      (_x_clause, 1.5), (_x_coord, 0.7)))


def _grow(rng: random.Random, target: int) -> _Sentence:
    """A sentence tree whose English side has ``target`` tokens (or slightly fewer)."""
    sent = _Sentence()
    c = _new_clause(rng, sent, False, target - 1)
    sent.clauses.append(c)
    sent.all_clauses.append(c)
    sent.length += _en_len_clause(c)
    misses = 0
    while sent.length < target and misses < 12:
        grow = _weighted(rng, _EXPANSIONS)(rng, sent, target - sent.length)
        if grow:
            sent.length += grow
            misses = 0
        else:
            misses += 1
    return sent


# =========================================================================== rendering
class _Out:
    """Two token lists being written side by side, their links, and, for every French
    token, the index of the French token it agrees with (-1: none)."""
    __slots__ = ("en", "fr", "links", "ctrl")

    def __init__(self):
        self.en, self.fr, self.links, self.ctrl = [], [], [], []

    def e(self, w: str) -> int:
        self.en.append(w)
        return len(self.en) - 1

    def f(self, w: str, ctrl: int = -1) -> int:
        self.fr.append(w)
        self.ctrl.append(ctrl)
        return len(self.fr) - 1


def _np_fr_words(np: _NP):
    """French (determiner, pre-adjective, noun, post-adjective) of a noun phrase."""
    n = np.noun
    noun = n.fr_pl if np.plural else n.fr
    pre = None
    if np.pre is not None:
        pre = _adj_form(np.pre, n.gender, np.plural, _fr_vowel(noun))
    nxt = pre if pre is not None else noun
    det = _det_fr(np.det, n.gender, np.plural, _fr_vowel(nxt), pre is not None)
    post = _adj_form(np.post, n.gender, np.plural, False) if np.post is not None else None
    return det, pre, noun, post


def _fr_first(subj) -> str:
    if isinstance(subj, _Pron):
        return subj.fr
    if isinstance(subj, _Coord):
        return _fr_first(subj.items[0])
    return _np_fr_words(subj)[0]


def _feats(subj):
    """(person index, gender, plural) of a subject."""
    if isinstance(subj, _Pron):
        return subj.person, subj.gender, subj.plural
    if isinstance(subj, _Coord):
        g = "m" if any(x.noun.gender == "m" for x in subj.items) else "f"
        return 4, g, True
    return (4 if subj.plural else 1), subj.noun.gender, subj.plural


def _r_np(out: _Out, np, prep: Optional[_Prep] = None) -> int:
    """Write a noun phrase (after an optional preposition); return its head's French index."""
    if isinstance(np, _Coord):
        head = _r_np(out, np.items[0], prep)
        for x in np.items[1:]:
            i, head = out.e("and"), out.f("et")
            out.links.append((i, head))
            _r_np(out, x)
        return head
    det, pre, noun, post = _np_fr_words(np)
    n = np.noun
    en_ids = [out.e(w) for w in prep.en] if prep is not None else []
    # English: det [pre] [post] noun
    en_noun = n.en_pl if np.plural else n.en
    det_en = _DET_EN[np.det][np.plural]
    if det_en == "a":
        nxt = np.pre.en if np.pre else (np.post.en if np.post else en_noun)
        det_en = "an" if nxt[0] in _EN_VOWELS else "a"
    e_det = out.e(det_en)
    e_pre = out.e(np.pre.en) if pre is not None else -1
    e_post = out.e(np.post.en) if post is not None else -1
    e_noun = out.e(en_noun)
    # French: [prep] det [pre] noun [post]
    fr_ids = []
    if prep is not None:
        for w in prep.fr:
            fr_ids.append(out.f(w))
        if prep.contracts:
            last = fr_ids[-1]
            merged = _CONTRACT.get((prep.fr[-1], det))
            if merged is not None:
                out.fr[last] = merged
                det_i = last
            else:
                if prep.fr[-1] == "de" and _fr_vowel(det):
                    out.fr[last] = "d'"
                det_i = out.f(det)
        else:
            det_i = out.f(det)
        for a, b in prep.links:
            out.links.append((en_ids[a], fr_ids[b]))
    else:
        det_i = out.f(det)
    f_pre = out.f(pre) if pre is not None else -1
    f_noun = out.f(noun)
    f_post = out.f(post, f_noun) if post is not None else -1
    out.ctrl[det_i] = f_noun
    out.links.append((e_det, det_i))
    if pre is not None:
        out.ctrl[f_pre] = f_noun
        out.links.append((e_pre, f_pre))
    if post is not None:
        out.links.append((e_post, f_post))
    out.links.append((e_noun, f_noun))
    if np.pp is not None:
        _r_np(out, np.pp[1], np.pp[0])
    if np.rel is not None:
        _r_clause(out, np.rel, (f_noun, np))
    return f_noun


def _r_clause(out: _Out, c: _Clause, ante=None) -> None:
    """Write a clause. ``ante``: (French index, noun phrase) of a relative's antecedent."""
    person, gender, plural = _feats(ante[1] if c.rel == "subj" else c.subj)
    copula = c.verb is None
    v_fr = _BE_FR[person] if copula else c.verb.fr[person]
    clitic = None
    if isinstance(c.obj, _ObjPron):
        clitic = c.obj.fr
        if clitic != "les" and _fr_vowel(v_fr):
            clitic = "l'"
    after_subj = ("n'" if _fr_vowel(clitic or v_fr) else "ne") if c.neg else (clitic or v_fr)
    # subject
    if c.rel == "subj":
        i, j = out.e("that"), out.f("qui")
        out.links.append((i, j))
        head = ante[0]
    else:
        if c.rel == "obj":
            i = out.e("that")
            j = out.f("qu'" if _fr_vowel(_fr_first(c.subj)) else "que")
            out.links.append((i, j))
        if isinstance(c.subj, _Pron):
            i = out.e(c.subj.en)
            head = out.f("j'" if c.subj.fr == "je" and _fr_vowel(after_subj) else c.subj.fr)
            out.links.append((i, head))
        else:
            head = _r_np(out, c.subj)
    # verb group. English: [adv] [do not] verb [particle] / be [not] [adv]
    third = person == 1
    if copula:
        e_v = out.e(_BE_EN[person])
        e_not = out.e("not") if c.neg else -1
        e_adv = out.e(c.adv[0]) if c.adv else -1
    else:
        e_adv = out.e(c.adv[0]) if c.adv else -1
        if c.neg:
            e_aux, e_not = out.e("does" if third else "do"), out.e("not")
            e_v = out.e(c.verb.en)
        else:
            e_v = out.e(c.verb.en3 if third else c.verb.en)
        e_part = out.e(c.verb.particle) if c.verb.particle else -1
    e_cl = out.e(c.obj.en) if clitic else -1
    # French: [ne] [clitic] verb [pas] [adv]
    f_ne = out.f(after_subj) if c.neg else -1
    f_cl = out.f(clitic) if clitic else -1
    f_v = out.f(v_fr, head)
    f_pas = out.f("pas") if c.neg else -1
    f_adv = out.f(c.adv[1]) if c.adv else -1
    L = out.links
    L.append((e_v, f_v))
    if c.neg:
        L.append((e_not, f_ne))
        L.append((e_not, f_pas))
        if not copula:
            L.append((e_aux, f_v))
    if c.adv:
        L.append((e_adv, f_adv))
    if clitic:
        L.append((e_cl, f_cl))
    if copula:
        i = out.e(c.adj.en)
        j = out.f(_adj_form(c.adj, gender or "m", plural, False), head)
        L.append((i, j))
    else:
        if e_part >= 0:
            L.append((e_part, f_v))
        if isinstance(c.obj, (_NP, _Coord)):
            _r_np(out, c.obj)
        if c.iobj is not None:
            if c.verb.kind == "ditr":
                prep = _PREP_TO
            else:
                prep = _PREP_OF_A if c.verb.iprep == "of" else _PREP_TO_ANY
            _r_np(out, c.iobj, prep)
    for prep, np in c.locs:
        _r_np(out, np, prep)
    if c.time is not None:
        en_t, fr_t, links = c.time
        ei = [out.e(w) for w in en_t]
        fi = [out.f(w) for w in fr_t]
        L.extend((ei[a], fi[b]) for a, b in links)


def _render(sent: _Sentence) -> _Out:
    out = _Out()
    for k, c in enumerate(sent.clauses):
        if k:
            en, fr = sent.conjs[k - 1]
            out.links.append((out.e(en), out.f(fr)))
        _r_clause(out, c)
    out.links.append((out.e("."), out.f(".")))
    return out


# =========================================================================== pairs
@dataclass(frozen=True)
class Pair:
    """One sentence pair with its gold word alignment.

    src, tgt: tuples of tokens (lowercase; the final full stop is a token).
    alignment: sorted tuple of links ``(src_index, tgt_index)``; every token of both
    sentences takes part in at least one link. A token may link to several (*not* ->
    *ne*, *pas*; *of*, *the* -> *du*).
    """
    src: Tuple[str, ...]
    tgt: Tuple[str, ...]
    alignment: Tuple[Link, ...]

    @property
    def src_text(self) -> str:
        return " ".join(self.src)

    @property
    def tgt_text(self) -> str:
        return " ".join(self.tgt)

    def alignment_matrix(self, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        """Gold alignment as a (len(tgt), len(src)) matrix, 1 where linked: the layout of
        the attention weights of one sentence (rows = target positions = queries)."""
        m = torch.zeros(len(self.tgt), len(self.src), dtype=dtype, device=device)
        if self.alignment:
            idx = torch.tensor(self.alignment, device=device)
            m[idx[:, 1], idx[:, 0]] = 1
        return m

    @property
    def monotone(self) -> bool:
        """True when no two links cross (no reordering between the two sentences)."""
        links = sorted(self.alignment)
        best = -1
        for _, j in links:  # sorted by source index: target indices must not decrease
            if j < best:
                return False
            best = j
        return True


def sample_pair(rng: random.Random, length: int) -> Pair:
    """One random pair whose source has ``length`` tokens (a little fewer in the rare case
    the grammar cannot hit it exactly). ``rng``: a ``random.Random``; ``length`` >= 3."""
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    if not isinstance(length, int) or length < 3:
        raise ValueError(f"length must be an int >= 3 (the shortest sentence is 'he sleeps .'),"
                         f" got {length!r}")
    return _pair(_render(_grow(rng, length)))


def _pair(out: _Out) -> Pair:
    return Pair(tuple(out.en), tuple(out.fr), tuple(sorted(set(out.links))))
