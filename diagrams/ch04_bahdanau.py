"""Chapter 04: one step of Bahdanau's attention decoder."""
from __future__ import annotations

import numpy as np

from diagrams.style import FONT, SMALL, arrow, box, canvas, diagram, matrix, text, vector


@diagram("04_bahdanau_step")
def bahdanau_step():
    fig, ax = canvas(30, 15)
    words = ["the", "black", "cat", "sleeps", "."]
    scores = np.array([0.2, 0.9, 2.6, 0.4, -0.8])
    alpha = np.exp(scores) / np.exp(scores).sum()
    x0, step = 5.6, 2.2
    xs = [x0 + j * step for j in range(len(words))]

    # the annotations: one encoder state per source word
    for j, (x, w) in enumerate(zip(xs, words)):
        text(ax, x + 0.5, 0.5, w, size=SMALL)
        vector(ax, x, 1.1, 3, "state", vertical=True, cell=0.7)
        text(ax, x + 0.5, 3.6, rf"$h_{j + 1}$", size=SMALL)
    text(ax, 2.4, 2.1, "annotations\n(encoder\nstates)\n(B, Ns, 2H)",
         size=SMALL, role="state")

    # the query: the previous decoder state
    vector(ax, 0.8, 9.6, 3, "query", vertical=True, cell=0.7)
    text(ax, 1.15, 12.1, r"$s_{t-1}$", role="query")
    text(ax, 1.15, 9.0, "query\n(B, H)", size=SMALL, role="query")

    # the additive score
    sx, sw = x0 - 0.2, xs[-1] + 1.2 - x0
    box(ax, sx, 5.2, sw, 1.2, r"$e_{tj} = v^\top \tanh(W s_{t-1} + U h_j)$",
        role="score")
    for x in xs:
        arrow(ax, (x + 0.35, 3.9), (x + 0.35, 5.2), lw=0.8)
    arrow(ax, (1.5, 10.0), (sx, 6.0), role="query")

    # scores, then weights
    e_row = matrix(ax, x0 + 0.3, 7.4, 1, 5, "score", values=np.full((1, 5), .25),
                   cell=1.0)
    for j in range(5):
        text(ax, e_row[0, j, 0], e_row[0, j, 1], f"{scores[j]:.1f}", size=SMALL)
        arrow(ax, (e_row[0, j, 0], 6.4), (e_row[0, j, 0], 6.9), lw=0.6)
    text(ax, x0 + 5.6, 7.9, "scores $e_t$", size=SMALL, ha="left")
    a_row = matrix(ax, x0 + 0.3, 10.0, 1, 5, "score",
                   values=(alpha / alpha.max())[None], cell=1.0)
    for j in range(5):
        text(ax, a_row[0, j, 0], a_row[0, j, 1], f"{alpha[j]:.2f}".lstrip("0"),
             size=SMALL)
    arrow(ax, (x0 + 2.8, 8.4), (x0 + 2.8, 10.0), role="score",
          label="softmax", label_offset=(0.95, 0.0))
    text(ax, x0 + 2.8, 11.5, r"weights $\alpha_t$: (B, Ns)", size=SMALL)

    # the context: weighted sum of the annotations
    cx = 17.2
    vector(ax, cx, 9.6, 3, "output", vertical=True, cell=0.7)
    text(ax, cx + 0.35, 12.1, r"$c_t$", role="output")
    text(ax, cx + 0.9, 9.2, "context\n(B, 2H)", size=SMALL, role="output",
         ha="left")
    arrow(ax, (x0 + 5.3, 10.5), (cx, 10.5), role="score")
    text(ax, 14.4, 11.2, r"$\sum_j \alpha_{tj} h_j$", size=SMALL, role="output")
    arrow(ax, (xs[-1] + 0.7, 2.2), (cx + 0.35, 9.6), role="state", rad=0.25,
          lw=0.8)

    # the recurrent step
    gx, gy = 22.0, 9.4
    box(ax, gx, gy, 3.2, 2.4, "GRU", role="state")
    arrow(ax, (cx + 0.7, 10.6), (gx, 10.6), role="output")
    arrow(ax, (1.15, 12.4), (gx + 1.0, gy + 2.4), role="query", rad=-0.12)
    box(ax, gx, 5.6, 3.2, 1.0, r"$e(y_{t-1})$", role="input")
    arrow(ax, (gx + 1.6, 6.6), (gx + 1.6, gy))
    vector(ax, 27.4, 9.6, 3, "state", vertical=True, cell=0.7)
    text(ax, 27.75, 12.1, r"$s_t$", role="state")
    text(ax, 27.75, 9.0, "new state", size=SMALL, role="state")
    arrow(ax, (gx + 3.2, 10.6), (27.4, 10.6), role="state")
    text(ax, 24.6, 4.3, r"$p(y_t) = \mathrm{softmax}(W_o [s_t; c_t; e(y_{t-1})])$",
         size=SMALL)
    text(ax, 15.0, 14.3, "one decoder step: look (scores, weights, context), "
         "then update the state", size=FONT, weight="bold")
    return fig
