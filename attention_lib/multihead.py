"""Multi-head attention in its variants: a per-head loop, grouped-query / multi-query
attention with a KV cache, and what they cost.

* :func:`multi_head_attention_loop` computes the heads one at a time in a Python loop, the way
  the paper's equations read. It exists to check the batched reshape implementation against.
* :class:`GroupedQueryAttention` has ``num_heads`` query heads that share ``num_kv_heads`` key
  and value heads: multi-head attention (MHA) when ``num_kv_heads == num_heads``, multi-query
  attention (MQA, Shazeer 2019) when ``num_kv_heads == 1``, grouped-query attention (GQA,
  Ainslie et al. 2023) in between. It can decode incrementally with a :class:`KVCache`.
* :func:`kv_cache_bytes` and :func:`attention_cost` count memory, parameters and FLOPs.

Layout (B, H, N, D) inside, (B, N, E) at the module boundary, like
:class:`attention_lib.layers.MultiHeadAttention`, whose parameter names
(``q_proj, k_proj, v_proj, out_proj``) :class:`GroupedQueryAttention` shares: with
``num_kv_heads == num_heads`` one module's ``state_dict`` loads into the other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn

from . import functional as AF
from ._validate import check_mask, check_tensor, shape_str
from .layers import merge_heads, split_heads
from .position import RotaryEmbedding

Tensor = torch.Tensor

__all__ = ["KVCache", "GroupedQueryAttention", "repeat_kv", "multi_head_attention_loop",
           "kv_cache_bytes", "AttentionCost", "attention_cost"]


def _positive_int(name: str, val) -> None:
    if not isinstance(val, int) or isinstance(val, bool) or val < 1:
        raise ValueError(f"{name} must be a positive int, got {val!r}")


def repeat_kv(x: Tensor, num_groups: int) -> Tensor:
    """Repeat each key/value head for the ``num_groups`` query heads that share it.

    x: (B, Hkv, N, D) -> (B, Hkv * num_groups, N, D), where query head h reads kv head
    ``h // num_groups`` (consecutive query heads form a group, as in Ainslie et al., 2023).
    Equivalent code: ``x.repeat_interleave(num_groups, dim=1)``.
    """
    check_tensor("x", x, ndim=4, layout="(B, Hkv, N, D)")
    _positive_int("num_groups", num_groups)
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


class GroupedQueryAttention(nn.Module):
    """Grouped-query attention: ``num_heads`` query heads share ``num_kv_heads`` K/V heads.

    ``num_kv_heads == num_heads`` is standard multi-head attention (Vaswani et al., 2017) with
    the same parameters as :class:`attention_lib.layers.MultiHeadAttention`;
    ``num_kv_heads == 1`` is multi-query attention (Shazeer, 2019); in between, each group of
    ``num_heads // num_kv_heads`` consecutive query heads shares one key and one value head
    (Ainslie et al., 2023). The K/V projections, and the KV cache, shrink by
    ``num_heads / num_kv_heads``.

    Parameters: ``q_proj: Linear(E, E)``, ``k_proj: Linear(kdim, Hkv * Dh)``,
    ``v_proj: Linear(vdim, Hkv * Dh)``, ``out_proj: Linear(E, E)`` with ``Dh = E // H``.
    ``rotary=True`` applies :class:`~attention_lib.position.RotaryEmbedding` to queries and keys
    (self-attention only), at positions offset by the length of ``past``.

    query: (B, Nq, E)   key: (B, Nk, kdim)   value: (B, Nk, vdim)   (key, value default to query)
    attn_mask: bool broadcastable to (B, H, Nq, Nk_total), True = may attend, where
    Nk_total = past length + Nk.  is_causal: query i, at position ``past.length + i``, sees
    the keys at positions up to its own (without ``past``: top-left aligned, as in SDPA).
    past: a :class:`KVCache` of earlier positions (self-attention only); use_cache: also return
    the cache extended by this call's keys and values.

    Returns ``out`` (B, Nq, E); with ``return_weights`` also the weights (B, H, Nq, Nk_total);
    with ``use_cache`` also the new cache, in that order: ``out, [weights], [cache]``.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: Optional[int] = None, *,
                 dropout: float = 0.0, bias: bool = True, kdim: Optional[int] = None,
                 vdim: Optional[int] = None, rotary: bool = False, rope_base: float = 10000.0,
                 max_len: int = 2048):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        for name, val in (("embed_dim", embed_dim), ("num_heads", num_heads),
                          ("num_kv_heads", num_kv_heads)):
            _positive_int(name, val)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} must be divisible by "
                             f"num_kv_heads={num_kv_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
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
        for name, t, dim, dname in (("query", query, self.embed_dim, "E"),
                                    ("key", key, self.kdim, "kdim"),
                                    ("value", value, self.vdim, "vdim")):
            check_tensor(name, t, ndim=3, layout=f"(B, N, {dname})")
            if t.shape[-1] != dim:
                raise ValueError(f"{name} must have last dim {dname}={dim}, got shape "
                                 f"{shape_str(t)}")
        if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise ValueError(f"query, key and value must share B, and key and value Nk: query "
                             f"{shape_str(query)}, key {shape_str(key)}, value {shape_str(value)}")
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
            if past.key.shape[0] != b or past.key.shape[1] != self.num_kv_heads or \
                    past.key.shape[-1] != self.head_dim:
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
            # query i sits at position offset + i and sees the keys at positions 0 .. offset + i
            causal = torch.ones(nq, nk, dtype=torch.bool, device=query.device).tril(offset)
            mask = causal if mask is None else mask & causal
        k, v = repeat_kv(k, self.num_groups), repeat_kv(v, self.num_groups)  # (B, H, Nk, Dh)
        res = AF.attention(q, k, v, mask, dropout_p=self.dropout if self.training else 0.0,
                           is_causal=is_causal and offset == 0,  # top-left, as in SDPA
                           return_weights=return_weights)
        out, weights = res if return_weights else (res, None)
        out = self.out_proj(merge_heads(out))  # (B, Nq, E)
        result = (out,) + ((weights,) if return_weights else ()) + ((cache,) if use_cache else ())
        return result[0] if len(result) == 1 else result

    def init_cache(self, batch_size: int, *, dtype: Optional[torch.dtype] = None,
                   device=None) -> KVCache:
        """An empty cache (N = 0) for ``batch_size`` sequences, on the module's device/dtype."""
        _positive_int("batch_size", batch_size)
        w = self.k_proj.weight
        empty = torch.empty(batch_size, self.num_kv_heads, 0, self.head_dim,
                            dtype=dtype or w.dtype, device=device or w.device)
        return KVCache(empty, empty.clone())


