"""The Part I corpus: tokens, vocabularies, padding, length buckets and splits.

The sentence pairs, each with its gold word alignment, come from the grammar of
:mod:`attention_lib.grammar`; this module makes a corpus of them that a seq2seq model can
train on.

Lengths are counted in tokens, the final full stop included (``he sleeps .`` has length 3).
A pair's length is the length of its source sentence; generation targets a length drawn
uniformly from ``[min_len, max_len]`` and grows a sentence to exactly that length.

Usage::

    from attention_lib.data import make_corpus

    corpus = make_corpus(30_000, seed=0, min_len=3, max_len=60)
    pair = corpus.pairs[0]
    pair.src, pair.tgt, pair.alignment     # tuples of tokens; ((src_i, tgt_j), ...)
    len(corpus.src_vocab), len(corpus.tgt_vocab)
    train = corpus.batches("train", batch_size=64, generator=torch.Generator().manual_seed(0))
    for batch in train:   # one epoch; iterate again for the next (reshuffled) epoch
        src, src_len, tgt_in, tgt_out, tgt_len = batch   # unpacks as five tensors
        batch.src       # (B, S) long: source ids + <eos>, padded with <pad> = 0
        batch.src_len   # (B,)  long: lengths including <eos>
        batch.tgt_in    # (B, T) long: <bos> + target ids   (decoder input, teacher forcing)
        batch.tgt_out   # (B, T) long: target ids + <eos>   (what the decoder must predict)
        batch.tgt_len   # (B,)  long: lengths including <eos>
        batch.index     # (B,)  long: positions in corpus.pairs (for alignments, references)

    # scoring what a decoder produced (see attention_lib.metrics)
    from attention_lib.metrics import attention_aer, bleu_by_length
    pairs = [corpus.pairs[i] for i in batch.index.tolist()]
    hyps = [corpus.tgt_vocab.decode(row) for row in decoded_ids]   # stops at <eos>
    bleu_by_length(hyps, [p.tgt for p in pairs], [len(p.src) for p in pairs])
    attention_aer(attn, [p.alignment for p in pairs],              # attn: (B, T, S)
                  src_lens=[len(p.src) for p in pairs], tgt_lens=[len(p.tgt) for p in pairs])

Position ``i`` of ``batch.src[b]`` is source token ``i`` of the pair, and decoder step ``j``
(row ``j`` of the attention weights) predicts target token ``j``; gold links therefore index
attention matrices directly (``Pair.alignment_matrix()`` has the shape ``(len(tgt),
len(src))`` of the attention weights of one sentence, without the <eos> row and column).

Randomness: corpus generation takes an integer ``seed`` (it draws millions of small choices
from Python's ``random.Random``, which is much faster than torch for scalars and stable
across platforms); batch shuffling takes a ``torch.Generator``.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from ._validate import check_int
from .grammar import Pair, sample_pair

Tensor = torch.Tensor

__all__ = [
    "PAD", "BOS", "EOS", "UNK", "SPECIALS", "Vocab", "Batch", "Batches", "Corpus",
    "tokenize", "detokenize", "pad_sequences", "make_batch", "bucket_batches",
    "make_corpus", "split_indices",
]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: Special tokens, in id order: <pad> = 0, <bos> = 1, <eos> = 2, <unk> = 3.
SPECIALS = (PAD, BOS, EOS, UNK)


# =========================================================================== tokens
_TOKEN_RE = re.compile(r"[^\W\d_]+'|\w+|[^\w\s]")


def tokenize(text: str) -> List[str]:
    """Lowercase and split into words and punctuation: ``"L'homme dort."`` ->
    ``["l'", "homme", "dort", "."]``. An elided word keeps its apostrophe (l', j', qu', d',
    n'); typographic apostrophes are normalised to '. The corpus is generated already
    tokenised this way: ``tokenize(detokenize(tokens)) == tokens``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _TOKEN_RE.findall(text.lower().replace("\u2019", "'"))


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens for display: no space after an elided word (l'homme) or before
    punctuation (dort.)."""
    text = ""
    for k, t in enumerate(tokens):
        if k and not text.endswith("'") and not re.fullmatch(r"[^\w\s]", t):
            text += " "
        text += t
    return text


class Vocab:
    """Token <-> id mapping with the four special tokens first: <pad> = 0, <bos> = 1,
    <eos> = 2, <unk> = 3. Unknown tokens encode to <unk>.

    Build one with ``Vocab.build(sentences, min_freq=1)``: tokens sorted by decreasing
    frequency, ties alphabetically, so the same data gives the same ids.
    """
    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, tokens: Iterable[str]):
        itos = list(SPECIALS)
        seen = set(itos)
        for t in tokens:
            if not isinstance(t, str):
                raise TypeError(f"tokens must be str, got {type(t).__name__}: {t!r}")
            if t not in seen:
                itos.append(t)
                seen.add(t)
        self.itos: List[str] = itos
        self.stoi: Dict[str, int] = {t: i for i, t in enumerate(itos)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1) -> "Vocab":
        """Vocabulary of the tokens that occur at least ``min_freq`` times in ``sentences``."""
        check_int("min_freq", min_freq, 1)
        counts = Counter()
        for s in sentences:
            if isinstance(s, str):
                raise TypeError("sentences must be sequences of tokens, not strings "
                                "(use tokenize(text) first)")
            counts.update(s)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                      key=lambda t: (-counts[t], t))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, self.unk_id)

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, first={self.itos[4:10]})"

    def encode(self, tokens: Sequence[str], *, bos: bool = False, eos: bool = False) -> List[int]:
        """Ids of ``tokens`` (unknown -> <unk>), optionally with <bos> first / <eos> last."""
        if isinstance(tokens, str):
            raise TypeError("encode takes a sequence of tokens, not a string "
                            "(use tokenize(text) first)")
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Union[Sequence[int], Tensor], *, strip: bool = True) -> List[str]:
        """Tokens of ``ids``. With ``strip`` (default) stop at the first <eos> and drop <pad>
        and <bos>: what a decoder produced, as the tokens of a sentence."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"id {i} is out of range for a vocabulary of size {len(self)}")
            if strip:
                if i == self.eos_id:
                    break
                if i in (self.pad_id, self.bos_id):
                    continue
            out.append(self.itos[i])
        return out


# =========================================================================== batches
def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = 0,
                  device=None) -> Tuple[Tensor, Tensor]:
    """Pad id sequences to one tensor.

    Returns ``(ids, lengths)``: ids (B, N) long with N the longest length, filled with
    ``pad_id`` after each sequence; lengths (B,) long. Build the matching bool mask with
    ``attention_lib.masks.padding_mask(lengths)`` (True = real token).
    """
    if len(seqs) == 0:
        raise ValueError("seqs is empty: nothing to pad")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    ids = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        if len(s):
            ids[b, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return ids.to(device), lengths.to(device)


@dataclass(frozen=True)
class Batch:
    """A padded batch (all long tensors, batch first).

    src: (B, S) source ids + <eos>;  src_len: (B,) including <eos>.
    tgt_in: (B, T) <bos> + target ids;  tgt_out: (B, T) target ids + <eos>;
    tgt_len: (B,) including <eos> (the number of decoder steps).
    index: (B,) positions of the pairs in ``Corpus.pairs`` (for references and alignments).
    Padding is <pad> = 0 everywhere.

    Iterating yields the five tensors the training loop needs, so
    ``src, src_len, tgt_in, tgt_out, tgt_len = batch`` works; ``index`` is an attribute only.
    """
    src: Tensor
    src_len: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    tgt_len: Tensor
    index: Tensor

    def __iter__(self):
        return iter((self.src, self.src_len, self.tgt_in, self.tgt_out, self.tgt_len))

    def __len__(self) -> int:
        return 5

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.src, self.src_len, self.tgt_in,
                                               self.tgt_out, self.tgt_len, self.index)))


