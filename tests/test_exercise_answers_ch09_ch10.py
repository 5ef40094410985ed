"""The truths behind the exercises of chapters 9 and 10, recomputed independently of the
chapter modules' own code (attention_course.checks.chapters.ch09_complexity, ch10_transformer):
closed forms, torch's own layers with copied weights, and FLOPs counted on real tensors."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attention_course.checks import check
from attention_course.checks.chapters import ch09_complexity as ch09
from attention_course.checks.chapters import ch10_transformer as ch10
from attention_lib.complexity import make_layer
from attention_lib.masks import key_mask


def _flops_on_cpu(layer, n, d):
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        layer(torch.randn(1, n, d))
    return counter.get_total_flops()


def test_conv_crossover_is_the_closed_form_and_the_cpu_count():
    d, k = ch09.CROSSOVER_QUESTION["d"], ch09.CROSSOVER_QUESTION["k"]
    n_star = ch09.measured_conv_crossover()
    # 8 n d^2 + 4 n^2 d = 2 k n d^2  <=>  n = (k - 4) d / 2
    assert n_star == (k - 4) * d // 2
    att, conv = (_flops_on_cpu(make_layer(kind, d, kernel_size=k), n_star, d)
                 for kind in ("attention", "conv"))
    assert att == conv
    att, conv = (_flops_on_cpu(make_layer(kind, d, kernel_size=k), n_star - 1, d)
                 for kind in ("attention", "conv"))
    assert att < conv
    assert check("answer_attention_conv_crossover", n_star, verbose=False).passed
    assert not check("answer_attention_conv_crossover", d, verbose=False).passed


def test_layer_flop_reference_counts_real_layers():
    case = ch09._flops_case(7, sizes=[(12, 6, 5), (3, 9, 1)])
    expected = ch09.LAYER_FLOP_COUNTS.reference(*case.args)
    for row, (n, d, k) in zip(expected.tolist(), [(12, 6, 5), (3, 9, 1)]):
        counted = [_flops_on_cpu(make_layer(kind, d, kernel_size=k), n, d)
                   for kind in ch09.KINDS]
        assert row == counted


def test_conv_path_reference_matches_the_receptive_field():
    for n, k in ((9, 3), (11, 5), (6, 1), (3, 7)):
        p = ch09.CONV_PATH_LENGTHS.reference(n, k)
        r = k // 2
        for i in range(n):
            for j in range(n):
                gap = abs(i - j)
                want = 1 if gap == 0 else (-1 if r == 0 else -(-gap // r))
                assert p[i, j].item() == want, (n, k, i, j)


def test_encoder_layer_reference_equals_torch_with_copied_weights():
    g = torch.Generator().manual_seed(3)
    e, h, f, b, n = 12, 3, 20, 3, 6
    w = ch10.make_encoder_weights(g, e, f)
    x = torch.randn(b, n, e, generator=g, dtype=torch.float64)
    lengths = torch.tensor([6, 3, 1])
    for norm_first in (False, True):
        ref = nn.TransformerEncoderLayer(e, h, f, dropout=0.0, batch_first=True,
                                         norm_first=norm_first).double().eval()
        with torch.no_grad():
            ref.self_attn.in_proj_weight.copy_(torch.cat([w["w_q"].T, w["w_k"].T,
                                                          w["w_v"].T]))
            ref.self_attn.in_proj_bias.copy_(torch.cat([w["b_q"], w["b_k"], w["b_v"]]))
            ref.self_attn.out_proj.weight.copy_(w["w_o"].T)
            ref.self_attn.out_proj.bias.copy_(w["b_o"])
            ref.linear1.weight.copy_(w["w_1"].T)
            ref.linear1.bias.copy_(w["b_1"])
            ref.linear2.weight.copy_(w["w_2"].T)
            ref.linear2.bias.copy_(w["b_2"])
            for i, norm in ((1, ref.norm1), (2, ref.norm2)):
                norm.weight.copy_(w[f"ln{i}_weight"])
                norm.bias.copy_(w[f"ln{i}_bias"])
            pad = torch.arange(n) >= lengths[:, None]  # torch: True = ignore
            theirs = ref(x, src_key_padding_mask=pad)
        ours = ch10.ENCODER_LAYER_FORWARD.reference(x, w, h, key_mask(lengths, n),
                                                    norm_first)
        # torch's fast path may zero padded query rows; compare the real tokens
        real = ~pad
        assert torch.allclose(ours[real], theirs[real], atol=1e-10, rtol=1e-10)


def test_masked_batch_norm_reference_without_padding_is_batchnorm1d():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64) * 3 + 1
    weight, bias = torch.rand(4, dtype=torch.float64) + 0.5, torch.randn(4, dtype=torch.float64)
    bn = nn.BatchNorm1d(4).double().train()
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
        want = bn(x.transpose(1, 2)).transpose(1, 2)
    got = ch10.MASKED_BATCH_NORM.reference(x, torch.ones(3, 5, dtype=torch.bool), weight, bias)
    assert torch.allclose(got, want, atol=1e-12)


def test_encoder_layer_parameter_count_by_hand():
    e, f = ch10.PARAMS_QUESTION["d_model"], ch10.PARAMS_QUESTION["dim_feedforward"]
    by_hand = 4 * (e * e + e) + (e * f + f) + (f * e + e) + 2 * 2 * e
    assert ch10.encoder_layer_params() == by_hand == 3_152_384
    assert all(abs(w - by_hand) > 1 for w, _ in ch10._params_wrong())


def test_bn_noise_shrinks_with_the_batch_and_one_token_is_refused():
    noise = [ch10.bn_noise(b) for b in ch10.BN_BATCH_SIZES]
    assert all(a > b for a, b in zip(noise, noise[1:]))
    # roughly 1 / sqrt(tokens): 256 times more sentences, about 16 times less noise
    assert 8 < noise[0] / noise[-1] < 32
    b = ch10.quiet_batch_size()
    assert ch10.bn_noise(b) < ch10.BN_EXPERIMENT["level"] <= ch10.bn_noise(b // 2)
    assert check("my_bn_batch_size", b, verbose=False).passed
    assert not check("my_bn_batch_size", 1, verbose=False).passed
    # a batch holding a single token: the formula gives (x - x) / sqrt(0 + eps) = 0, so the
    # output would be the bias whatever x is; torch refuses such a batch in training mode
    from attention_lib.transformer import SequenceBatchNorm
    bn = SequenceBatchNorm(5).double().train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(torch.randn(1, 1, 5, dtype=torch.float64))


def test_time_exponent_check_accepts_the_textbook_and_rejects_flat_curves():
    assert check("my_attention_time_exponent", 2.0, verbose=False).passed
    assert check("my_attention_time_exponent", 2.6, verbose=False).passed  # caches: > 2
    assert not check("my_attention_time_exponent", 0.1, verbose=False).passed
    assert not check("my_attention_time_exponent", float("nan"), verbose=False).passed
