"""Metrics for Part I: corpus BLEU (overall and by source length) and alignment error rate.

BLEU (Papineni et al. 2002, "BLEU: a method for automatic evaluation of machine
translation") is computed here on **tokens** that the caller already has -- lists of strings
or of integer ids -- so no detokenisation/retokenisation step can change the score. The
implementation follows ``sacrebleu`` (Post 2018) exactly, in the 0..1 scale instead of
0..100: clipped n-gram counts summed over the corpus, precisions ``p_n`` for n = 1..4, brevity
penalty ``BP = exp(1 - r/c)`` when the hypotheses are shorter than the references (c < r),
and ``BLEU = BP * exp(sum_n w_n log p_n)`` with uniform weights. The default smoothing is
sacrebleu's default, ``"exp"``, so that::

    corpus_bleu(hyps, refs) == sacrebleu.corpus_bleu([" ".join(h) for h in hyps],
                                                     [[" ".join(r) for r in refs]],
                                                     tokenize="none").score / 100

(tests/test_metrics.py checks this for every smoothing method). We do not call sacrebleu
underneath because it needs strings, and because the course library only depends on torch,
numpy, matplotlib and tqdm (Colab has no sacrebleu).

``d2l.bleu`` (Dive into Deep Learning, sec. 10.7) is a different quantity: a **sentence**
score whose n-gram precisions are weighted ``1/2, 1/4, 1/8, 1/16`` (not ``1/4`` each) and
which skips orders longer than the hypothesis; averaged over sentences it weighs every
sentence equally, whereas corpus BLEU pools the counts (long sentences weigh more).
:func:`sentence_bleu` with ``weights=d2l_weights(k), effective_order=True, smooth="none"``
reproduces it exactly. Both agree wherever the definitions coincide, e.g. when every
precision is 1 (only the brevity penalty is left).

Alignment error rate (Och & Ney 2003, "A systematic comparison of various statistical
alignment models", Computational Linguistics 29(1), eq. 6), for predicted links A, sure
gold links S and possible gold links P (S is a subset of P)::

    AER = 1 - (|A & S| + |A & P|) / (|A| + |S|)

With only sure links (P = S, as in ``attention_lib.data``) it is ``1 - F1`` of the links.
Over a corpus the counts are summed before dividing. Links are ``(src_index, tgt_index)``
pairs, as in :class:`attention_lib.data.Pair`. Attention weights become links with
:func:`hard_alignment` (argmax over the source for every target word, or a threshold).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

import torch

from ._validate import check_int, check_tensor, shape_str

Tensor = torch.Tensor
Tokens = Union[str, Sequence[Hashable]]
Link = Tuple[int, int]

__all__ = [
    "BleuScore", "bleu_score", "corpus_bleu", "sentence_bleu", "d2l_weights",
    "BucketScore", "DEFAULT_LENGTH_BUCKETS", "bleu_by_length",
    "alignment_error_rate", "hard_alignment", "attention_aer", "uniform_attention",
    "diagonal_attention", "uniform_baseline_aer",
]

_SMOOTH_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}


# =========================================================================== BLEU
@dataclass(frozen=True)
class BleuScore:
    """BLEU and its sufficient statistics (scale 0..1).

    counts[n-1]: clipped matches of n-grams; totals[n-1]: n-grams in the hypotheses;
    precisions[n-1]: (smoothed) precision p_n; bp: brevity penalty; hyp_len, ref_len: tokens.
    """
    score: float
    precisions: Tuple[float, ...]
    counts: Tuple[int, ...]
    totals: Tuple[int, ...]
    bp: float
    hyp_len: int
    ref_len: int

    def __float__(self) -> float:
        return self.score


def d2l_weights(k: int = 4) -> Tuple[float, ...]:
    """The n-gram weights of ``d2l.bleu(pred, label, k)``: ``(1/2, 1/4, ..., 1/2^k)``."""
    return tuple(0.5 ** n for n in range(1, k + 1))


def _as_tokens(x, name: str, i: int) -> Sequence[Hashable]:
    if isinstance(x, str):
        return x.split()
    if isinstance(x, torch.Tensor):
        if x.dim() != 1:
            raise ValueError(f"{name}[{i}] must be a 1-D tensor of ids, got shape {shape_str(x)}")
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return x
    raise TypeError(f"{name}[{i}] must be a string, a list/tuple of tokens or a 1-D tensor, "
                    f"got {type(x).__name__}")


def _ngrams(tokens: Sequence[Hashable], max_order: int) -> Counter:
    c = Counter()
    for n in range(1, max_order + 1):
        for k in range(len(tokens) - n + 1):
            c[tuple(tokens[k:k + n])] += 1
    return c


def _check_options(max_order, smooth, weights):
    check_int("max_order", max_order, 1)
    if smooth not in _SMOOTH_DEFAULTS:
        raise ValueError(f"smooth must be one of {sorted(_SMOOTH_DEFAULTS)}, got {smooth!r}")
    if weights is not None:
        if len(weights) != max_order or any(w < 0 for w in weights):
            raise ValueError(f"weights must be {max_order} non-negative numbers (one per "
                             f"n-gram order), got {tuple(weights)}")


def bleu_score(hypotheses: Sequence[Tokens], references: Sequence[Tokens], *,
               max_order: int = 4, smooth: str = "exp", smooth_value: Optional[float] = None,
               effective_order: bool = False,
               weights: Optional[Sequence[float]] = None) -> BleuScore:
    """Corpus BLEU with its statistics; see :func:`corpus_bleu` for the arguments."""
    _check_options(max_order, smooth, weights)
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be sequences of sentences, not one "
                        "string (wrap a single sentence in a list)")
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} references "
                         f"(one reference per hypothesis)")
    if len(hypotheses) == 0:
        raise ValueError("hypotheses is empty: BLEU of no sentences is undefined")
    correct = [0] * max_order
    total = [0] * max_order
    hyp_len = ref_len = 0
    for i, (h, r) in enumerate(zip(hypotheses, references)):
        h, r = _as_tokens(h, "hypotheses", i), _as_tokens(r, "references", i)
        hyp_len += len(h)
        ref_len += len(r)
        hc, rc = _ngrams(h, max_order), _ngrams(r, max_order)
        for g, c in hc.items():
            n = len(g) - 1
            total[n] += c
            correct[n] += min(c, rc.get(g, 0))
    return _compute(correct, total, hyp_len, ref_len, max_order, smooth, smooth_value,
                    effective_order, weights)


def _compute(correct, total, hyp_len, ref_len, max_order, smooth, smooth_value,
             effective_order, weights) -> BleuScore:
    """BLEU from its sufficient statistics; sacrebleu's ``BLEU.compute_bleu``, scale 0..1."""
    if smooth_value is None:
        smooth_value = _SMOOTH_DEFAULTS[smooth]
    counts, totals = tuple(correct), tuple(total)
    correct, total = list(correct), list(total)
    bp = 1.0
    if hyp_len < ref_len:
        bp = math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    precisions = [0.0] * max_order
    if not any(correct):
        return BleuScore(0.0, tuple(precisions), counts, totals, bp, hyp_len, ref_len)
    smooth_mteval = 1.0
    eff_order = max_order
    for n in range(1, max_order + 1):
        if smooth == "add-k" and n > 1:
            correct[n - 1] += smooth_value
            total[n - 1] += smooth_value
        if total[n - 1] == 0:
            break
        if effective_order:
            eff_order = n
        if correct[n - 1] == 0:
            if smooth == "exp":
                smooth_mteval *= 2
                precisions[n - 1] = 1.0 / (smooth_mteval * total[n - 1])
            elif smooth == "floor":
                precisions[n - 1] = smooth_value / total[n - 1]
        else:
            precisions[n - 1] = correct[n - 1] / total[n - 1]
    w = [1.0 / eff_order] * eff_order if weights is None else list(weights)[:eff_order]
    if any(p == 0.0 and wn > 0 for p, wn in zip(precisions[:eff_order], w)):
        score = 0.0
    else:
        score = bp * math.exp(sum(wn * math.log(p) for p, wn in zip(precisions[:eff_order], w)
                                  if wn > 0))
    return BleuScore(score, tuple(precisions), counts, totals, bp, hyp_len, ref_len)