def make_batch(pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab,
               index: Optional[Sequence[int]] = None, device=None) -> Batch:
    """Encode and pad ``pairs`` into a :class:`Batch` (see there for shapes)."""
    if len(pairs) == 0:
        raise ValueError("pairs is empty: a batch needs at least one pair")
    src, src_len = pad_sequences([src_vocab.encode(p.src, eos=True) for p in pairs])
    tgt = [tgt_vocab.encode(p.tgt) for p in pairs]
    tgt_in, tgt_len = pad_sequences([[tgt_vocab.bos_id] + t for t in tgt])
    tgt_out, _ = pad_sequences([t + [tgt_vocab.eos_id] for t in tgt])
    idx = torch.tensor(list(range(len(pairs))) if index is None else list(index),
                       dtype=torch.long)
    return Batch(src, src_len, tgt_in, tgt_out, tgt_len, idx).to(device)


def bucket_batches(lengths: Sequence[int], batch_size: int, *, shuffle: bool = True,
                   generator: Optional[torch.Generator] = None,
                   drop_last: bool = False) -> List[List[int]]:
    """Group positions ``0..len(lengths)-1`` into batches of similar length.

    Sorting by length before cutting batches keeps padding small (a batch of 40-token
    sentences does not carry 60 columns because of one long sentence). With ``shuffle``,
    equal lengths are ordered at random and the batches are returned in random order,
    both drawn from ``generator`` (a ``torch.Generator``; default: torch's global one).
    Returns a list of lists of positions; every position appears once (unless
    ``drop_last`` drops the last, smaller batch).
    """
    check_int("batch_size", batch_size, 1)
    n = len(lengths)
    if shuffle:
        perm = torch.randperm(n, generator=generator).tolist()
    else:
        perm = list(range(n))
    order = sorted(perm, key=lambda i: lengths[i])  # stable: random order within a length
    batches = [order[k:k + batch_size] for k in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches


# =========================================================================== corpus
def split_indices(lengths: Sequence[int], fractions: Sequence[float], seed: int) -> List[List[int]]:
    """Split positions into parts of the given ``fractions``, stratified by length.

    Within each length the order is random (from ``seed``); walking through all positions
    sorted by length, each goes to the part furthest behind its share, so every part gets
    its fraction of every length range. Returns one sorted list of positions per part.
    """
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    rng = random.Random(seed)
    keys = [rng.random() for _ in lengths]
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], keys[i]))
    parts: List[List[int]] = [[] for _ in fractions]
    for k, i in enumerate(order):
        deficit = [(k + 1) * f - len(p) for f, p in zip(fractions, parts)]
        parts[max(range(len(parts)), key=lambda s: deficit[s])].append(i)
    return [sorted(p) for p in parts]


