"""Chapter 16: FlashAttention's tile loop, and which memory each tile lives in."""
from __future__ import annotations

import numpy as np

from diagrams.style import FONT, SMALL, arrow, box, canvas, diagram, matrix, text

N, D, B, CELL = 8, 3, 2, 0.5  # 8 positions, head dim 3, blocks of 2 rows
I_BLK, J_BLK = 1, 2            # the query block and key block being processed


def _shade(block: int, cols: int) -> np.ndarray:
    """Rows of the current block dark, the others light: (N, cols) in [0, 1]."""
    vals = np.full((N, cols), 0.18)
    vals[block * B:(block + 1) * B] = 0.75
    return vals


def _hbm_matrix(ax, x, y, role, name, block):
    centres = matrix(ax, x, y, N, D, role, values=_shade(block, D), cell=CELL,
                     label=name, label_side="top")
    for b in range(1, N // B):  # block boundaries
        yb = y + N * CELL - b * B * CELL
        ax.plot([x - 0.1, x + D * CELL + 0.1], [yb, yb], color="#222222", lw=1.6)
    return centres


@diagram("16_flash_tiles")
def flash_tiles():
    fig, ax = canvas(30, 17)
    # slow memory
    box(ax, 0.3, 4.2, 11.4, 10.6, role=None)
    text(ax, 6.0, 14.2, "HBM (slow, large)", size=FONT + 1, weight="bold")
    y0 = 7.0
    q = _hbm_matrix(ax, 1.0, y0, "query", "Q", I_BLK)
    k = _hbm_matrix(ax, 3.7, y0, "key", "K", J_BLK)
    v = _hbm_matrix(ax, 6.4, y0, "value", "V", J_BLK)
    o = _hbm_matrix(ax, 9.1, y0, "output", "O", I_BLK)
    text(ax, 6.0, 5.6, "N rows each, cut into blocks", size=SMALL)
    text(ax, 6.0, 4.9, "of B_q (Q, O) and B_k (K, V) rows", size=SMALL)
    # fast memory
    box(ax, 15.0, 4.2, 14.7, 10.6, role="state", fill=0.10)
    text(ax, 22.35, 14.2, "SRAM (fast, on chip, M bytes)", size=FONT + 1, weight="bold")
    ys = 10.6
    matrix(ax, 15.8, ys, B, D, "query", values=np.full((B, D), 0.75), cell=CELL,
           label="Q_i", label_side="top")
    matrix(ax, 18.2, ys, B, D, "key", values=np.full((B, D), 0.75), cell=CELL,
           label="K_j", label_side="top")
    matrix(ax, 20.6, ys, B, D, "value", values=np.full((B, D), 0.75), cell=CELL,
           label="V_j", label_side="top")
    matrix(ax, 23.3, ys, B, B, "score", cell=CELL, label="S = Q_i K_jᵀ", label_side="top")
    text(ax, 23.8, ys - 0.45, "B_q × B_k", size=SMALL, va="top")
    # running statistics of query block i
    yr = 6.6
    matrix(ax, 16.4, yr, B, 1, "state", cell=CELL, label="m", label_side="top")
    matrix(ax, 18.0, yr, B, 1, "state", cell=CELL, label="ℓ", label_side="top")
    matrix(ax, 19.6, yr, B, D, "output", values=np.full((B, D), 0.45), cell=CELL,
           label="O_i", label_side="top")
    text(ax, 18.6, yr - 0.45, "running max, sum, output", size=SMALL, va="top")
    text(ax, 18.6, yr - 1.15, "of query block i", size=SMALL, va="top")
    text(ax, 26.6, 8.3, "stay on chip", size=SMALL)
    text(ax, 26.6, 7.6, "while j runs", size=SMALL)
    text(ax, 26.6, 6.9, "over all of K, V", size=SMALL)
    arrow(ax, (23.8, ys - 1.2), (21.0, yr + 1.6), label="update", label_offset=(1.5, 0.0))
    # reads and writes
    qi = q[I_BLK * B, 0]
    kj, vj = k[J_BLK * B, 1], v[J_BLK * B, 2]
    arrow(ax, (qi[0] - 0.3, qi[1] + 0.6), (16.5, ys + 2.0), role="query", rad=-0.25)
    text(ax, 8.2, 16.3, "Q_i: read once (outer loop over i)", role="query", size=SMALL)
    arrow(ax, (kj[0] + 0.3, kj[1] - 0.2), (18.9, ys - 0.1), role="key", rad=0.15)
    arrow(ax, (vj[0] + 0.3, vj[1] - 0.4), (21.3, ys - 0.1), role="value", rad=0.12)
    text(ax, 15.0, 3.5, "K_j, V_j: read again for every query block, so K and V cross "
         "from HBM N / B_q times in all", size=SMALL)
    oi = o[I_BLK * B + 1, 2]
    arrow(ax, (19.6, yr + 0.2), (oi[0] + 0.4, oi[1]), role="output", rad=-0.3)
    text(ax, 13.35, 5.4, "O_i / ℓ:", role="output", size=SMALL)
    text(ax, 13.35, 4.8, "written once", role="output", size=SMALL)
    for n, line in enumerate((
            "for each query block i (outer):   load Q_i;   m, l, O_i = -∞, 0, 0",
            "    for each key block j (inner):   load K_j, V_j;   S = Q_i K_jᵀ;   "
            "update m, l, O_i",
            "    write O_i / l")):
        text(ax, 3.0, 2.5 - 0.75 * n, line, size=SMALL, ha="left", family="DejaVu Sans Mono")
    return fig
