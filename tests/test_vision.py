"""attention_lib.vision: channel/spatial attention, the captioners, pointing accuracy, TinyViT.

Modules are compared with the papers' formulas written out here in float64 (SE, CBAM), with
the library's AdditiveAttention holding the decoder's weights (the captioner's attention),
and with unfold + matmul (patch embedding); the pointing metric with hand-made cases.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_rejected, randn, randomize_
from tolerances import assert_close

from attention_lib.layers import AdditiveAttention
from attention_lib.scenes import make_scenes, scene_batch, scene_vocab
from attention_lib.seq2seq import BahdanauDecoder, PlainDecoder, greedy_decode
from attention_lib.vision import (
    CBAM,
    AttentionCaptioner,
    ChannelAttention,
    GridEncoder,
    PatchEmbedding,
    PlainCaptioner,
    SceneClassifier,
    SpatialAttention,
    SqueezeExcitation,
    TinyViT,
    caption_attention,
    cls_attention,
    load_captioner,
    object_word_attention,
    pointing_accuracy,
    pointing_hits,
    region_to_grid,
    train_captioner,
    uniform_pointing_accuracy,
)

DT = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models: one thread is fastest, and avoids spinning threads on a loaded CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def batch():
    return scene_batch(make_scenes(6, seed=5, clutter=0.05), scene_vocab())


# --------------------------------------------------------------------------- SE / CBAM
def test_squeeze_excitation_matches_the_formula():
    gen = torch.Generator().manual_seed(0)
    se = randomize_(SqueezeExcitation(8, reduction=2).to(DT), gen)
    x = randn(3, 8, 5, 6, gen=gen)
    out, s = se(x, return_weights=True)
    z = x.mean(dim=(2, 3))
    want_s = torch.sigmoid(F.relu(z @ se.fc1.weight.T + se.fc1.bias) @ se.fc2.weight.T
                           + se.fc2.bias)
    assert s.shape == (3, 8) and out.shape == x.shape
    assert_close(s, want_s)
    assert_close(out, x * want_s[:, :, None, None])
    assert torch.equal(se(x), out)


def test_squeeze_excitation_with_identity_gates_is_the_identity():
    gen = torch.Generator().manual_seed(1)
    se = randomize_(SqueezeExcitation(6).to(DT), gen)
    with torch.no_grad():
        se.fc2.weight.zero_()
        se.fc2.bias.fill_(60.0)  # sigmoid(60) == 1 in float64
    x = randn(2, 6, 4, 4, gen=gen)
    out, s = se(x, return_weights=True)
    assert torch.equal(s, torch.ones_like(s)) and torch.equal(out, x)


def test_cbam_matches_the_formulas_and_gates_are_in_0_1():
    gen = torch.Generator().manual_seed(2)
    cbam = randomize_(CBAM(8, reduction=2, kernel_size=3).to(DT), gen)
    x = randn(2, 8, 6, 7, gen=gen)
    out, (mc, ms) = cbam(x, return_weights=True)
    mlp = cbam.channel.mlp
    f = lambda v: F.relu(v @ mlp[0].weight.T + mlp[0].bias) @ mlp[2].weight.T + mlp[2].bias
    want_mc = torch.sigmoid(f(x.mean(dim=(2, 3))) + f(x.amax(dim=(2, 3))))
    assert_close(mc, want_mc)
    x1 = x * want_mc[:, :, None, None]
    pooled = torch.stack([x1.mean(1), x1.amax(1)], 1)
    conv = cbam.spatial.conv
    want_ms = torch.sigmoid(F.conv2d(pooled, conv.weight, conv.bias, padding=1))[:, 0]
    assert ms.shape == (2, 6, 7) and mc.shape == (2, 8)
    assert_close(ms, want_ms)
    assert_close(out, x1 * want_ms[:, None])
    assert ((ms > 0) & (ms < 1)).all() and ((mc > 0) & (mc < 1)).all()


def test_spatial_attention_alone_keeps_the_spatial_size():
    gen = torch.Generator().manual_seed(3)
    sa = SpatialAttention(7).to(DT)
    x = randn(4, 3, 9, 5, gen=gen) * 10
    w = sa(x)
    assert w.shape == (4, 9, 5) and ((w > 0) & (w < 1)).all()
    assert ChannelAttention(3)(x.float()).shape == (4, 3)


@pytest.mark.parametrize("attention, n_weights", [(None, 0), ("se", 2), ("cbam", 2)])
def test_grid_encoder_shapes(attention, n_weights):
    enc = GridEncoder(3, 16, attention=attention)
    grid, weights = enc(torch.rand(2, 3, 32, 24), return_weights=True)
    assert grid.shape == (2, 16, 8, 6) and len(weights) == n_weights
    assert enc.grid_size(32, 24) == (8, 6)
    clf = SceneClassifier(5, channels=16, attention=attention)
    assert clf(torch.rand(2, 3, 16, 16)).shape == (2, 5)


# --------------------------------------------------------------------------- captioners
def test_captioner_attention_is_chapter_4_additive_attention(batch):
    torch.manual_seed(0)
    model = AttentionCaptioner(len(scene_vocab()), channels=16, embed_dim=8, hidden_size=12)
    assert isinstance(model.decoder, BahdanauDecoder) and model.attends
    logits, attn = model(batch.images, batch.tgt_in)
    B, T = batch.tgt_in.shape
    assert logits.shape == (B, T, len(scene_vocab())) and attn.shape == (B, T, 64)
    assert (attn >= 0).all()
    assert_close(attn.sum(-1), torch.ones(B, T))
    # step 0 by hand: s_0 = tanh(W_init mean(grid)) queries the grid with the additive score
    states, _, mask = model.encode(batch.images)
    assert states.shape == (B, 64, 16) and mask.all()
    grid = model.encoder(batch.images)
    assert_close(states, grid.flatten(2).transpose(1, 2))
    dec = model.decoder
    add = AdditiveAttention(12, 16, 12)
    with torch.no_grad():
        add.W_q.weight.copy_(dec.W_q.weight)
        add.W_k.weight.copy_(dec.W_k.weight)
        add.w_v.weight.copy_(dec.v.weight)
    s0 = torch.tanh(dec.init(grid.mean(dim=(2, 3))))
    _, w0 = add(s0[:, None], states, states, return_weights=True)
    assert_close(attn[:, 0], w0[:, 0])
    maps = caption_attention(model, batch.images, batch.tgt_in)
    assert maps.shape == (B, T, 8, 8)
    assert_close(maps.flatten(2), attn)


def test_plain_captioner_and_greedy_decoding(batch):
    vocab = scene_vocab()
    torch.manual_seed(0)
    plain = PlainCaptioner(len(vocab), channels=16, embed_dim=8, hidden_size=12)
    assert isinstance(plain.decoder, PlainDecoder) and not plain.attends
    logits, attn = plain(batch.images, batch.tgt_in)
    assert attn is None and logits.shape[:2] == batch.tgt_in.shape
    model = AttentionCaptioner(len(vocab), channels=16, embed_dim=8, hidden_size=12)
    tokens, att = greedy_decode(model, batch.images, None, bos_id=vocab.bos_id,
                                eos_id=vocab.eos_id, max_len=7)
    assert tokens.shape[0] == 6 and tokens.shape[1] <= 7 and att.shape[:2] == tokens.shape
    assert_rejected(lambda: caption_attention(plain, batch.images, batch.tgt_in), ValueError,
                    "no attention")


def test_object_word_attention_selects_object_words(batch):
    torch.manual_seed(0)
    model = AttentionCaptioner(len(scene_vocab()), channels=16, embed_dim=8, hidden_size=12)
    attn, regions, words = object_word_attention(model, batch)
    n = int(batch.object_word.sum())
    assert attn.shape == (n, 8, 8) and regions.shape == (n, 32, 32) and words.shape == (n,)
    itos = scene_vocab().itos
    assert all(itos[w] not in ("a", "left", "of", "above", "below", "<eos>", "<pad>")
               for w in words.tolist())
    assert regions.flatten(1).any(1).all()


def test_training_reduces_the_loss(batch):
    torch.manual_seed(0)
    model = AttentionCaptioner(len(scene_vocab()), channels=16, embed_dim=8, hidden_size=16)
    hist = train_captioner(model, iter([batch] * 25), steps=25, lr=1e-2, progress=False)["loss"]
    assert len(hist) == 25 and hist[-1] < 0.7 * hist[0]
    assert not model.training


# --------------------------------------------------------------------------- pointing
def test_pointing_hand_made_cases():
    attn = torch.zeros(3, 4, 4)
    attn[:, 1, 2] = 1.0  # peak at cell (1, 2) = pixels rows 2-3, cols 4-5 of an 8x8 image
    regions = torch.zeros(3, 8, 8, dtype=torch.bool)
    regions[0, 2:4, 4:6] = True  # exactly the peak cell
    regions[1, 3, 5] = True  # one pixel of the peak cell
    regions[2, 0:2, 0:8] = True  # the whole top row of cells, not the peak
    assert pointing_hits(attn, regions).tolist() == [True, True, False]
    assert pointing_accuracy(attn, regions) == pytest.approx(2 / 3)
    # uniform attention: region 0 and 1 cover 1 of 16 cells, region 2 covers 4
    assert uniform_pointing_accuracy(regions, (4, 4)) == pytest.approx((1 + 1 + 4) / 48)
    flat = torch.full((1, 4, 4), 1 / 16)  # ties: the first cell is the peak
    top = torch.zeros(1, 8, 8, dtype=torch.bool)
    top[0, 0, 0] = True
    assert pointing_accuracy(flat, top) == 1.0


def test_region_to_grid():
    r = torch.zeros(2, 6, 9, dtype=torch.bool)
    r[0, 5, 8] = True
    r[1, 0:2, 3:6] = True
    g = region_to_grid(r, (2, 3))
    want = torch.zeros(2, 2, 3, dtype=torch.bool)
    want[0, 1, 2] = True
    want[1, 0, 1] = True
    assert torch.equal(g, want)


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: pointing_accuracy(torch.rand(2, 4, 4), torch.ones(2, 8, 8)), TypeError, "bool"),
    (lambda: pointing_accuracy(torch.rand(2, 4, 4), torch.ones(3, 8, 8, dtype=torch.bool)),
     ValueError, r"one region per attention map.*\(2, 4, 4\).*\(3, 8, 8\)"),
    (lambda: pointing_accuracy(torch.rand(4, 4), torch.ones(1, 8, 8, dtype=torch.bool)),
     ValueError, r"attn must be 3-D"),
    (lambda: pointing_accuracy(torch.rand(1, 4, 4), torch.zeros(1, 8, 8, dtype=torch.bool)),
     ValueError, "at least one pixel"),
    (lambda: pointing_accuracy(torch.rand(1, 3, 3), torch.ones(1, 8, 8, dtype=torch.bool)),
     ValueError, "multiples"),
    (lambda: pointing_accuracy(torch.rand(0, 4, 4), torch.ones(0, 8, 8, dtype=torch.bool)),
     ValueError, "empty"),
])
def test_pointing_rejects_bad_inputs(call, exc, pattern):
    assert_rejected(call, exc, pattern)


# --------------------------------------------------------------------------- patches as tokens
def test_patch_embedding_is_unfold_and_matmul():
    gen = torch.Generator().manual_seed(4)
    pe = randomize_(PatchEmbedding(8, 4, 5).to(DT), gen)
    x = randn(2, 3, 8, 8, gen=gen)
    patches = F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)  # (B, 4, 3*16)
    want = patches @ pe.proj.weight.reshape(5, -1).T + pe.proj.bias + pe.pos
    assert pe.grid == (2, 2) and pe.num_patches == 4
    assert_close(pe(x), want)


def test_tiny_vit_shapes_and_weights():
    torch.manual_seed(0)
    vit = TinyViT(16, 4, 7, d_model=16, num_heads=2, num_layers=3, dim_feedforward=32)
    logits, weights = vit(torch.rand(3, 3, 16, 16), return_weights=True)
    assert logits.shape == (3, 7) and len(weights) == 3
    for w in weights:
        assert w.shape == (3, 2, 17, 17)
        assert_close(w.sum(-1), torch.ones(3, 2, 17))
    m = cls_attention(weights, vit.grid)
    assert m.shape == (3, 4, 4) and (m.flatten(1).sum(1) <= 1 + 1e-6).all()
    assert_rejected(lambda: cls_attention(weights, (3, 3)), ValueError, "grid")


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: SqueezeExcitation(4)(torch.rand(2, 5, 3, 3)), ValueError, r"C=4.*\(2, 5, 3, 3\)"),
    (lambda: SqueezeExcitation(4)(torch.rand(4, 3, 3)), ValueError, "x must be 4-D"),
    (lambda: SqueezeExcitation(0), ValueError, "channels"),
    (lambda: SpatialAttention(4), ValueError, "odd"),
    (lambda: CBAM(4)(torch.ones(1, 4, 2, 2, dtype=torch.long)), TypeError, "floating"),
    (lambda: GridEncoder(3, 8)(torch.rand(1, 3, 30, 30)), ValueError, "divisible by 4"),
    (lambda: GridEncoder(3, 8, attention="sparse"), ValueError, "attention must be"),
    (lambda: PatchEmbedding(10, 4, 8), ValueError, "multiple"),
    (lambda: PatchEmbedding(8, 4, 8)(torch.rand(1, 3, 12, 12)), ValueError, "8x8"),
    (lambda: AttentionCaptioner(25)(torch.rand(2, 3, 32, 32), torch.zeros(3, 4).long()),
     ValueError, "same batch size"),
    (lambda: AttentionCaptioner(25)(torch.rand(2, 3, 32, 32), torch.zeros(2, 4)),
     TypeError, "tgt_in"),
    (lambda: load_captioner("vit"), ValueError, "kind must be"),
])
def test_bad_inputs(call, exc, pattern):
    assert_rejected(call, exc, pattern)


# --------------------------------------------------------------------------- shipped models
@pytest.mark.parametrize("kind", ["attention", "plain"])
def test_shipped_captioners_load(kind):
    model, ckpt = load_captioner(kind)
    assert not model.training and model.attends == (kind == "attention")
    assert ckpt["kind"] == kind and ckpt["steps"] >= 1000
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values()
               if v.is_floating_point())
    scenes = make_scenes(4, seed=1, **ckpt["scene_kwargs"])
    b = scene_batch(scenes)
    logits, _ = model(b.images, b.tgt_in)
    assert logits.shape[:2] == b.tgt_in.shape


def test_benchmark_script_smoke(tmp_path):
    """benchmarks/visual_attention.py: a tiny run writes results and loadable checkpoints."""
    import json

    from helpers import load_benchmark

    bench = load_benchmark("visual_attention")
    data = bench.main(["--steps", "2", "--n-train", "64", "--n-test", "8", "--batch-size", "8",
                       "--channels", "8", "--hidden-size", "8", "--embed-dim", "8",
                       "--no-progress", "--seeds", "0", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "visual_attention.json").read_text())
    assert set(saved) >= {"attention", "plain"} and saved["attention"]["steps"] == 2
    assert saved["attention"]["seed"] == 0                    # the shipped model's record
    for kind in ("attention", "plain"):                      # and every seed's
        assert set(saved["seeds"][kind]) == {"0", "1"}
        assert saved["seeds"][kind]["0"] == saved[kind] and saved["seeds"][kind]["1"]["seed"] == 1
    assert 0.0 <= saved["attention"]["pointing"] <= 1.0 and "pointing" not in saved["plain"]
    assert data["plain"]["bleu"] == saved["plain"]["bleu"]
    for kind in ("attention", "plain"):
        ckpt = torch.load(tmp_path / f"visual_captioner_{kind}.pt", weights_only=True)
        model = (AttentionCaptioner if kind == "attention" else PlainCaptioner)(
            len(scene_vocab()), **ckpt["model_kwargs"])
        model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})


def test_figures(batch):
    import matplotlib.pyplot as plt

    from attention_lib.vision import show_attention_on_image, show_scenes

    scenes = make_scenes(3, seed=0)
    fig = show_scenes(scenes, ncols=2)
    assert len([ax for ax in fig.axes if ax.images]) == 3
    regions = [r for r in scenes[0].regions if r is not None]
    fig2 = show_attention_on_image(scenes[0].image, torch.rand(2, len(regions), 8, 8),
                                   titles=["w"] * len(regions), regions=regions,
                                   row_labels=["a", "b"])
    assert len(fig2.axes) == 2 * (len(regions) + 1)
    assert_rejected(lambda: show_attention_on_image(scenes[0].image, torch.rand(8, 8)),
                    ValueError, "maps must be")
    assert_rejected(lambda: show_attention_on_image(scenes[0].image, torch.rand(1, 5, 5)),
                    ValueError, "do not tile")
    plt.close("all")
