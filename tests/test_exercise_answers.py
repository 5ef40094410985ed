"""The truths behind the answer and experiment exercises of chapters 1 and 4-8, measured
independently of the constants the chapter modules use (attention_course.checks.chapters)."""
from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from attention_course import exercise_tools as tools
from attention_course.checks import check
from attention_course.checks.chapters import ch01_seq2seq_bottleneck as ch01
from attention_course.checks.chapters import ch04_bahdanau as ch04
from attention_course.checks.chapters import ch05_luong as ch05
from attention_course.checks.chapters import ch06_self_attention as ch06
from attention_course.checks.chapters import ch07_masking as ch07
from attention_course.checks.chapters import ch08_multi_head as ch08
from attention_lib.layers import MultiHeadAttention


def test_rotary_demo_score_depends_on_the_offset_only():
    assert abs(ch06.rotary_demo_score(2, 5) - ch06.rotary_demo_score(102, 105)) < 1e-9
    assert abs(ch06.rotary_demo_score(2, 5) - ch06.rotary_demo_score(2, 6)) > 1e-2
    assert abs(ch06.rotary_demo_score(2, 5) - ch06._unrotated()) > 0.5  # the hint is distinct


def test_rope_base_experiment_needs_a_larger_base():
    # closed form vs a direct rotary score of random vectors, averaged
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4096, 1, 64, generator=g, dtype=torch.float64)
    q0 = ch06.rotary_embedding(q, torch.tensor([0]))
    q7 = ch06.rotary_embedding(q, torch.tensor([7]))
    measured = float(((q0 * q7).sum(-1) / (q * q).sum(-1)).mean())
    assert abs(measured - float(ch06.rope_similarity(10000.0, [7])[0])) < 0.02
    assert float(ch06.rope_similarity(10000.0).min()) < ch06.ROPE_LEVEL  # the default fails
    assert float(ch06.rope_similarity(1e8).min()) > ch06.ROPE_LEVEL  # a larger base passes
    assert not check("my_rope_base", 10000.0, verbose=False).passed
    assert check("my_rope_base", 1e8, verbose=False).passed


def test_suspect_attention_looks_exactly_lookahead_positions_ahead():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 10, 8, generator=g, dtype=torch.float64)
    base = tools.suspect_attention(x)
    reach = 0
    for j in range(10):
        x2 = x.clone()
        x2[:, j] += 1.0
        moved = (tools.suspect_attention(x2) - base).abs().amax(-1)[0] > 1e-9  # (N,)
        earlier = [i for i in range(j) if moved[i]]
        if earlier:
            reach = max(reach, j - min(earlier))
    assert reach == tools.LOOKAHEAD > 0


def test_mask_answers_by_hand():
    lengths, n = ch07.EMPTY_ROWS_LENGTHS, ch07.EMPTY_ROWS_N
    assert ch07._empty_rows_truth() == sum(n - length for length in lengths)
    real, pad = ch07.FLOAT_MASK_REAL, ch07.FLOAT_MASK_KEYS - ch07.FLOAT_MASK_REAL
    assert abs(ch07._float_mask_truth() - pad / (pad + real * math.e)) < 1e-12


def test_multi_head_answers_by_hand():
    m = ch08.KV_MODEL
    by_hand = 2 * m["num_layers"] * m["batch_size"] * m["seq_len"] * m["num_kv_heads"] \
        * m["head_dim"] * 2 / 2**20
    assert ch08._cache_mib() == by_hand
    e, h, hkv = (ch08.GQA_MODEL[k] for k in ("embed_dim", "num_heads", "num_kv_heads"))
    ekv = hkv * e // h
    assert ch08._gqa_params() == 2 * (e * e + e) + 2 * (e * ekv + ekv)


def test_flop_crossover_matches_the_counted_flops():
    def share(n):
        layer = MultiHeadAttention(ch08.CROSSOVER_E, ch08.CROSSOVER_H).eval()
        x = torch.randn(1, n, ch08.CROSSOVER_E)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            layer(x, return_weights=True)
        total = counter.get_total_flops()
        return 4 * n * n * ch08.CROSSOVER_E / total
    truth = ch08.flop_crossover()
    assert truth == 2 * ch08.CROSSOVER_E
    assert share(truth) >= 0.5 > share(truth // 2)
    assert abs(share(truth // 2) - ch08.attention_share(truth // 2)) < 1e-12


def test_aer_reference_against_hand_counted_links():
    weights = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1]],
                           dtype=torch.float64)  # argmax links (src, tgt): (0,0) (2,1) (1,2) (0,3)
    gold = torch.zeros(4, 3, dtype=torch.bool)
    gold[0, 0] = gold[1, 1] = gold[2, 1] = gold[2, 2] = True  # 4 sure links, 2 hit
    assert float(ch04._aer_ref(weights, gold)) == 1 - 2 * 2 / (4 + 4)


def test_diagonal_aer_sits_between_learned_and_uniform():
    # the chapter: trained attention 0.1-0.2, uniform > 0.9; the diagonal is a strong baseline
    assert 0.2 < ch04.diagonal_aer() < 0.6


def test_local_p_edge_and_window_coverage():
    weights = ch05._lp_ref(torch.zeros(1, 9, dtype=torch.float64),
                           torch.tensor([4.0], dtype=torch.float64), 2)
    assert weights[0, 0] == 0 and weights[0, 1] == 0 and weights[0, 2] > 0  # ends included
    assert abs(float(weights[0, 2] / weights[0, 4]) - math.exp(-2)) < 1e-12
    d = ch05.smallest_half_width()
    assert ch05.coverage(d) >= ch05.WIDTH_LEVEL > ch05.coverage(d - 1)
    assert ch05.coverage(60) == 1.0


def test_bottleneck_answers():
    from attention_lib.data import make_corpus
    from attention_lib.metrics import corpus_bleu
    from attention_lib.seq2seq import Encoder
    enc = Encoder(50, 8, 32).eval()
    with torch.no_grad():
        _, summary = enc(torch.randint(1, 50, (1, 40)), torch.tensor([40]))
    assert summary.shape[-1] == 64  # answer_summary_size
    corpus = make_corpus(300, seed=1, max_len=30)
    pairs = [p for p in corpus.pairs if p.monotone][:20]
    assert all(ch01.english_order_gloss(p) == list(p.tgt) for p in pairs)  # no reordering
    assert corpus_bleu([ch01.english_order_gloss(p) for p in pairs], [p.tgt for p in pairs]) == 1
    assert 0.3 < ch01.gloss_bleu() < 0.9  # word order alone costs a lot of BLEU


def test_a_float_mask_is_told_to_be_bool():
    def float_mask(lengths, num_keys):
        return (torch.arange(num_keys)[None] < lengths[:, None]).float()[:, None, None]
    report = check("key_mask_from_lengths", float_mask, verbose=False)
    assert not report.results[0].passed and "expected torch.bool" in report.results[0].message
