"""The functional core: scores, masked softmax, and attention itself.

Layout is ``(B, H, N, D)`` everywhere, like ``torch.nn.functional.scaled_dot_product_attention``
(SDPA): batch, heads, positions, features. Masks are bool, **True = may attend**, and
broadcast to the scores' shape ``(B, H, Nq, Nk)``. Additive float biases are passed separately
as ``bias=``. Pure functions: no state, inputs are never modified.

Two entry points compute softmax attention:

* :func:`reference_attention` -- the obvious computation, one line per equation. Every other
  exact variant in this library is tested against it.
* :func:`attention` -- SDPA's signature; calls SDPA (fused kernels) when it can and the
  reference when asked for the weights or a bias SDPA cannot take.

Both return **zeros** for a query whose every key is masked (a plain softmax gives NaN there).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ._validate import (
    check_bias,
    check_device,
    check_float,
    check_mask,
    check_qkv,
    check_scale,
    check_tensor,
    shape_str,
)
from .masks import causal_mask, combine_masks

Tensor = torch.Tensor

__all__ = [
    "masked_softmax", "merge_by_lse", "dot_score", "scaled_dot_score", "general_score",
    "additive_score", "concat_score", "reference_attention", "attention", "default_scale",
]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype softmaxes and sums are computed in: float32 for float16/bfloat16 inputs."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def upcast(t: Tensor) -> Tensor:
    """``t`` in :func:`work_dtype` (a float32 copy of a half-precision tensor, else ``t``)."""
    return t.to(work_dtype(t.dtype))


def default_scale(head_dim: int) -> float:
    """The 1/sqrt(D) of Vaswani et al. (2017): keeps the scores' variance near 1 when q, k
    have unit-variance entries, so the softmax does not saturate as D grows."""
    return 1.0 / math.sqrt(head_dim)


# --------------------------------------------------------------------------- masked softmax
def masked_softmax(scores: Tensor, mask: Optional[Tensor] = None, *, dim: int = -1,
                   return_lse: bool = False):
    """Softmax over ``dim`` that ignores masked entries, and its log-sum-exp.

    scores: (..., Nk) float.  mask: bool, broadcastable to ``scores``, True = keep.
    Returns weights of the same shape as ``scores``: masked entries are exactly 0, every row
    with at least one kept entry sums to 1, and a row with **no** kept entry is all zeros
    (never NaN). Half-precision scores are normalised in float32 and cast back.
    With ``return_lse``, also ``lse = log sum_j exp(s_j)`` over the kept entries, (...,) with
    ``dim`` removed, in the working dtype (float32 for half inputs), ``-inf`` on empty rows:
    what lets partial softmaxes over disjoint keys be merged exactly (:func:`merge_by_lse`).

    Equivalent code (for rows with something to keep):
    ``scores.masked_fill(~mask, -inf).softmax(dim)`` and ``.logsumexp(dim)``.
    """
    check_tensor("scores", scores)
    if mask is not None:
        check_mask("mask", mask, scores.shape, layout="of scores")
    work = upcast(scores)
    if mask is None and not return_lse:
        return work.softmax(dim).to(scores.dtype)
    if mask is not None:
        work = work.masked_fill(~mask, float("-inf"))
    # A fully masked row has max -inf; subtracting it would give NaN. Use 0 there instead.
    row_max = work.amax(dim=dim, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(work - row_max)  # exactly 0 where masked
    denom = e.sum(dim=dim, keepdim=True)
    weights = (e / torch.where(denom > 0, denom, torch.ones_like(denom))).to(scores.dtype)
    if not return_lse:
        return weights
    lse = torch.where(denom > 0, row_max + denom.log(), float("-inf")).squeeze(dim)
    return weights, lse


def merge_by_lse(outs: Tensor, lses: Tensor, *, index: Optional[Tensor] = None,
                 size: Optional[int] = None):
    """Merge attention results over disjoint key sets, weighting each by its log-sum-exp.

    outs: (P, ..., Dv), one softmax-weighted output per part; lses: (P, ...) their
    log-sum-exps (``-inf`` for a part with no key). Returns ``(out (..., Dv), lse (...))``:

        lse = log sum_p exp(lse_p),   out = sum_p exp(lse_p - lse) out_p,

    exactly the attention over the union of the parts' keys. A row whose every part is empty
    (lse = -inf) gets zeros, never NaN.
    With ``index`` (..., E) long, the parts are instead the E entries along the last axis of
    ``lses`` (outs: (..., E, Dv)), and entry e belongs to row ``index[..., e]`` of ``size``
    rows: returns (..., size, Dv) and (..., size), computed with scatters (a row may have any
    number of parts, e.g. the clusters a query was routed to).
    Milakov & Gimelshein (2018); Dao et al. (2022), FlashAttention, Algorithm 1.
    """
    if index is None:
        lse = torch.logsumexp(lses, dim=0)  # (...)
    else:
        lse = lses.new_full((*lses.shape[:-1], size), float("-inf")).scatter_reduce(
            -1, index, lses, reduce="amax")  # the row max first, then the log-sum
    safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    if index is None:
        w = torch.exp(lses - safe)  # (P, ...): 0 for empty parts
        return (w[..., None] * outs).sum(0), lse
    w = torch.exp(lses - safe.gather(-1, index))  # (..., E)
    den = w.new_zeros(lse.shape).scatter_add(-1, index, w)  # (..., size)
    idx = index[..., None].expand(*index.shape, outs.shape[-1])
    out = outs.new_zeros(*lse.shape, outs.shape[-1]).scatter_add(-2, idx, w[..., None] * outs)
    lse = torch.where(den > 0, safe + den.log(), float("-inf"))
    return out / torch.where(den > 0, den, 1.0)[..., None], lse


# --------------------------------------------------------------------------- score functions
def _check_pair(query: Tensor, key: Tensor, same_dim: bool) -> None:
    check_tensor("query", query, layout="(..., Nq, Dq)")
    check_tensor("key", key, layout="(..., Nk, Dk)")
    if query.dim() < 2 or key.dim() < 2:
        raise ValueError(f"query and key need at least 2 dims (..., N, D), got query "
                         f"{shape_str(query)} and key {shape_str(key)}")
    if same_dim and query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key must have the same feature dim (last axis): query "
                         f"{shape_str(query)} vs key {shape_str(key)}")
    try:
        torch.broadcast_shapes(query.shape[:-2], key.shape[:-2])
    except RuntimeError:
        raise ValueError(f"leading (batch) axes of query {shape_str(query)} and key "
                         f"{shape_str(key)} do not broadcast") from None


def dot_score(query: Tensor, key: Tensor) -> Tensor:
    """Dot-product score ``q . k`` (Luong et al., 2015, "dot").

    query: (..., Nq, D)   key: (..., Nk, D)   ->   (..., Nq, Nk)
    """
    _check_pair(query, key, same_dim=True)
    return query @ key.transpose(-2, -1)  # (..., Nq, Nk)


def scaled_dot_score(query: Tensor, key: Tensor, *, scale: Optional[float] = None) -> Tensor:
    """Scaled dot-product score ``q . k / sqrt(D)`` (Vaswani et al., 2017, eq. 1).

    query: (..., Nq, D)   key: (..., Nk, D)   ->   (..., Nq, Nk).  ``scale`` overrides 1/sqrt(D).
    """
    _check_pair(query, key, same_dim=True)
    s = default_scale(query.shape[-1]) if scale is None else scale
    return (query @ key.transpose(-2, -1)) * s  # (..., Nq, Nk)


def general_score(query: Tensor, key: Tensor, weight: Tensor) -> Tensor:
    """Bilinear score ``q^T W k`` (Luong et al., 2015, "general").

    query: (..., Nq, Dq)   key: (..., Nk, Dk)   weight: (Dq, Dk)   ->   (..., Nq, Nk)
    """
    _check_pair(query, key, same_dim=False)
    check_tensor("weight", weight, ndim=2, layout="(Dq, Dk)")
    if weight.shape != (query.shape[-1], key.shape[-1]):
        raise ValueError(f"weight must be (Dq, Dk) = ({query.shape[-1]}, {key.shape[-1]}), "
                         f"got {shape_str(weight)}")
    return (query @ weight) @ key.transpose(-2, -1)  # (..., Nq, Nk)


def additive_score(query: Tensor, key: Tensor, w_query: Tensor, w_key: Tensor,
                   v: Tensor) -> Tensor:
    """Additive (MLP) score ``v^T tanh(W_q q + W_k k)`` (Bahdanau et al., 2014, eq. 6 / A.1.2).

    query: (..., Nq, Dq)   key: (..., Nk, Dk)
    w_query: (Hd, Dq)   w_key: (Hd, Dk)   v: (Hd,)   (Hd = hidden size of the scoring MLP)
    Returns (..., Nq, Nk). Memory is O(Nq * Nk * Hd): every query-key pair gets a hidden vector.
    """
    _check_pair(query, key, same_dim=False)
    check_tensor("w_query", w_query, ndim=2, layout="(Hd, Dq)")
    check_tensor("w_key", w_key, ndim=2, layout="(Hd, Dk)")
    check_tensor("v", v, ndim=1, layout="(Hd,)")
    hd = v.shape[0]
    if w_query.shape != (hd, query.shape[-1]):
        raise ValueError(f"w_query must be (Hd, Dq) = ({hd}, {query.shape[-1]}), got "
                         f"{shape_str(w_query)}")
    if w_key.shape != (hd, key.shape[-1]):
        raise ValueError(f"w_key must be (Hd, Dk) = ({hd}, {key.shape[-1]}), got "
                         f"{shape_str(w_key)}")
    q = query @ w_query.T  # (..., Nq, Hd)
    k = key @ w_key.T  # (..., Nk, Hd)
    hidden = torch.tanh(q.unsqueeze(-2) + k.unsqueeze(-3))  # (..., Nq, Nk, Hd)
    return hidden @ v  # (..., Nq, Nk)


def concat_score(query: Tensor, key: Tensor, weight: Tensor, v: Tensor) -> Tensor:
    """Concat score ``v^T tanh(W [q; k])`` (Luong et al., 2015, "concat").

    query: (..., Nq, Dq)   key: (..., Nk, Dk)   weight: (Hd, Dq + Dk)   v: (Hd,)
    Returns (..., Nq, Nk). Algebraically the additive score with W = [W_q | W_k]; computed
    that way, so the concatenated (Nq, Nk, Dq + Dk) tensor is never built.
    """
    _check_pair(query, key, same_dim=False)
    check_tensor("weight", weight, ndim=2, layout="(Hd, Dq + Dk)")
    dq, dk = query.shape[-1], key.shape[-1]
    if weight.shape[1] != dq + dk:
        raise ValueError(f"weight must be (Hd, Dq + Dk) = (Hd, {dq + dk}), got "
                         f"{shape_str(weight)}")
    return additive_score(query, key, weight[:, :dq], weight[:, dq:], v)


# --------------------------------------------------------------------------- attention
def _keep_mask(attn_mask: Optional[Tensor], is_causal: bool, nq: int, nk: int,
               device) -> Optional[Tensor]:
    """attn_mask AND the (Nq, Nk) causal mask, or None when neither is given."""
    return combine_masks(attn_mask, causal_mask(nq, nk, device=device) if is_causal else None)


def _check_attention_args(query, key, value, attn_mask, bias, dropout_p, scale):
    check_qkv(query, key, value)
    target = torch.broadcast_shapes(query.shape[:2], key.shape[:2]) + (query.shape[-2],
                                                                       key.shape[-2])
    check_mask("attn_mask", attn_mask, target)
    check_bias("bias", bias, target)
    check_float("dropout_p", dropout_p, maximum=1.0)
    check_scale(scale)
    check_device("attn_mask", attn_mask, "query", query)
    check_device("bias", bias, "query", query)


def reference_attention(query: Tensor, key: Tensor, value: Tensor,
                        attn_mask: Optional[Tensor] = None, *, bias: Optional[Tensor] = None,
                        dropout_p: float = 0.0, is_causal: bool = False,
                        scale: Optional[float] = None, return_weights: bool = False,
                        upcast: bool = True):
    """Softmax attention, computed the obvious way. Every other variant is tested against it.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   value: (B, H, Nk, Dv)
    attn_mask: bool, broadcastable to (B, H, Nq, Nk); True = may attend.
    bias: float, broadcastable to (B, H, Nq, Nk); added to the scores (e.g. ALiBi, T5 bias).
    A ``-inf`` entry hides that key exactly as the mask does.
    is_causal: also hide keys j > i (top-left aligned, as in SDPA).
    scale: multiplies q.k; default 1/sqrt(D).
    dropout_p: dropout on the weights (applied whenever > 0, like SDPA; pass 0.0 in eval).
    upcast: compute in float32 when the inputs are float16/bfloat16 (the result is cast back).

    Returns (B, H, Nq, Dv), or ``(out, weights)`` with weights (B, H, Nq, Nk) when
    ``return_weights``. Rows with nothing to attend to are zeros, not NaN.

    Vaswani et al. (2017), eq. 1: softmax(Q K^T / sqrt(D)) V.
    Equivalent code: ``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p,
    is_causal, scale=scale)`` (apart from the zeros on fully masked rows).
    """
    _check_attention_args(query, key, value, attn_mask, bias, dropout_p, scale)
    out_dtype = query.dtype
    if upcast and query.dtype in (torch.float16, torch.bfloat16):
        query, key, value = query.float(), key.float(), value.float()
        bias = None if bias is None else bias.float()
    s = default_scale(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * s  # (B, H, Nq, Nk)
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    keep = _keep_mask(attn_mask, is_causal, query.shape[-2], key.shape[-2], query.device)
    if bias is not None:
        # A -inf bias hides a key just as the mask does: fold it into `keep`, so that a row the
        # bias empties gets zeros (and zero gradients, not NaN) like a fully masked row.
        allowed = ~torch.isneginf(bias)
        keep = allowed if keep is None else keep & allowed
    weights = masked_softmax(scores, keep)  # (B, H, Nq, Nk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    out = (weights @ value).to(out_dtype)  # (B, H, Nq, Dv)
    return (out, weights.to(out_dtype)) if return_weights else out


def attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor] = None,
              dropout_p: float = 0.0, is_causal: bool = False, *,
              scale: Optional[float] = None, bias: Optional[Tensor] = None,
              return_weights: bool = False):
    """Softmax attention with SDPA's signature; fast when it can be, exact always.

    Same arguments and shapes as :func:`reference_attention`. Dispatches to
    ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient / math
    kernels, whichever torch picks) unless the weights are requested (SDPA never
    materialises them), in which case the reference runs. A float ``bias`` and a bool
    ``attn_mask`` are merged into one additive mask for SDPA.

    Unlike raw SDPA on some backends, a query whose every key is masked returns zeros here.
    """
    if return_weights:
        return reference_attention(query, key, value, attn_mask, bias=bias, dropout_p=dropout_p,
                                   is_causal=is_causal, scale=scale, return_weights=True)
    _check_attention_args(query, key, value, attn_mask, bias, dropout_p, scale)
    nq, nk = query.shape[-2], key.shape[-2]
    keep = None
    sdpa_mask = attn_mask
    if bias is not None:
        # SDPA takes one mask: fold the causal and bool masks into the bias.
        keep = _keep_mask(attn_mask, is_causal, nq, nk, query.device)
        sdpa_mask = bias.to(query.dtype)
        if keep is not None:  # torch.where broadcasts both ways; masked_fill would not
            sdpa_mask = torch.where(keep, sdpa_mask, float("-inf"))
        is_causal = False
    elif is_causal and attn_mask is not None:
        keep = _keep_mask(attn_mask, True, nq, nk, query.device)
        sdpa_mask, is_causal = keep, False
    else:
        keep = attn_mask
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=sdpa_mask,
                                         dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    if keep is not None or bias is not None:
        # Zero the rows that had nothing to attend to, whatever the backend returned there.
        empty = None
        if keep is not None:
            empty = ~keep.any(dim=-1, keepdim=True)  # (.., Nq, 1)
        if bias is not None:
            b_empty = torch.isneginf(sdpa_mask).all(dim=-1, keepdim=True)
            empty = b_empty if empty is None else empty | b_empty
        out = out.masked_fill(empty, 0.0)
    return out


# --------------------------------------------------------------------------- positions
