"""Shared pieces of the exercises of Part III (chapters 11, 14, 15, 16): seeded (B, H, N, D)
cases, size limits for the efficiency tier, and the hints that several chapters use.

Not a chapter module (its name does not start with ``chNN_``), so the registry does not load it
by itself; the chapter modules import it.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..cases import draw_sizes, generator, randn
from ..core import Case

NO_SCALE_HINT = ("your output matches attention WITHOUT the 1/sqrt(D) scale: divide the scores "
                 "q k^T by sqrt(D), D = the last axis of the query")
AFTER_HINT = ("the mask is applied AFTER the softmax: the kept weights no longer sum to 1. "
              "Mask the scores (-inf where masked) BEFORE normalising")
DIM_HINT = ("softmax over the wrong axis: each query's weights must sum to 1 over the KEYS, "
            "the last axis of the scores (dim=-1), not over the queries (dim=-2)")
NORMALISER_HINT = ("your output matches linear attention WITHOUT the normaliser: divide "
                   "phi(q_i)^T S by phi(q_i)^T z, where z = sum_j phi(k_j), so that the weights "
                   "of each query sum to 1 (as softmax's do)")
QUADRATIC_HINT = ("you built an (Nq, Nk) matrix, e.g. phi(Q) phi(K)^T: that is the quadratic "
                  "order. Take the product in the other order, phi(Q) (phi(K)^T V), and the "
                  "normaliser as phi(Q) (phi(K)^T 1): nothing larger than (N, F) or (F, Dv)")


def dtname(dtype) -> str:
    return str(dtype).replace("torch.", "")


def itemsize(dtype: Optional[torch.dtype]) -> int:
    return torch.finfo(dtype or torch.float32).bits // 8


def qkv_case(seed: int, dtype, *, sizes=None, ranges=None, extra=(), grad=False,
             label_extra: str = "", scale_qk: float = 1.0, same_n: bool = True,
             positive_v: bool = False) -> Case:
    """query (B, H, Nq, D), key (B, H, Nk, D), value (B, H, Nk, Dv), then ``extra`` args.

    ``same_n``: Nk = Nq = N (self-attention). ``meta`` holds the sizes.
    """
    g = generator(seed)
    r = dict(B=(1, 2), H=(1, 3), N=(1, 9), D=(1, 6), Dv=(1, 5))
    if not same_n:
        r["Nk"] = (1, 9)
    r.update(ranges or {})
    s = dict(sizes) if sizes else draw_sizes(g, **r)
    b, h, n, d, dv = (s[k] for k in ("B", "H", "N", "D", "Dv"))
    nk = n if same_n else s["Nk"]
    s.setdefault("Nk", nk)
    q = randn(g, b, h, n, d, dtype=dtype, scale=scale_qk)
    k = randn(g, b, h, nk, d, dtype=dtype, scale=scale_qk)
    v = randn(g, b, h, nk, dv, dtype=dtype)
    label = (f"query ({b}, {h}, {n}, {d}), key ({b}, {h}, {nk}, {d}), value ({b}, {h}, {nk}, "
             f"{dv}), {dtname(dtype)}" + label_extra)
    case = Case((q, k, v) + tuple(extra), label=label, meta=s)
    if grad:
        case.wrt, case.upstream = (0, 1, 2), randn(g, b, h, n, dv, dtype=dtype)
    return case


#: Room for what a call adds to its process's resident memory besides its own tensors
#: (allocator arenas, code pages of kernels the warm-up did not run): the references of
#: chapters 11-16 measure 4-11 MiB in the grader's sandbox.
RSS_SLACK = 16 * 2**20


def half_of_scores_resident(case: Case) -> int:
    """Resident-memory limit measured from outside the call (the grader's sandbox): half the
    (B, H, Nq, Nk) score matrix plus :data:`RSS_SLACK`. Cases large enough that the score
    matrix dwarfs the slack (N = 2048: 64 MiB of float64 scores against a 48 MiB limit) make
    any implementation that holds the scores fail, however it hides them."""
    m = case.meta
    return m["B"] * m["H"] * m["N"] * m["Nk"] * itemsize(case.dtype) // 2 + RSS_SLACK


def quarter_of_scores(case: Case) -> int:
    """Bytes of a quarter of the (B, H, Nq, Nk) score matrix in the case's dtype: a limit that
    an O(N) implementation stays far below, and that an (N, N) float matrix exceeds."""
    m = case.meta
    return m["B"] * m["H"] * m["N"] * m["Nk"] * itemsize(case.dtype) // 4