@dataclass(repr=False)
class Corpus:
    """A generated parallel corpus: pairs, splits and vocabularies.

    pairs: every pair (unique sources and unique targets). splits: ``{"train": [...],
    "valid": [...], "test": [...]}`` positions into ``pairs``, stratified by length; no
    source or target sentence occurs in two splits. Vocabularies are built on the training
    split (a token seen only in valid/test encodes to <unk>).
    """
    pairs: List[Pair]
    splits: Dict[str, List[int]]
    src_vocab: Vocab
    tgt_vocab: Vocab
    seed: int
    min_len: int
    max_len: int

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return (f"Corpus({len(self.pairs)} pairs: {sizes}; lengths {self.min_len}-"
                f"{self.max_len}; vocab src={len(self.src_vocab)} tgt={len(self.tgt_vocab)}; "
                f"seed={self.seed})")

    def split(self, name: str) -> List[Pair]:
        """The pairs of one split."""
        return [self.pairs[i] for i in self._split_index(name)]

    def _split_index(self, name: str) -> List[int]:
        if name not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}, got {name!r}")
        return self.splits[name]

    def batch(self, index: Sequence[int], device=None) -> Batch:
        """The pairs at positions ``index`` (into ``pairs``) as one padded :class:`Batch`."""
        index = [int(i) for i in index]
        return make_batch([self.pairs[i] for i in index], self.src_vocab, self.tgt_vocab,
                          index, device)

    def batches(self, split: str = "train", batch_size: int = 64, *, shuffle: bool = True,
                generator: Optional[torch.Generator] = None, bucket: bool = True,
                drop_last: bool = False, device=None) -> "Batches":
        """The padded batches of one split, as a re-iterable :class:`Batches`: each
        ``for batch in ...`` is one epoch, reshuffled from ``generator``.

        bucket: batches of similar source length (:func:`bucket_batches`); otherwise
        consecutive pairs (shuffled first when ``shuffle``). Shuffling draws from
        ``generator`` only, so a seeded generator gives the same epochs on every run.
        """
        return Batches(self, split, batch_size, shuffle=shuffle, generator=generator,
                       bucket=bucket, drop_last=drop_last, device=device)

    def lengths(self, split: Optional[str] = None) -> List[int]:
        """Source lengths (tokens, full stop included) of a split, or of all pairs."""
        pairs = self.pairs if split is None else self.split(split)
        return [len(p.src) for p in pairs]

    def summary(self) -> Dict[str, object]:
        """Counts per split, vocabulary sizes and source-length statistics."""
        lens = self.lengths()
        return {
            "pairs": len(self.pairs),
            **{f"n_{k}": len(v) for k, v in self.splits.items()},
            "src_vocab": len(self.src_vocab), "tgt_vocab": len(self.tgt_vocab),
            "min_len": min(lens), "max_len": max(lens),
            "mean_len": sum(lens) / len(lens),
            "mean_tgt_len": sum(len(p.tgt) for p in self.pairs) / len(self.pairs),
            "monotone_fraction": sum(p.monotone for p in self.pairs) / len(self.pairs),
        }


