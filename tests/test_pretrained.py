"""The trained Part I models shipped as package data (attention_lib.pretrained)."""
from __future__ import annotations

import pytest
import torch

from attention_lib import pretrained
from attention_lib.data import make_corpus
from attention_lib.metrics import corpus_bleu
from attention_lib.seq2seq import translate


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(30_000, seed=0, max_len=60)


def test_every_chapter_checkpoint_is_shipped():
    need = {"plain", "bahdanau", "plain_quick", "bahdanau_quick", "luong_quick",
            "luong_dot_quick", "luong_concat_quick", "luong_local_p_quick", "luong_nofeed_quick"}
    assert need <= set(pretrained.available())
    total = sum(p.stat().st_size for p in pretrained.PRETRAINED_DIR.glob("*.pt"))
    assert total < 8 * 2 ** 20, f"shipped checkpoints take {total / 2 ** 20:.1f} MiB"


@pytest.mark.parametrize("name", pretrained.available())
def test_loads_and_matches_its_recorded_configuration(name, corpus):
    model, ckpt = pretrained.load_seq2seq(name, len(corpus.src_vocab), len(corpus.tgt_vocab))
    assert ckpt["corpus_kwargs"] == dict(n_pairs=30_000, seed=0, min_len=3, max_len=60)
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_shipped_bahdanau_reproduces_its_recorded_bleu(corpus):
    """Independent re-scoring of the shipped model on test sentences of 31-45 words."""
    model, _ = pretrained.load_seq2seq("bahdanau", len(corpus.src_vocab), len(corpus.tgt_vocab))
    idx = [i for i in corpus.splits["test"] if 31 <= len(corpus.pairs[i].src) <= 45][:60]
    hyps = translate(model, corpus, idx)
    refs = [corpus.pairs[i].tgt for i in idx]
    recorded = next(b for b in pretrained.load_results()["models"]["bahdanau"]["bleu_by_length"]
                    if b["bucket"] == "31-45")
    score = corpus_bleu(hyps, refs)
    score = getattr(score, "score", score)
    assert score > 0.9 and abs(score - recorded["bleu"]) < 0.05


def test_errors_name_the_problem(corpus):
    with pytest.raises(ValueError, match="name must be one of"):
        pretrained.load_seq2seq("transformer", 10, 10)
    with pytest.raises(ValueError, match="vocabularies"):
        pretrained.load_seq2seq("plain", 10, 10)
    with pytest.raises(FileNotFoundError, match="no shipped file"):
        pretrained.pretrained_path("nothing.pt")