def corpus_bleu(hypotheses: Sequence[Tokens], references: Sequence[Tokens], *,
                max_order: int = 4, smooth: str = "exp", smooth_value: Optional[float] = None,
                effective_order: bool = False,
                weights: Optional[Sequence[float]] = None) -> float:
    """Corpus BLEU in [0, 1] of tokenised hypotheses against one reference each.

    hypotheses, references: equal-length sequences; each sentence is a list/tuple of tokens
    (strings or ids), a 1-D tensor of ids, or a string split on whitespace.
    max_order: longest n-gram (4). smooth: ``"exp"`` (sacrebleu's default), ``"none"``
    (Papineni et al.), ``"floor"`` or ``"add-k"`` (Chen & Cherry 2014), with
    ``smooth_value``. effective_order: drop orders that have no n-gram at all (sacrebleu's
    option for sentence-level scores). weights: one weight per order instead of the uniform
    ``1/max_order`` (used as given, not renormalised; see :func:`d2l_weights`).

    Equivalent code: ``sacrebleu.corpus_bleu(hyp_strings, [ref_strings], tokenize="none",
    smooth_method=smooth).score / 100``.
    """
    return bleu_score(hypotheses, references, max_order=max_order, smooth=smooth,
                      smooth_value=smooth_value, effective_order=effective_order,
                      weights=weights).score


