"""Chapter 8's companions of :class:`attention_lib.layers.MultiHeadAttention`: the KV cache,
the sharing of key/value heads, a per-head loop, and what multi-head attention costs.

* :class:`KVCache` holds the projected keys and values of the positions decoded so far; the
  multi-head module (``past=``, ``use_cache=True``) and the Transformer decoder use it.
* :func:`repeat_kv` gives each query head its key/value head under grouped-query attention
  (``MultiHeadAttention(E, H, num_kv_heads)``: MHA when ``num_kv_heads == num_heads``, MQA,
  Shazeer 2019, when 1, GQA, Ainslie et al. 2023, in between).
* :func:`multi_head_attention_loop` computes the heads one at a time in a Python loop, the way
  the paper's equations read. It exists to check the batched reshape implementation against.
* :func:`kv_cache_bytes` and :func:`attention_cost` count memory, parameters and FLOPs.

Layout (B, H, N, D), like :func:`torch.nn.functional.scaled_dot_product_attention`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn

from . import functional as AF
from ._validate import check_int, check_mask, check_tensor, shape_str

Tensor = torch.Tensor

__all__ = ["KVCache", "repeat_kv", "multi_head_attention_loop",
           "kv_cache_bytes", "AttentionCost", "attention_cost"]


def repeat_kv(x: Tensor, num_groups: int) -> Tensor:
    """Repeat each key/value head for the ``num_groups`` query heads that share it.

    x: (B, Hkv, N, D) -> (B, Hkv * num_groups, N, D), where query head h reads kv head
    ``h // num_groups`` (consecutive query heads form a group, as in Ainslie et al., 2023).
    Equivalent code: ``x.repeat_interleave(num_groups, dim=1)``.
    """
    check_tensor("x", x, ndim=4, layout="(B, Hkv, N, D)")
    check_int("num_groups", num_groups)
    if num_groups == 1:
        return x
    b, hkv, n, d = x.shape
    return x[:, :, None].expand(b, hkv, num_groups, n, d).reshape(b, hkv * num_groups, n, d)


@dataclass(frozen=True)
class KVCache:
    """The keys and values of the positions decoded so far, for one attention layer.

    key: (B, Hkv, N, Dh)   value: (B, Hkv, N, Dh)   (keys after the rotary embedding, if any).
    Immutable: :meth:`append` returns a new cache. ``nbytes`` is the memory it holds, which
    :func:`kv_cache_bytes` predicts.
    """

    key: Tensor
    value: Tensor

    def __post_init__(self):
        check_tensor("key", self.key, ndim=4, layout="(B, Hkv, N, Dh)")
        check_tensor("value", self.value, ndim=4, layout="(B, Hkv, N, Dh)")
        if self.key.shape[:3] != self.value.shape[:3]:
            raise ValueError(f"key and value of a KVCache must share (B, Hkv, N): key "
                             f"{shape_str(self.key)} vs value {shape_str(self.value)}")

    @property
    def length(self) -> int:
        """Number of cached positions N."""
        return self.key.shape[-2]

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        return sum(t.nelement() * t.element_size() for t in (self.key, self.value))

    def append(self, key: Tensor, value: Tensor) -> "KVCache":
        """A new cache with ``key``, ``value`` (B, Hkv, n, Dh) added after the cached ones."""
        for name, new, old in (("key", key, self.key), ("value", value, self.value)):
            check_tensor(name, new, ndim=4, layout="(B, Hkv, n, Dh)")
            if new.shape[:2] != old.shape[:2] or new.shape[-1] != old.shape[-1]:
                raise ValueError(f"{name} {shape_str(new)} does not fit the cache's "
                                 f"{shape_str(old)}: (B, Hkv, ., Dh) must match")
        return KVCache(torch.cat([self.key, key], dim=-2),  # (B, Hkv, N + n, Dh)
                       torch.cat([self.value, value], dim=-2))


def multi_head_attention_loop(module: nn.Module, query: Tensor, key: Optional[Tensor] = None,
                              value: Optional[Tensor] = None,
                              attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                              return_weights: bool = False):
    """Multi-head attention one head at a time, as Vaswani et al. (2017, section 3.2.2) write it.

    ``head_h = Attention(Q W_h^Q, K W_h^K, V W_h^V)``, ``MultiHead = Concat(head_1..head_H) W^O``,
    where ``W_h^Q`` is the h-th block of ``Dh`` rows of ``module.q_proj.weight`` (and so on),
    and each head is computed by :func:`~attention_lib.functional.reference_attention` on its
    own. ``module`` is a :class:`~attention_lib.layers.MultiHeadAttention` (query head h reads
    K/V head ``h // num_groups``); its weights are used, nothing else (not its ``attn_fn``).
    No dropout (evaluation only) and no KV cache.

    query: (B, Nq, E)   key: (B, Nk, kdim)   value: (B, Nk, vdim)  (default: self-attention)
    attn_mask: bool broadcastable to (B, H, Nq, Nk), True = may attend.
    Returns (B, Nq, E), or ``(out, weights)`` with weights (B, H, Nq, Nk): the same as
    ``module(query, key, value, attn_mask, is_causal=is_causal)``, slowly.
    """
    key = query if key is None else key
    value = key if value is None else value
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, t, ndim=3, layout="(B, N, E)")
    h = module.num_heads
    hkv = module.num_kv_heads
    dh = module.head_dim
    rotary = module.rotary
    b, nq, nk = query.shape[0], query.shape[1], key.shape[1]
    check_mask("attn_mask", attn_mask, (b, h, nq, nk))
    mask = attn_mask
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B|1, H|1, Nq, Nk)

    def project(lin: nn.Linear, x: Tensor, i: int) -> Tensor:
        rows = slice(i * dh, (i + 1) * dh)  # head i's block of output features
        bias = None if lin.bias is None else lin.bias[rows]
        return nn.functional.linear(x, lin.weight[rows], bias)  # (B, N, Dh)

    heads, weights = [], []
    for i in range(h):
        j = i // (h // hkv)  # the K/V head this query head reads
        q_i = project(module.q_proj, query, i)[:, None]  # (B, 1, Nq, Dh)
        k_i = project(module.k_proj, key, j)[:, None]  # (B, 1, Nk, Dh)
        v_i = project(module.v_proj, value, j)[:, None]  # (B, 1, Nk, Dh)
        if rotary is not None:
            q_i, k_i = rotary(q_i), rotary(k_i)
        m_i = None if mask is None else mask[:, i if mask.shape[1] > 1 else 0][:, None]
        out_i, w_i = AF.reference_attention(q_i, k_i, v_i, m_i, is_causal=is_causal,
                                            return_weights=True)
        heads.append(out_i[:, 0])  # (B, Nq, Dh)
        weights.append(w_i[:, 0])  # (B, Nq, Nk)
    out = module.out_proj(torch.cat(heads, dim=-1))  # (B, Nq, E)
    return (out, torch.stack(weights, dim=1)) if return_weights else out


def kv_cache_bytes(batch_size: int, seq_len: int, num_kv_heads: int, head_dim: int, *,
                   num_layers: int = 1, dtype: torch.dtype = torch.float16) -> int:
    """Memory of a KV cache: ``2 * num_layers * batch_size * seq_len * num_kv_heads *
    head_dim * bytes_per_element`` (the 2 is keys and values).

    Independent of the number of *query* heads: grouped-query attention with ``num_kv_heads``
    K/V heads needs ``num_heads / num_kv_heads`` times less than multi-head attention.
    """
    for name, val in (("batch_size", batch_size), ("seq_len", seq_len),
                      ("num_kv_heads", num_kv_heads), ("head_dim", head_dim),
                      ("num_layers", num_layers)):
        check_int(name, val)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
    elem = torch.empty((), dtype=dtype).element_size()
    return 2 * num_layers * batch_size * seq_len * num_kv_heads * head_dim * elem


@dataclass(frozen=True)
class AttentionCost:
    """Parameters and forward FLOPs of one (grouped-query / multi-head) attention layer.

    params: per projection (``q_proj, k_proj, v_proj, out_proj``).
    flops: per matrix product (the projections, ``scores`` = Q K^T, ``weighted_sum`` = A V),
    counted like ``torch.utils.flop_counter``: 2 FLOPs per multiply-add; bias additions,
    scaling and the softmax are not counted.
    """

    params: Dict[str, int]
    flops: Dict[str, int]

    @property
    def total_params(self) -> int:
        return sum(self.params.values())

    @property
    def total_flops(self) -> int:
        return sum(self.flops.values())


def attention_cost(batch_size: int, seq_len: int, embed_dim: int, num_heads: int,
                   num_kv_heads: Optional[int] = None, *, kv_seq_len: Optional[int] = None,
                   bias: bool = True, kdim: Optional[int] = None,
                   vdim: Optional[int] = None) -> AttentionCost:
    """Closed-form parameter and FLOP counts of
    :class:`~attention_lib.layers.MultiHeadAttention` with ``num_kv_heads`` K/V heads.

    With B = batch_size, Nq = seq_len, Nk = kv_seq_len (default Nq), E = embed_dim,
    Dh = E / H, Ekv = Hkv * Dh:

    =============  ============================  ==========================
    part           parameters                    FLOPs
    =============  ============================  ==========================
    q_proj         E * E (+ E)                   2 B Nq E E
    k_proj         kdim * Ekv (+ Ekv)            2 B Nk kdim Ekv
    v_proj         vdim * Ekv (+ Ekv)            2 B Nk vdim Ekv
    scores         --                            2 B H Nq Nk Dh = 2 B Nq Nk E
    weighted_sum   --                            2 B Nq Nk E
    out_proj       E * E (+ E)                   2 B Nq E E
    =============  ============================  ==========================

    The attention part does not depend on H: more heads of smaller size cost the same.
    """
    kv_seq_len = seq_len if kv_seq_len is None else kv_seq_len
    num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    for name, val in (("batch_size", batch_size), ("seq_len", seq_len),
                      ("kv_seq_len", kv_seq_len), ("embed_dim", embed_dim),
                      ("num_heads", num_heads), ("num_kv_heads", num_kv_heads)):
        check_int(name, val)
    if embed_dim % num_heads or num_heads % num_kv_heads:
        raise ValueError(f"need embed_dim % num_heads == 0 and num_heads % num_kv_heads == 0, "
                         f"got embed_dim={embed_dim}, num_heads={num_heads}, "
                         f"num_kv_heads={num_kv_heads}")
    e, b, nq, nk = embed_dim, batch_size, seq_len, kv_seq_len
    kdim, vdim = kdim or e, vdim or e
    ekv = num_kv_heads * (e // num_heads)
    nb = int(bias)
    params = {"q_proj": e * e + e * nb, "k_proj": kdim * ekv + ekv * nb,
              "v_proj": vdim * ekv + ekv * nb, "out_proj": e * e + e * nb}
    flops = {"q_proj": 2 * b * nq * e * e, "k_proj": 2 * b * nk * kdim * ekv,
             "v_proj": 2 * b * nk * vdim * ekv, "scores": 2 * b * nq * nk * e,
             "weighted_sum": 2 * b * nq * nk * e, "out_proj": 2 * b * nq * e * e}
    return AttentionCost(params, flops)