def multi_head_attention_loop(module: nn.Module, query: Tensor, key: Optional[Tensor] = None,
                              value: Optional[Tensor] = None,
                              attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                              return_weights: bool = False):
    """Multi-head attention one head at a time, as Vaswani et al. (2017, section 3.2.2) write it.

    ``head_h = Attention(Q W_h^Q, K W_h^K, V W_h^V)``, ``MultiHead = Concat(head_1..head_H) W^O``,
    where ``W_h^Q`` is the h-th block of ``Dh`` rows of ``module.q_proj.weight`` (and so on),
    and each head is computed by :func:`~attention_lib.functional.reference_attention` on its
    own. ``module`` is a :class:`~attention_lib.layers.MultiHeadAttention` or a
    :class:`GroupedQueryAttention` (query head h then reads K/V head ``h // num_groups``);
    its weights are used, nothing else. No dropout (evaluation only) and no KV cache.

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
    hkv = getattr(module, "num_kv_heads", h)
    dh = module.head_dim
    rotary = getattr(module, "rotary", None)
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
        _positive_int(name, val)
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
    """Closed-form parameter and FLOP counts of :class:`GroupedQueryAttention` (and of
    :class:`~attention_lib.layers.MultiHeadAttention`, ``num_kv_heads = num_heads``).

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
        _positive_int(name, val)
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
