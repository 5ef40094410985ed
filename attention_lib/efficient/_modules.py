"""The part every multi-head ``nn.Module`` of ``attention_lib.efficient`` shares: the four
projections of :class:`attention_lib.layers.MultiHeadAttention` (``q_proj, k_proj, v_proj,
out_proj``), input checks, and the head split and merge. A subclass only says how the heads
attend, on (B, H, N, D) tensors, by calling one of the functional variants."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .._validate import check_tensor, shape_str
from ..layers import merge_heads, split_heads

Tensor = torch.Tensor


class ProjectedAttention(nn.Module):
    """Base class: ``embed_dim`` split into ``num_heads`` heads of ``head_dim``, batch first.

    ``project(query, key, value)`` checks the (B, N, E) inputs (key defaults to query, value to
    key) and returns q, k, v as (B, H, N, head_dim); ``output(out)`` merges the heads of a
    (B, H, Nq, head_dim) result and applies ``out_proj``: (B, Nq, E).
    """

    def __init__(self, embed_dim: int, num_heads: int, *, bias: bool = True):
        super().__init__()
        for name, val in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be an int >= 1, got {val!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def project(self, query: Tensor, key: Optional[Tensor] = None,
                value: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        key = query if key is None else key
        value = key if value is None else value
        for name, x in (("query", query), ("key", key), ("value", value)):
            check_tensor(name, x, ndim=3, layout="(B, N, E)")
            if x.shape[-1] != self.embed_dim:
                raise ValueError(f"{name} must be (B, N, E) with E = {self.embed_dim}, got "
                                 f"{shape_str(x)}")
        h = self.num_heads
        return (split_heads(self.q_proj(query), h),  # (B, H, Nq, Dh)
                split_heads(self.k_proj(key), h),  # (B, H, Nk, Dh)
                split_heads(self.v_proj(value), h))  # (B, H, Nk, Dh)

    def output(self, out: Tensor) -> Tensor:
        return self.out_proj(merge_heads(out))  # (B, Nq, E)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
