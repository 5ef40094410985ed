"""Sparse patterns: the masks (in ``attention_lib.masks``) against their definitions, the blocked code against the reference.

* every mask builder against the pattern's definition written as a Python loop over (i, j),
  and every ``mask_mod`` against ``torch.nn.attention.flex_attention.create_mask``;
* every blocked implementation against ``reference_attention`` with the dense mask of the same
  pattern, causal and not, N not a multiple of the block size, odd head dims (hypothesis);
* memory: the blocked implementations never allocate an (N, N) tensor, and their peak grows
  linearly in N (``attention_lib.efficient.memory.peak_memory``).
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import randn
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DEVICES, FLOAT_DTYPES, assert_close

from attention_lib import masks, reference_attention
from attention_lib.efficient import sparse
from attention_lib.efficient.memory import peak_memory


def _qkv(n, d, dv, gen, dtype=torch.float64, device="cpu", b=2, h=2):
    return (randn(b, h, n, d, gen=gen, dtype=dtype, device=device),
            randn(b, h, n, d, gen=gen, dtype=dtype, device=device),
            randn(b, h, n, dv, gen=gen, dtype=dtype, device=device))


def _loop_mask(n, allowed):
    return torch.tensor([[bool(allowed(i, j)) for j in range(n)] for i in range(n)])


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("is_causal", [False, True])
def test_masks_match_their_definitions(is_causal):
    n = 23
    c = (lambda i, j: j <= i) if is_causal else (lambda i, j: True)
    w, dil = 3, 4
    glob = {0, 7, 22}
    checks = {
        "sliding": (masks.sliding_window_mask(n, w, is_causal=is_causal),
                    lambda i, j: abs(i - j) <= w and c(i, j)),
        "dilated": (masks.dilated_window_mask(n, w, dil, is_causal=is_causal),
                    lambda i, j: any(j == i + t * dil for t in range(-w, w + 1)) and c(i, j)),
        "longformer": (masks.longformer_mask(n, 2, torch.tensor(sorted(glob)),
                                              is_causal=is_causal),
                       lambda i, j: (abs(i - j) <= 2 or i in glob or j in glob) and c(i, j)),
    }
    for name, (mask, allowed) in checks.items():
        assert mask.dtype == torch.bool and mask.shape == (n, n)
        assert torch.equal(mask, _loop_mask(n, allowed)), name


def test_bigbird_mask_matches_its_definition():
    n, bs, ng, wb = 30, 4, 1, 1
    nb = math.ceil(n / bs)
    rb = masks.random_blocks(nb, 2, num_global_blocks=ng, window_blocks=wb,
                              generator=torch.Generator().manual_seed(3))
    rand = {(a, int(c)) for a in range(nb) for c in rb[a] if c >= 0}

    def allowed(i, j):
        a, c = i // bs, j // bs
        return abs(a - c) <= wb or a < ng or c < ng or (a, c) in rand
    assert torch.equal(masks.bigbird_mask(n, bs, rb, num_global_blocks=ng), _loop_mask(n, allowed))


@pytest.mark.parametrize("is_causal", [False, True])
@given(nb=st.integers(1, 20), r=st.integers(0, 5), wb=st.integers(0, 2), ng=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_random_blocks_are_new_distinct_and_as_many_as_possible(is_causal, nb, r, wb, ng, seed):
    rb = masks.random_blocks(nb, r, window_blocks=wb, num_global_blocks=ng, is_causal=is_causal,
                              generator=torch.Generator().manual_seed(seed))
    assert rb.shape == (nb, r) and rb.dtype == torch.long
    for b in range(nb):
        chosen = [int(c) for c in rb[b] if c >= 0]
        candidates = [c for c in range(nb) if abs(b - c) > wb and c >= ng and b >= ng
                      and (c < b or not is_causal)]
        assert len(set(chosen)) == len(chosen)  # distinct
        assert set(chosen) <= set(candidates)  # not already covered by window/global
        assert len(chosen) == min(r, len(candidates))


def test_random_blocks_follow_the_generator():
    a = masks.random_blocks(16, 3, generator=torch.Generator().manual_seed(1))
    b = masks.random_blocks(16, 3, generator=torch.Generator().manual_seed(1))
    c = masks.random_blocks(16, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mask_mods_agree_with_flex_attention_create_mask():
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    n = 21
    layout = masks.bigbird_layout(6, masks.random_blocks(
        6, 2, generator=torch.Generator().manual_seed(0)))
    mods = [masks.causal_mod, masks.sliding_window_mod(3), masks.dilated_window_mod(2, 3),
            masks.global_tokens_mod(torch.tensor([0, 5])), masks.block_layout_mod(layout, 4),
            masks.and_masks(masks.sliding_window_mod(4), masks.causal_mod),
            masks.or_masks(masks.sliding_window_mod(1), masks.global_tokens_mod(2))]
    for mod in mods:
        theirs = flex.create_mask(mod, None, None, n, n, device="cpu")[0, 0]
        assert torch.equal(masks.create_mask(mod, n), theirs)


# --------------------------------------------------------------------------- blocked == masked
def _check(out, q, k, v, mask):
    assert_close(out, reference_attention(q, k, v, mask))


@given(n=st.integers(1, 70), window=st.integers(0, 20), block=st.one_of(st.none(),
       st.integers(1, 24)), d=st.integers(1, 9), is_causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_sliding_window_equals_masked_reference(n, window, block, d, is_causal, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _qkv(n, d, 3, gen)
    out = sparse.sliding_window_attention(q, k, v, window, is_causal=is_causal,
                                          block_size=block)
    _check(out, q, k, v, masks.sliding_window_mask(n, window, is_causal=is_causal))


@given(n=st.integers(1, 70), window=st.integers(0, 8), dilation=st.integers(1, 6),
       block=st.one_of(st.none(), st.integers(1, 10)), d=st.integers(1, 7),
       is_causal=st.booleans(), seed=st.integers(0, 2**16))
def test_dilated_window_equals_masked_reference(n, window, dilation, block, d, is_causal, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _qkv(n, d, 2, gen)
    out = sparse.dilated_window_attention(q, k, v, window, dilation, is_causal=is_causal,
                                          block_size=block)
    _check(out, q, k, v, masks.dilated_window_mask(n, window, dilation, is_causal=is_causal))


@given(n=st.integers(1, 70), window=st.integers(0, 10), block=st.one_of(st.none(),
       st.integers(1, 16)), globals_=st.one_of(st.integers(0, 5), st.lists(
           st.integers(0, 69), min_size=1, max_size=6)), d=st.integers(1, 7),
       is_causal=st.booleans(), seed=st.integers(0, 2**16))
def test_longformer_equals_masked_reference(n, window, block, globals_, d, is_causal, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _qkv(n, d, 4, gen)
    g = globals_ if isinstance(globals_, int) else torch.tensor([x % n for x in globals_])
    out = sparse.longformer_attention(q, k, v, window, g, is_causal=is_causal, block_size=block)
    _check(out, q, k, v, masks.longformer_mask(n, window, g, is_causal=is_causal))


@given(n=st.integers(1, 70), bs=st.integers(1, 12), r=st.integers(0, 3), wb=st.integers(0, 2),
       ng=st.integers(0, 2), d=st.integers(1, 7), is_causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_bigbird_equals_masked_reference(n, bs, r, wb, ng, d, is_causal, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _qkv(n, d, 3, gen)
    rb = masks.random_blocks(math.ceil(n / bs), r, window_blocks=wb, num_global_blocks=ng,
                              is_causal=is_causal, generator=gen)
    kw = dict(window_blocks=wb, num_global_blocks=ng, is_causal=is_causal)
    out = sparse.bigbird_attention(q, k, v, bs, rb, **kw)
    _check(out, q, k, v, masks.bigbird_mask(n, bs, rb, **kw))


@given(n=st.integers(1, 50), bs=st.integers(1, 12), p=st.floats(0.0, 1.0),
       is_causal=st.booleans(), seed=st.integers(0, 2**16))
def test_block_sparse_equals_masked_reference(n, bs, p, is_causal, seed):
    """Any layout, including rows with no block at all (those give zeros)."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _qkv(n, 5, 3, gen)
    nb = math.ceil(n / bs)
    layout = torch.rand(nb, nb, generator=gen) < p
    out = sparse.block_sparse_attention(q, k, v, layout, bs, is_causal=is_causal)
    mask = masks.create_mask(masks.block_layout_mod(layout, bs), n)
    assert_close(out, reference_attention(q, k, v, mask, is_causal=is_causal))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("chunk", [None, 1, 700], ids=["one-chunk", "block-by-block", "chunks"])
