"""Small trained models that ship with the library, so chapters can load them anywhere.

``benchmarks/seq2seq_length.py`` trains the Part I encoder-decoders and writes their float16
weights and the results the chapters read (``seq2seq_length.json``) into this folder (its
figure goes to ``benchmarks/results/``). They are package data: a ``pip install`` of
attention_lib (as in Colab) carries them, and nothing is downloaded at run time. A few MB in
all.

    model, ckpt = load_seq2seq("bahdanau", len(corpus.src_vocab), len(corpus.tgt_vocab))

``ckpt`` holds how it was trained: ``kind``, ``model_kwargs``, ``corpus_kwargs``, ``steps``,
``batch_size``, ``seed``.

``benchmarks/transformer.py`` does the same for the Transformer of chapter 10
(``transformer.pt``, ``transformer_length.json``, ``transformer_variants.json``)::

    model, ckpt = load_transformer(len(corpus.src_vocab), len(corpus.tgt_vocab))
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["PRETRAINED_DIR", "pretrained_path", "available", "load_seq2seq", "load_results",
           "load_transformer"]

#: The folder holding the shipped checkpoints and results.
PRETRAINED_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped seq2seq checkpoints, e.g. ``["bahdanau", "bahdanau_quick", ...]``."""
    return sorted(p.stem[len("seq2seq_"):] for p in PRETRAINED_DIR.glob("seq2seq_*.pt"))


def pretrained_path(filename: str) -> Path:
    """Path of a shipped file; ``FileNotFoundError`` listing what exists otherwise."""
    path = PRETRAINED_DIR / filename
    if not path.is_file():
        have = sorted(p.name for p in PRETRAINED_DIR.iterdir() if not p.name.startswith("_"))
        raise FileNotFoundError(f"no shipped file {filename!r} in {PRETRAINED_DIR}; have {have}")
    return path


def load_results(name: str = "seq2seq_length") -> dict:
    """The results of ``benchmarks/seq2seq_length.py`` (BLEU by length, AER, budgets), or
    with ``name="transformer_length"`` those of ``benchmarks/transformer.py``."""
    return json.loads(pretrained_path(f"{name}.json").read_text())


def load_seq2seq(name: str, src_vocab_size: int, tgt_vocab_size: int, *, device=None):
    """Rebuild a shipped Part I model in float32 on ``device``, in eval mode.

    name: one of :func:`available` (``"plain"``, ``"bahdanau"``, ``"luong"``, and the
    chapters' ``*_quick`` runs). The vocabulary sizes must be those of the corpus the model
    was trained on (``ckpt["corpus_kwargs"]`` says which). Returns ``(model, ckpt)``.
    """
    from ..seq2seq import build_seq2seq

    if name not in available():
        raise ValueError(f"name must be one of {available()}, got {name!r}")
    ckpt = torch.load(pretrained_path(f"seq2seq_{name}.pt"), map_location="cpu",
                      weights_only=True)
    model = build_seq2seq(ckpt["kind"], src_vocab_size, tgt_vocab_size, **ckpt["model_kwargs"])
    emb = ckpt["state_dict"]["encoder.embedding.weight"].shape[0]
    out = ckpt["state_dict"]["decoder.out.weight"].shape[0]
    if (emb, out) != (src_vocab_size, tgt_vocab_size):
        raise ValueError(f"checkpoint {name!r} was trained with vocabularies of ({emb}, {out}) "
                         f"words, got src_vocab_size={src_vocab_size}, tgt_vocab_size="
                         f"{tgt_vocab_size}; build the corpus with {ckpt['corpus_kwargs']}")
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    return model.to(device or "cpu").eval(), ckpt


def load_transformer(src_vocab_size: int, tgt_vocab_size: int, *, device=None):
    """Rebuild the shipped Transformer of chapter 10 (``transformer.pt``) in float32 on
    ``device``, in eval mode. Returns ``(model, ckpt)``; ``ckpt["config"]`` rebuilds it with
    :class:`attention_lib.transformer.Transformer`, ``ckpt["corpus_kwargs"]`` the corpus."""
    from ..transformer import Transformer

    ckpt = torch.load(pretrained_path("transformer.pt"), map_location="cpu", weights_only=True)
    emb = ckpt["state_dict"]["encoder.embedding.weight"].shape[0]
    out = ckpt["state_dict"]["decoder.out.weight"].shape[0]
    if (emb, out) != (src_vocab_size, tgt_vocab_size):
        raise ValueError(f"the shipped Transformer was trained with vocabularies of ({emb}, "
                         f"{out}) words, got src_vocab_size={src_vocab_size}, tgt_vocab_size="
                         f"{tgt_vocab_size}; build the corpus with {ckpt['corpus_kwargs']}")
    model = Transformer(src_vocab_size, tgt_vocab_size, **ckpt["config"])
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    return model.to(device or "cpu").eval(), ckpt