class Batches:
    """The batches of one split of a :class:`Corpus` (made by :meth:`Corpus.batches`).

    Re-iterable: every ``iter()`` is one epoch over the split, in a fresh order drawn from
    ``generator`` when ``shuffle``; ``len()`` is the number of batches per epoch. A training
    loop that cycles through its ``batches`` argument can therefore take it directly, e.g.
    ``train_seq2seq(model, corpus.batches("train", 64, generator=g), steps=...)``.
    """

    def __init__(self, corpus: "Corpus", split: str, batch_size: int, *, shuffle: bool = True,
                 generator: Optional[torch.Generator] = None, bucket: bool = True,
                 drop_last: bool = False, device=None):
        check_int("batch_size", batch_size, 1)
        self.corpus, self.index = corpus, corpus._split_index(split)
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.bucket, self.drop_last, self.device = bucket, drop_last, device

    def __len__(self) -> int:
        n = len(self.index)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        idx, bs = self.index, self.batch_size
        if self.bucket:
            groups = bucket_batches([len(self.corpus.pairs[i].src) for i in idx], bs,
                                    shuffle=self.shuffle, generator=self.generator,
                                    drop_last=self.drop_last)
        else:
            order = (torch.randperm(len(idx), generator=self.generator).tolist()
                     if self.shuffle else list(range(len(idx))))
            groups = [order[k:k + bs] for k in range(0, len(idx), bs)]
            if self.drop_last and groups and len(groups[-1]) < bs:
                groups.pop()
        for g in groups:
            yield self.corpus.batch([idx[k] for k in g], self.device)


def make_corpus(n_pairs: int, *, seed: int = 0, min_len: int = 3, max_len: int = 60,
                fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> Corpus:
    """Generate ``n_pairs`` distinct sentence pairs and split them into train/valid/test.

    Source lengths (tokens, full stop included) are drawn uniformly from
    ``[min_len, max_len]``; the shortest sentences ("he sleeps .") have 3 tokens and there
    are few of them, so lengths below ~6 are under-represented once duplicates are dropped.
    Deterministic: the same arguments give the same corpus.

    n_pairs: number of pairs (>= 3 so that every split is non-empty).
    seed: int. min_len, max_len: 3 <= min_len <= max_len.
    fractions: (train, valid, test) shares, stratified by length.
    """
    check_int("n_pairs", n_pairs, 3)
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not isinstance(min_len, int) or not isinstance(max_len, int):
        raise TypeError(f"min_len and max_len must be ints, got {min_len!r}, {max_len!r}")
    if min_len < 3 or max_len < min_len:
        raise ValueError(f"need 3 <= min_len <= max_len, got min_len={min_len}, "
                         f"max_len={max_len}")
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, valid, test), got {tuple(fractions)}")
    rng = random.Random(seed)
    pairs: List[Pair] = []
    seen_src, seen_tgt = set(), set()
    attempts, budget = 0, 50 * n_pairs + 1000
    while len(pairs) < n_pairs:
        attempts += 1
        if attempts > budget:
            raise ValueError(f"could only generate {len(pairs)} distinct pairs with lengths "
                             f"in [{min_len}, {max_len}]; widen the range or ask for fewer")
        pair = sample_pair(rng, rng.randint(min_len, max_len))
        if not min_len <= len(pair.src) <= max_len:
            continue
        if pair.src in seen_src or pair.tgt in seen_tgt:
            continue
        seen_src.add(pair.src)
        seen_tgt.add(pair.tgt)
        pairs.append(pair)
    parts = split_indices([len(p.src) for p in pairs], fractions, seed)
    splits = dict(zip(("train", "valid", "test"), parts))
    if any(len(v) == 0 for v in splits.values()):
        raise ValueError(f"a split is empty with n_pairs={n_pairs} and fractions={fractions}")
    train = [pairs[i] for i in splits["train"]]
    return Corpus(pairs, splits, Vocab.build(p.src for p in train),
                  Vocab.build(p.tgt for p in train), seed, min_len, max_len)
