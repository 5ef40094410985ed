"""Fixed sparse attention patterns: the mask for the picture, and the blocked code that saves.

A sparse pattern lets each query attend to a few keys only: its neighbours (a sliding window),
every d-th neighbour (dilated), a few global tokens that see and are seen by everyone
(Longformer), a few random blocks (BigBird). Building the full (N, N) score matrix and
masking it computes the same numbers as full attention and saves nothing. Each pattern
comes in two forms:

* a **mask**, for pictures and tests, in :mod:`attention_lib.masks` with the library's other
  mask builders: each pattern is a ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (True = may
  attend), the vocabulary of ``torch.nn.attention.flex_attention``, and
  :func:`~attention_lib.masks.create_mask` evaluates one on a grid to give the dense
  (Nq, Nk) bool mask (:func:`~attention_lib.masks.sliding_window_mask`, ...);
* a **blocked implementation**, here, whose time and memory grow as O(N w) for w keys per query:
  the sequence is cut into blocks, each query block gathers only the key blocks its pattern
  can reach, and the exact token-level mask is applied inside those blocks. No (N, N) tensor
  is ever allocated. Each equals ``reference_attention(q, k, v, mask)`` with the dense mask of
  the same pattern.

All patterns are for self-attention: query i and key i are the same position (Nq = Nk = N).
Layout (B, H, N, D) as everywhere; rows with nothing to attend to give zeros.

References: Child et al. (2019), Sparse Transformers (strided/fixed patterns); Beltagy,
Peters & Cohan (2020), Longformer (sliding, dilated and global attention); Zaheer et al.
(2020), BigBird (window + global + random blocks).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

from .._validate import check_int, check_qkv, check_scale, check_tensor, shape_str
from ..functional import masked_softmax, work_dtype
from ..masks import (
    MaskMod,
    _global_positions,
    _with_causal,
    bigbird_layout,
    causal_mod,
    sliding_window_mod,
)

Tensor = torch.Tensor

__all__ = [
    # blocked implementations
    "block_sparse_attention", "sliding_window_attention", "dilated_window_attention",
    "longformer_attention", "bigbird_attention",
]


# --------------------------------------------------------------------------- argument checks
def _check_self_attention(query: Tensor, key: Tensor, value: Tensor, scale) -> None:
    check_qkv(query, key, value, self_attention="sparse attention")
    check_scale(scale)


# --------------------------------------------------------------------------- the engine
#: Scores computed at once by the blocked implementations (summed over batch and heads). Query
#: blocks are processed in chunks of about this many scores, so that the temporaries stay small
#: (8 MiB of float32 scores: reused by the allocator instead of being mapped fresh from the OS
#: at every call, which costs page faults) and memory stays O(N); the output is the same for
#: any value.
CHUNK_ELEMENTS = 2**21


def _gathered(q: Tensor, k: Tensor, v: Tensor, kv_blocks: Tensor, block_size: int,
              keep_fn: Optional[MaskMod], scale: float, n_valid: int,
              extra: Optional[tuple] = None, rel_keep: Optional[Tensor] = None) -> Tensor:
    """Blocked attention: each query block attends to the key blocks listed for it.

    q, k, v: (..., N, D/Dv) in the work dtype, N a multiple of ``block_size``.
    kv_blocks: (nb, S) long, the S key blocks of each of the nb query blocks (-1 = empty
        slot); no block may be listed twice in a row.
    keep_fn(b, h, q_idx, kv_idx): token-level pattern on absolute positions, broadcastable
        to (..., nb, bs, S * bs); keys at positions >= n_valid and empty slots are hidden.
    rel_keep: (bs, S * bs) bool, a pattern that is the same for every query block (a band
        around the diagonal: translation invariant); cheaper than evaluating it per block.
    extra: optional (k_x (..., G, D), v_x (..., G, Dv), keep_x bool broadcastable to
        (..., nb, bs, G)): G further keys that every query block may see (global tokens);
        they must not also be reachable through ``kv_blocks``.
    Returns (..., N, Dv). The query blocks are processed in chunks of about
    :data:`CHUNK_ELEMENTS` scores: the temporaries are (..., chunk, bs, S * bs + G) scores and
    the gathered (..., chunk, S * bs, D) keys, so time is O(N (S bs + G) D) and memory
    O(N D) plus one chunk -- never O(N^2) unless S bs ~ N.
    """
    *lead, n, d = q.shape
    bs = block_size
    nb, slots = kv_blocks.shape
    g = 0 if extra is None else extra[0].shape[-2]
    lead_numel = math.prod(lead) if lead else 1
    per_block = lead_numel * bs * (slots * bs + g)
    chunk = max(1, CHUNK_ELEMENTS // max(per_block, 1))
    qb = (q * scale).reshape(*lead, nb, bs, d)  # (..., nb, bs, D), scaled once here
    kb = k.reshape(*lead, nb, bs, d)  # (..., nb, bs, D)
    vb = v.reshape(*lead, nb, bs, v.shape[-1])  # (..., nb, bs, Dv)
    dev = q.device
    zero = torch.zeros((), dtype=torch.long, device=dev)
    outs = []
    for b0 in range(0, nb, chunk):
        b1 = min(b0 + chunk, nb)
        blocks = kv_blocks[b0:b1]  # (c, S)
        idx = blocks.clamp_min(0)
        kg = kb[..., idx, :, :].reshape(*lead, b1 - b0, slots * bs, d)  # (..., c, S*bs, D)
        vg = vb[..., idx, :, :].reshape(*lead, b1 - b0, slots * bs, v.shape[-1])
        kv_idx = (idx[:, :, None] * bs + torch.arange(bs, device=dev)).view(b1 - b0, 1, -1)
        slot_ok = (blocks >= 0)[:, :, None].expand(-1, slots, bs).reshape(b1 - b0, 1, -1)
        keep = slot_ok & (kv_idx < n_valid)  # (c, 1, S*bs)
        if keep_fn is not None:
            q_idx = torch.arange(b0 * bs, b1 * bs, device=dev).view(b1 - b0, bs, 1)
            keep = keep & keep_fn(zero, zero, q_idx, kv_idx)  # (..., c, 1 or bs, S*bs)
        if rel_keep is not None:
            keep = keep & rel_keep  # (..., c, bs, S*bs)
        qc = qb[..., b0:b1, :, :]  # (..., c, bs, D)
        s = qc @ kg.transpose(-2, -1)  # (..., c, bs, S*bs)
        if extra is not None:
            k_x, v_x, keep_x = extra
            if keep_x.shape[-3] != 1:
                keep_x = keep_x[..., b0:b1, :, :]
            s_x = qc @ k_x.unsqueeze(-3).transpose(-2, -1)  # (..., c, bs, G)
            s = torch.cat([s, s_x], dim=-1)  # (..., c, bs, S*bs + G)
            shape = torch.broadcast_shapes(keep.shape[:-2], keep_x.shape[:-2])
            rows = max(keep.shape[-2], keep_x.shape[-2])
            keep = torch.cat([keep.expand(*shape, rows, keep.shape[-1]),
                              keep_x.expand(*shape, rows, keep_x.shape[-1])], dim=-1)
        s = s.masked_fill_(~keep, float("-inf"))
        w = torch.softmax(s, dim=-1)  # fused: faster here than masked_softmax's safe max
        row_ok = keep.any(-1, keepdim=True)
        if not bool(row_ok.all()):  # a row with nothing to attend to: zeros, not NaN
            w = w.masked_fill_(~row_ok, 0.0)
        out = w[..., : slots * bs] @ vg  # (..., c, bs, Dv)
        if extra is not None:
            out = out + w[..., slots * bs:] @ v_x.unsqueeze(-3)
        outs.append(out)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-3)  # (..., nb, bs, Dv)
    return out.reshape(*lead, n, v.shape[-1])  # (..., N, Dv)


def _pad_to(x: Tensor, n: int) -> Tensor:
    """Zero-pad axis -2 of (..., N, D) up to n positions."""
    return x if x.shape[-2] == n else F.pad(x, (0, 0, 0, n - x.shape[-2]))


def _dense_rows(q: Tensor, k: Tensor, v: Tensor, rows: Tensor, keep: Optional[Tensor],
                scale: float) -> Tensor:
    """Full attention for a few query rows: q[..., rows, :] against all keys.

    rows: (G,) positions; keep: (G, N) bool or None. Returns (..., G, Dv); memory O(G N).
    """
    s = (q[..., rows, :] @ k.transpose(-2, -1)) * scale  # (..., G, N)
    return masked_softmax(s, keep) @ v  # (..., G, Dv)


def _prepare(query, key, value, scale):
    work = work_dtype(query.dtype)
    s = query.shape[-1] ** -0.5 if scale is None else float(scale)
    return query.to(work), key.to(work), value.to(work), s


# --------------------------------------------------------------------------- blocked
def block_sparse_attention(query: Tensor, key: Tensor, value: Tensor, layout: Tensor,
                           block_size: int, *, is_causal: bool = False,
                           scale: Optional[float] = None) -> Tensor:
    """Attention restricted to a block layout, computing only the listed blocks.

    query, key: (B, H, N, D)   value: (B, H, N, Dv)
    layout: (nb, nb) bool with nb = ceil(N / block_size): query block a may attend to key
        block c when ``layout[a, c]``; like flex_attention's ``BlockMask``.
    Each query block gathers its S listed key blocks (S = the largest row count), so time
    and memory are O(N S block_size). Returns (B, H, N, Dv), equal to
    ``reference_attention(q, k, v, create_mask(block_layout_mod(layout, block_size), N),
    is_causal=is_causal)``; rows with no allowed key are zeros.
    """
    _check_self_attention(query, key, value, scale)
    check_int("block_size", block_size, 1)
    n = query.shape[-2]
    nb = math.ceil(n / block_size)
    check_tensor("layout", layout, ndim=2, floating=False, layout="(nb, nb)")
    if layout.dtype != torch.bool or layout.shape != (nb, nb):
        raise ValueError(f"layout must be a bool (nb, nb) = ({nb}, {nb}) tensor for N = {n} "
                         f"and block_size = {block_size}, got {layout.dtype} "
                         f"{shape_str(layout)}")
    q, k, v, s = _prepare(query, key, value, scale)
    kv_blocks = _layout_to_blocks(layout.to(q.device))
    npad = nb * block_size
    out = _gathered(_pad_to(q, npad), _pad_to(k, npad), _pad_to(v, npad), kv_blocks,
                    block_size, causal_mod if is_causal else None, s, n)
    return out[..., :n, :].to(query.dtype)


def _layout_to_blocks(layout: Tensor) -> Tensor:
    """(nb, nbk) bool -> (nb, S) long: the allowed key blocks of each row, -1 padded."""
    counts = layout.sum(1)
    slots = max(int(counts.max()), 1)
    order = torch.sort(layout.to(torch.int8), dim=1, descending=True, stable=True).indices
    idx = order[:, :slots]
    empty = torch.arange(slots, device=layout.device)[None, :] >= counts[:, None]
    return idx.masked_fill(empty, -1)


def _band_blocks(nb: int, reach: int, is_causal: bool, device) -> Tensor:
    """(nb, S): key blocks b - reach .. b (+ reach unless causal), -1 outside [0, nb)."""
    offsets = torch.arange(-reach, 1 if is_causal else reach + 1, device=device)
    blocks = torch.arange(nb, device=device)[:, None] + offsets  # (nb, S)
    return blocks.masked_fill((blocks < 0) | (blocks >= nb), -1)


def _local(q, k, v, window: int, block_size: Optional[int], is_causal: bool, scale: float,
           n_valid: int, keep_fn: Optional[MaskMod] = None, extra=None) -> Tensor:
    """Sliding-window attention on (..., N, D) work tensors; keys >= n_valid hidden."""
    n = q.shape[-2]
    bs = max(1, min(window, n)) if block_size is None else min(block_size, n)
    nb = math.ceil(n / bs)
    reach = math.ceil(window / bs)  # neighbouring blocks needed on each side
    kv_blocks = _band_blocks(nb, reach, is_causal, q.device)
    # The band depends only on i - j, so it is the same in every block: evaluate the mask_mod
    # once on block 0's relative positions, (bs, S*bs), instead of on all N queries.
    offsets = torch.arange(-reach, 1 if is_causal else reach + 1, device=q.device)
    q_rel = torch.arange(bs, device=q.device)[:, None]  # (bs, 1)
    kv_rel = (offsets[:, None] * bs + torch.arange(bs, device=q.device)).view(1, -1)
    zero = torch.zeros((), dtype=torch.long, device=q.device)
    rel_keep = _with_causal(sliding_window_mod(window), is_causal)(zero, zero, q_rel, kv_rel)
    npad = nb * bs
    if extra is not None:  # keep_x: (N, G) rows by query position -> (nb, bs, G) blocks
        k_x, v_x, keep_x = extra
        keep_x = F.pad(keep_x, (0, 0, 0, npad - keep_x.shape[-2]))  # padded queries: False
        extra = (k_x, v_x, keep_x.view(*keep_x.shape[:-2], nb, bs, keep_x.shape[-1]))
    out = _gathered(_pad_to(q, npad), _pad_to(k, npad), _pad_to(v, npad), kv_blocks, bs,
                    keep_fn, scale, n_valid, extra, rel_keep=rel_keep)
    return out[..., :n, :]


def sliding_window_attention(query: Tensor, key: Tensor, value: Tensor, window: int, *,
                             is_causal: bool = False, scale: Optional[float] = None,
                             block_size: Optional[int] = None) -> Tensor:
    """Local attention: query i attends to keys j with |i - j| <= window, in O(N window).

    query, key: (B, H, N, D)   value: (B, H, N, Dv).   is_causal: also j <= i.
    block_size: the sequence is cut into blocks of this size (default: ``window``); query
        block b gathers key blocks b - r .. b + r with r = ceil(window / block_size) (only
        b - r .. b when causal), and the exact band |i - j| <= window is masked inside them.
        Scores are (B, H, N, (2r + 1) block_size): O(N window) time and memory.
    Returns (B, H, N, Dv), equal to ``reference_attention(q, k, v,
    sliding_window_mask(N, window), is_causal=is_causal)``. N need not be a multiple of the
    block size (the tail is padded and the padding hidden).

    Beltagy, Peters & Cohan (2020), Longformer, section 3.1 (sliding window); the blocked
    computation is that of Zaheer et al. (2020), BigBird, appendix D.
    """
    _check_self_attention(query, key, value, scale)
    check_int("window", window, 0)
    if block_size is not None:
        check_int("block_size", block_size, 1)
    q, k, v, s = _prepare(query, key, value, scale)
    return _local(q, k, v, window, block_size, is_causal, s, q.shape[-2]).to(query.dtype)


def dilated_window_attention(query: Tensor, key: Tensor, value: Tensor, window: int,
                             dilation: int, *, is_causal: bool = False,
                             scale: Optional[float] = None,
                             block_size: Optional[int] = None) -> Tensor:
    """Dilated sliding window: query i attends to keys i + t * dilation, |t| <= window.

    query, key: (B, H, N, D)   value: (B, H, N, Dv).   is_causal: also j <= i.
    The keys of query i all have the same residue i mod dilation, so the sequence is split
    into ``dilation`` interleaved subsequences (a reshape and a transpose) and each runs
    :func:`sliding_window_attention` with the same ``window``: O(N window) time and memory,
    whatever the dilation. Returns (B, H, N, Dv), equal to ``reference_attention`` with
    :func:`dilated_window_mask`.

    Beltagy, Peters & Cohan (2020), Longformer, section 3.1; with window >= N / dilation, the
    strided pattern of Child et al. (2019).
    """
    _check_self_attention(query, key, value, scale)
    check_int("window", window, 0)
    check_int("dilation", dilation, 1)
    if block_size is not None:
        check_int("block_size", block_size, 1)
    q, k, v, s = _prepare(query, key, value, scale)
    n = q.shape[-2]
    m = math.ceil(n / dilation)  # length of each subsequence

    def split(x):  # (..., N, D) -> (..., dilation, m, D): position t * dilation + r
        x = _pad_to(x, m * dilation)
        return x.view(*x.shape[:-2], m, dilation, x.shape[-1]).transpose(-3, -2)

    residue = torch.arange(dilation, device=q.device).view(dilation, 1, 1, 1)

    def in_range(b, h, q_idx, kv_idx):  # keys past the end of the real sequence are hidden
        return kv_idx * dilation + residue < n  # (dilation, nb, bs, S*bs)

    out = _local(split(q), split(k), split(v), window, block_size, is_causal, s, m,
                 keep_fn=in_range)  # (..., dilation, m, Dv)
    out = out.transpose(-3, -2).reshape(*out.shape[:-3], m * dilation, out.shape[-1])
    return out[..., :n, :].to(query.dtype)


def longformer_attention(query: Tensor, key: Tensor, value: Tensor, window: int,
                         global_idx: Union[int, Tensor], *, is_causal: bool = False,
                         scale: Optional[float] = None,
                         block_size: Optional[int] = None) -> Tensor:
    """Sliding window plus global tokens (Longformer), in O(N (window + G)).

    query, key: (B, H, N, D)   value: (B, H, N, Dv).
    global_idx: an int G (positions 0..G-1) or a 1-D integer tensor of G positions. A global
        position attends to every key, and every query attends to it.
    Ordinary queries: the blocked sliding window of :func:`sliding_window_attention`, with
    the G global keys appended to every block (and removed from the window, so that no key
    is counted twice), one softmax over both. Global queries: full attention over all N keys,
    (G, N) scores. Returns (B, H, N, Dv), equal to ``reference_attention`` with
    :func:`longformer_mask`.

    Beltagy, Peters & Cohan (2020), Longformer, section 3.1 ("global attention").
    """
    _check_self_attention(query, key, value, scale)
    check_int("window", window, 0)
    if block_size is not None:
        check_int("block_size", block_size, 1)
    q, k, v, s = _prepare(query, key, value, scale)
    n = q.shape[-2]
    g = _global_positions(global_idx, n, q.device)
    if g.numel() == 0:
        return _local(q, k, v, window, block_size, is_causal, s, n).to(query.dtype)
    is_global = torch.zeros(n, dtype=torch.bool, device=q.device)
    is_global[g] = True

    def not_global(b, h, q_idx, kv_idx):  # global keys come through `extra`, not the window
        return ~is_global[kv_idx.clamp(max=n - 1)]

    pos = torch.arange(n, device=q.device)
    keep_x = (g[None, :] <= pos[:, None]) if is_causal else torch.ones(n, g.numel(),
                                                                        dtype=torch.bool,
                                                                        device=q.device)
    out = _local(q, k, v, window, block_size, is_causal, s, n, keep_fn=not_global,
                 extra=(k[..., g, :], v[..., g, :], keep_x))  # (..., N, Dv)
    keep_g = (pos[None, :] <= g[:, None]) if is_causal else None  # (G, N)
    out = out.index_copy(-2, g, _dense_rows(q, k, v, g, keep_g, s))
    return out.to(query.dtype)


def bigbird_attention(query: Tensor, key: Tensor, value: Tensor, block_size: int,
                      rand_blocks: Tensor, *, window_blocks: int = 1,
                      num_global_blocks: int = 1, is_causal: bool = False,
                      scale: Optional[float] = None) -> Tensor:
    """BigBird: window blocks + global blocks + random blocks, in O(N S block_size).

    query, key: (B, H, N, D)   value: (B, H, N, Dv).
    rand_blocks: (nb, r) long from :func:`random_blocks` (nb = ceil(N / block_size), -1 =
        none). Query block b attends to key blocks |b - c| <= window_blocks, to the first
        ``num_global_blocks`` blocks, and to its random blocks; the global query blocks attend
        to everything. ``is_causal`` additionally hides keys j > i.
    Ordinary query blocks gather their S = 2 window_blocks + 1 + num_global_blocks + r key
    blocks; global query blocks are computed as dense rows. Returns (B, H, N, Dv), equal to
    ``reference_attention`` with :func:`bigbird_mask`.

    Zaheer et al. (2020), "Big Bird: Transformers for Longer Sequences", section 2 (ITC
    variant) and appendix D (the blocked computation).
    """
    _check_self_attention(query, key, value, scale)
    check_int("block_size", block_size, 1)
    n = query.shape[-2]
    nb = math.ceil(n / block_size)
    layout = bigbird_layout(nb, rand_blocks.to(query.device), window_blocks=window_blocks,
                            num_global_blocks=num_global_blocks)
    q, k, v, s = _prepare(query, key, value, scale)
    ng = min(num_global_blocks, nb)
    sparse_rows = layout.clone()
    sparse_rows[:ng] = False  # global query blocks are done densely below
    npad = nb * block_size
    out = _gathered(_pad_to(q, npad), _pad_to(k, npad), _pad_to(v, npad),
                    _layout_to_blocks(sparse_rows), block_size,
                    causal_mod if is_causal else None, s, n)[..., :n, :]
    if ng:
        rows = torch.arange(min(ng * block_size, n), device=q.device)
        keep = (torch.arange(n, device=q.device)[None, :] <= rows[:, None]) if is_causal \
            else None
        out = out.index_copy(-2, rows, _dense_rows(q, k, v, rows, keep, s))
    return out.to(query.dtype)