def sentence_bleu(hypothesis: Tokens, reference: Tokens, *, max_order: int = 4,
                  smooth: str = "exp", smooth_value: Optional[float] = None,
                  effective_order: bool = True,
                  weights: Optional[Sequence[float]] = None) -> float:
    """BLEU of one sentence, with sacrebleu's sentence defaults (``exp`` smoothing,
    effective order). ``d2l.bleu(" ".join(h), " ".join(r), k)`` equals
    ``sentence_bleu(h, r, max_order=k, weights=d2l_weights(k), smooth="none")``."""
    return corpus_bleu([hypothesis], [reference], max_order=max_order, smooth=smooth,
                       smooth_value=smooth_value, effective_order=effective_order,
                       weights=weights)


class BucketScore(NamedTuple):
    """BLEU of the sentences whose source length is in ``[lo, hi]`` (``hi=None``: no upper
    bound). ``count``: how many; ``bleu`` is NaN for an empty bucket."""
    lo: int
    hi: Optional[int]
    count: int
    bleu: float

    @property
    def label(self) -> str:
        return f"{self.lo}+" if self.hi is None else f"{self.lo}-{self.hi}"


#: Source-length buckets (tokens, full stop included) used by the chapters of Part I.
DEFAULT_LENGTH_BUCKETS: Tuple[Tuple[int, Optional[int]], ...] = (
    (1, 10), (11, 20), (21, 30), (31, 45), (46, None))


