"""Chapter 02: attention as a soft dictionary lookup."""
from __future__ import annotations

import numpy as np

from diagrams.style import FONT, arrow, canvas, diagram, matrix, text, vector


def _lookup(ax, x0: float, weights: np.ndarray, title: str, note: str):
    """One lookup: a query against a table of (key, value) pairs, its weights and output."""
    n = len(weights)
    text(ax, x0 + 6.2, 12.6, title, size=FONT + 1, weight="bold")
    vector(ax, x0, 6.0, 1, "query", label="query q", label_side="bottom")
    keys = matrix(ax, x0 + 3.5, 3.5, n, 1, "key", label="keys", label_side="top")
    values = matrix(ax, x0 + 8.5, 3.5, n, 1, "value", label="values", label_side="top")
    shade = 0.85 * weights / weights.max()  # the largest weight darkest
    w = matrix(ax, x0 + 6.0, 3.5, n, 1, "score", values=shade[:, None],
               label="weights", label_side="top")
    for i in range(n):
        arrow(ax, (x0 + 1.0, 6.5), (keys[i, 0, 0] - 0.5, keys[i, 0, 1]), role="query",
              lw=0.8)
        label = f"{weights[i]:g}" if weights[i] in (0, 1) else (
            f"{weights[i]:.2f}".lstrip("0"))
        text(ax, w[i, 0, 0], w[i, 0, 1], label, size=8)
        arrow(ax, (values[i, 0, 0] + 0.5, values[i, 0, 1]), (x0 + 11.5, 6.5), role="value",
              lw=0.4 + 2.5 * weights[i])
    vector(ax, x0 + 11.5, 6.0, 1, "output", label="output", label_side="bottom")
    text(ax, x0 + 6.2, 1.6, note, size=8)


@diagram("02_soft_lookup")
def soft_lookup():
    fig, ax = canvas(29, 14)
    _lookup(ax, 0.5, np.array([0.0, 0.0, 1.0, 0.0, 0.0]), "hard lookup",
            "one key matches: weights are one-hot")
    _lookup(ax, 15.5, np.array([0.04, 0.21, 0.48, 0.21, 0.06]), "soft lookup",
            r"every key scores $a(q, k_i)$; a softmax gives the weights")
    text(ax, 22.0, 0.6, r"output $= \Sigma_i$ weight$_i \cdot$ value$_i$", size=8)
    text(ax, 7.0, 0.6, "output = the value of the matching key", size=8)
    return fig
