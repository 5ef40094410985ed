"""Diagnostics you can run on any attention function or model.

:func:`causal_leakage` answers "can output i see input j > i?" by experiment: change the
future, watch the past. It needs nothing but the ability to call the function, so it works on
a hand-written attention, a library module, a whole decoder, or a student's exercise.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ._validate import check_int, shape_str

Tensor = torch.Tensor

__all__ = ["causal_leakage"]


def _perturbed(x: Tensor, t: int, seq_dim: int, gen: torch.Generator,
               vocab_size: Optional[int]) -> Tensor:
    """x with every position >= t along ``seq_dim`` replaced by fresh random values."""
    tail_shape = list(x.shape)
    tail_shape[seq_dim] = x.shape[seq_dim] - t
    if x.is_floating_point():
        fresh = torch.randn(tail_shape, generator=gen, dtype=torch.float64)
        fresh = (fresh * 3.0).to(dtype=x.dtype, device=x.device)  # large, clearly different
    else:
        fresh = torch.randint(0, vocab_size, tail_shape, generator=gen).to(x.dtype)
        fresh = fresh.to(x.device)
    head = x.narrow(seq_dim, 0, t)
    return torch.cat([head, fresh], dim=seq_dim)


@torch.no_grad()
def causal_leakage(fn: Callable[[Tensor], Tensor], x: Tensor, *, seq_dim: int = 1,
                   out_seq_dim: Optional[int] = None, num_trials: int = 2,
                   generator: Optional[torch.Generator] = None,
                   vocab_size: Optional[int] = None, per_position: bool = False):
    """How much the outputs at earlier positions change when later inputs change.

    fn: maps an input like ``x`` to an output with the same number of positions, e.g. a
    causal self-attention ``(B, N, D) -> (B, N, D')``. Put modules in ``eval()`` mode first
    (dropout would read as leakage).
    x: an example input; its positions run along ``seq_dim`` (default 1, the N of (B, N, D)).
    Floating-point inputs are perturbed with fresh N(0, 9) values, integer inputs (token ids)
    with fresh ids below ``vocab_size`` (default ``x.max() + 1``).
    out_seq_dim: the positions' axis of the output (default ``seq_dim``).

    For every cut ``t = 1 .. N-1`` and ``num_trials`` random draws, the inputs at positions
    ``>= t`` are replaced, and the outputs at positions ``< t`` are compared with the
    unperturbed ones. Returns the largest absolute change, a float: 0 (up to rounding, since
    fused kernels may reorder sums) for a causal ``fn``, clearly positive for a leaky one.
    With ``per_position=True`` returns a float64 tensor (N,): entry i is the largest change of
    output i under any change of inputs after i (the last entry is always 0).

    A test of behaviour, not a proof: a leak that only some inputs trigger can be missed;
    more trials make that less likely. Cost: ``(N - 1) * num_trials + 1`` calls of ``fn``.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not -x.dim() <= seq_dim < x.dim():
        raise ValueError(f"seq_dim={seq_dim} is out of range for x of shape {shape_str(x)}")
    seq_dim %= x.dim()
    n = x.shape[seq_dim]
    if n < 2:
        raise ValueError(f"x needs at least 2 positions along seq_dim={seq_dim}, got shape "
                         f"{shape_str(x)}")
    check_int("num_trials", num_trials)
    if not x.is_floating_point():
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"x must be a float or integer tensor, got {x.dtype}")
        vocab_size = int(x.max()) + 1 if vocab_size is None else vocab_size
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    base = fn(x)
    if not isinstance(base, torch.Tensor):
        raise TypeError(f"fn must return a tensor, got {type(base).__name__} (wrap it, e.g. "
                        f"lambda x: module(x)[0], to drop extra outputs)")
    od = seq_dim if out_seq_dim is None else out_seq_dim
    if not -base.dim() <= od < base.dim():
        raise ValueError(f"out_seq_dim={od} is out of range for fn's output of shape "
                         f"{shape_str(base)}")
    od %= base.dim()
    if base.shape[od] != n:
        raise ValueError(f"fn's output {shape_str(base)} has {base.shape[od]} positions along "
                         f"dim {od}, but x has {n}: set out_seq_dim")
    leak = torch.zeros(n, dtype=torch.float64)
    for t in range(1, n):
        for _ in range(num_trials):
            out = fn(_perturbed(x, t, seq_dim, gen, vocab_size))
            before, after = base.narrow(od, 0, t), out.narrow(od, 0, t)  # (.., t, ..)
            diff = (after - before).abs().double()
            diff = diff.masked_fill(before.isnan() & after.isnan(), 0.0)  # NaN before and after
            per_pos = diff.movedim(od, 0).reshape(t, -1).amax(dim=1).cpu()  # (t,)
            per_pos = torch.nan_to_num(per_pos, nan=float("inf"))  # number <-> NaN: a change
            leak[:t] = torch.maximum(leak[:t], per_pos)
    return leak if per_position else float(leak.max())
