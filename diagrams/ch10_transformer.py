"""Chapter 10: the Transformer's encoder and decoder blocks, post-norm and pre-norm."""
from __future__ import annotations

from matplotlib.patches import Circle

from diagrams.style import FONT, INK, SMALL, arrow, box, canvas, diagram, text

W = 5.0  # box width, in cells
HEIGHT = {"box": 1.5, "ln": 0.9, "add": 0.7}
GAP = 0.55


def _column(ax, cx, items, skips, *, bottom=1.6, final=None):
    """Stack ``items`` (kind, label, role) bottom-up at centre ``cx``; draw the residual
    connections ``skips``: (index of the item the skip starts below, index of the add).
    Returns the (bottom, top) of every item."""
    spans, prev = [], bottom
    for kind, label, role in items:
        y0 = prev + GAP
        h = HEIGHT[kind]
        arrow(ax, (cx, prev), (cx, y0), lw=1.0)
        if kind == "add":
            ax.add_patch(Circle((cx, y0 + h / 2), h / 2, facecolor="white",
                                edgecolor=INK, lw=1.1))
            text(ax, cx, y0 + h / 2, "+", size=FONT + 1)
        else:
            box(ax, cx - W / 2, y0, W, h, role=role, fill=0.3 if kind == "ln" else 0.18)
            for i, line in enumerate(label.split("\n")):
                n = len(label.split("\n"))
                text(ax, cx, y0 + h / 2 + 0.3 * (n - 1) - 0.6 * i, line, size=SMALL)
        spans.append((y0, y0 + h))
        prev = y0 + h
    side = cx - W / 2 - 0.6
    for start, add in skips:
        ys = spans[start][0] - GAP / 2
        ya = (spans[add][0] + spans[add][1]) / 2
        ax.plot([cx, side, side], [ys, ys, ya], color=INK, lw=1.6,
                solid_joinstyle="miter")
        arrow(ax, (side, ya), (cx - HEIGHT["add"] / 2, ya), lw=1.6)
    top = prev
    if final:
        y0 = top + GAP
        arrow(ax, (cx, top), (cx, y0), lw=1.0)
        box(ax, cx - W / 2, y0, W, HEIGHT["ln"], role="state", fill=0.3, dashed=True)
        text(ax, cx, y0 + HEIGHT["ln"] / 2, final, size=SMALL)
        top = y0 + HEIGHT["ln"]
    arrow(ax, (cx, top), (cx, top + 0.7), lw=1.0)
    return spans, top + 0.7


ATTN = ("box", "multi-head\nself-attention", "score")
FFN = ("box", "feed-forward\n(per position)", None)
LN = ("ln", "LayerNorm", "state")
ADD = ("add", "", None)


@diagram("10_transformer_block")
def transformer_block():
    fig, ax = canvas(33, 18.6)
    cols = (5.4, 15.2, 25.2)
    titles = ("encoder, post-norm", "encoder, pre-norm", "decoder, pre-norm")
    notes = (("the paper: LayerNorm after", "each addition, on the main path"),
             ("LayerNorm inside each branch:", "the residual path is the identity"),
             ("causal self-attention, then", "cross-attention to the encoder"))
    # post-norm: x -> attn -> + -> LN -> FFN -> + -> LN
    _, top = _column(ax, cols[0], [ATTN, ADD, LN, FFN, ADD, LN], [(0, 1), (3, 4)])
    # pre-norm: x -> LN -> attn -> + -> LN -> FFN -> +
    _column(ax, cols[1], [LN, ATTN, ADD, LN, FFN, ADD], [(0, 2), (3, 5)],
            final="final LayerNorm")
    dec = [LN, ("box", "causal multi-head\nself-attention", "score"), ADD,
           LN, ("box", "multi-head\ncross-attention", "score"), ADD, LN, FFN, ADD]
    spans, _ = _column(ax, cols[2], dec, [(0, 2), (3, 5), (6, 8)], bottom=0.9)
    # keys and values of the cross-attention come from the encoder
    yc = (spans[4][0] + spans[4][1]) / 2
    arrow(ax, (cols[2] + W / 2 + 2.2, yc), (cols[2] + W / 2, yc), role="key", lw=1.4)
    text(ax, cols[2] + W / 2 + 0.4, yc + 1.15, "keys, values", size=SMALL, ha="left",
         role="key")
    text(ax, cols[2] + W / 2 + 0.4, yc + 0.6, "from encoder", size=SMALL, ha="left",
         role="key")
    for cx, title, (a, b) in zip(cols, titles, notes):
        text(ax, cx, 18.1, title, weight="bold")
        text(ax, cx, 17.3, a, size=SMALL)
        text(ax, cx, 16.6, b, size=SMALL)
    for cx in cols[:2]:
        text(ax, cx, 1.0, "x: (B, N, E)", size=SMALL)
    text(ax, cols[2], 0.35, "y: (B, N_t, E)", size=SMALL)
    text(ax, cols[0] - W / 2 - 0.9, 4.0, "residual", size=SMALL, ha="right",
         rotation=90)
    return fig
