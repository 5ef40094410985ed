"""Chapter 09: the path from one position to another in a CNN, an RNN and self-attention."""
from __future__ import annotations

from matplotlib.patches import Circle

from diagrams.style import INK, SMALL, arrow, canvas, diagram, text, tint

N = 7          # positions
STEP = 1.3     # between neighbouring positions
R = 0.33       # node radius
FAINT = "#C8C8C8"


def _node(ax, x, y, role):
    ax.add_patch(Circle((x, y), R, facecolor=tint(role, 0.55), edgecolor=INK, lw=0.8,
                        zorder=3))


def _line(ax, a, b, strong=False):
    ax.plot([a[0], b[0]], [a[1], b[1]], color=INK if strong else FAINT,
            lw=2.2 if strong else 0.7, zorder=2 if strong else 1)


def _row(ax, x0, y, role):
    pts = [(x0 + i * STEP, y) for i in range(N)]
    for p in pts:
        _node(ax, *p, role)
    return pts


@diagram("09_paths")
def paths():
    fig, ax = canvas(33, 12)
    top = 10.8

    # convolution, kernel 5: each layer widens what a position sees by 2 on each side
    x0, reach = 0.8, 2
    ys = (1.8, 4.0, 6.2, 8.4)
    rows = [_row(ax, x0, y, "input" if li == 0 else ("output" if li == 3 else "state"))
            for li, y in enumerate(ys)]
    for li in range(1, len(rows)):
        for i in range(N):
            for j in range(max(0, i - reach), min(N, i + reach + 1)):
                _line(ax, rows[li - 1][j], rows[li][i])
    for li, (i, j) in enumerate(((0, 2), (2, 4), (4, 6)), start=1):
        _line(ax, rows[li - 1][i], rows[li][j], strong=True)
    text(ax, x0 + 3 * STEP, top, "convolution, kernel k = 5", weight="bold")
    text(ax, x0 + 3 * STEP, top - 0.8, "stacked layers", size=SMALL)
    text(ax, x0 + 3 * STEP, 0.5, "input 0 to output 6: 3 layers", size=SMALL)
    for li, y in enumerate(ys[1:], start=1):
        text(ax, x0 + 6 * STEP + 0.6, y, f"layer {li}", size=SMALL, ha="left")

    # recurrent: the state carries everything, one step at a time
    x0 = 12.0
    xs = _row(ax, x0, 1.8, "input")
    hs = _row(ax, x0, 5.6, "state")
    for i in range(N):
        _line(ax, xs[i], hs[i], strong=i == 0)
    for i in range(1, N):
        arrow(ax, (hs[i - 1][0] + R, hs[i - 1][1]), (hs[i][0] - R, hs[i][1]), lw=2.2)
    text(ax, x0 + 3 * STEP, top, "recurrent (GRU)", weight="bold")
    text(ax, x0 + 3 * STEP, top - 0.8, "one cell step per position", size=SMALL)
    text(ax, x0 + 3 * STEP, 6.6, "state h_t = output t", size=SMALL)
    text(ax, x0 + 3 * STEP, 0.5, "input 0 to output 6: 7 steps, in order", size=SMALL)

    # self-attention: every output reads every input in one layer
    x0 = 23.2
    xs = _row(ax, x0, 1.8, "input")
    ys_ = _row(ax, x0, 6.2, "output")
    for i in range(N):
        for j in range(N):
            _line(ax, xs[j], ys_[i], strong=(i, j) == (6, 0))
    text(ax, x0 + 3 * STEP, top, "self-attention", weight="bold")
    text(ax, x0 + 3 * STEP, top - 0.8, "every pair in one layer", size=SMALL)
    text(ax, x0 + 3 * STEP, 0.5, "input 0 to output 6: 1 layer", size=SMALL)
    return fig
