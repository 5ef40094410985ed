"""Thin ``nn.Module`` wrappers around :mod:`attention_lib.functional`.

Modules own what has parameters or state (projections, dropout, head split/merge) and take
inputs as ``(B, N, d_model)``; the maths is in the functional core. Masks follow the library
convention: bool, True = may attend. Nothing is stored on the module during ``forward``:
ask for the weights with ``return_weights=True``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from . import functional as AF
from ._validate import check_float, check_int, check_mask, check_seq, check_tensor, shape_str
from .masks import causal_mask
from .multihead import KVCache, repeat_kv
from .position import RotaryEmbedding

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
        check_seq("query", query)
        check_seq("key", key, query.shape[-1])
        check_seq("value", value)
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
        check_seq("query", query, self.W_q.in_features, "Dq")
        check_seq("key", key, self.W_k.in_features, "Dk")
        check_seq("value", value)
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
    """Multi-head attention (Vaswani et al., 2017, section 3.2.2), batch first: the one
    multi-head module of the library. MHA, GQA, MQA and every efficient family are settings.

    ``num_heads`` query heads of size ``head_dim = embed_dim // num_heads`` read
    ``num_kv_heads`` key/value heads (default ``num_heads``): multi-head attention when equal,
    multi-query attention (MQA, Shazeer 2019) when 1, grouped-query attention (GQA, Ainslie
    et al. 2023) in between, where each group of ``num_heads // num_kv_heads`` consecutive
    query heads shares one key and one value head (the K/V projections and the KV cache
    shrink by that factor).

    Parameters: ``q_proj: Linear(E, E)``, ``k_proj: Linear(kdim, Hkv * Dh)``,
    ``v_proj: Linear(vdim, Hkv * Dh)``, ``out_proj: Linear(E, E)``. With ``Hkv = H`` they are
    the parameters of ``nn.MultiheadAttention`` (whose ``in_proj_weight`` stacks q, k, v) and
    of d2l's ``MultiHeadAttention`` (``W_q, W_k, W_v, W_o``).
    ``rotary=True`` applies :class:`~attention_lib.position.RotaryEmbedding` to queries and keys
    (self-attention only), at positions offset by the length of ``past``.

    ``attn_fn`` says how the heads attend, on (B, H, N, D) tensors:
    ``attn_fn(q, k, v, attn_mask=None, *, is_causal=False, scale=None) -> (B, H, Nq, Dv)``
    (``attn_mask`` is passed only when there is one, positionally; ``return_weights=True`` is
    passed only when asked, and then ``(out, weights)`` must come back). Default:
    :func:`attention_lib.functional.attention` (SDPA) with ``dropout`` on the weights in
    training. An efficient family plugs in its function, e.g.
    ``MultiHeadAttention(E, H, attn_fn=functools.partial(flash_attention, block_q=64))``;
    ``dropout`` belongs to the default and must be 0 with another ``attn_fn``.

    query: (B, Nq, E)   key: (B, Nk, kdim)   value: (B, Nk, vdim)   (key, value default to query)
    attn_mask: bool broadcastable to (B, H, Nq, Nk_total), True = may attend, where
    Nk_total = past length + Nk; for a per-example key mask use ``masks.key_mask(lengths)``,
    (B, 1, 1, Nk). is_causal: query i, at position ``past.length + i``, sees the keys at
    positions up to its own (without ``past``: top-left aligned, as in SDPA).
    past: a :class:`~attention_lib.multihead.KVCache` of earlier positions (self-attention
    only); use_cache: also return the cache extended by this call's keys and values.

    Returns ``out`` (B, Nq, E); with ``return_weights`` also the weights (B, H, Nq, Nk_total);
    with ``use_cache`` also the new cache, in that order: ``out, [weights], [cache]``.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: Optional[int] = None, *,
                 dropout: float = 0.0, bias: bool = True, kdim: Optional[int] = None,
                 vdim: Optional[int] = None, rotary: bool = False, rope_base: float = 10000.0,
                 max_len: int = 2048, attn_fn: Optional[Callable] = None):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        for name, val in (("embed_dim", embed_dim), ("num_heads", num_heads),
                          ("num_kv_heads", num_kv_heads)):
            check_int(name, val)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} must be divisible by "
                             f"num_kv_heads={num_kv_heads}")
        check_float("dropout", dropout, maximum=1.0)
        if dropout and attn_fn is not None:
            raise ValueError("dropout belongs to the default attn_fn: pass dropout=0 with "
                             "another attn_fn")
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.num_groups = num_heads // num_kv_heads
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self.dropout = dropout
        kv_dim = num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, kv_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, kv_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.rotary = RotaryEmbedding(self.head_dim, max_len, base=rope_base) if rotary else None
        self.attn_fn = attn_fn  # an nn.Module attn_fn (with buffers/parameters) is registered

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}")

    def forward(self, query: Tensor, key: Optional[Tensor] = None, value: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                past: Optional[KVCache] = None, use_cache: bool = False,
                return_weights: bool = False):
        self_attention = key is None and value is None
        key = query if key is None else key
        value = key if value is None else value
        check_seq("query", query, self.embed_dim, "E")
        check_seq("key", key, self.kdim, "kdim")
        check_seq("value", value, self.vdim, "vdim")
        _check_kv(query, key, value)
        if (past is not None or use_cache or self.rotary is not None) and not self_attention:
            raise ValueError("past, use_cache and rotary are for self-attention: call with the "
                             "query only (key=value=None)")
        if past is not None and not isinstance(past, KVCache):
            raise TypeError(f"past must be a KVCache or None, got {type(past).__name__}")
        b, nq = query.shape[:2]
        offset = 0 if past is None else past.length
        q = split_heads(self.q_proj(query), self.num_heads)  # (B, H, Nq, Dh)
        k = split_heads(self.k_proj(key), self.num_kv_heads)  # (B, Hkv, Nk, Dh)
        v = split_heads(self.v_proj(value), self.num_kv_heads)  # (B, Hkv, Nk, Dh)
        if self.rotary is not None:
            q, k = self.rotary(q, offset=offset), self.rotary(k, offset=offset)
        cache = None
        if past is not None:
            want = (b, self.num_kv_heads, self.head_dim)
            if (past.key.shape[0], past.key.shape[1], past.key.shape[-1]) != want:
                raise ValueError(f"past holds keys {shape_str(past.key)}, expected (B={b}, "
                                 f"Hkv={self.num_kv_heads}, N, Dh={self.head_dim})")
            cache = past.append(k, v)
            k, v = cache.key, cache.value  # (B, Hkv, past + Nq, Dh)
        elif use_cache:
            cache = KVCache(k, v)
        nk = k.shape[-2]
        check_mask("attn_mask", attn_mask, (b, self.num_heads, nq, nk))
        mask = attn_mask
        if is_causal and offset > 0:
            # query i sits at position offset + i: the rows offset.. of a square causal mask
            causal = causal_mask(nq, nk, offset=offset, device=query.device)  # (Nq, Nk)
            mask, is_causal = (causal if mask is None else mask & causal), False
        k, v = repeat_kv(k, self.num_groups), repeat_kv(v, self.num_groups)  # (B, H, Nk, Dh)
        args = (q, k, v) if mask is None else (q, k, v, mask)
        kw = {"return_weights": True} if return_weights else {}
        res = (self.attn_fn or self._sdpa)(*args, is_causal=is_causal, **kw)
        out, weights = res if return_weights else (res, None)
        out = self.out_proj(merge_heads(out))  # (B, Nq, E)
        result = (out,) + ((weights,) if return_weights else ()) + ((cache,) if use_cache else ())
        return result[0] if len(result) == 1 else result

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None, *,
              is_causal: bool = False, return_weights: bool = False):
        """The default attn_fn: :func:`~attention_lib.functional.attention`, with dropout."""
        return AF.attention(q, k, v, attn_mask, dropout_p=self.dropout if self.training else 0.0,
                            is_causal=is_causal, return_weights=return_weights)

    def init_cache(self, batch_size: int, *, dtype: Optional[torch.dtype] = None,
                   device=None) -> KVCache:
        """An empty cache (N = 0) for ``batch_size`` sequences, on the module's device/dtype."""
        check_int("batch_size", batch_size)
        w = self.k_proj.weight
        empty = torch.empty(batch_size, self.num_kv_heads, 0, self.head_dim,
                            dtype=dtype or w.dtype, device=device or w.device)
        return KVCache(empty, empty.clone())