def test_every_pattern_on_each_dtype_and_device(device, dtype, is_causal, chunk, gen,
                                                monkeypatch):
    if chunk is not None:  # process the query blocks in several chunks
        monkeypatch.setattr(sparse, "CHUNK_ELEMENTS", chunk)
    n, d = 77, 13  # N not a multiple of any block size below, odd head dim
    q, k, v = _qkv(n, d, 6, gen, dtype=dtype, device=device)
    rb = masks.random_blocks(math.ceil(n / 8), 2, is_causal=is_causal, generator=gen)
    cases = [
        (sparse.sliding_window_attention(q, k, v, 5, is_causal=is_causal, block_size=4),
         masks.sliding_window_mask(n, 5, is_causal=is_causal, device=device)),
        (sparse.dilated_window_attention(q, k, v, 3, 4, is_causal=is_causal),
         masks.dilated_window_mask(n, 3, 4, is_causal=is_causal, device=device)),
        (sparse.longformer_attention(q, k, v, 4, torch.tensor([0, 40, 76]),
                                     is_causal=is_causal),
         masks.longformer_mask(n, 4, torch.tensor([0, 40, 76]), is_causal=is_causal,
                                device=device)),
        (sparse.bigbird_attention(q, k, v, 8, rb, is_causal=is_causal),
         masks.bigbird_mask(n, 8, rb.to(device), is_causal=is_causal)),
    ]
    for out, mask in cases:
        assert out.dtype == dtype and out.device == q.device
        _check(out, q, k, v, mask)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_within_its_tolerance(dtype, gen):
    q, k, v = _qkv(50, 16, 16, gen, dtype=dtype)
    out = sparse.sliding_window_attention(q, k, v, 6, block_size=8)
    assert out.dtype == dtype
    _check(out, q, k, v, masks.sliding_window_mask(50, 6))


