"""Thin ``nn.Module`` wrappers around :mod:`attention_lib.functional`.

Modules own what has parameters or state (projections, dropout, head split/merge) and take
inputs as ``(B, N, d_model)``; the maths is in the functional core. Masks follow the library
convention: bool, True = may attend. Nothing is stored on the module during ``forward``:
ask for the weights with ``return_weights=True``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from . import functional as AF
from ._validate import check_mask, check_tensor, shape_str

Tensor = torch.Tensor

__all__ = ["DotProductAttention", "AdditiveAttention", "MultiHeadAttention", "split_heads",
           "merge_heads"]


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, N, H * Dh) -> (B, H, N, Dh). A ``view`` alone would scramble heads: transpose."""
    check_tensor("x", x, ndim=3, floating=False, layout="(B, N, H * Dh)")
    b, n, e = x.shape
    if e % num_heads:
        raise ValueError(f"last dim {e} of {shape_str(x)} is not divisible by num_heads="
                         f"{num_heads}")
    return x.view(b, n, num_heads, e // num_heads).transpose(1, 2)  # (B, H, N, Dh)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, N, Dh) -> (B, N, H * Dh), the inverse of :func:`split_heads`."""
    check_tensor("x", x, ndim=4, floating=False, layout="(B, H, N, Dh)")
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)  # (B, N, H * Dh)


def _check_seq(name: str, x: Tensor, dim: Optional[int] = None, dim_name: str = "D") -> None:
    check_tensor(name, x, ndim=3, layout=f"(B, N, {dim_name})")
    if dim is not None and x.shape[-1] != dim:
        raise ValueError(f"{name} must have last dim {dim_name}={dim}, got shape {shape_str(x)}")


def _check_kv(query: Tensor, key: Tensor, value: Tensor) -> None:
    """query: (B, Nq, .)   key: (B, Nk, .)   value: (B, Nk, .): one batch size, one Nk."""
    if key.shape[:2] != value.shape[:2]:
        raise ValueError(f"key and value must share (B, Nk): key {shape_str(key)} vs value "
                         f"{shape_str(value)}")
    if query.shape[0] != key.shape[0]:
        raise ValueError(f"query and key must share the batch size B: query {shape_str(query)} "
                         f"vs key {shape_str(key)}")


def _mask_3d(attn_mask: Optional[Tensor], b: int, nq: int, nk: int) -> Optional[Tensor]:
    """A mask for (B, Nq, Nk) scores, checked, given a head axis for the functional core."""
    if attn_mask is None:
        return None
    check_mask("attn_mask", attn_mask, (b, nq, nk), layout="(B, Nq, Nk)")
    return attn_mask.unsqueeze(-3) if attn_mask.dim() == 3 else attn_mask


