"""Masks: builders against Python loops, converters against the libraries they translate from.

Convention under test: bool, True = may attend, broadcastable to (B, H, Nq, Nk).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import mha_from_torch, rand_mask, randn, randomize_
from tolerances import DEVICES, FLOAT_DTYPES, assert_close
from torch import nn

from attention_lib import functional as AF
from attention_lib import masks as M
from attention_lib.utils import import_d2l

LENGTHS = [[3, 0, 5, 1], [1], [4, 4], [0, 0, 2]]


# --------------------------------------------------------------------------- padding
@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
@pytest.mark.parametrize("extra", [None, 0, 3])
@pytest.mark.parametrize("int_dtype", [torch.int64, torch.int32, torch.uint8], ids=str)
def test_padding_mask_vs_loop(lengths, extra, int_dtype):
    max_len = None if extra is None else max(lengths) + extra
    n = max(lengths) if max_len is None else max_len
    m = M.padding_mask(torch.tensor(lengths, dtype=int_dtype), max_len)
    expected = torch.tensor([[i < L for i in range(n)] for L in lengths], dtype=torch.bool)
    assert m.dtype == torch.bool and m.shape == (len(lengths), n)
    assert torch.equal(m, expected)


@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_key_mask_shape_and_values(lengths):
    kpm = M.key_mask(torch.tensor(lengths), max(lengths) + 1)
    assert kpm.shape == (len(lengths), 1, 1, max(lengths) + 1)
    for b, L in enumerate(lengths):
        assert kpm[b, 0, 0].tolist() == [j < L for j in range(max(lengths) + 1)]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("fn", [AF.reference_attention, AF.attention])
def test_key_mask_equals_truncating_the_keys(dtype, fn, gen):
    """Hiding keys >= L is the same as computing attention on the first L keys alone."""
    lengths = [3, 6, 1]
    b, h, nq, nk, d = 3, 2, 4, 6, 5
    q, k, v = (randn(b, h, n, d, gen=gen, dtype=dtype) for n in (nq, nk, nk))
    out = fn(q, k, v, M.key_mask(torch.tensor(lengths), nk))
    for i, L in enumerate(lengths):
        alone = F.scaled_dot_product_attention(q[i:i + 1], k[i:i + 1, :, :L], v[i:i + 1, :, :L])
        assert_close(out[i:i + 1], alone)


@pytest.mark.parametrize("device", DEVICES)
def test_masks_follow_lengths_device(device):
    lengths = torch.tensor([2, 3], device=device)
    assert M.padding_mask(lengths).device == lengths.device
    assert M.key_mask(lengths).device == lengths.device
    assert M.causal_mask(3, device=device).device.type == device


def test_padding_mask_does_not_mutate_lengths():
    lengths = torch.tensor([3, 1, 2])
    M.padding_mask(lengths, 5)
    assert lengths.tolist() == [3, 1, 2]


# --------------------------------------------------------------------------- causal
@pytest.mark.parametrize("nq,nk", [(1, 1), (4, 4), (3, 6), (6, 3), (1, 5), (5, 1)])
def test_causal_mask_vs_loop(nq, nk):
    expected = torch.tensor([[j <= i for j in range(nk)] for i in range(nq)])
    assert torch.equal(M.causal_mask(nq, nk), expected)
    if nq == nk:
        assert torch.equal(M.causal_mask(nq), expected)


@pytest.mark.parametrize("nq,nk", [(4, 4), (3, 6), (6, 3), (1, 5)])
def test_causal_mask_is_sdpa_is_causal(nq, nk, gen):
    """Same alignment (top-left) as SDPA's is_causal=True, also when Nq != Nk."""
    q, k, v = randn(2, 2, nq, 4, gen=gen), randn(2, 2, nk, 4, gen=gen), randn(2, 2, nk, 3, gen=gen)
    assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=M.causal_mask(nq, nk)),
                 F.scaled_dot_product_attention(q, k, v, is_causal=True))


# --------------------------------------------------------------------------- combine
def test_combine_masks_is_broadcast_and(gen):
    a = torch.rand(2, 1, 1, 5, generator=gen) < 0.6
    b = torch.rand(4, 5, generator=gen) < 0.6
    c = torch.rand(1, 3, 4, 1, generator=gen) < 0.8
    out = M.combine_masks(a, None, b, c)
    assert out.shape == (2, 3, 4, 5)
    for i0 in range(2):
        for i1 in range(3):
            for i2 in range(4):
                for i3 in range(5):
                    want = bool(a[i0, 0, 0, i3]) and bool(b[i2, i3]) and bool(c[0, i1, i2, 0])
                    assert bool(out[i0, i1, i2, i3]) == want


def test_combine_masks_none_and_single():
    assert M.combine_masks() is None
    assert M.combine_masks(None, None) is None
    m = torch.tensor([True, False])
    assert torch.equal(M.combine_masks(None, m), m)


def test_combine_masks_does_not_mutate(gen):
    a, b = torch.rand(3, 4, generator=gen) < 0.5, torch.rand(3, 4, generator=gen) < 0.5
    a0, b0 = a.clone(), b.clone()
    M.combine_masks(a, b)
    assert torch.equal(a, a0) and torch.equal(b, b0)


# --------------------------------------------------------------------------- bias
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=str)
def test_mask_to_bias_values(dtype):
    mask = torch.tensor([[True, False, True], [False, False, True]])
    bias = M.mask_to_bias(mask, dtype)
    assert bias.dtype == dtype and bias.shape == mask.shape
    inf = float("-inf")
    assert bias.tolist() == [[0.0, inf, 0.0], [inf, inf, 0.0]]


