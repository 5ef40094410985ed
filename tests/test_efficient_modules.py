"""Multi-head attention with an efficient family's function as ``attn_fn``
(flash_attention, sliding_window_attention, linear_attention): with the weights of a default
``attention_lib.layers.MultiHeadAttention`` copied in, the exact ones compute what it
computes (SDPA) with the corresponding mask, and every one validates its inputs."""
from __future__ import annotations

from functools import partial

import pytest
import torch
from helpers import assert_rejected, randn
from tolerances import assert_close

from attention_lib.efficient import flash_attention, linear_attention, sliding_window_attention
from attention_lib.layers import MultiHeadAttention
from attention_lib.masks import sliding_window_mask

E, H = 16, 4


def flash(block_size):
    return partial(flash_attention, block_q=block_size, block_k=block_size)


def pair(attn_fn, gen):
    ref = MultiHeadAttention(E, H).double()
    for p in ref.parameters():
        with torch.no_grad():
            p.copy_(randn(*p.shape, gen=gen) * 0.4)
    mod = MultiHeadAttention(E, H, attn_fn=attn_fn).double()
    mod.load_state_dict(ref.state_dict())
    return ref.eval(), mod.eval()


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_flash_module_equals_multi_head_attention(is_causal, padded, gen):
    ref, mod = pair(flash(8), gen)
    x = randn(3, 21, E, gen=gen)
    lengths = torch.tensor([21, 13, 5])
    real = torch.arange(21)[None, :] < lengths[:, None]  # True = real key
    mask = real[:, None, None, :] if padded else None  # (B, 1, 1, Nk)
    assert_close(mod(x, attn_mask=mask, is_causal=is_causal),
                 ref(x, attn_mask=mask, is_causal=is_causal))


def test_flash_module_cross_attention_and_gradients(gen):
    ref, mod = pair(flash(4), gen)
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
    ref, mod = pair(partial(sliding_window_attention, window=window, block_size=block), gen)
    x = randn(2, 23, E, gen=gen)
    assert_close(mod(x, is_causal=is_causal),
                 ref(x, attn_mask=sliding_window_mask(23, window), is_causal=is_causal))


def test_linear_module_shares_the_projections(gen):
    ref, mod = pair(linear_attention, gen)
    assert set(mod.state_dict()) == set(ref.state_dict())
    assert mod(randn(2, 6, E, gen=gen)).shape == (2, 6, E)
    assert "embed_dim=16, num_heads=4" in repr(mod)


def test_an_attn_fn_that_cannot_give_weights_says_so(gen):
    _, mod = pair(flash(4), gen)
    with pytest.raises(TypeError, match="return_weights"):
        mod(randn(2, 6, E, gen=gen), return_weights=True)


CASES = {
    "heads": (lambda: MultiHeadAttention(10, 4, attn_fn=flash(4)), ValueError,
              r"embed_dim=10 must be divisible by num_heads=4"),
    "block": (lambda: MultiHeadAttention(8, 2, attn_fn=flash(0))(torch.ones(1, 3, 8)),
              ValueError, r"block_q must be an int >= 1, got 0"),
    "window": (lambda: MultiHeadAttention(8, 2, attn_fn=partial(sliding_window_attention,
                                                                window=-1))(torch.ones(1, 3, 8)),
               ValueError, r"window must be an int >= 0, got -1"),
    "input": (lambda: MultiHeadAttention(8, 2, attn_fn=flash(4))(torch.ones(1, 3, 6)), ValueError,
              r"query must have last dim E=8, got shape \(1, 3, 6\)"),
    "mask": (lambda: MultiHeadAttention(8, 2, attn_fn=flash(4))(
        torch.ones(2, 3, 8), attn_mask=torch.ones(2, 1, 1, 4, dtype=torch.bool)), ValueError,
             r"attn_mask with shape \(2, 1, 1, 4\) does not broadcast to the scores' shape "
             r"\(B, H, Nq, Nk\) = \(2, 2, 3, 3\)"),
    "linear heads": (lambda: MultiHeadAttention(8, 0, attn_fn=linear_attention), ValueError,
                     r"num_heads must be an int >= 1"),
    "dropout": (lambda: MultiHeadAttention(8, 2, dropout=0.1, attn_fn=linear_attention),
                ValueError, r"dropout belongs to the default attn_fn"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_rejected_with_a_clear_message(case):
    assert_rejected(*CASES[case], case=case)