def bleu_by_length(hypotheses: Sequence[Tokens], references: Sequence[Tokens],
                   lengths: Sequence[int],
                   buckets: Sequence[Tuple[int, Optional[int]]] = DEFAULT_LENGTH_BUCKETS,
                   **bleu_kwargs) -> List[BucketScore]:
    """Corpus BLEU of each source-length bucket: the measurement behind "BLEU falls as
    sentences grow" (Bahdanau et al. 2014, Fig. 2; Cho et al. 2014).

    lengths: one source length per sentence (e.g. ``len(pair.src)``). buckets: inclusive
    ``(lo, hi)`` ranges, ``hi=None`` for no upper bound; they must not overlap. A sentence in
    no bucket is left out. ``bleu_kwargs`` go to :func:`corpus_bleu`. Returns one
    :class:`BucketScore` per bucket, in order.
    """
    if not (len(hypotheses) == len(references) == len(lengths)):
        raise ValueError(f"hypotheses, references and lengths must have one entry per "
                         f"sentence, got {len(hypotheses)}, {len(references)} and "
                         f"{len(lengths)}")
    spans = []
    for b in buckets:
        if len(b) != 2 or not isinstance(b[0], int) or not (b[1] is None or isinstance(b[1], int)):
            raise ValueError(f"each bucket must be (lo, hi) with int lo and int or None hi, "
                             f"got {b!r}")
        hi = math.inf if b[1] is None else b[1]
        if hi < b[0]:
            raise ValueError(f"bucket {b!r} is empty (hi < lo)")
        spans.append((b[0], hi))
    ordered = sorted(spans)
    for (_, hi1), (lo2, _) in zip(ordered, ordered[1:]):
        if lo2 <= hi1:
            raise ValueError(f"buckets overlap: {tuple(buckets)}")
    out = []
    for (lo, hi), b in zip(spans, buckets):
        sel = [i for i, n in enumerate(lengths) if lo <= n <= hi]
        score = (corpus_bleu([hypotheses[i] for i in sel], [references[i] for i in sel],
                             **bleu_kwargs) if sel else math.nan)
        out.append(BucketScore(b[0], b[1], len(sel), score))
    return out


# =========================================================================== AER
def _is_link(x) -> bool:
    return (isinstance(x, (tuple, list)) and len(x) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in x))


def _link_sets(x, name: str) -> List[Set[Link]]:
    """One sentence (a collection of links) or a corpus (a sequence of them) -> list of sets."""
    if isinstance(x, (set, frozenset)):
        x = list(x)
    if not isinstance(x, (list, tuple)):
        raise TypeError(f"{name} must be a collection of (src, tgt) links or a list of such "
                        f"collections, got {type(x).__name__}")
    if len(x) == 0 or _is_link(x[0]):
        sents = [x]
    else:
        sents = list(x)
    out = []
    for k, s in enumerate(sents):
        links = set()
        for link in s:
            if not _is_link(link) or min(link) < 0:
                raise ValueError(f"{name}: sentence {k} has {link!r}, which is not a link "
                                 f"(src_index, tgt_index) of non-negative ints")
            links.add((int(link[0]), int(link[1])))
        out.append(links)
    return out


def alignment_error_rate(predicted, sure, possible=None) -> float:
    """Alignment error rate (Och & Ney 2003, eq. 6), in [0, 1]; lower is better.

    predicted, sure, possible: the links ``(src_index, tgt_index)`` of one sentence (a
    list/set of pairs), or of a corpus (a list of such collections, one per sentence; counts
    are summed over sentences). ``possible`` defaults to ``sure``; sure links always count
    as possible (P is taken as ``possible | sure``).

    ``AER = 1 - (|A & S| + |A & P|) / (|A| + |S|)``: 0 when A contains every sure link and
    only possible ones, 1 when A shares nothing with P.
    """
    A, S = _link_sets(predicted, "predicted"), _link_sets(sure, "sure")
    P = S if possible is None else _link_sets(possible, "possible")
    if not (len(A) == len(S) == len(P)):
        raise ValueError(f"predicted, sure and possible must cover the same sentences, got "
                         f"{len(A)}, {len(S)} and {len(P)}")
    a_s = a_p = n_a = n_s = 0
    for a, s, p in zip(A, S, P):
        p = p | s
        a_s += len(a & s)
        a_p += len(a & p)
        n_a += len(a)
        n_s += len(s)
    if n_a + n_s == 0:
        raise ValueError("AER is undefined with no predicted and no sure links")
    return 1.0 - (a_s + a_p) / (n_a + n_s)


