"""Tiled FlashAttention and the online softmax against independent references.

* ``flash_attention`` against ``reference_attention`` (values) and against the reference's
  autograd (gradients), over shapes, tile sizes, causal and bool masks (hypothesis);
* its log-sum-exp against ``torch.logsumexp`` of the masked scores;
* ``online_softmax`` against ``torch.softmax`` / ``torch.max`` / ``torch.logsumexp``;
* memory: no (N, N) tensor is ever allocated, and the peak grows linearly in N
  (``attention_lib.efficient.memory.peak_memory``, itself checked on the naive computation).
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import rand_mask, randn
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DEVICES, FLOAT_DTYPES, assert_close

from attention_lib import reference_attention
from attention_lib.efficient import flash
from attention_lib.efficient.flash import flash_attention, flash_attention_lse, online_softmax
from attention_lib.efficient.memory import peak_memory

MASK_SHAPES = {None: None, "(Nq, Nk)": lambda b, h, nq, nk: (nq, nk),
               "(B, 1, 1, Nk)": lambda b, h, nq, nk: (b, 1, 1, nk),
               "(B, H, Nq, Nk)": lambda b, h, nq, nk: (b, h, nq, nk),
               "(1, 1, Nq, 1)": lambda b, h, nq, nk: (1, 1, nq, 1)}


def _inputs(b, h, nq, nk, d, dv, gen, dtype=torch.float64, device="cpu"):
    return (randn(b, h, nq, d, gen=gen, dtype=dtype, device=device),
            randn(b, h, nk, d, gen=gen, dtype=dtype, device=device),
            randn(b, h, nk, dv, gen=gen, dtype=dtype, device=device))


def _grads(fn, q, k, v, upstream, **kw):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = fn(*leaves, **kw)
    (out * upstream).sum().backward()
    return out.detach(), [t.grad for t in leaves]


# --------------------------------------------------------------------------- forward values
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("mask_kind", list(MASK_SHAPES), ids=str)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape,blocks", [
    ((2, 3, 37, 37, 8, 8), (8, 5)),     # N not a multiple of either block
    ((1, 2, 20, 33, 7, 5), (7, 16)),    # Nq < Nk, odd head dim, Dv != D
    ((2, 1, 33, 20, 13, 4), (64, 3)),   # Nq > Nk, one query block
    ((1, 1, 1, 1, 3, 3), (1, 1)),       # N = 1
    ((1, 2, 64, 64, 16, 16), (16, 16)),  # exact multiples
], ids=["N37", "Nq<Nk", "Nq>Nk", "N1", "multiple"])
def test_matches_reference(device, dtype, mask_kind, is_causal, shape, blocks, gen):
    b, h, nq, nk, d, dv = shape
    q, k, v = _inputs(*shape, gen, dtype, device)
    mask = None
    if mask_kind is not None:
        mask = rand_mask(MASK_SHAPES[mask_kind](b, h, nq, nk), gen, p=0.4, device=device)
    out = flash_attention(q, k, v, mask, is_causal=is_causal, block_q=blocks[0],
                          block_k=blocks[1])
    assert_close(out, reference_attention(q, k, v, mask, is_causal=is_causal))


@given(b=st.integers(1, 2), h=st.integers(1, 3), nq=st.integers(1, 40), nk=st.integers(1, 40),
       d=st.integers(1, 9), dv=st.integers(1, 6), block_q=st.integers(1, 48),
       block_k=st.integers(1, 48), is_causal=st.booleans(), masked=st.booleans(),
       seed=st.integers(0, 2**16))
def test_matches_reference_any_shape_and_tiles(b, h, nq, nk, d, dv, block_q, block_k,
                                               is_causal, masked, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _inputs(b, h, nq, nk, d, dv, gen)
    # No keep_first: some rows may be entirely masked, and must come out as zeros.
    mask = rand_mask((b, 1, nq, nk), gen, p=0.5, keep_first=False) if masked else None
    out, lse = flash_attention_lse(q, k, v, mask, is_causal=is_causal, block_q=block_q,
                                   block_k=block_k)
    assert_close(out, reference_attention(q, k, v, mask, is_causal=is_causal))
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)
    keep = torch.ones(nq, nk, dtype=torch.bool)
    if is_causal:
        keep = keep.tril()
    if mask is not None:
        keep = keep & mask
    expected_lse = torch.logsumexp(scores.masked_fill(~keep, float("-inf")), dim=-1)
    assert torch.equal(torch.isneginf(lse), torch.isneginf(expected_lse))
    finite = torch.isfinite(expected_lse)
    torch.testing.assert_close(lse[finite], expected_lse[finite], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("is_causal", [False, True])
def test_half_precision_within_its_tolerance(dtype, is_causal, gen):
    q, k, v = _inputs(2, 2, 45, 45, 16, 16, gen, dtype=dtype)
    out = flash_attention(q, k, v, is_causal=is_causal, block_q=16, block_k=8)
    assert out.dtype == dtype
    assert_close(out, reference_attention(q, k, v, is_causal=is_causal))  # both upcast


def test_fully_masked_rows_are_zero_with_zero_gradient(gen):
    q, k, v = _inputs(1, 2, 9, 7, 4, 3, gen)
    mask = torch.ones(9, 7, dtype=torch.bool)
    mask[[0, 4, 8]] = False  # three queries see nothing
    upstream = randn(1, 2, 9, 3, gen=gen)
    out, (dq, dk, dv) = _grads(flash_attention, q, k, v, upstream, attn_mask=mask, block_q=4,
                               block_k=3)
    assert (out[..., [0, 4, 8], :] == 0).all()
    assert all(torch.isfinite(g).all() for g in (dq, dk, dv))
    assert (dq[..., [0, 4, 8], :] == 0).all()
    ref_out, ref_grads = _grads(reference_attention, q, k, v, upstream, attn_mask=mask)
    assert_close(out, ref_out)
    for g, r in zip((dq, dk, dv), ref_grads):
        assert_close(g, r)


def test_scale_argument(gen):
    q, k, v = _inputs(1, 1, 10, 12, 5, 5, gen)
    assert_close(flash_attention(q, k, v, scale=0.3, block_q=3, block_k=4),
                 reference_attention(q, k, v, scale=0.3))


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_gradients_match_reference_autograd(device, is_causal, masked, gen):
    b, h, nq, nk, d, dv = 2, 2, 23, 19, 7, 5
    q, k, v = _inputs(b, h, nq, nk, d, dv, gen, device=device)
    mask = rand_mask((b, 1, nq, nk), gen, p=0.6, device=device) if masked else None
    upstream = randn(b, h, nq, dv, gen=gen, device=device)
    kw = dict(attn_mask=mask, is_causal=is_causal)
    out, grads = _grads(flash_attention, q, k, v, upstream, block_q=6, block_k=5, **kw)
    ref_out, ref_grads = _grads(reference_attention, q, k, v, upstream, **kw)
    assert_close(out, ref_out)
    for name, g, r in zip("qkv", grads, ref_grads):
        assert_close(g, r, msg=f"d{name}")


@given(nq=st.integers(1, 24), nk=st.integers(1, 24), block_q=st.integers(1, 30),
       block_k=st.integers(1, 30), is_causal=st.booleans(), seed=st.integers(0, 2**16))
def test_gradients_any_tiles(nq, nk, block_q, block_k, is_causal, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _inputs(1, 2, nq, nk, 3, 4, gen)
    upstream = randn(1, 2, nq, 4, gen=gen)
    _, grads = _grads(flash_attention, q, k, v, upstream, is_causal=is_causal,
                      block_q=block_q, block_k=block_k)
    _, ref_grads = _grads(reference_attention, q, k, v, upstream, is_causal=is_causal)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r)


def test_gradients_sum_over_broadcast_batch(gen):
    """key/value shared by the batch (B = 1): their gradients are summed, as autograd does."""
    q = randn(3, 2, 11, 4, gen=gen)
    k, v = randn(1, 2, 13, 4, gen=gen), randn(1, 2, 13, 4, gen=gen)
    upstream = randn(3, 2, 11, 4, gen=gen)
    out, grads = _grads(flash_attention, q, k, v, upstream, block_q=4, block_k=4)
    ref_out, ref_grads = _grads(reference_attention, q, k, v, upstream)
    assert_close(out, ref_out)
    for g, r in zip(grads, ref_grads):
        assert g.shape == r.shape
        assert_close(g, r)


def test_gradcheck():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (randn(1, 1, n, 3, gen=gen).requires_grad_() for n in (5, 6, 6))
    mask = torch.tensor([[1, 1, 0, 1, 0, 1]] * 5, dtype=torch.bool)
    assert torch.autograd.gradcheck(
        lambda a, b, c: flash_attention(a, b, c, mask, is_causal=True, block_q=2, block_k=4),
        (q, k, v))


def test_no_graph_without_grad(gen):
    q, k, v = _inputs(1, 1, 6, 6, 4, 4, gen)
    assert flash_attention(q, k, v).grad_fn is None
    q.requires_grad_()
    assert flash_attention(q, k, v).grad_fn is not None
    with torch.no_grad():
        assert flash_attention(q, k, v).grad_fn is None


# --------------------------------------------------------------------------- the tiles
@pytest.mark.parametrize("nq,nk,bq,bk", [(64, 64, 16, 16), (50, 30, 8, 7), (30, 50, 16, 5)])
def test_causal_never_visits_a_block_above_the_diagonal(nq, nk, bq, bk):
    visited = 0
    for q0, q1, tiles in flash._tiles(nq, nk, bq, bk, True, None, "cpu"):
        for k0, k1, keep in tiles:
            visited += 1
            assert k0 <= q1 - 1, f"key block {k0}:{k1} is entirely after queries {q0}:{q1}"
            if keep is not None:  # a diagonal tile: its mask is the causal one
                qi = torch.arange(q0, q1)[:, None]
                assert torch.equal(keep, torch.arange(k0, k1)[None, :] <= qi)
    all_tiles = math.ceil(nq / bq) * math.ceil(nk / bk)
    if nq == nk:  # about half of the tiles are skipped
        assert visited < 0.65 * all_tiles


def test_tiles_with_all_false_mask_are_skipped():
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., :8] = True  # only the first key block is ever allowed
    for _, _, tiles in flash._tiles(32, 32, 8, 8, False, mask, "cpu"):
        assert [t[0] for t in tiles] == [0]


@pytest.mark.parametrize("nq,nk,bq,bk", [(16, 16, 4, 4), (10, 7, 4, 3), (9, 20, 2, 6)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_tile_schedule_matches_the_dense_mask(nq, nk, bq, bk, is_causal, gen):
    mask = rand_mask((nq, nk), gen, p=0.8)
    mask[:, nk // 2:] = False  # whole key blocks hidden: their tiles are skipped
    keep = mask & torch.ones(nq, nk, dtype=torch.bool).tril() if is_causal else mask
    sched = flash.tile_schedule(nq, nk, bq, bk, is_causal=is_causal, attn_mask=mask)
    assert sched.shape == (math.ceil(nq / bq), math.ceil(nk / bk))
    for a in range(sched.shape[0]):
        for c in range(sched.shape[1]):
            tile = keep[a * bq:(a + 1) * bq, c * bk:(c + 1) * bk]
            expected = 0 if not tile.any() else (2 if tile.all() else 1)
            assert sched[a, c] == expected, (a, c)


# --------------------------------------------------------------------------- memory
def test_peak_memory_sees_the_naive_score_matrix():
    """The measuring tool itself can fail: the reference allocates (N, N) and it shows."""
    n, d = 512, 8
    q, k, v = (torch.randn(1, 1, n, d) for _ in range(3))
    stats = peak_memory(reference_attention, q, k, v)
    assert stats.largest_bytes >= n * n * 4
    assert stats.peak_bytes >= 2 * n * n * 4  # scores and weights alive together
    assert_close(stats.result, reference_attention(q, k, v))


def test_flash_never_allocates_n_by_n():
    n, d = 4096, 16
    gen = torch.Generator().manual_seed(0)
    q, k, v = (randn(1, 1, n, d, gen=gen, dtype=torch.float32) for _ in range(3))
    stats = peak_memory(flash_attention, q, k, v, is_causal=True, block_q=256, block_k=256)
    nn_bytes = n * n * 4  # one float32 (N, N) matrix: 64 MiB
    assert stats.largest_bytes <= 256 * 256 * 4  # one tile of scores at most
    # a few tiles alive at once (scores, probabilities) plus the output and the row state
    assert stats.peak_bytes < nn_bytes / 32, f"peak {stats.peak_bytes} bytes"


def test_flash_peak_memory_grows_linearly():
    peaks, ref_peaks = [], []
    for n in (512, 2048):
        q, k, v = (torch.randn(1, 1, n, 8) for _ in range(3))
        peaks.append(peak_memory(flash_attention, q, k, v, block_q=256, block_k=256).peak_bytes)
        ref_peaks.append(peak_memory(reference_attention, q, k, v).peak_bytes)
    exponent = math.log(peaks[1] / peaks[0]) / math.log(4)
    ref_exponent = math.log(ref_peaks[1] / ref_peaks[0]) / math.log(4)
    assert exponent < 1.1, f"peak memory grows like N^{exponent:.2f}: {peaks}"
    assert ref_exponent > 1.9, f"the reference's grows like N^{ref_exponent:.2f}"


# --------------------------------------------------------------------------- online softmax
@given(n=st.integers(1, 30), block=st.integers(1, 12), dv=st.integers(1, 4),
       seed=st.integers(0, 2**16), n_masked=st.integers(0, 30))
def test_online_softmax_matches_softmax(n, block, dv, seed, n_masked):
    gen = torch.Generator().manual_seed(seed)
    s = randn(3, n, gen=gen) * 5
    s[:, : min(n_masked, n - 1)] = float("-inf")  # a masked prefix; at least one finite
    v = randn(3, n, dv, gen=gen)
    state = online_softmax(s, v, block_size=block)
    torch.testing.assert_close(state.max, s.amax(-1))
    torch.testing.assert_close(state.max + state.sum.log(), torch.logsumexp(s, -1))
    torch.testing.assert_close(state.output, (torch.softmax(s, -1)[:, None, :] @ v)[:, 0])
    weights = torch.exp(s - state.max[:, None]) / state.sum[:, None]
    torch.testing.assert_close(weights, torch.softmax(s, -1))


def test_online_softmax_history_is_one_pass():
    s = torch.tensor([1.0, 3.0, 2.0, 5.0, 0.0], dtype=torch.float64)
    state, history = online_softmax(s, block_size=2, return_history=True)
    assert len(history) == 3  # ceil(5 / 2) blocks, each read once
    assert [h.max.item() for h in history] == [3.0, 5.0, 5.0]
    # after each block, the sum is the normaliser of the scores read so far
    for i, h in enumerate(history):
        seen = s[: 2 * (i + 1)]
        torch.testing.assert_close(h.sum, torch.exp(seen - seen.max()).sum())
    assert history[-1].output is None and state.output is None


def test_online_softmax_of_an_all_masked_stream_is_zero():
    s = torch.full((4,), float("-inf"))
    state = online_softmax(s, torch.ones(4, 2), block_size=3)
    assert state.max.item() == float("-inf") and state.sum.item() == 0
    assert (state.output == 0).all()


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_rejected_with_a_clear_message(gen):
    q, k, v = _inputs(1, 1, 4, 4, 2, 2, gen)
    with pytest.raises(ValueError, match="block_q"):
        flash_attention(q, k, v, block_q=0)
    with pytest.raises(ValueError, match="block_k"):
        flash_attention(q, k, v, block_k=2.5)
    with pytest.raises(TypeError, match="attn_mask"):
        flash_attention(q, k, v, torch.ones(4, 4))
    with pytest.raises(ValueError, match="attn_mask"):
        flash_attention(q, k, v, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="query"):
        flash_attention(q[0], k, v)
    with pytest.raises(ValueError, match="key and value"):
        flash_attention(q, k, v[..., :3, :])
    with pytest.raises(ValueError, match="block_size"):
        online_softmax(torch.zeros(3), block_size=0)
    with pytest.raises(ValueError, match="values"):
        online_softmax(torch.zeros(3), torch.zeros(4, 2))
