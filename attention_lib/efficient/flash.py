"""Exact attention by tiles: the online softmax and FlashAttention.

Softmax attention needs the whole row of scores before it can normalise, so the obvious
implementation materialises the (Nq, Nk) score matrix. The **online softmax** of Milakov and
Gimelshein (2018) computes the normaliser in one pass over a stream of scores by keeping a
running maximum ``m`` and a running sum ``l`` that is rescaled whenever the maximum grows.
FlashAttention (Dao et al., 2022) applies the same rescaling to the running *output*
``sum_j exp(s_j - m) v_j``, so attention can be computed tile by tile: one block of queries
against one block of keys at a time, never holding more than a (block_q, block_k) tile of
scores. The result is exact (up to floating-point rounding), and the extra memory is O(N)
instead of O(N^2).

This module is the readable version in PyTorch: a Python loop over tiles, each tile a few
tensor operations. It shows the algorithm and its memory behaviour; for speed, use torch's
fused kernels (``F.scaled_dot_product_attention``), which run the same algorithm in C++/CUDA.

* :func:`online_softmax` -- one pass over a stream of scores (and values), the building block;
* :func:`flash_attention` -- tiled exact attention, causal and masked: each tile's softmax
  and log-sum-exp (:func:`~attention_lib.functional.masked_softmax`) merged into the running
  result by :func:`~attention_lib.functional.merge_by_lse`, with a backward pass
  that recomputes each tile's probabilities from the saved log-sum-exp (Dao et al., 2022,
  Algorithm 2; the form of FlashAttention-2) instead of storing them.
"""
from __future__ import annotations

import math
from typing import List, NamedTuple, Optional

import torch

from .._validate import (
    check_device,
    check_int,
    check_mask,
    check_qkv,
    check_scale,
    check_tensor,
    shape_str,
)
from ..functional import masked_softmax, merge_by_lse, work_dtype
from ..masks import causal_mask

Tensor = torch.Tensor

__all__ = ["OnlineSoftmaxState", "online_softmax", "flash_attention", "flash_attention_lse",
           "tile_schedule"]


# --------------------------------------------------------------------------- online softmax
class OnlineSoftmaxState(NamedTuple):
    """What the online softmax keeps after reading some of the scores.

    max: (...,) the largest score so far (``-inf`` before any finite score).
    sum: (...,) ``sum_j exp(s_j - max)`` over the scores read so far.
    output: (..., Dv) ``sum_j softmax(s)_j v_j`` over the scores read so far (normalised
        with the current ``sum``), or None when no values were given.
    """
    max: Tensor
    sum: Tensor
    output: Optional[Tensor]


def online_softmax(scores: Tensor, values: Optional[Tensor] = None, *, block_size: int = 1,
                   return_history: bool = False):
    """Softmax normaliser (and softmax-weighted sum of values) in one pass over the scores.

    scores: (..., N) float, read in blocks of ``block_size`` along the last axis.
    values: (..., N, Dv) or None.  ``-inf`` scores are ignored (masked).

    Keeps a running max ``m``, a running sum ``l = sum_j exp(s_j - m)`` and a running output
    ``o = sum_j exp(s_j - m) v_j / l``. When a block raises the max from ``m`` to ``m'``,
    everything accumulated so far is multiplied by ``exp(m - m')``:

        m' = max(m, max(block));  l' = l exp(m - m') + sum(exp(block - m'))
        o' = (o l exp(m - m') + exp(block - m') @ v_block) / l'

    After the last block, ``softmax(s)_j = exp(s_j - m) / l`` and ``o`` is the attention
    output. A stream with no finite score ends with ``m = -inf``, ``l = 0`` and ``o = 0``.

    Returns the final :class:`OnlineSoftmaxState`, or ``(state, history)`` with
    ``return_history=True``, where ``history`` is the list of states after each block.

    Milakov & Gimelshein (2018), "Online normalizer calculation for softmax", Algorithm 3;
    the running output is that of Dao et al. (2022), FlashAttention, Algorithm 1.
    """
    check_tensor("scores", scores, layout="(..., N)")
    if scores.dim() < 1 or scores.shape[-1] == 0:
        raise ValueError(f"scores must have at least one entry on its last axis, got shape "
                         f"{shape_str(scores)}")
    if values is not None:
        check_tensor("values", values, layout="(..., N, Dv)")
        if values.dim() < 2 or values.shape[-2] != scores.shape[-1]:
            raise ValueError(f"values must be (..., N, Dv) with N = scores.shape[-1] = "
                             f"{scores.shape[-1]}, got {shape_str(values)}")
    check_int("block_size", block_size)
    work = work_dtype(scores.dtype)
    s_all = scores.to(work)
    m = torch.full(scores.shape[:-1], float("-inf"), dtype=work, device=scores.device)
    l = torch.zeros_like(m)
    o = None
    if values is not None:
        lead = torch.broadcast_shapes(scores.shape[:-1], values.shape[:-2])
        m, l = m.expand(lead).clone(), l.expand(lead).clone()
        o = torch.zeros(*lead, values.shape[-1], dtype=work, device=scores.device)
    history: List[OnlineSoftmaxState] = []
    for start in range(0, scores.shape[-1], block_size):
        s = s_all[..., start:start + block_size]  # (..., b)
        m_new = torch.maximum(m, s.amax(-1))
        m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        p = torch.exp(s - m_safe[..., None])  # (..., b); 0 where s = -inf
        alpha = torch.exp(m - m_safe)  # rescales what was accumulated under the old max
        l_new = l * alpha + p.sum(-1)
        if o is not None:
            v = values[..., start:start + block_size, :].to(work)  # (..., b, Dv)
            acc = o * (l * alpha)[..., None] + (p[..., None, :] @ v)[..., 0, :]
            o = torch.where(l_new[..., None] > 0, acc / l_new.clamp_min(1e-38)[..., None],
                            torch.zeros_like(acc))
        m, l = m_new, l_new
        if return_history:
            history.append(OnlineSoftmaxState(m.clone(), l.clone(),
                                              None if o is None else o.clone()))
    state = OnlineSoftmaxState(m, l, o)
    return (state, history) if return_history else state