def hard_alignment(weights: Tensor, *, threshold: Optional[float] = None) -> Set[Link]:
    """Links ``(src_index, tgt_index)`` read off one attention matrix.

    weights: (Nt, Ns) -- row j holds the attention of target step j over the Ns source
    positions (crop padding, <eos> and anything you do not want to score first).
    Default: the argmax source position of every row (one link per target word; ties go to
    the first position). With ``threshold``: every entry >= threshold (0, one or several
    links per row).
    """
    check_tensor("weights", weights, ndim=2, layout="(Nt, Ns)")
    if threshold is None:
        if weights.shape[0] and weights.shape[1] == 0:
            raise ValueError(f"weights has no source positions: shape {shape_str(weights)}")
        src = weights.argmax(dim=1).tolist() if weights.shape[0] else []
        return {(int(i), j) for j, i in enumerate(src)}
    tgt, src = torch.nonzero(weights >= threshold, as_tuple=True)
    return {(int(i), int(j)) for i, j in zip(src.tolist(), tgt.tolist())}


def _crop_all(weights, n, src_lens, tgt_lens) -> List[Tensor]:
    if isinstance(weights, torch.Tensor):
        if weights.dim() == 2:
            weights = weights[None]
        if weights.dim() != 3:
            raise ValueError(f"weights must be (B, Nt, Ns) or a list of (Nt, Ns) tensors, "
                             f"got shape {shape_str(weights)}")
        mats = list(weights)
    elif isinstance(weights, (list, tuple)):
        mats = list(weights)
    else:
        raise TypeError(f"weights must be a tensor (B, Nt, Ns) or a list of (Nt, Ns) tensors, "
                        f"got {type(weights).__name__}")
    if len(mats) != n:
        raise ValueError(f"weights has {len(mats)} sentences but alignments has {n}")
    for name, lens in (("src_lens", src_lens), ("tgt_lens", tgt_lens)):
        if lens is not None and len(lens) != n:
            raise ValueError(f"{name} has {len(lens)} entries for {n} sentences")
    out = []
    for b, m in enumerate(mats):
        if not isinstance(m, torch.Tensor) or m.dim() != 2:
            raise ValueError(f"weights[{b}] must be a 2-D tensor (Nt, Ns), got "
                             f"{shape_str(m) if isinstance(m, torch.Tensor) else type(m).__name__}")
        nt = m.shape[0] if tgt_lens is None else int(tgt_lens[b])
        ns = m.shape[1] if src_lens is None else int(src_lens[b])
        if not (0 <= nt <= m.shape[0] and 0 < ns <= m.shape[1]):
            raise ValueError(f"sentence {b}: lengths (tgt {nt}, src {ns}) do not fit weights of "
                             f"shape {shape_str(m)}")
        out.append(m[:nt, :ns])
    return out


def attention_aer(weights, alignments: Sequence[Iterable[Link]], *,
                  src_lens: Optional[Sequence[int]] = None,
                  tgt_lens: Optional[Sequence[int]] = None,
                  threshold: Optional[float] = None) -> float:
    """Corpus AER of attention weights against gold alignments.

    weights: (B, Nt, Ns) tensor (a padded batch) or a list of B tensors (Nt_b, Ns_b); row j
    = attention of the decoder step that predicts target token j. Take them from a
    teacher-forced pass over the reference translation (``model.alignment(src, src_len, tgt_in)``),
    so that row j belongs to gold target word j whatever the model would have generated;
    weights from free decoding line up with the gold words only where the output equals
    the reference.
    alignments: B gold link collections ``(src_index, tgt_index)`` (``Pair.alignment``).
    src_lens, tgt_lens: the number of source / target **words** of each sentence (e.g.
    ``len(pair.src)``, ``len(pair.tgt)``); rows and columns beyond them (the <eos> step,
    the source <eos>, padding) are cropped before reading links, so the argmax is taken over
    real source words only. Default: the whole matrix.
    threshold: see :func:`hard_alignment`. Gold links outside the cropped matrix raise
    ``ValueError``.
    """
    gold = [set(map(tuple, a)) for a in alignments]
    mats = _crop_all(weights, len(gold), src_lens, tgt_lens)
    for b, (m, g) in enumerate(zip(mats, gold)):
        for i, j in g:
            if not (0 <= j < m.shape[0] and 0 <= i < m.shape[1]):
                raise ValueError(f"sentence {b}: gold link (src {i}, tgt {j}) is outside the "
                                 f"(cropped) weights of shape {shape_str(m)}")
    pred = [hard_alignment(m.float() if not m.is_floating_point() else m, threshold=threshold)
            for m in mats]
    return alignment_error_rate(pred, gold)


