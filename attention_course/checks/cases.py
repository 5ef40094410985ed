"""Seeded random inputs for checks ("hypothesis-style": sizes drawn at random, boundaries
favoured, every draw reproducible from its seed).

All tensors are drawn in float64 on the CPU from a ``torch.Generator`` and then cast, so a
case is the same on every machine and in every dtype.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

__all__ = ["generator", "randn", "uniform", "integer", "draw_sizes", "random_mask"]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def randn(gen: torch.Generator, *shape: int, dtype=torch.float64, scale: float = 1.0):
    return (torch.randn(tuple(shape), generator=gen, dtype=torch.float64) * scale).to(dtype)


def uniform(gen: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0,
            dtype=torch.float64):
    x = torch.rand(tuple(shape), generator=gen, dtype=torch.float64) * (high - low) + low
    return x.to(dtype)


def integer(gen: torch.Generator, low: int, high: int) -> int:
    """An int in [low, high]; each end with probability 1/5 (small sizes find bugs)."""
    u = float(torch.rand((), generator=gen))
    if u < 0.1:
        return low
    if u < 0.2:
        return high
    return int(torch.randint(low, high + 1, (), generator=gen))


def draw_sizes(gen: torch.Generator, **ranges: Tuple[int, int]) -> Dict[str, int]:
    """``draw_sizes(g, B=(1, 3), N=(1, 9))`` -> ``{"B": 2, "N": 1}``."""
    return {k: integer(gen, lo, hi) for k, (lo, hi) in ranges.items()}


def random_mask(gen: torch.Generator, *shape: int, p: float = 0.6,
                keep_first: bool = True) -> torch.Tensor:
    """Bool mask, True (may attend) with probability ``p``; key 0 kept unless told not to."""
    m = torch.rand(tuple(shape), generator=gen) < p
    if keep_first and m.dim():
        m[..., 0] = True
    return m