# --------------------------------------------------------------------------- flash attention
def _mask_tile(mask4: Optional[Tensor], q0: int, q1: int, k0: int, k1: int) -> Optional[Tensor]:
    """The (.., bq, bk) tile of a 4-D mask that may have size-1 (broadcast) query/key axes."""
    if mask4 is None:
        return None
    qs = slice(None) if mask4.shape[-2] == 1 else slice(q0, q1)
    ks = slice(None) if mask4.shape[-1] == 1 else slice(k0, k1)
    return mask4[..., qs, ks]


def _causal_tile(q0: int, q1: int, k0: int, k1: int, device) -> Optional[Tensor]:
    """Causal keep-mask of one tile (bq, bk), or None when the tile is entirely allowed."""
    if k1 - 1 <= q0:  # every key of the tile is <= every query: nothing hidden
        return None
    return causal_mask(q1 - q0, k1 - k0, offset=q0 - k0, device=device)  # (bq, bk)


def _tiles(nq: int, nk: int, bq: int, bk: int, is_causal: bool, mask4: Optional[Tensor],
           device):
    """Yield (q0, q1, [(k0, k1, keep), ...]) for the tiles that are not entirely masked.

    A causal key block that lies entirely above the diagonal is never visited; a tile whose
    mask tile is all False is skipped too (block sparsity for free).
    """
    for q0 in range(0, nq, bq):
        q1 = min(q0 + bq, nq)
        k_end = min(nk, q1) if is_causal else nk  # causal: keys j <= i only
        tiles = []
        for k0 in range(0, k_end, bk):
            k1 = min(k0 + bk, k_end)
            keep = _mask_tile(mask4, q0, q1, k0, k1)
            if keep is not None and not bool(keep.any()):
                continue
            if is_causal:
                c = _causal_tile(q0, q1, k0, k1, device)
                if c is not None:
                    keep = c if keep is None else keep & c
            tiles.append((k0, k1, keep))
        yield q0, q1, tiles