class DotProductAttention(nn.Module):
    """Scaled dot-product attention over ``(B, N, D)`` inputs, with dropout on the weights.

    No parameters: it is :func:`attention_lib.functional.attention` with one head.
    query: (B, Nq, D)   key: (B, Nk, D)   value: (B, Nk, Dv)
    attn_mask: bool broadcastable to (B, Nq, Nk), True = may attend.
    Returns (B, Nq, Dv), or ``(out, weights)`` with weights (B, Nq, Nk).

    Vaswani et al. (2017), eq. 1. Same computation as ``d2l.DotProductAttention``.
    """

    def __init__(self, dropout: float = 0.0, *, scale: Optional[float] = None):
        super().__init__()
        self.dropout = dropout
        self.scale = scale

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                return_weights: bool = False):
        _check_seq("query", query)
        _check_seq("key", key, query.shape[-1])
        _check_seq("value", value)
        _check_kv(query, key, value)
        mask = _mask_3d(attn_mask, query.shape[0], query.shape[1], key.shape[1])
        res = AF.attention(query[:, None], key[:, None], value[:, None], mask,  # (B, 1, N, D)
                           dropout_p=self.dropout if self.training else 0.0,
                           is_causal=is_causal, scale=self.scale, return_weights=return_weights)
        if return_weights:
            out, w = res
            return out[:, 0], w[:, 0]  # (B, Nq, Dv), (B, Nq, Nk)
        return res[:, 0]  # (B, Nq, Dv)


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: ``score(q, k) = w_v^T tanh(W_q q + W_k k)``.

    query_size, key_size: feature sizes of queries and keys; num_hiddens: size Hd of the
    scoring MLP. Parameters ``W_q: Linear(query_size, Hd)``, ``W_k: Linear(key_size, Hd)``,
    ``w_v: Linear(Hd, 1)``, all without bias (as in d2l).
    query: (B, Nq, Dq)   key: (B, Nk, Dk)   value: (B, Nk, Dv)
    attn_mask: bool broadcastable to (B, Nq, Nk), True = may attend.
    Returns (B, Nq, Dv), or ``(out, weights)`` with weights (B, Nq, Nk).

    Bahdanau, Cho and Bengio (2014), appendix A.1.2. Memory O(B * Nq * Nk * Hd).
    """

    def __init__(self, query_size: int, key_size: int, num_hiddens: int, dropout: float = 0.0):
        super().__init__()
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                attn_mask: Optional[Tensor] = None, *, return_weights: bool = False):
        _check_seq("query", query, self.W_q.in_features, "Dq")
        _check_seq("key", key, self.W_k.in_features, "Dk")
        _check_seq("value", value)
        _check_kv(query, key, value)
        scores = AF.additive_score(query, key, self.W_q.weight, self.W_k.weight,
                                   self.w_v.weight[0])  # (B, Nq, Nk)
        mask = None
        if attn_mask is not None:
            check_mask("attn_mask", attn_mask, scores.shape, layout="(B, Nq, Nk)")
            mask = attn_mask
        weights = AF.masked_softmax(scores, mask)  # (B, Nq, Nk)
        out = self.dropout(weights) @ value  # (B, Nq, Dv)
        return (out, weights) if return_weights else out


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al., 2017, section 3.2.2), batch first.

    ``num_heads`` heads of size ``head_dim = embed_dim // num_heads``. Projections
    ``q_proj, k_proj, v_proj: Linear(embed_dim or kdim/vdim -> embed_dim)`` and
    ``out_proj: Linear(embed_dim -> embed_dim)``; the same parameters as
    ``nn.MultiheadAttention`` (whose ``in_proj_weight`` stacks q, k, v) and d2l's
    ``MultiHeadAttention`` (``W_q, W_k, W_v, W_o``).

    query: (B, Nq, E)   key: (B, Nk, kdim)   value: (B, Nk, vdim)   (key, value default to query)
    attn_mask: bool broadcastable to (B, H, Nq, Nk), True = may attend; for a per-example key
    mask use ``masks.key_mask(lengths)`` of shape (B, 1, 1, Nk).
    Returns (B, Nq, E), or ``(out, weights)`` with per-head weights (B, H, Nq, Nk).
    """

    def __init__(self, embed_dim: int, num_heads: int, *, dropout: float = 0.0,
                 bias: bool = True, kdim: Optional[int] = None, vdim: Optional[int] = None):
        super().__init__()
        for name, val in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = kdim or embed_dim
        self.vdim = vdim or embed_dim
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, query: Tensor, key: Optional[Tensor] = None, value: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                return_weights: bool = False):
        key = query if key is None else key
        value = key if value is None else value
        _check_seq("query", query, self.embed_dim, "E")
        _check_seq("key", key, self.kdim, "kdim")
        _check_seq("value", value, self.vdim, "vdim")
        _check_kv(query, key, value)
        h = self.num_heads
        q = split_heads(self.q_proj(query), h)  # (B, H, Nq, Dh)
        k = split_heads(self.k_proj(key), h)  # (B, H, Nk, Dh)
        v = split_heads(self.v_proj(value), h)  # (B, H, Nk, Dh)
        res = AF.attention(q, k, v, attn_mask, dropout_p=self.dropout if self.training else 0.0,
                           is_causal=is_causal, return_weights=return_weights)
        out, weights = res if return_weights else (res, None)
        out = self.out_proj(merge_heads(out))  # (B, Nq, E)
        return (out, weights) if return_weights else out
