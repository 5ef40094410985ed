"""Chapter 13: Linformer projects the sequence axis of the keys and values."""
from __future__ import annotations

from matplotlib.patches import Rectangle

from diagrams.style import INK, SMALL, arrow, canvas, diagram, matrix, text

N, K, D = 8, 3, 3


def _product(ax, y: float, proj: str, role: str, name: str):
    """One projection: (k, N) @ (N, D) = (k, D), bottom of the tall matrix at y."""
    mid = y + N / 2
    matrix(ax, 0.5, mid - K / 2, K, N, "input",
           label=f"{proj}  (k, N)", label_side="top")
    text(ax, 9.25, mid, "·", size=14)
    matrix(ax, 10.0, y, N, D, role, label=f"{name}  (N, D)",
           label_side="top")
    text(ax, 13.75, mid, "=", size=12)
    matrix(ax, 14.5, mid - K / 2, K, D, role,
           label=f"{proj}{name}  (k, D)", label_side="top")
    return (17.5, mid)


@diagram("13_linformer")
def linformer():
    fig, ax = canvas(41, 24)
    ek = _product(ax, 13.0, "E", "key", "K")
    fv = _product(ax, 1.0, "F", "value", "V")
    # the queries, the N x k scores inside the N x N they replace, the output
    y0 = 7.0
    matrix(ax, 20.0, y0, N, D, "query", label="Q  (N, D)", label_side="bottom")
    ax.add_patch(Rectangle((24.5, y0), N, N, fill=False, edgecolor=INK,
                           lw=0.9, ls="--"))
    matrix(ax, 24.5, y0, N, K, "score")
    text(ax, 24.5 + K / 2, y0 - 0.5, "scores (N, k)", size=SMALL, va="top")
    text(ax, 24.5 + N / 2 + 1.0, y0 + N / 2,
         "never\ncomputed:\nfull scores\n(N, N)", size=SMALL)
    text(ax, 24.5 + N / 2, y0 + N + 0.5, "softmax(Q (EK)ᵀ / √D)", size=SMALL,
         va="bottom")
    matrix(ax, 36.0, y0, N, D, "output", label="output  (N, D)",
           label_side="bottom")
    arrow(ax, ek, (24.5 + K / 2, y0 + N + 1.7), role="key", rad=-0.2)
    arrow(ax, (23.2, y0 + N / 2), (24.4, y0 + N / 2), role="query")
    arrow(ax, (24.5 + N + 0.1, y0 + N / 2), (35.9, y0 + N / 2),
          role="score", label="· FV", label_offset=(0.0, 0.5))
    arrow(ax, fv, (34.2, y0 + N / 2 - 0.3), role="value", rad=0.3)
    text(ax, 31.0, 21.5, "k projected keys and values,\nwhatever the length N",
         size=SMALL)
    return fig