def tile_schedule(nq: int, nk: int, block_q: int, block_k: int, *, is_causal: bool = False,
                  attn_mask: Optional[Tensor] = None) -> Tensor:
    """Which tiles :func:`flash_attention` computes: a (ceil(Nq/block_q), ceil(Nk/block_k))
    int tensor with 0 = skipped (entirely masked), 1 = computed with some entries masked,
    2 = computed, nothing masked.

    attn_mask: bool, broadcastable to (..., Nq, Nk); a tile counts as masked if any of its
    entries is False for any batch or head. For pictures and for counting work.
    """
    for name, v in (("nq", nq), ("nk", nk), ("block_q", block_q), ("block_k", block_k)):
        check_int(name, v)
    mask4 = None
    if attn_mask is not None:
        check_mask("attn_mask", attn_mask, (*attn_mask.shape[:-2], nq, nk), layout="(.., Nq, Nk)")
        mask4 = attn_mask.reshape((1,) * max(0, 4 - attn_mask.dim()) + tuple(attn_mask.shape))
    sched = torch.zeros(math.ceil(nq / block_q), math.ceil(nk / block_k), dtype=torch.long)
    for q0, _, tiles in _tiles(nq, nk, block_q, block_k, is_causal, mask4,
                               None if mask4 is None else mask4.device):
        for k0, k1, keep in tiles:  # causal tiles may be cut short at the diagonal
            full = (keep is None or bool(keep.all())) and k1 == min(k0 + block_k, nk)
            sched[q0 // block_q, k0 // block_k] = 2 if full else 1
    return sched


def _forward(q, k, v, mask4, is_causal, scale, bq, bk):
    """Tiled forward. q: (B, H, Nq, D), k: (B, H, Nk, D), v: (B, H, Nk, Dv), same (B, H).

    Returns out (B, H, Nq, Dv) in q's dtype and lse (B, H, Nq) in the work dtype
    (``-inf`` on rows with nothing to attend to). Each tile's softmax is normalised on its own
    and merged into the running (output, lse) by their log-sum-exps: the online softmax of
    :func:`online_softmax`, with the running max and sum folded into the lse.
    """
    work = work_dtype(q.dtype)
    nq, nk = q.shape[-2], k.shape[-2]
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.full(q.shape[:-1], float("-inf"), dtype=work, device=q.device)
    for q0, q1, tiles in _tiles(nq, nk, bq, bk, is_causal, mask4, q.device):
        qb = q[..., q0:q1, :].to(work) * scale  # (B, H, bq, D)
        o_b, lse_b = out[..., q0:q1, :].to(work), lse[..., q0:q1]  # (B, H, bq, Dv), (B, H, bq)
        for k0, k1, keep in tiles:
            s = qb @ k[..., k0:k1, :].to(work).transpose(-2, -1)  # (B, H, bq, bk)
            p, lse_t = masked_softmax(s, keep, return_lse=True)  # the tile's own softmax
            o_t = p @ v[..., k0:k1, :].to(work)  # (B, H, bq, Dv)
            o_b, lse_b = merge_by_lse(torch.stack([o_b, o_t]), torch.stack([lse_b, lse_t]))
        out[..., q0:q1, :], lse[..., q0:q1] = o_b.to(q.dtype), lse_b
    return out, lse


def _backward(q, k, v, out, lse, dout, mask4, is_causal, scale, bq, bk):
    """Tiled backward by recomputation (Dao et al., 2022, Algorithm 4; FlashAttention-2).

    Each tile's probabilities P = exp(S - lse) are recomputed from q, k and the saved
    log-sum-exp; with D_i = sum_d dO_id O_id, the gradients are dV = P^T dO,
    dS = P * (dO V^T - D), dQ = dS K * scale, dK = dS^T Q * scale.
    """
    work = work_dtype(q.dtype)
    nq, nk = q.shape[-2], k.shape[-2]
    dq = torch.zeros(q.shape, dtype=work, device=q.device)
    dk = torch.zeros(k.shape, dtype=work, device=q.device)
    dv = torch.zeros(v.shape, dtype=work, device=q.device)
    delta = (dout.to(work) * out.to(work)).sum(-1, keepdim=True)  # (B, H, Nq, 1)
    lse_safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))[..., None]
    neg_inf = float("-inf")
    for q0, q1, tiles in _tiles(nq, nk, bq, bk, is_causal, mask4, q.device):
        qb = q[..., q0:q1, :].to(work)  # (B, H, bq, D)
        dob = dout[..., q0:q1, :].to(work)  # (B, H, bq, Dv)
        lb, db = lse_safe[..., q0:q1, :], delta[..., q0:q1, :]  # (B, H, bq, 1)
        dqb = torch.zeros_like(qb)
        for k0, k1, keep in tiles:
            kb, vb = k[..., k0:k1, :].to(work), v[..., k0:k1, :].to(work)
            s = (qb @ kb.transpose(-2, -1)) * scale  # (B, H, bq, bk)
            if keep is not None:
                s = s.masked_fill(~keep, neg_inf)
            p = torch.exp(s - lb)  # the forward's probabilities, recomputed
            dv[..., k0:k1, :] += p.transpose(-2, -1) @ dob
            ds = p * (dob @ vb.transpose(-2, -1) - db)  # (B, H, bq, bk)
            dqb += (ds @ kb) * scale
            dk[..., k0:k1, :] += (ds.transpose(-2, -1) @ qb) * scale
        dq[..., q0:q1, :] = dqb
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class _FlashAttentionFn(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, out and the log-sum-exp, not the probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, mask4, is_causal, scale, bq, bk):
        out, lse = _forward(q, k, v, mask4, is_causal, scale, bq, bk)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.mask4, ctx.args = mask4, (is_causal, scale, bq, bk)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        is_causal, scale, bq, bk = ctx.args
        dq, dk, dv = _backward(q, k, v, out, lse, dout.contiguous(), ctx.mask4, is_causal,
                               scale, bq, bk)
        return dq, dk, dv, None, None, None, None, None


