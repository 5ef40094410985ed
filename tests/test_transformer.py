"""The Transformer layers, stacks and model (attention_lib.transformer).

References: ``torch.nn.TransformerEncoderLayer`` / ``TransformerDecoderLayer`` /
``TransformerEncoder`` (batch_first=True) with the same weights copied in, in float64 and eval
mode (dropout off). torch's ``src_key_padding_mask`` / ``memory_key_padding_mask`` are True
where a key must be IGNORED, the opposite of this library's masks. ``nn.BatchNorm1d`` on the
real positions only is the reference of the masked batch norm. Behavioural checks:
``causal_leakage`` (no future leaks into the past), padding invariance, incremental decoding
against the teacher-forced forward pass, and bad inputs.
"""
from __future__ import annotations

import pytest
import torch
from helpers import assert_rejected, randn, randomize_
from tolerances import assert_close
from torch import nn

from attention_lib import masks as M
from attention_lib.data import make_corpus
from attention_lib.diagnostics import causal_leakage
from attention_lib.seq2seq import beam_search, greedy_decode, teacher_forced_attention, translate
from attention_lib.train import masked_cross_entropy, train_seq2seq
from attention_lib.transformer import (
    SequenceBatchNorm,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    copy_from_torch,
)

D, H, F = 16, 4, 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models: one thread is fastest, and avoids spinning threads on a loaded CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _copy_layer(ours, ref) -> None:
    """Copy by hand, independently of copy_from_torch (which is checked against this)."""
    with torch.no_grad():
        mhas = [(ours.self_attn, ref.self_attn)]
        if hasattr(ref, "multihead_attn"):
            mhas.append((ours.cross_attn, ref.multihead_attn))
        for o, r in mhas:
            e = r.embed_dim
            for k, lin in enumerate((o.q_proj, o.k_proj, o.v_proj)):
                lin.weight.copy_(r.in_proj_weight[k * e:(k + 1) * e])
                lin.bias.copy_(r.in_proj_bias[k * e:(k + 1) * e])
            o.out_proj.weight.copy_(r.out_proj.weight)
            o.out_proj.bias.copy_(r.out_proj.bias)
        for name in ("linear1", "linear2", "norm1", "norm2", "norm3"):
            if hasattr(ref, name):
                getattr(ours, name).weight.copy_(getattr(ref, name).weight)
                getattr(ours, name).bias.copy_(getattr(ref, name).bias)


def _torch_layer(cls, gen, **kw):
    ref = cls(D, H, F, dropout=0.0, batch_first=True, **kw).double()
    return randomize_(ref, gen).eval()


def _lengths_mask(lengths, n):
    """(ours: (B, 1, 1, N) True = real, torch: (B, N) True = padding)."""
    ours = M.key_mask(torch.tensor(lengths), n)
    return ours, ~ours[:, 0, 0]


