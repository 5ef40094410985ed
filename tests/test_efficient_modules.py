"""The multi-head ``nn.Module`` wrappers of ``attention_lib.efficient`` (FlashAttention,
SlidingWindowAttention, LinearAttention): with the weights of a
``attention_lib.layers.MultiHeadAttention`` copied in, the exact ones compute what it computes
with the corresponding mask, and every one validates its inputs."""
from __future__ import annotations

import pytest
import torch

from attention_lib.efficient import FlashAttention, LinearAttention, SlidingWindowAttention
from attention_lib.masks import sliding_window_mask
from attention_lib.layers import MultiHeadAttention
from helpers import assert_rejected, randn
from tolerances import assert_close

E, H = 16, 4


def pair(cls, gen, **kwargs):
    ref = MultiHeadAttention(E, H).double()
    for p in ref.parameters():
        with torch.no_grad():
            p.copy_(randn(*p.shape, gen=gen) * 0.4)
    mod = cls(E, H, **kwargs).double()
    mod.load_state_dict(ref.state_dict())
    return ref.eval(), mod.eval()


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_flash_module_equals_multi_head_attention(is_causal, padded, gen):
    ref, mod = pair(FlashAttention, gen, block_size=8)
    x = randn(3, 21, E, gen=gen)
    lengths = torch.tensor([21, 13, 5])
    kpm = torch.arange(21)[None, :] < lengths[:, None] if padded else None  # True = real key
    mask = kpm[:, None, None, :] if padded else None
    assert_close(mod(x, key_padding_mask=kpm, is_causal=is_causal),
                 ref(x, attn_mask=mask, is_causal=is_causal))


def test_flash_module_cross_attention_and_gradients(gen):
    ref, mod = pair(FlashAttention, gen, block_size=4)
    q, kv = randn(2, 7, E, gen=gen), randn(2, 11, E, gen=gen)
    assert_close(mod(q, kv), ref(q, kv))
    x = randn(2, 9, E, gen=gen).requires_grad_()
    mod(x).sum().backward()
    g_mod = x.grad.clone()
    x.grad = None
    ref(x).sum().backward()
    assert_close(g_mod, x.grad)


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("window,block", [(3, None), (5, 4), (0, None)])
def test_sliding_window_module_equals_masked_multi_head_attention(is_causal, window, block, gen):
    ref, mod = pair(SlidingWindowAttention, gen, window=window, block_size=block)
    x = randn(2, 23, E, gen=gen)
    assert_close(mod(x, is_causal=is_causal),
                 ref(x, attn_mask=sliding_window_mask(23, window), is_causal=is_causal))


def test_linear_module_shares_the_projections(gen):
    ref, mod = pair(LinearAttention, gen)
    assert set(mod.state_dict()) == set(ref.state_dict())
    assert mod(randn(2, 6, E, gen=gen)).shape == (2, 6, E)
    assert "embed_dim=16, num_heads=4" in repr(mod)


CASES = {
    "heads": (lambda: FlashAttention(10, 4), ValueError,
              r"embed_dim=10 must be divisible by num_heads=4"),
    "block": (lambda: FlashAttention(8, 2, block_size=0), ValueError,
              r"block_size must be an int >= 1, got 0"),
    "window": (lambda: SlidingWindowAttention(8, 2, window=-1), ValueError,
               r"window must be an int >= 0, got -1"),
    "input": (lambda: SlidingWindowAttention(8, 2, 2)(torch.ones(1, 3, 6)), ValueError,
              r"query must be \(B, N, E\) with E = 8, got \(1, 3, 6\)"),
    "kpm": (lambda: FlashAttention(8, 2)(torch.ones(2, 3, 8), key_padding_mask=torch.ones(2, 4,
                                                                    dtype=torch.bool)),
            ValueError, r"key_padding_mask must be bool \(B, Nk\) = \(2, 3\), got torch.bool "
                        r"\(2, 4\)"),
    "linear heads": (lambda: LinearAttention(8, 0), ValueError, r"num_heads must be an int >= 1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_rejected_with_a_clear_message(case):
    assert_rejected(*CASES[case], case=case)
