"""Chapter 15: random features estimate the softmax kernel."""
from __future__ import annotations

import numpy as np

from diagrams.style import FONT, SMALL, arrow, box, canvas, diagram, matrix, text, vector

M, D, CELL = 8, 4, 0.6


@diagram("15_random_features")
def random_features():
    fig, ax = canvas(30, 13)
    rng = np.random.default_rng(0)
    # inputs
    vector(ax, 0.8, 8.0, D, "query", vertical=True, cell=CELL, label="q", label_side="top")
    vector(ax, 0.8, 1.6, D, "key", vertical=True, cell=CELL, label="k", label_side="top")
    # the random matrix
    matrix(ax, 4.6, 3.4, M, D, "input", values=rng.uniform(0.15, 0.9, (M, D)), cell=CELL,
           label="W: m × D", label_side="top")
    text(ax, 5.8, 2.9, "rows ω_i ~ N(0, I)", size=SMALL, va="top")
    text(ax, 5.8, 2.2, "drawn once", size=SMALL, va="top")
    arrow(ax, (1.6, 9.2), (4.4, 7.2), role="query")
    arrow(ax, (1.6, 2.8), (4.4, 4.4), role="key")
    # the feature map
    box(ax, 8.2, 4.9, 6.6, 1.8, role=None)
    text(ax, 11.5, 6.15, "φ(x)_i =", size=SMALL)
    text(ax, 11.5, 5.45, "exp(ω_i·x − |x|²/2) / √m", size=SMALL)
    arrow(ax, (7.1, 5.8), (8.1, 5.8))
    # the features
    fq = rng.uniform(0.1, 0.95, M)
    fk = rng.uniform(0.1, 0.95, M)
    vector(ax, 15.6, 9.0, M, "query", cell=CELL, values=fq)
    text(ax, 18.0, 10.15, "φ(q): m features", size=SMALL)
    vector(ax, 15.6, 2.0, M, "key", cell=CELL, values=fk)
    text(ax, 18.0, 1.5, "φ(k): m features", size=SMALL)
    arrow(ax, (14.8, 6.6), (15.5, 8.9), role="query")
    arrow(ax, (14.8, 5.0), (15.5, 2.7), role="key")
    # the dot product and the kernel it estimates
    box(ax, 20.6, 4.9, 5.0, 1.8, "Σ_i φ(q)_i φ(k)_i", role="score", size=SMALL)
    arrow(ax, (20.5, 9.3), (22.6, 6.8), role="query")
    arrow(ax, (20.5, 2.3), (22.6, 4.8), role="key")
    vector(ax, 26.8, 5.5, 1, "score", cell=CELL)
    arrow(ax, (25.7, 5.8), (26.7, 5.8), role="score")
    text(ax, 27.1, 7.1, "≈ exp(q · k)", size=FONT, role="score")
    text(ax, 27.1, 4.6, "(q, k scaled", size=SMALL)
    text(ax, 27.1, 3.9, "by D^(-1/4))", size=SMALL)
    text(ax, 15.0, 0.45, "Averaged over W the estimate is exact, E[φ(q) · φ(k)] = exp(q · k); "
         "one draw of m rows errs by about 1/√m.", size=SMALL)
    return fig
