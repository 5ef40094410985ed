"""Chapter 18: an image captioner attending over the cells of a CNN's feature grid."""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Circle, Polygon, Rectangle

from diagrams.style import (
    FONT,
    INK,
    SMALL,
    arrow,
    box,
    canvas,
    diagram,
    matrix,
    text,
    vector,
)


def _image(ax, x: float, y: float, size: float):
    """A scene: a black square with a red circle (top left) and a green triangle."""
    ax.add_patch(Rectangle((x, y), size, size, facecolor="#111111", edgecolor=INK, lw=0.8))
    ax.add_patch(Circle((x + 0.3 * size, y + 0.7 * size), 0.14 * size, facecolor="#E23B2E"))
    ax.add_patch(Polygon([(x + 0.55 * size, y + 0.15 * size), (x + 0.9 * size, y + 0.15 * size),
                          (x + 0.725 * size, y + 0.48 * size)], facecolor="#2DBE4C"))


@diagram("18_captioner")
def captioner():
    fig, ax = canvas(30, 13)
    top = 5.2  # bottom edge of the image and the two grids
    # image -> CNN -> grid of annotation vectors
    _image(ax, 0.4, top, 4.0)
    text(ax, 2.4, top - 0.45, "image", va="top")
    text(ax, 2.4, top - 1.15, "3 × 32 × 32", va="top", size=SMALL)
    arrow(ax, (4.5, top + 2.0), (5.5, top + 2.0))
    box(ax, 5.5, top + 1.2, 2.2, 1.6, "CNN")
    arrow(ax, (7.7, top + 2.0), (8.7, top + 2.0))
    grid = np.full((8, 8), 0.45)
    matrix(ax, 8.8, top, 8, 8, "value", values=grid, cell=0.5, lw=0.5)
    text(ax, 10.8, top - 0.45, "annotation vectors $h_j$", va="top")
    text(ax, 10.8, top - 1.15, "one per cell: 8 × 8 cells, C = 64", va="top", size=SMALL)

    # decoder state (the query) and the scores
    vector(ax, 11.4, 1.0, 4, "state", cell=0.6)
    text(ax, 11.2, 1.5, "decoder state $s_{t-1}$", ha="right", size=FONT)
    text(ax, 11.2, 0.75, "(the query)", ha="right", size=SMALL)
    arrow(ax, (12.4, 1.7), (15.4, top + 0.6), role="state", rad=-0.25)
    arrow(ax, (12.9, top + 2.0), (15.4, top + 2.0), role="value")
    text(ax, 14.15, top + 2.5, "scores", size=SMALL)
    text(ax, 21.0, 2.2, r"$e_{tj} = v^\top \tanh(W s_{t-1} + U h_j)$", size=SMALL)
    text(ax, 21.0, 1.2, r"$\alpha_t = \mathrm{softmax}(e_t)$", size=SMALL)

    # attention weights over the cells, peaked on the red circle
    rr, cc = np.mgrid[0:8, 0:8]
    w = np.exp(-((rr - 2.3) ** 2 + (cc - 2.3) ** 2) / 1.4)
    w = w / w.max()
    matrix(ax, 15.5, top, 8, 8, "score", values=0.05 + 0.95 * w, cell=0.5, lw=0.5)
    text(ax, 17.5, top - 0.45, r"weights $\alpha_{tj}$", va="top")
    text(ax, 17.5, top - 1.15, "over the 64 cells", va="top", size=SMALL)

    # context vector = weighted sum of the annotation vectors
    arrow(ax, (19.6, top + 2.0), (21.0, top + 2.0), role="score")
    arrow(ax, (10.8, top + 4.1), (21.4, top + 3.35), role="value", rad=-0.25, dashed=True)
    text(ax, 16.0, 11.0, "values $h_j$", size=SMALL, role="value")
    vector(ax, 21.1, top + 0.8, 4, "output", vertical=True, cell=0.6)
    text(ax, 21.4, top + 0.35, "context", va="top")
    text(ax, 21.4, top - 0.35, r"$c_t = \sum_j \alpha_{tj} h_j$", va="top", size=SMALL)

    # GRU -> next word
    arrow(ax, (21.8, top + 2.0), (23.2, top + 2.0), role="output")
    box(ax, 23.2, top + 1.2, 2.2, 1.6, "GRU", role="state")
    arrow(ax, (13.8, 1.3), (24.3, top + 1.15), role="state", rad=0.3)
    arrow(ax, (25.4, top + 2.0), (26.4, top + 2.0))
    box(ax, 26.4, top + 1.3, 3.2, 1.4, "“red”", size=FONT + 1)
    text(ax, 28.0, top + 0.85, "next word", va="top", size=SMALL)
    return fig
