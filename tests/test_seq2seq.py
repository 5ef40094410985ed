"""Part I models: encoders, the three decoders, decoding, and the training loop.

Independent references: the attention inside the decoders is compared with
``attention_lib.AdditiveAttention`` / score functions given the same weights; teacher-forced
``forward`` is compared with step-by-step decoding; padding must not change anything.
"""
from __future__ import annotations

import pytest
import torch

import attention_lib as al
from attention_lib import seq2seq as S
from attention_lib.train import masked_cross_entropy, train_seq2seq

V, PAD, BOS, EOS = 13, 0, 1, 2
KINDS = [("plain", {}), ("bahdanau", {}),
         ("luong", dict(score="dot", input_feeding=False)),
         ("luong", dict(score="general")), ("luong", dict(score="concat")),
         ("luong", dict(score="general", local="p", window=2))]
IDS = ["plain", "bahdanau", "luong-dot-nofeed", "luong-general", "luong-concat", "luong-local-p"]


def _batch(b=3, ns=7, nt=5, seed=0, lens=(7, 4, 1)):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V, (b, ns), generator=g)
    src_len = torch.tensor(lens[:b])
    src = src.masked_fill(~al.padding_mask(src_len, ns), PAD)
    tgt = torch.randint(3, V, (b, nt), generator=g)
    return src, src_len, tgt


def _model(kind, kw, seed=0):
    torch.manual_seed(seed)
    return S.build_seq2seq(kind, V, V, embed_dim=8, hidden_size=12, **kw).eval().double()


@pytest.mark.parametrize("kind,kw", KINDS, ids=IDS)
def test_forward_equals_step_by_step(kind, kw):
    model = _model(kind, kw)
    src, src_len, tgt = _batch()
    logits, attn = model(src, src_len, tgt)
    states, summary, mask = model.encode(src, src_len)
    state = model.decoder.init_state(states, summary, mask)
    for t in range(tgt.shape[1]):
        lt, state, at = model.decoder.step(tgt[:, t], state)
        torch.testing.assert_close(lt, logits[:, t], rtol=1e-10, atol=1e-10)
        if model.attends:
            torch.testing.assert_close(at, attn[:, t], rtol=1e-10, atol=1e-10)
    assert (attn is None) == (not model.attends)


@pytest.mark.parametrize("kind,kw", KINDS, ids=IDS)
def test_padding_changes_nothing(kind, kw):
    """Extra padding columns on the source leave logits and real-position weights unchanged."""
    model = _model(kind, kw)
    src, src_len, tgt = _batch()
    padded = torch.cat([src, torch.full((src.shape[0], 4), PAD)], 1)
    a_logits, a_attn = model(src, src_len, tgt)
    b_logits, b_attn = model(padded, src_len, tgt)
    torch.testing.assert_close(a_logits, b_logits, rtol=1e-10, atol=1e-10)
    if model.attends:
        torch.testing.assert_close(a_attn, b_attn[..., : src.shape[1]], rtol=1e-10, atol=1e-10)
        assert torch.all(b_attn[..., src.shape[1]:] == 0)


@pytest.mark.parametrize("kind,kw", KINDS, ids=IDS)
def test_batch_independence(kind, kw):
    model = _model(kind, kw)
    src, src_len, tgt = _batch()
    logits, _ = model(src, src_len, tgt)
    for i in range(src.shape[0]):
        n = int(src_len[i])
        li, _ = model(src[i:i + 1, :n], src_len[i:i + 1], tgt[i:i + 1])
        torch.testing.assert_close(li[0], logits[i], rtol=1e-10, atol=1e-10)


def test_encoder_summary_is_last_real_state_of_each_direction():
    torch.manual_seed(0)
    enc = S.Encoder(V, 8, 6, bidirectional=True).double()
    src, src_len, _ = _batch()
    states, summary = enc(src, src_len)
    for i in range(src.shape[0]):
        n = int(src_len[i])
        out, _ = enc.rnn(enc.embedding(src[i:i + 1, :n]))  # unpadded, alone
        torch.testing.assert_close(states[i, :n], out[0])
        assert torch.all(states[i, n:] == 0)
        fwd_last, bwd_first = out[0, n - 1, :6], out[0, 0, 6:]
        torch.testing.assert_close(summary[i], torch.cat([fwd_last, bwd_first]))


