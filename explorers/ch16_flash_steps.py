"""Chapter 16's FlashAttention, one tile at a time: the running max, sum and output of a query.

N = 8 queries and keys of dimension D = 4, cut into tiles of 4 queries x 2 keys, so the
FlashAttention-2 loop of ``attention_lib.efficient.flash`` (query blocks outside, key blocks
inside) visits 2 x 4 = 8 tiles. Q, K and V are drawn from a fixed seed and rounded to two
decimals, so the JSON holds the inputs exactly and anyone can replay the computation.

``flash_attention`` keeps its running state as a normalised output and a log-sum-exp (it
merges tiles with ``merge_by_lse``), and shows no per-tile state. So the running max ``m``,
sum ``l`` and unnormalised output ``acc = sum_j exp(s_j - m) v_j`` after each tile are
computed here with the chapter's recurrence, in float64, and checked at every step against
the library: ``online_softmax`` on the query's row of scores, read in blocks of ``block_k``,
must give the same ``m``, ``l`` and ``acc / l``; and ``flash_attention_lse`` on the keys read
so far must give ``m + log l`` and ``acc / l`` (the library's own state after that tile). At
the end, the output must equal the library's ``flash_attention``, torch's
``scaled_dot_product_attention`` and a float64 softmax; the differences are in the JSON.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attention_lib.efficient.flash import (
    flash_attention,
    flash_attention_lse,
    online_softmax,
    tile_schedule,
)
from explorers import explorer, rounded

N, D = 8, 4
BLOCK_Q, BLOCK_K = 4, 2
SEED = 9  # row 0's max grows at two of its four tiles and stays put at one
TOL = 1e-12  # float64: the recurrence, the library and SDPA agree to rounding


def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q, K, V (N, D) in float64, rounded to two decimals so the JSON holds them exactly."""
    g = torch.Generator().manual_seed(SEED)
    return tuple((torch.randn(N, D, generator=g, dtype=torch.float64) * 1.2).round(decimals=2)
                 for _ in range(3))


def schedule() -> list[tuple[int, int]]:
    """The tiles in the order ``flash_attention`` computes them: query blocks outside, key
    blocks inside (FlashAttention-2), the computed tiles being those of ``tile_schedule``."""
    sched = tile_schedule(N, N, BLOCK_Q, BLOCK_K)
    return [(qb, kb) for qb in range(sched.shape[0]) for kb in range(sched.shape[1])
            if int(sched[qb, kb]) > 0]


def replay(scores: torch.Tensor, v: torch.Tensor, tiles: list[tuple[int, int]]) -> dict:
    """The FlashAttention-2 recurrence, tile by tile, for every query of each tile.

    Returns {row: [state after each of the row's tiles]}, a state holding the tile's index,
    the row's largest score in the tile, the running max m, the factor exp(m_old - m) by which
    the old sum and output are rescaled, the running sum l, the unnormalised output acc and
    the normalised one acc / l.
    """
    m = torch.full((N,), -math.inf, dtype=torch.float64)
    l = torch.zeros(N, dtype=torch.float64)
    acc = torch.zeros(N, v.shape[1], dtype=torch.float64)
    history: dict[int, list] = {i: [] for i in range(N)}
    for t, (qb, kb) in enumerate(tiles):
        q0, q1 = qb * BLOCK_Q, min((qb + 1) * BLOCK_Q, N)
        k0, k1 = kb * BLOCK_K, min((kb + 1) * BLOCK_K, N)
        s = scores[q0:q1, k0:k1]  # the tile of scores: (bq, bk)
        m_new = torch.maximum(m[q0:q1], s.amax(-1))
        alpha = torch.exp(m[q0:q1] - m_new)  # 0 on the first tile (m = -inf)
        p = torch.exp(s - m_new[:, None])
        l[q0:q1] = l[q0:q1] * alpha + p.sum(-1)
        acc[q0:q1] = acc[q0:q1] * alpha[:, None] + p @ v[k0:k1]
        m[q0:q1] = m_new
        for r, i in enumerate(range(q0, q1)):
            history[i].append({"step": t, "tile_max": float(s[r].max()), "m": float(m[i]),
                               "alpha": float(alpha[r]), "l": float(l[i]),
                               "acc": acc[i].clone(), "out": acc[i] / l[i]})
    return history