def uniform_attention(src_len: int, tgt_len: int, *, dtype=torch.float32,
                      device=None) -> Tensor:
    """(tgt_len, src_len) weights that spread every row evenly over the source: what an
    attention layer that learned nothing would produce."""
    if src_len < 1 or tgt_len < 0:
        raise ValueError(f"need src_len >= 1 and tgt_len >= 0, got {src_len}, {tgt_len}")
    return torch.full((tgt_len, src_len), 1.0 / src_len, dtype=dtype, device=device)


def diagonal_attention(src_len: int, tgt_len: int, *, dtype=torch.float32,
                       device=None) -> Tensor:
    """(tgt_len, src_len) one-hot weights on the diagonal: target word j looks at source
    word ``floor((j + 1/2) * src_len / tgt_len)`` (the source cell under the midpoint of
    target cell j). A strong baseline on a corpus whose word order is mostly monotone:
    learned attention should beat it, not just uniform attention."""
    if src_len < 1 or tgt_len < 0:
        raise ValueError(f"need src_len >= 1 and tgt_len >= 0, got {src_len}, {tgt_len}")
    w = torch.zeros(tgt_len, src_len, dtype=dtype, device=device)
    for j in range(tgt_len):
        i = min(src_len - 1, max(0, math.floor((j + 0.5) * src_len / tgt_len)))
        w[j, i] = 1.0
    return w


def uniform_baseline_aer(alignments: Sequence[Iterable[Link]], src_lens: Sequence[int],
                         tgt_lens: Sequence[int]) -> float:
    """Expected corpus AER of uniform attention read by argmax.

    Every entry of a uniform row is a maximum; breaking the tie at random links target word
    j to a uniformly random source word. With one predicted link per target word, |A| is
    fixed and the expectation is exact:
    ``1 - 2 * sum_j g_j / Ns / (sum Nt + |S|)`` with g_j the gold links of word j.
    (``torch.argmax`` would break every tie towards source word 0 instead.)
    """
    if not (len(alignments) == len(src_lens) == len(tgt_lens)):
        raise ValueError(f"alignments, src_lens and tgt_lens must have one entry per sentence, "
                         f"got {len(alignments)}, {len(src_lens)} and {len(tgt_lens)}")
    hit = 0.0
    n_a = n_s = 0
    for b, (a, ns, nt) in enumerate(zip(alignments, src_lens, tgt_lens)):
        a = set(map(tuple, a))
        if ns < 1:
            raise ValueError(f"sentence {b}: src_len must be >= 1, got {ns}")
        for i, j in a:
            if not (0 <= i < ns and 0 <= j < nt):
                raise ValueError(f"sentence {b}: gold link (src {i}, tgt {j}) outside "
                                 f"src_len={ns}, tgt_len={nt}")
        hit += len(a) / ns
        n_a += nt
        n_s += len(a)
    if n_a + n_s == 0:
        raise ValueError("AER is undefined with no target words and no gold links")
    return 1.0 - 2.0 * hit / (n_a + n_s)