def flash_attention_lse(query: Tensor, key: Tensor, value: Tensor,
                        attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                        scale: Optional[float] = None, block_q: int = 128,
                        block_k: int = 128):
    """:func:`flash_attention` that also returns the log-sum-exp of each row's scores.

    Returns ``(out, lse)``: out (B, H, Nq, Dv), lse (B, H, Nq) with
    ``lse_i = log sum_j exp(s_ij)`` over the allowed keys (``-inf`` for an empty row; float32
    for half inputs). The lse is what the backward pass saves instead of the probabilities,
    and what lets two partial attentions over disjoint key sets be merged exactly.
    """
    check_qkv(query, key, value)
    bh = torch.broadcast_shapes(query.shape[:2], key.shape[:2], value.shape[:2])
    nq, nk = query.shape[-2], key.shape[-2]
    check_mask("attn_mask", attn_mask, (*bh, nq, nk))
    check_device("attn_mask", attn_mask, "query", query)
    check_scale(scale)
    check_int("block_q", block_q)
    check_int("block_k", block_k)
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be a bool, got {type(is_causal).__name__}")
    s = query.shape[-1] ** -0.5 if scale is None else float(scale)
    mask4 = None
    if attn_mask is not None:
        mask4 = attn_mask.reshape((1,) * (4 - attn_mask.dim()) + tuple(attn_mask.shape))
    # Broadcast (B, H) up front: views, and autograd sums the gradients back for us.
    q = query.expand(*bh, nq, query.shape[-1])  # (B, H, Nq, D)
    k = key.expand(*bh, nk, key.shape[-1])  # (B, H, Nk, D)
    v = value.expand(*bh, nk, value.shape[-1])  # (B, H, Nk, Dv)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _FlashAttentionFn.apply(q, k, v, mask4, is_causal, s, block_q, block_k)
    with torch.no_grad():
        return _forward(q, k, v, mask4, is_causal, s, block_q, block_k)


def flash_attention(query: Tensor, key: Tensor, value: Tensor,
                    attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                    scale: Optional[float] = None, block_q: int = 128,
                    block_k: int = 128) -> Tensor:
    """Exact softmax attention computed tile by tile, in O(N) extra memory.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   value: (B, H, Nk, Dv)
    attn_mask: bool, broadcastable to (B, H, Nq, Nk); True = may attend. Tiles whose mask is
        entirely False are skipped.
    is_causal: hide keys j > i (top-left aligned, as in SDPA); key blocks entirely above the
        diagonal are never visited, so causal attention does about half the work.
    scale: multiplies q.k; default 1/sqrt(D).
    block_q, block_k: tile sizes. The largest temporary is one (B, H, block_q, block_k)
        tile of scores; the state kept per query is a max, a sum and a (Dv,) output.

    Returns (B, H, Nq, Dv), equal to :func:`attention_lib.reference_attention` up to
    rounding. A query with nothing to attend to gets zeros (and zero gradients), not NaN.
    Differentiable: the backward pass recomputes each tile's probabilities from the saved
    log-sum-exp instead of storing the (Nq, Nk) matrix. Half-precision inputs are
    accumulated in float32. No dropout.

    Dao, Fu, Ermon, Rudra & Ré (2022), "FlashAttention: Fast and Memory-Efficient Exact
    Attention with IO-Awareness", Algorithms 1-2 (and Dao, 2023, FlashAttention-2, for the
    loop order and the backward pass).
    Equivalent code: ``reference_attention(query, key, value, attn_mask, is_causal=is_causal,
    scale=scale)``.
    """
    out, _ = flash_attention_lse(query, key, value, attn_mask, is_causal=is_causal,
                                 scale=scale, block_q=block_q, block_k=block_k)
    return out
