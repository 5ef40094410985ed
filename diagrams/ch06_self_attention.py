"""Chapter 06: where queries, keys and values come from."""
from __future__ import annotations

from diagrams.style import FONT, SMALL, arrow, box, canvas, diagram, matrix, text

C = 0.55  # cell size


def _m(ax, x, y, rows, role, label, above=False):
    """A (rows x 3) matrix with its bottom-left corner at (x, y); returns its edges."""
    matrix(ax, x, y, rows, 3, role, cell=C)
    w, h = 3 * C, rows * C
    if above:
        text(ax, x + w / 2, y + h + 0.15, label, size=SMALL, va="bottom")
    else:
        text(ax, x + w / 2, y - 0.3, label, size=SMALL, va="top")
    return {"left": (x, y + h / 2), "right": (x + w, y + h / 2)}


def _attend(ax, x0, q, k, v, rows_out, shape):
    """The attention box fed by q, k, v, and its output."""
    centre = box(ax, x0 + 6.9, 4.9, 4.4, 1.6, "softmax(QKᵀ/√D)\n× V", size=SMALL,
                 role="score")
    ends = ((x0 + 7.5, 6.5), (x0 + 6.9, centre[1]), (x0 + 7.5, 4.9))
    for edge, role, end in zip((q, k, v), ("query", "key", "value"), ends):
        arrow(ax, edge["right"], end, role=role, lw=1.0)
    out = _m(ax, x0 + 12.1, centre[1] - rows_out * C / 2, rows_out, "output",
             f"output\n{shape}")
    arrow(ax, (x0 + 11.3, centre[1]), out["left"], role="output")


@diagram("06_self_vs_cross")
def self_vs_cross():
    fig, ax = canvas(30, 13)
    # self-attention: Q, K and V all from the same X
    x0 = 0.3
    text(ax, x0 + 7.2, 12.5, "self-attention: Q, K, V from one sequence",
         size=FONT, weight="bold")
    xin = _m(ax, x0 + 0.4, 4.6, 4, "input", "X (B, N, E)")
    q = _m(ax, x0 + 4.2, 8.9, 4, "query", "Q = X W_Q", above=True)
    k = _m(ax, x0 + 4.2, 4.6, 4, "key", "K = X W_K", above=True)
    v = _m(ax, x0 + 4.2, 1.3, 4, "value", "V = X W_V", above=True)
    for target, role in ((q, "query"), (k, "key"), (v, "value")):
        arrow(ax, xin["right"], target["left"], role=role)
    _attend(ax, x0, q, k, v, 4, "(B, N, D)")
    # cross-attention: Q from the decoder, K and V from the encoder's memory
    x0 = 15.3
    text(ax, x0 + 7.2, 12.5, "cross-attention: Q from X, K and V from M",
         size=FONT, weight="bold")
    xdec = _m(ax, x0 + 0.4, 9.4, 3, "input", "X (B, Nq, E)")
    mem = _m(ax, x0 + 0.4, 2.7, 5, "state", "M (B, Nk, E)")
    q = _m(ax, x0 + 4.2, 9.4, 3, "query", "Q = X W_Q", above=True)
    k = _m(ax, x0 + 4.2, 5.3, 5, "key", "K = M W_K", above=True)
    v = _m(ax, x0 + 4.2, 1.0, 5, "value", "V = M W_V", above=True)
    arrow(ax, xdec["right"], q["left"], role="query")
    for target, role in ((k, "key"), (v, "value")):
        arrow(ax, mem["right"], target["left"], role=role)
    _attend(ax, x0, q, k, v, 3, "(B, Nq, D)")
    text(ax, x0 + 1.2, 7.7, "decoder", size=SMALL)
    text(ax, x0 + 1.2, 6.4, "encoder", size=SMALL)
    return fig
