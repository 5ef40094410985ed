"""Chapter 07: masks on the score matrix."""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from diagrams.style import (
    FONT,
    INK,
    ROLE,
    SMALL,
    arrow,
    canvas,
    diagram,
    matrix,
    text,
    vector,
)

N = 5


def _panel(ax, x0, y0, keep, title, notes):
    """One N x N score matrix; hatched cells may not be attended to."""
    matrix(ax, x0, y0, N, N, "score", masked=~keep)
    text(ax, x0 + N / 2, y0 + N + 1.45, title, size=FONT, weight="bold")
    for i in range(N):
        text(ax, x0 - 0.3, y0 + N - 0.5 - i, str(i), size=SMALL, ha="right")
        text(ax, x0 + 0.5 + i, y0 - 0.4, str(i), size=SMALL, va="top")
    for k, line in enumerate(notes):
        text(ax, x0 + N / 2, y0 - 1.4 - 0.8 * k, line, size=SMALL)


@diagram("07_masks")
def masks():
    fig, ax = canvas(33, 12.0)
    i, j = np.arange(N)[:, None], np.arange(N)[None, :]
    padding = np.broadcast_to(j < 3, (N, N))
    causal = j <= i
    left = (j >= 2) & causal
    y0 = 3.9
    _panel(ax, 1.3, y0, padding, "padding",
           ["length 3: keys 3, 4", "are padding"])
    _panel(ax, 8.6, y0, causal, "causal", ["query i sees", "keys j ≤ i"])
    _panel(ax, 15.9, y0, padding & causal, "causal AND padding",
           ["both masks:", "logical AND"])
    x4 = 23.2
    _panel(ax, x4, y0, left, "left pad + causal",
           ["rows 0, 1: no key", "to attend to"])
    for r in (0, 1):  # the fully masked rows
        ax.add_patch(Rectangle((x4 - 0.08, y0 + N - 1 - r + 0.04), N + 0.16, 0.92,
                               facecolor="none", edgecolor=ROLE["output"], lw=2.0))
    out = vector(ax, 30.6, y0, N, "output", vertical=True,
                 values=[0, 0, 0.6, 0.6, 0.6])
    for r in range(N):
        text(ax, out[r, 0, 0], out[r, 0, 1], "0" if r < 2 else "", size=SMALL)
    arrow(ax, (x4 + N + 0.2, y0 + N - 1.0), (30.5, y0 + N - 1.0), role="output")
    text(ax, 31.1, y0 + N + 1.45, "output", size=FONT, weight="bold")
    text(ax, 31.1, y0 - 1.4, "zeros,", size=SMALL)
    text(ax, 31.1, y0 - 2.2, "not NaN", size=SMALL)
    text(ax, 0.3, y0 + N / 2, "query i", size=SMALL, rotation=90)
    text(ax, 1.3 + N / 2, y0 + N + 0.25, "key j", size=SMALL, va="bottom")
    # the key
    ax.add_patch(Rectangle((9.6, 0.15), 0.6, 0.6, facecolor="white", edgecolor=INK,
                           lw=0.6, hatch="////"))
    text(ax, 10.4, 0.45, "masked: weight 0", size=SMALL, ha="left")
    ax.add_patch(Rectangle((17.0, 0.15), 0.6, 0.6, facecolor=(0.9, 0.75, 0.85),
                           edgecolor=INK, lw=0.6))
    text(ax, 17.8, 0.45, "may attend (True)", size=SMALL, ha="left")
    return fig