@pytest.mark.parametrize("fn", [AF.reference_attention, AF.attention])
def test_mask_to_bias_is_equivalent_to_the_mask(fn, gen):
    q, k, v = randn(2, 2, 4, 3, gen=gen), randn(2, 2, 5, 3, gen=gen), randn(2, 2, 5, 2, gen=gen)
    mask = rand_mask((2, 1, 4, 5), gen)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(fn(q, k, v, bias=M.mask_to_bias(mask, torch.float64)), expected)
    assert_close(F.scaled_dot_product_attention(
        q, k, v, attn_mask=M.mask_to_bias(mask, torch.float64)), expected)


# --------------------------------------------------------------------------- torch polarity
def test_from_torch_key_padding_mask_flips_polarity():
    kpm = torch.tensor([[False, False, True], [False, True, True]])  # torch: True = padding
    ours = M.from_torch_key_padding_mask(kpm)
    assert ours.shape == (2, 1, 1, 3)
    assert ours[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("self_attention", [True, False])
def test_from_torch_key_padding_mask_with_mha_matches_torch(dtype, self_attention, gen):
    """The polarity trap: torch's True = *padding*; ours True = *may attend*."""
    e, h, b, nq, nk = 12, 3, 3, 4, 6
    ref = randomize_(nn.MultiheadAttention(e, h, batch_first=True), gen).to(dtype).eval()
    ours = mha_from_torch(ref)
    x = randn(b, nq, e, gen=gen, dtype=dtype)
    kv = x if self_attention else randn(b, nk, e, gen=gen, dtype=dtype)
    lengths = torch.tensor([kv.shape[1], 2, 1])
    torch_kpm = torch.arange(kv.shape[1]) >= lengths[:, None]  # True = padding
    expected, w_ref = ref(x, kv, kv, key_padding_mask=torch_kpm, average_attn_weights=False)
    out, w = ours(x, kv, kv, M.from_torch_key_padding_mask(torch_kpm), return_weights=True)
    assert_close(out, expected)
    assert_close(w, w_ref)
    # Passing torch's mask unconverted attends to the padding instead: every example differs.
    wrong = ours(x, kv, kv, torch_kpm[:, None, None, :])
    for i in range(b):
        assert not torch.allclose(wrong[i], expected[i])


# --------------------------------------------------------------------------- d2l valid_lens
@pytest.fixture(scope="module")
def d2l():
    return import_d2l()


@pytest.mark.parametrize("per_query", [False, True])
def test_from_valid_lens_agrees_with_d2l_masked_softmax(d2l, per_query, gen):
    b, nq, nk = 3, 4, 6
    x = randn(b, nq, nk, gen=gen, dtype=torch.float32) * 2
    if per_query:
        valid = torch.tensor([[1, 2, 6, 3], [4, 4, 1, 5], [6, 6, 6, 2]])
    else:
        valid = torch.tensor([2, 6, 1])
    mask = M.from_valid_lens(valid, nq, nk)
    assert mask.shape == (b, 1, nq, nk)
    ours = AF.masked_softmax(x, mask[:, 0])
    theirs = d2l.masked_softmax(x.clone(), valid)  # d2l writes -1e6 into its argument
    assert_close(ours, theirs)
    # and the mask itself, by a loop
    vq = valid if per_query else valid[:, None].expand(b, nq)
    for i in range(b):
        for r in range(nq):
            assert mask[i, 0, r].tolist() == [j < int(vq[i, r]) for j in range(nk)]


def test_from_valid_lens_zero_length_gives_zeros_where_d2l_gives_uniform(d2l, gen):
    """d2l masks with -1e6, so an empty row comes out uniform; the library returns zeros."""
    x = randn(2, 3, 4, gen=gen, dtype=torch.float32)
    valid = torch.tensor([0, 2])
    ours = AF.masked_softmax(x, M.from_valid_lens(valid, 3, 4)[:, 0])
    theirs = d2l.masked_softmax(x.clone(), valid)
    assert (ours[0] == 0).all()
    assert_close(theirs[0], torch.full((3, 4), 0.25))
    assert_close(ours[1], theirs[1])


# --------------------------------------------------------------------------- offsets, keys
@pytest.mark.parametrize("nq,nk", [(1, 5), (3, 7), (4, 4)])
def test_causal_mask_offset_is_the_kv_cache_rows(nq, nk):
    """New queries after a cache of nk - nq positions: the last nq rows of the square mask."""
    assert torch.equal(M.causal_mask(nq, nk, offset=nk - nq), M.causal_mask(nk)[nk - nq:])
    expected = torch.tensor([[j <= i - 1 for j in range(nk)] for i in range(nq)])
    assert torch.equal(M.causal_mask(nq, nk, offset=-1), expected)
    assert torch.equal(M.causal_mask(nq, nk), M.create_mask(M.causal_mod, nq, nk))


def test_per_key_mask_accepts_key_masks_and_refuses_query_masks():
    q, k = torch.zeros(2, 3, 4, 8), torch.zeros(2, 3, 6, 8)
    km = M.key_mask(torch.tensor([6, 2]))  # (B, 1, 1, Nk)
    assert torch.equal(M.per_key_mask(km, q, k), km[:, :, 0])  # (B, 1, Nk)
    assert M.per_key_mask(None, q, k) is None
    assert M.per_key_mask(torch.ones(6, dtype=torch.bool), q, k).shape == (1, 1, 6)
    with pytest.raises(ValueError, match=r"attn_mask must hide whole keys, shape \(B, H, 1, "
                                         r"Nk\) = \(2, 3, 1, 6\) or broadcastable, got "
                                         r"\(4, 6\).*is_causal=True.*exact family"):
        M.per_key_mask(M.causal_mask(4, 6), q, k)