def check_against_library(q, k, v, scores, tiles, history) -> None:
    """Each step's state is the library's: online_softmax's history on the row, and
    flash_attention_lse (same tiles) over the keys read so far."""
    for i in range(N):
        _, online = online_softmax(scores[i], v, block_size=BLOCK_K, return_history=True)
        assert len(online) == len(history[i])
        for h, o in zip(history[i], online):
            assert abs(h["m"] - float(o.max)) < TOL and abs(h["l"] - float(o.sum)) < TOL
            assert float((h["out"] - o.output).abs().max()) < TOL
    for t, (qb, kb) in enumerate(tiles):
        q0, q1, k1 = qb * BLOCK_Q, min((qb + 1) * BLOCK_Q, N), min((kb + 1) * BLOCK_K, N)
        out, lse = flash_attention_lse(q[None, None, q0:q1], k[None, None, :k1],
                                       v[None, None, :k1], block_q=BLOCK_Q, block_k=BLOCK_K)
        for r, i in enumerate(range(q0, q1)):
            h = next(h for h in history[i] if h["step"] == t)
            assert abs(h["m"] + math.log(h["l"]) - float(lse[0, 0, r])) < TOL
            assert float((h["out"] - out[0, 0, r]).abs().max()) < TOL


@explorer("16_flash_steps")
def flash_steps() -> dict:
    q, k, v = inputs()
    scale = D ** -0.5
    scores = (q @ k.T) * scale
    tiles = schedule()
    history = replay(scores, v, tiles)
    check_against_library(q, k, v, scores, tiles, history)
    final = torch.stack([history[i][-1]["out"] for i in range(N)])
    library = flash_attention(q[None, None], k[None, None], v[None, None],
                              block_q=BLOCK_Q, block_k=BLOCK_K)[0, 0]
    sdpa = F.scaled_dot_product_attention(q[None, None], k[None, None], v[None, None])[0, 0]
    softmax = torch.softmax(scores, dim=-1) @ v  # float64 softmax attention
    diffs = {name: float((final - other).abs().max())
             for name, other in (("library", library), ("sdpa", sdpa), ("softmax", softmax))}
    assert max(diffs.values()) < TOL, diffs
    steps = []
    for qb, kb in tiles:
        steps.append({"qb": qb, "kb": kb, "q0": qb * BLOCK_Q, "q1": min((qb + 1) * BLOCK_Q, N),
                      "k0": kb * BLOCK_K, "k1": min((kb + 1) * BLOCK_K, N)})
    rows = [[{"step": h["step"], "tile_max": rounded(h["tile_max"]), "m": rounded(h["m"]),
              "alpha": rounded(h["alpha"]), "l": rounded(h["l"]), "acc": rounded(h["acc"]),
              "out": rounded(h["out"])} for h in history[i]] for i in range(N)]
    return {
        "n": N, "d": D, "block_q": BLOCK_Q, "block_k": BLOCK_K, "seed": SEED,
        "scale": rounded(scale, 6),
        "q": rounded(q), "k": rounded(k), "v": rounded(v),  # exact: two decimals
        "scores": rounded(scores),
        "schedule": tile_schedule(N, N, BLOCK_Q, BLOCK_K).tolist(),
        "steps": steps,
        "rows": rows,
        "sdpa": rounded(sdpa),
        "row_diff": rounded([float((final[i] - sdpa[i]).abs().max()) for i in range(N)], 2),
        "max_diff": rounded(diffs, 2),
    }