def test_gradients_match_the_masked_reference(gen):
    n = 29
    q, k, v = _qkv(n, 5, 4, gen)
    upstream = randn(2, 2, n, 4, gen=gen)
    mask = masks.longformer_mask(n, 3, 2, is_causal=True)
    grads = []
    for fn in (lambda a, b, c: sparse.longformer_attention(a, b, c, 3, 2, is_causal=True,
                                                           block_size=4),
               lambda a, b, c: reference_attention(a, b, c, mask)):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        (fn(*leaves) * upstream).sum().backward()
        grads.append([t.grad for t in leaves])
    for g, r in zip(*grads):
        assert_close(g, r)


def test_scale_argument(gen):
    q, k, v = _qkv(20, 4, 4, gen)
    _check_scaled = reference_attention(q, k, v, masks.sliding_window_mask(20, 3), scale=0.7)
    assert_close(sparse.sliding_window_attention(q, k, v, 3, scale=0.7), _check_scaled)


# --------------------------------------------------------------------------- memory
PATTERNS = {
    "sliding_window": lambda q, k, v: sparse.sliding_window_attention(q, k, v, 64),
    "sliding_window causal": lambda q, k, v: sparse.sliding_window_attention(q, k, v, 64,
                                                                             is_causal=True),
    "dilated_window": lambda q, k, v: sparse.dilated_window_attention(q, k, v, 32, 4),
    "longformer": lambda q, k, v: sparse.longformer_attention(q, k, v, 64, 8),
    "bigbird": lambda q, k, v: sparse.bigbird_attention(
        q, k, v, 32, masks.random_blocks(q.shape[-2] // 32, 2,
                                          generator=torch.Generator().manual_seed(0))),
}


@pytest.mark.parametrize("name", list(PATTERNS))
def test_blocked_never_allocates_n_by_n(name):
    n, d = 4096, 16
    q, k, v = (torch.randn(1, 1, n, d) for _ in range(3))
    stats = peak_memory(PATTERNS[name], q, k, v)
    nn_bytes = n * n * 4  # one float32 (N, N) matrix: 64 MiB
    assert stats.largest_bytes < nn_bytes / 16, f"largest tensor {stats.largest_bytes} bytes"
    assert stats.peak_bytes < nn_bytes / 4, f"peak {stats.peak_bytes} bytes"


@pytest.mark.parametrize("name", list(PATTERNS))
def test_blocked_peak_memory_grows_linearly(name):
    peaks = []
    for n in (1024, 4096):
        q, k, v = (torch.randn(1, 1, n, 8) for _ in range(3))
        peaks.append(peak_memory(PATTERNS[name], q, k, v).peak_bytes)
    exponent = math.log(peaks[1] / peaks[0]) / math.log(4)
    assert exponent < 1.1, f"peak memory grows like N^{exponent:.2f}: {peaks}"


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_rejected_with_a_clear_message(gen):
    q, k, v = _qkv(8, 4, 4, gen)
    with pytest.raises(ValueError, match="self-attention"):
        sparse.sliding_window_attention(q, k[..., :6, :], v[..., :6, :], 2)
    with pytest.raises(ValueError, match="window"):
        sparse.sliding_window_attention(q, k, v, -1)
    with pytest.raises(ValueError, match="dilation"):
        sparse.dilated_window_attention(q, k, v, 2, 0)
    with pytest.raises(ValueError, match="block_size"):
        sparse.sliding_window_attention(q, k, v, 2, block_size=0)
    with pytest.raises(ValueError, match="global_idx"):
        sparse.longformer_attention(q, k, v, 2, torch.tensor([0, 8]))
    with pytest.raises(TypeError, match="global_idx"):
        sparse.longformer_attention(q, k, v, 2, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="rand_blocks"):
        sparse.bigbird_attention(q, k, v, 4, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="layout"):
        sparse.block_sparse_attention(q, k, v, torch.ones(3, 3, dtype=torch.bool), 4)
    with pytest.raises(TypeError, match="query"):
        sparse.sliding_window_attention(q.long(), k, v, 2)