def test_bahdanau_weights_equal_additive_attention_module():
    model = _model("bahdanau", {})
    dec = model.decoder
    src, src_len, tgt = _batch()
    states, summary, mask = model.encode(src, src_len)
    state = dec.init_state(states, summary, mask)
    add = al.AdditiveAttention(12, 12, 12).double()
    add.W_q.weight.data.copy_(dec.W_q.weight)
    add.W_k.weight.data.copy_(dec.W_k.weight)
    add.w_v.weight.data.copy_(dec.v.weight)
    _, _, alpha = dec.step(tgt[:, 0], state)
    _, w = add(state["h"][:, None], states, states, mask[:, None, :], return_weights=True)
    torch.testing.assert_close(alpha, w[:, 0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_luong_global_weights_match_score_functions(score):
    model = _model("luong", dict(score=score, input_feeding=False))
    dec = model.decoder
    src, src_len, tgt = _batch()
    states, summary, mask = model.encode(src, src_len)
    _, attn = model(src, src_len, tgt)
    s, _ = dec.rnn(dec.embedding(tgt), torch.tanh(dec.init(summary))[None])
    if score == "dot":
        scores = torch.einsum("bth,bsh->bts", s, states)
    elif score == "general":
        scores = torch.einsum("bth,hk,bsk->bts", s, dec.W_a, states)
    else:
        w_s, w_h = dec.W_a[:, :12], dec.W_a[:, 12:]
        scores = torch.tanh((s @ w_s.T)[:, :, None] + (states @ w_h.T)[:, None]) @ dec.v_a
    expected = scores.masked_fill(~mask[:, None], float("-inf")).softmax(-1)
    torch.testing.assert_close(attn, expected, rtol=1e-10, atol=1e-10)


def test_luong_local_p_is_zero_outside_the_window():
    model = _model("luong", dict(score="general", local="p", window=1))
    src, src_len, tgt = _batch(ns=9, lens=(9, 9, 9))
    _, attn = model(src, src_len, tgt)
    support = (attn > 0).sum(-1)
    assert int(support.max()) <= 2 * 1 + 1, "local-p attends outside [p - D, p + D]"
    assert torch.all(support >= 1)


@pytest.mark.parametrize("kind,kw", KINDS, ids=IDS)
def test_beam_of_one_is_greedy(kind, kw):
    model = _model(kind, kw, seed=3)
    src, src_len, _ = _batch()
    tokens, attn = S.greedy_decode(model, src[:1], src_len[:1], bos_id=BOS, eos_id=EOS,
                                   max_len=12)
    best = S.beam_search(model, src[:1], src_len[:1], bos_id=BOS, eos_id=EOS, beam_size=1,
                         max_len=12)
    toks = tokens[0].tolist()
    if EOS in toks:
        toks = toks[: toks.index(EOS) + 1]
    assert best.tokens == toks
    if model.attends:
        torch.testing.assert_close(best.attn, attn[0, : len(toks)])


def test_wider_beam_never_scores_worse():
    model = _model("bahdanau", {}, seed=5)
    src, src_len, _ = _batch()
    one = S.beam_search(model, src[:1], src_len[:1], bos_id=BOS, eos_id=EOS, beam_size=1,
                        max_len=8, length_penalty=0.0)
    four = S.beam_search(model, src[:1], src_len[:1], bos_id=BOS, eos_id=EOS, beam_size=4,
                         max_len=8, length_penalty=0.0)
    assert four.log_prob >= one.log_prob - 1e-9


def test_masked_cross_entropy_ignores_padding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, V, generator=g)
    target = torch.tensor([[3, 4, PAD, PAD], [5, 6, 7, 8]])
    expected = torch.cat([torch.nn.functional.cross_entropy(logits[0, :2], target[0, :2],
                                                            reduction="none"),
                          torch.nn.functional.cross_entropy(logits[1], target[1],
                                                            reduction="none")]).mean()
    torch.testing.assert_close(masked_cross_entropy(logits, target, PAD), expected)
    changed = logits.clone()
    changed[0, 2:] = 100.0  # logits at padding do not matter
    torch.testing.assert_close(masked_cross_entropy(changed, target, PAD), expected)


def _reverse_batches(n_batches=8, b=32, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        src = torch.randint(3, V, (b, n), generator=g)
        tgt = torch.cat([src.flip(1), torch.full((b, 1), EOS)], 1)
        tgt_in = torch.cat([torch.full((b, 1), BOS), tgt[:, :-1]], 1)
        out.append((src, torch.full((b,), n), tgt_in, tgt, torch.full((b,), n + 1)))
    return out


def test_training_is_deterministic_and_learns_to_reverse():
    """Bahdanau attention learns to reverse a sequence; two runs with one seed are identical."""
    def run(steps):
        torch.manual_seed(0)
        model = S.build_seq2seq("bahdanau", V, V, embed_dim=16, hidden_size=32)
        hist = train_seq2seq(model, _reverse_batches(40), steps=steps, lr=1e-2, progress=False)
        return model, hist["loss"]
    model, loss_a = run(300)
    _, loss_b = run(25)
    assert loss_a[:25] == loss_b, "training is not deterministic on the CPU"
    src, src_len, _, tgt, _ = _reverse_batches(1, seed=99)[0]
    tokens, attn = S.greedy_decode(model, src, src_len, bos_id=BOS, eos_id=EOS, max_len=7)
    acc = (tokens[:, :6] == tgt[:, :6]).float().mean().item()
    assert acc > 0.9, f"reverse-copy accuracy {acc:.2f} after training"
    # and its attention is (mostly) the anti-diagonal: output t looks at input n-1-t
    peak = attn[:, :6].argmax(-1)
    assert (peak == torch.arange(5, -1, -1)).float().mean().item() > 0.8


@pytest.mark.parametrize("bad,exc,match", [
    (lambda m, s, l, t: m(s.float(), l, t), TypeError, "src"),
    (lambda m, s, l, t: m(s, l[:2], t), ValueError, "src_len"),
    (lambda m, s, l, t: m(s, l + 10, t), ValueError, "src_len"),
    (lambda m, s, l, t: m(s, l, t[:2]), ValueError, "tgt_in"),
    (lambda m, s, l, t: m(s[0], l, t), ValueError, "src"),
])
def test_bad_input(bad, exc, match):
    model = _model("bahdanau", {})
    src, src_len, tgt = _batch()
    with pytest.raises(exc, match=match):
        bad(model, src, src_len, tgt)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="kind"):
        S.build_seq2seq("transformer", V, V)
    with pytest.raises(ValueError, match="score"):
        S.LuongDecoder(V, 8, 12, 12, score="cosine")
    with pytest.raises(ValueError, match="enc_dim"):
        S.LuongDecoder(V, 8, 12, 10, score="dot")


# ------------------------------------------------------------ whole-split helpers
def _corpus_model(kind, seed=0):
    from attention_lib.data import make_corpus
    corpus = make_corpus(60, seed=1, min_len=3, max_len=14)
    torch.manual_seed(seed)
    model = S.build_seq2seq(kind, len(corpus.src_vocab), len(corpus.tgt_vocab), embed_dim=8,
                            hidden_size=12).double()
    return corpus, model


@pytest.mark.parametrize("kind", ["plain", "bahdanau"])
def test_translate_equals_greedy_decode_of_each_sentence_alone(kind):
    corpus, model = _corpus_model(kind)
    index = corpus.splits["test"] + corpus.splits["valid"][:3]
    hyps = S.translate(model, corpus, index, batch_size=4, extra_len=5)
    assert len(hyps) == len(index)
    for i, hyp in zip(index, hyps):
        b = corpus.batch([i])
        tokens, _ = S.greedy_decode(model, b.src, b.src_len, bos_id=corpus.tgt_vocab.bos_id,
                                    eos_id=corpus.tgt_vocab.eos_id,
                                    max_len=int(b.tgt_len[0]) + 5)
        alone = corpus.tgt_vocab.decode(tokens[0])
        # the batch may decode longer (its budget follows its longest reference) but only
        # where this sentence did not stop by itself
        assert hyp[:len(alone)] == alone
        assert len(hyp) == len(alone) or len(alone) == int(b.tgt_len[0]) + 5
    assert model.training, "translate must restore the training mode"


def test_teacher_forced_attention_matches_forward_on_each_sentence():
    corpus, model = _corpus_model("bahdanau")
    index = corpus.splits["test"]
    weights = S.teacher_forced_attention(model, corpus, index, batch_size=3)
    for i, w in zip(index, weights):
        p, b = corpus.pairs[i], corpus.batch([i])
        assert w.shape == (len(p.tgt) + 1, len(p.src) + 1) and w.dtype == torch.float32
        _, attn = model(b.src, b.src_len, b.tgt_in)
        torch.testing.assert_close(w, attn[0].float(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[0]))
    with pytest.raises(ValueError, match="attention"):
        S.teacher_forced_attention(_corpus_model("plain")[1], corpus, index)
    with pytest.raises(ValueError, match="empty"):
        S.translate(model, corpus, [])


def test_training_mode_is_restored_even_when_decoding_fails():
    corpus, model = _corpus_model("bahdanau")
    model.train()
    bad = corpus.splits["test"][:2] + [len(corpus.pairs) + 5]  # an index past the corpus
    with pytest.raises(IndexError):
        S.translate(model, corpus, bad)
    assert model.training
