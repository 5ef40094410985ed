"""Chapter 03: four scoring functions, what each computes from q and k."""
from __future__ import annotations

from diagrams.style import (
    FONT,
    SMALL,
    arrow,
    box,
    canvas,
    diagram,
    matrix,
    text,
    vector,
)


def _qk(ax, x, y, n=4, q_label="q", k_label="k"):
    """A query column and a key column of ``n`` cells, bottoms at y."""
    vector(ax, x, y, n, "query", vertical=True, cell=0.6)
    text(ax, x + 0.3, y - 0.5, q_label, role="query")
    vector(ax, x + 1.4, y, n, "key", vertical=True, cell=0.6)
    text(ax, x + 1.7, y - 0.5, k_label, role="key")


def _score(ax, x, y, label):
    vector(ax, x, y, 1, "score", cell=0.8)
    text(ax, x + 0.4, y - 0.5, label, size=SMALL, role="score")


def _dot_product(ax, x, y, title):
    """A panel's title, q and k, and the "multiply, sum" box the dot-product scores share."""
    text(ax, x + 0.2, y + 5.6, title, size=FONT + 1, weight="bold", ha="left")
    _qk(ax, x + 0.6, y + 1.6)
    box(ax, x + 3.8, y + 2.2, 3.8, 1.2, "multiply, sum", role="score")
    arrow(ax, (x + 2.6, y + 2.8), (x + 3.8, y + 2.8))


@diagram("03_scoring_functions")
def scoring_functions():
    fig, ax = canvas(30, 13.4)
    panels = [(0.3, 7.0), (15.3, 7.0), (0.3, 0.4), (15.3, 0.4)]

    # dot
    x, y = panels[0]
    _dot_product(ax, x, y, "dot:  $q^\\top k$")
    _score(ax, x + 9.0, y + 2.4, "one score")
    arrow(ax, (x + 7.6, y + 2.8), (x + 9.0, y + 2.8), role="score")
    text(ax, x + 7.0, y + 0.5, "(B, Nq, D), (B, Nk, D) → (B, Nq, Nk)",
         size=SMALL)

    # scaled dot
    x, y = panels[1]
    _dot_product(ax, x, y, "scaled dot:  $q^\\top k / \\sqrt{D}$")
    box(ax, x + 8.4, y + 2.2, 1.6, 1.2, "$\\div\\sqrt{D}$", role="score")
    arrow(ax, (x + 7.6, y + 2.8), (x + 8.4, y + 2.8), role="score")
    _score(ax, x + 11.0, y + 2.4, "variance 1")
    arrow(ax, (x + 10.0, y + 2.8), (x + 11.0, y + 2.8), role="score")
    text(ax, x + 7.0, y + 0.5, "keeps the softmax out of saturation",
         size=SMALL)

    # general (bilinear)
    x, y = panels[2]
    text(ax, x + 0.2, y + 5.6, "general:  $q^\\top W k$", size=FONT + 1,
         weight="bold", ha="left")
    vector(ax, x + 0.6, y + 1.6, 3, "query", vertical=True, cell=0.6)
    text(ax, x + 0.9, y + 1.1, "q: Dq", size=SMALL, role="query")
    matrix(ax, x + 2.6, y + 1.6, 3, 4, "input", cell=0.6)
    text(ax, x + 3.8, y + 1.1, "W: (Dq, Dk)", size=SMALL)
    vector(ax, x + 6.2, y + 1.6, 4, "key", vertical=True, cell=0.6)
    text(ax, x + 6.5, y + 1.1, "k: Dk", size=SMALL, role="key")
    text(ax, x + 1.9, y + 2.5, "ᵀ ×", size=SMALL)
    text(ax, x + 5.6, y + 2.5, "×", size=SMALL)
    _score(ax, x + 9.0, y + 2.4, "one score")
    arrow(ax, (x + 7.0, y + 2.8), (x + 9.0, y + 2.8), role="score")
    text(ax, x + 7.0, y + 0.2, "q and k may differ in size; W is learned",
         size=SMALL)

    # additive
    x, y = panels[3]
    text(ax, x + 0.2, y + 5.6, "additive:  $v^\\top \\tanh(W_q q + W_k k)$",
         size=FONT + 1, weight="bold", ha="left")
    _qk(ax, x + 0.6, y + 1.6)
    box(ax, x + 3.6, y + 3.3, 1.8, 1.0, "$W_q q$", role="query")
    box(ax, x + 3.6, y + 1.3, 1.8, 1.0, "$W_k k$", role="key")
    arrow(ax, (x + 1.2, y + 4.0), (x + 3.6, y + 3.8), role="query")
    arrow(ax, (x + 2.6, y + 2.0), (x + 3.6, y + 1.8), role="key")
    box(ax, x + 6.2, y + 2.2, 2.0, 1.2, "+, tanh", role="score")
    arrow(ax, (x + 5.4, y + 3.8), (x + 6.2, y + 3.2))
    arrow(ax, (x + 5.4, y + 1.8), (x + 6.2, y + 2.4))
    box(ax, x + 9.0, y + 2.2, 1.6, 1.2, "$v^\\top$", role="score")
    arrow(ax, (x + 8.2, y + 2.8), (x + 9.0, y + 2.8), role="score",
          label="Hd", label_offset=(0.0, 0.35))
    _score(ax, x + 11.4, y + 2.4, "one score")
    arrow(ax, (x + 10.6, y + 2.8), (x + 11.4, y + 2.8), role="score")
    text(ax, x + 7.0, y + 0.2, "an MLP on every (q, k) pair: (B, Nq, Nk, Hd)",
         size=SMALL)
    return fig