# --------------------------------------------------------------------------- parity with torch
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch(norm_first, padded, activation, gen):
    ref = _torch_layer(nn.TransformerEncoderLayer, gen, norm_first=norm_first,
                       activation=activation)
    ours = TransformerEncoderLayer(D, H, F, norm_first=norm_first,
                                   activation=activation).double().eval()
    _copy_layer(ours, ref)
    x = randn(3, 7, D, gen=gen)
    if padded:
        mask, torch_mask = _lengths_mask([7, 4, 2], 7)
        out = ours(x, attn_mask=mask)
        with torch.no_grad():
            expected = ref(x, src_key_padding_mask=torch_mask)
        real = mask[:, 0, 0]
        # torch's fast path may return zeros at padded positions; compare the real ones
        assert_close(out[real], expected[real])
    else:
        with torch.no_grad():
            assert_close(ours(x), ref(x))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_decoder_layer_equals_torch(norm_first, padded, gen):
    ref = _torch_layer(nn.TransformerDecoderLayer, gen, norm_first=norm_first)
    ours = TransformerDecoderLayer(D, H, F, norm_first=norm_first).double().eval()
    _copy_layer(ours, ref)
    x, memory = randn(3, 6, D, gen=gen), randn(3, 5, D, gen=gen)
    causal = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    kw, ours_kw = {}, {}
    if padded:
        ours_kw["memory_attn_mask"], kw["memory_key_padding_mask"] = _lengths_mask([5, 3, 1], 5)
    with torch.no_grad():
        expected = ref(x, memory, tgt_mask=causal, tgt_is_causal=True, **kw)
        out, w_self, w_cross = ours(x, memory, return_weights=True, **ours_kw)
    assert_close(out, expected)
    assert torch.all(w_self.triu(1) == 0)  # causal
    if padded:
        assert torch.all(w_cross[2, ..., 1:] == 0) and torch.all(w_cross[1, ..., 3:] == 0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_equals_torch(norm_first, gen):
    layer = nn.TransformerEncoderLayer(D, H, F, dropout=0.0, batch_first=True,
                                       norm_first=norm_first)
    ref = nn.TransformerEncoder(layer, 3, norm=nn.LayerNorm(D) if norm_first else None,
                                enable_nested_tensor=False)
    ref = randomize_(ref.double(), gen).eval()
    ours = TransformerEncoder(3, D, H, F, norm_first=norm_first).double().eval()
    for o, r in zip(ours.layers, ref.layers):
        _copy_layer(o, r)
    if norm_first:
        ours.norm.load_state_dict(ref.norm.state_dict())
    assert (ours.norm is None) == (not norm_first)
    x = randn(2, 5, D, gen=gen)
    mask, torch_mask = _lengths_mask([5, 3], 5)
    with torch.no_grad():
        out, weights = ours(x, attn_mask=mask, return_weights=True)
        expected = ref(x, src_key_padding_mask=torch_mask)
    real = mask[:, 0, 0]
    assert_close(out[real], expected[real])
    assert len(weights) == 3 and all(w.shape == (2, H, 5, 5) for w in weights)
    assert all(torch.all(w[1, ..., 3:] == 0) for w in weights)  # padded keys get no weight


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_copy_from_torch_copies_every_parameter(kind, gen):
    cls = {"encoder": (nn.TransformerEncoderLayer, TransformerEncoderLayer),
           "decoder": (nn.TransformerDecoderLayer, TransformerDecoderLayer)}[kind]
    ref = _torch_layer(cls[0], gen)
    a = copy_from_torch(cls[1](D, H, F).double(), ref)
    b = cls[1](D, H, F).double()
    _copy_layer(b, ref)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert_rejected(lambda: copy_from_torch(cls[1](8, 2, F), ref), ValueError, "embed_dim")


# --------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_does_not_leak_the_future(norm_first, gen):
    dec = randomize_(TransformerDecoder(2, D, H, F, norm_first=norm_first).double(), gen).eval()
    memory = randn(2, 4, D, gen=gen)
    x = randn(2, 6, D, gen=gen)
    assert causal_leakage(lambda t: dec(t, memory), x, num_trials=1) < 1e-12
    # the test can fail: without the causal mask the same decoder leaks
    assert causal_leakage(lambda t: dec(t, memory, is_causal=False), x, num_trials=1) > 1e-3


def _tiny_model(corpus, **kw):
    torch.manual_seed(0)
    return Transformer(len(corpus.src_vocab), len(corpus.tgt_vocab), d_model=16, num_heads=2,
                       num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=32,
                       **kw).eval()


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(300, seed=0, max_len=12)


def test_model_logits_do_not_see_later_target_tokens(corpus):
    model = _tiny_model(corpus)
    b = corpus.batch(corpus.splits["test"][:3])
    leak = causal_leakage(lambda t: model(b.src, b.src_len, t)[0], b.tgt_in[:, :8],
                          vocab_size=len(corpus.tgt_vocab), num_trials=1)
    assert leak < 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_does_not_change_real_outputs(norm_first, gen):
    enc = randomize_(TransformerEncoder(2, D, H, F, norm_first=norm_first).double(), gen).eval()
    x = randn(2, 7, D, gen=gen)
    mask, _ = _lengths_mask([7, 4], 7)
    out = enc(x, attn_mask=mask)
    x2 = x.clone()
    x2[1, 4:] = randn(3, D, gen=gen) * 5  # new content at the padded positions
    assert_close(enc(x2, attn_mask=mask)[1, :4], out[1, :4])
    alone = enc(x[1:, :4])  # the same sentence in a batch of its own, without padding
    assert_close(out[1, :4], alone[0])
    # and the test can fail: without the mask the padding changes the real positions
    assert (enc(x2)[1, :4] - enc(x)[1, :4]).abs().max() > 1e-3


def test_model_output_is_independent_of_batch_padding(corpus):
    model = _tiny_model(corpus)
    idx = corpus.splits["test"][:4]
    b = corpus.batch(idx)
    logits, attn = model(b.src, b.src_len, b.tgt_in)[0], model.alignment(b.src, b.src_len,
                                                                           b.tgt_in)
    for k, i in enumerate(idx):
        one = corpus.batch([i])
        lg, a = model(one.src, one.src_len, one.tgt_in)[0], model.alignment(
            one.src, one.src_len, one.tgt_in)
        n, s = int(one.tgt_len[0]), int(one.src_len[0])
        assert torch.allclose(logits[k, :n], lg[0], atol=1e-5)
        assert torch.allclose(attn[k, :n, :s], a[0], atol=1e-6)
        assert torch.all(attn[k, :, s:] == 0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_with_a_kv_cache_equals_the_full_causal_pass(norm_first, gen):
    """A prefix, then one position at a time against each layer's KVCache: the outputs of one
    causal pass over the whole sequence (float64, the reference path's weights too)."""
    dec = randomize_(TransformerDecoder(2, D, H, F, norm_first=norm_first).double(), gen).eval()
    x, memory = randn(2, 7, D, gen=gen), randn(2, 5, D, gen=gen)
    keep = M.key_mask(torch.tensor([5, 3]), 5)
    with torch.no_grad():
        full, w_self, _ = dec(x, memory, memory_attn_mask=keep, return_weights=True)
        out, caches = dec(x[:, :3], memory, memory_attn_mask=keep, use_cache=True)
        steps = [out]
        for t in range(3, 7):
            y, ws, _, caches = dec(x[:, t:t + 1], memory, memory_attn_mask=keep, past=caches,
                                   use_cache=True, return_weights=True)
            steps.append(y)
            assert_close(ws[-1], w_self[-1][:, :, t:t + 1, :t + 1])  # (B, H, 1, t + 1)
    assert_close(torch.cat(steps, 1), full)
    assert [c.length for c in caches] == [7, 7]
    assert caches[0].key.shape == (2, H, 7, D // H)  # projected keys, not layer inputs


@pytest.mark.parametrize("norm_first", [False, True])
def test_incremental_decoding_equals_teacher_forcing(corpus, norm_first):
    model = _tiny_model(corpus, norm_first=norm_first)
    b = corpus.batch(corpus.splits["test"][:5])
    v = corpus.tgt_vocab
    tokens, attn = greedy_decode(model, b.src, b.src_len, bos_id=v.bos_id, eos_id=v.eos_id,
                                 max_len=9)
    tgt_in = torch.cat([torch.full((5, 1), v.bos_id), tokens[:, :-1]], 1)
    logits, attn_tf = model(b.src, b.src_len, tgt_in)[0], model.alignment(b.src, b.src_len,
                                                                            tgt_in)
    assert torch.equal(logits.argmax(-1), tokens)
    assert torch.allclose(attn, attn_tf, atol=1e-6)
    # beam search of width 1 is greedy decoding (the state dict is re-indexed per beam)
    one = beam_search(model, b.src[:1, :int(b.src_len[0])], b.src_len[:1], bos_id=v.bos_id,
                      eos_id=v.eos_id, beam_size=1, max_len=9)
    greedy = tokens[0].tolist()
    greedy = greedy[:greedy.index(v.eos_id) + 1] if v.eos_id in greedy else greedy
    assert one.tokens == greedy


def test_return_weights_gives_all_three_kinds(corpus):
    model = _tiny_model(corpus)
    b = corpus.batch(corpus.splits["test"][:3])
    logits, w = model(b.src, b.src_len, b.tgt_in, return_weights=True)
    ns, nt = b.src.shape[1], b.tgt_in.shape[1]
    assert torch.allclose(logits, model(b.src, b.src_len, b.tgt_in)[0], atol=1e-5)
    assert [tuple(t.shape) for t in w["encoder"]] == [(3, 2, ns, ns)] * 2
    assert [tuple(t.shape) for t in w["decoder_self"]] == [(3, 2, nt, nt)] * 2
    assert [tuple(t.shape) for t in w["cross"]] == [(3, 2, nt, ns)] * 2
    for t in w["encoder"] + w["decoder_self"] + w["cross"]:
        assert torch.allclose(t.sum(-1), torch.ones(()))
    tf = teacher_forced_attention(model, corpus, corpus.splits["test"][:3])
    assert tf[0].shape == (int(b.tgt_len[0]), int(b.src_len[0]))


@pytest.mark.parametrize("norm_first", [False, True])
def test_fast_path_equals_the_weights_path_in_training(corpus, norm_first):
    """Without return_weights the model computes no weights (SDPA); with them the reference
    attention runs. Outputs and gradients agree within float32 tolerance."""
    model = _tiny_model(corpus, dropout=0.0, norm_first=norm_first).train()
    b = corpus.batch(corpus.splits["train"][:6])
    fast, none = model(b.src, b.src_len, b.tgt_in)
    assert none is None
    slow, w = model(b.src, b.src_len, b.tgt_in, return_weights=True)
    assert_close(fast, slow, dtype=torch.float32)
    grads = [torch.autograd.grad(masked_cross_entropy(out, b.tgt_out), list(model.parameters()))
             for out in (fast, slow)]
    for g_fast, g_slow in zip(*grads):
        assert_close(g_fast, g_slow, dtype=torch.float32)


def test_trains_with_the_part_one_loop(corpus):
    model = _tiny_model(corpus, dropout=0.0)
    batches = corpus.batches("train", 16, generator=torch.Generator().manual_seed(0))
    loss = train_seq2seq(model, batches, steps=20, lr=5e-3, progress=False)["loss"]
    assert sum(loss[-5:]) / 5 < 0.85 * sum(loss[:5]) / 5
    hyps = translate(model, corpus, corpus.splits["test"][:4])
    assert len(hyps) == 4 and all(isinstance(h, list) for h in hyps)


# --------------------------------------------------------------------------- batch norm
def test_sequence_batch_norm_without_token_mask_is_batchnorm1d(gen):
    ours = randomize_(SequenceBatchNorm(D).double(), gen)
    ref = nn.BatchNorm1d(D).double()
    ref.load_state_dict(ours.bn.state_dict())
    x = randn(3, 5, D, gen=gen)
    assert_close(ours(x), ref(x.transpose(1, 2)).transpose(1, 2))
    assert_close(ours.bn.running_var, ref.running_var)


def test_masked_batch_norm_uses_real_positions_only(gen):
    ours = randomize_(SequenceBatchNorm(D).double(), gen)
    ref = nn.BatchNorm1d(D).double()
    ref.load_state_dict(ours.bn.state_dict())
    x = randn(3, 5, D, gen=gen)
    real = M.padding_mask(torch.tensor([5, 2, 3]), 5)
    out = ours(x, real)
    assert_close(out[real], ref(x[real]))  # BatchNorm1d over the (M, D) real positions
    assert_close(ours.bn.running_mean, ref.running_mean)
    assert_close(ours.bn.running_var, ref.running_var)
    x2 = x.clone()
    x2[~real] = randn(int((~real).sum()), D, gen=gen) * 10  # padding content is irrelevant
    assert_close(ours(x2, real)[real], out[real])
    ref(x2[real])  # (the same real positions: both running averages are updated twice)
    ours.eval()
    ref.eval()
    assert_close(ours(x, real), ref(x.transpose(1, 2)).transpose(1, 2))


def test_plain_batch_norm_sees_the_padding_and_layer_norm_does_not(gen):
    x = randn(1, 6, D, gen=gen)
    padded = torch.cat([x, torch.zeros(1, 6, D, dtype=x.dtype)], dim=1)  # 6 pad positions
    for norm, changes in (("batch", True), ("layer", False)):
        layer = randomize_(TransformerEncoderLayer(D, H, F, norm=norm).double(), gen).train()
        mask = M.key_mask(torch.tensor([6]), 12)
        diff = (layer(padded, attn_mask=mask)[:, :6] - layer(x)).abs().max()
        assert (diff > 1e-3) if changes else (diff < 1e-10), (norm, diff)
    # with token_mask=, batch norm ignores the padding
    layer = randomize_(TransformerEncoderLayer(D, H, F, norm="batch").double(), gen).train()
    real = M.padding_mask(torch.tensor([6]), 12)
    out = layer(padded, attn_mask=real[:, None, None], token_mask=real)[:, :6]
    assert_close(out, layer(x, token_mask=torch.ones(1, 6, dtype=torch.bool)))


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_are_rejected_with_clear_messages(gen):
    layer = TransformerEncoderLayer(D, H, F).double()
    dec = TransformerDecoderLayer(D, H, F).double()
    x = randn(2, 5, D, gen=gen)
    cases = [
        (lambda: TransformerEncoderLayer(10, 3, F), ValueError, "divisible by num_heads"),
        (lambda: TransformerEncoderLayer(D, H, 0), ValueError, "dim_feedforward"),
        (lambda: TransformerEncoderLayer(D, H, F, norm="group"), ValueError, "norm must be"),
        (lambda: TransformerEncoderLayer(D, H, F, activation="tanh"), ValueError, "activation"),
        (lambda: TransformerEncoderLayer(D, H, F, dropout=1.0), ValueError, "dropout"),
        (lambda: TransformerEncoder(0, D, H, F), ValueError, "num_layers"),
        (lambda: layer(randn(2, 5, D + 1, gen=gen)), ValueError, r"d_model=16.*\(2, 5, 17\)"),
        (lambda: layer(randn(5, D, gen=gen)), ValueError, r"3-D.*\(5, 16\)"),
        (lambda: layer(x, attn_mask=torch.ones(2, 1, 1, 5)), TypeError, "attn_mask.*torch.bool"),
        (lambda: layer(x, attn_mask=torch.ones(2, 1, 1, 4, dtype=torch.bool)), ValueError,
         r"attn_mask.*\(2, 1, 1, 4\).*\(2, 4, 5, 5\)"),
        (lambda: layer(x, token_mask=torch.ones(2, 4, dtype=torch.bool)), ValueError,
         "token_mask"),
        (lambda: dec(x, randn(3, 4, D, gen=gen)), ValueError, "same batch size"),
        (lambda: dec(x, randn(2, 4, D, gen=gen), memory_attn_mask=torch.ones(
            2, 1, 1, 5, dtype=torch.bool)), ValueError, "memory_attn_mask"),
    ]
    for k, (call, exc, pattern) in enumerate(cases):
        assert_rejected(call, exc, pattern, case=str(k))


def test_model_rejects_bad_batches(corpus):
    model = _tiny_model(corpus)
    b = corpus.batch(corpus.splits["test"][:2])
    assert_rejected(lambda: model(b.src.float(), b.src_len, b.tgt_in), TypeError, "src")
    assert_rejected(lambda: model(b.src, b.src_len + 50, b.tgt_in), ValueError, "src_len")
    assert_rejected(lambda: model(b.src, b.src_len, b.tgt_in[:1]), ValueError, "batch size")
    assert_rejected(lambda: Transformer(0, 10), ValueError, "src_vocab_size")
    long = torch.ones(1, 300, dtype=torch.long)
    assert_rejected(lambda: model(long, torch.tensor([300]), b.tgt_in[:1]), ValueError,
                    "max_len")


# --------------------------------------------------------------------------- shipped model
def test_shipped_transformer_loads_with_its_recorded_configuration():
    from attention_lib import pretrained

    ckpt = torch.load(pretrained.pretrained_path("transformer.pt"), weights_only=True)
    sizes = (ckpt["state_dict"]["encoder.embedding.weight"].shape[0],
             ckpt["state_dict"]["decoder.out.weight"].shape[0])
    model, ckpt = pretrained.load_transformer(*sizes)
    assert isinstance(model, Transformer) and not model.training
    assert ckpt["config"].items() <= model.config.items()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    results = pretrained.load_results("transformer_length")["transformer"]
    assert results["steps"] == ckpt["steps"] and results["config"] == ckpt["config"]
    assert_rejected(lambda: pretrained.load_transformer(10, 10), ValueError, "vocabularies")
    variants = pretrained.load_results("transformer_variants")
    assert {v["config"]["norm"] for v in variants.values()} == {"layer", "batch"}


def test_benchmark_tiny_run_writes_results_and_a_loadable_checkpoint(tmp_path):
    """Smoke test of benchmarks/transformer.py (no timing asserted)."""
    import json

    from helpers import load_benchmark

    load_benchmark("transformer").main(["--steps", "3", "--warmup", "2", "--n-pairs", "120",
                                        "--max-len", "12", "--d-model", "8", "--no-progress",
                                        "--out", str(tmp_path), "--figures", str(tmp_path)])
    data = json.loads((tmp_path / "transformer_length.json").read_text())
    r = data["transformer"]
    assert r["steps"] == 3 and r["pairs_seen"] == 3 * 64 and 0.0 <= r["aer"] <= 1.0
    assert [b["bucket"] for b in r["bleu_by_length"]] == ["1-10", "11-20", "21-30", "31-45",
                                                           "46-60"]
    assert (tmp_path / "transformer_length.png").stat().st_size > 0
    ckpt = torch.load(tmp_path / "transformer.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values()
               if v.is_floating_point())
    corpus = make_corpus(**ckpt["corpus_kwargs"])
    model = Transformer(len(corpus.src_vocab), len(corpus.tgt_vocab), **ckpt["config"])
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})


def test_benchmark_variant_run_writes_only_its_results(tmp_path):
    import json

    from helpers import load_benchmark

    load_benchmark("transformer").main(["--steps", "2", "--warmup", "1", "--n-pairs", "120",
                                        "--max-len", "12", "--d-model", "8", "--no-progress",
                                        "--norm", "batch", "--no-bucket", "--variant", "bn",
                                        "--out", str(tmp_path), "--figures", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transformer_variants.json"]
    r = json.loads((tmp_path / "transformer_variants.json").read_text())["bn"]
    assert r["config"]["norm"] == "batch" and r["bucketed_batches"] is False
