"""Chapter 14: linear attention, the same product in two orders."""
from __future__ import annotations

from diagrams.style import FONT, SMALL, canvas, diagram, matrix, text

N, D, CELL = 8, 3, 0.5


def _mat(ax, x, y, rows, cols, role, name, shape):
    """A matrix of rows x cols cells (bottom-left at x, y), its name above, shape below."""
    matrix(ax, x, y, rows, cols, role, cell=CELL, label=name, label_side="top")
    text(ax, x + cols * CELL / 2, y - 0.35, shape, size=SMALL, va="top")
    return x + cols * CELL


def _op(ax, x, y, s):
    text(ax, x, y, s, size=FONT + 3)


@diagram("14_associativity")
def associativity():
    fig, ax = canvas(30, 18.6)
    mid = 2.0  # vertical centre offset of an N-row matrix inside a row band
    for y0, title in ((10.2, "(Q Kᵀ) V: the N × N matrix first"),
                      (0.8, "Q (Kᵀ V): the d × d matrix first")):
        text(ax, 0.3, y0 + 7.6, title, size=FONT + 1, weight="bold", ha="left")
    # top row: (Q K^T) V
    y = 11.6
    x = _mat(ax, 0.5, y, N, D, "query", "Q", "N × d")
    _op(ax, x + 0.5, y + mid, "·")
    x = _mat(ax, x + 1.0, y + mid - D * CELL / 2, D, N, "key", "Kᵀ", "d × N")
    _op(ax, x + 0.6, y + mid, "=")
    x = _mat(ax, x + 1.2, y, N, N, "score", "Q Kᵀ", "N × N")
    _op(ax, x + 0.5, y + mid, "·")
    x = _mat(ax, x + 1.0, y, N, D, "value", "V", "N × d")
    _op(ax, x + 0.6, y + mid, "=")
    _mat(ax, x + 1.2, y, N, D, "output", "output", "N × d")
    text(ax, 29.6, y + mid + 0.9, "2N²d + 2N²d", ha="right")
    text(ax, 29.6, y + mid - 0.1, "= 4N²d FLOPs", ha="right")
    text(ax, 29.6, y + mid - 1.1, "grows as N²", ha="right", size=SMALL)
    # bottom row: Q (K^T V), the inner product first
    y = 2.2
    x = _mat(ax, 0.5, y + mid - D * CELL / 2, D, N, "key", "Kᵀ", "d × N")
    _op(ax, x + 0.5, y + mid, "·")
    x = _mat(ax, x + 1.0, y, N, D, "value", "V", "N × d")
    _op(ax, x + 0.6, y + mid, "=")
    x = _mat(ax, x + 1.2, y + mid - D * CELL / 2, D, D, "state", "Kᵀ V",
             "d × d")
    text(ax, x + 1.3, y + mid, "then", size=SMALL)
    x = _mat(ax, x + 2.6, y, N, D, "query", "Q", "N × d")
    _op(ax, x + 0.5, y + mid, "·")
    x = _mat(ax, x + 1.0, y + mid - D * CELL / 2, D, D, "state", "Kᵀ V",
             "d × d")
    _op(ax, x + 0.6, y + mid, "=")
    _mat(ax, x + 1.2, y, N, D, "output", "output", "N × d")
    text(ax, 29.6, y + mid + 0.9, "2Nd² + 2Nd²", ha="right")
    text(ax, 29.6, y + mid - 0.1, "= 4Nd² FLOPs", ha="right")
    text(ax, 29.6, y + mid - 1.1, "grows as N", ha="right", size=SMALL)
    text(ax, 15.0, 0.45, "Same output (matrix products are associative); "
         "cost ratio N / d: 64 at N = 4096, d = 64", size=SMALL)
    return fig
