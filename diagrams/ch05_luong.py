"""Chapter 05: Luong attention, global and local-p, and input feeding."""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from diagrams.style import (
    FONT,
    INK,
    ROLE,
    SMALL,
    arrow,
    box,
    canvas,
    diagram,
    matrix,
    text,
    tint,
)

S, P_T, D = 13, 7.3, 3  # source length, predicted position, half-width (drawn)
CELL = 0.85
TALL = 3.4  # the height of a weight of 1


def _weights(ax, x0, y0, w, masked, title):
    """Source positions as key cells, and their attention weights as bars above them."""
    matrix(ax, x0, y0, 1, S, "key", masked=masked[None], cell=CELL)
    for j in range(S):
        text(ax, x0 + (j + 0.5) * CELL, y0 - 0.35, str(j), size=SMALL, va="top")
        if w[j] > 0:
            ax.add_patch(Rectangle((x0 + (j + 0.2) * CELL, y0 + CELL + 0.15),
                                   0.6 * CELL, TALL * w[j],
                                   facecolor=tint("score", 0.8), edgecolor=INK, lw=0.5))
    text(ax, x0 + S * CELL / 2, y0 + CELL + TALL + 1.0, title, size=FONT, weight="bold")
    text(ax, x0 - 0.3, y0 + CELL / 2, "h_j", size=SMALL, ha="right")
    return x0 + P_T * CELL + CELL / 2  # the x of p_t


@diagram("05_luong")
def luong():
    fig, ax = canvas(30, 16.4)
    j = np.arange(S)
    scores = -0.5 * ((j - 7.6) / 2.2) ** 2 + 0.4 * np.sin(j)
    glob = np.exp(scores) / np.exp(scores).sum()
    # global: every source position gets a weight
    y0 = 10.0
    _weights(ax, 1.6, y0, glob / glob.max() * 0.7, np.zeros(S, bool),
             "global: a weight for every h_j")
    text(ax, 1.6 + S * CELL / 2, y0 - 1.25, "source position j", size=SMALL)
    # local-p: softmax inside the window, times a Gaussian centred on p_t
    inside = np.abs(j - P_T) <= D
    a = np.where(inside, np.exp(scores), 0.0)
    a = a / a.sum()
    gauss = np.exp(-((j - P_T) ** 2) / (2 * (D / 2) ** 2))
    x1 = 16.4
    xp = _weights(ax, x1, y0, a * gauss / glob.max() * 0.7, ~inside,
                  "local-p: a window around p_t")
    xs = np.linspace(x1, x1 + S * CELL, 300)
    js = (xs - x1) / CELL - 0.5
    ax.plot(xs, y0 + CELL + 0.15 + 0.5 * TALL * np.exp(-((js - P_T) ** 2) / (D / 2) ** 2 / 2),
            color=ROLE["score"], lw=1.2, ls="--")
    lo, hi = x1 + (P_T - D + 0.5) * CELL, x1 + (P_T + D + 0.5) * CELL
    ax.annotate("", (lo, y0 - 1.0), (hi, y0 - 1.0),
                arrowprops=dict(arrowstyle="<|-|>", color=INK, lw=0.9, shrinkA=0,
                                shrinkB=0, mutation_scale=8))
    text(ax, xp, y0 - 1.5, "p_t − D ... p_t + D", size=SMALL)
    ax.plot([xp, xp], [y0 - 0.05, y0 + CELL + TALL * 0.8], color=ROLE["query"], lw=1.2)
    text(ax, xp, y0 + CELL + TALL * 0.8 + 0.3, "p_t", size=SMALL, role="query")
    text(ax, x1 + S * CELL / 2, y0 + CELL + TALL + 0.35, "p_t = S·σ(v_pᵀ tanh(W_p s_t))",
         size=SMALL, role="query")
    text(ax, x1 + 1.6, y0 + CELL + TALL * 0.45, "Gaussian,\nσ = D/2", size=SMALL,
         role="score")
    # input feeding: one decoder step, and where its attentional vector goes next
    yb, h = 2.6, 1.6
    box(ax, 0.4, yb, 4.6, h, "x_t = e(y_{t−1})\nand h̃_{t−1}", size=SMALL)
    box(ax, 6.2, yb, 2.2, h, "GRU", role="state")
    box(ax, 9.6, yb, 1.6, h, "s_t", role="state")
    box(ax, 12.2, yb, 5.2, h, "a_t = align(s_t, h_j)\nc_t = Σ_j a_tj h_j", size=SMALL,
        role="score")
    box(ax, 18.4, yb, 4.6, h, "h̃_t = tanh(\nW_c [c_t; s_t])", size=SMALL, role="output")
    box(ax, 24.2, yb, 5.4, h, "y_t: softmax\nof W_s h̃_t", size=SMALL)
    mid = yb + h / 2
    for x_from, x_to in ((5.0, 6.2), (8.4, 9.6), (11.2, 12.2), (17.4, 18.4), (23.0, 24.2)):
        arrow(ax, (x_from, mid), (x_to, mid))
    arrow(ax, (10.4, yb + h), (20.0, yb + h), rad=-0.35)  # s_t also enters W_c
    matrix(ax, 12.4 + 0.3, 6.4, 1, 8, "key", cell=0.5)
    text(ax, 12.4 + 0.3 + 4.3, 6.65, "encoder states h_j", size=SMALL, ha="left")
    arrow(ax, (14.8, 6.4), (14.8, yb + h), role="key")
    arrow(ax, (20.7, yb), (2.7, yb), role="output", rad=-0.12, dashed=True, lw=1.4)
    text(ax, 11.7, 0.45, "input feeding: h̃_t is part of the input of step t + 1",
         size=SMALL, role="output")
    return fig
