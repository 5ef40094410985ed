"""Chapter 01: the RNN encoder-decoder and its fixed-length summary."""
from __future__ import annotations

from diagrams.style import FONT, SMALL, arrow, box, canvas, diagram, text, vector


@diagram("01_encoder_decoder")
def encoder_decoder():
    fig, ax = canvas(30, 12.4)
    src = ["the", "black", "cat", "."]
    bw, bh, step = 2.2, 1.0, 2.9
    xs = [0.6 + i * step for i in range(len(src))]
    text(ax, 6.0, 11.6, "encoder: bidirectional GRU", size=FONT + 1,
         weight="bold")
    fwd, bwd = [], []
    for i, (x, word) in enumerate(zip(xs, src)):
        box(ax, x, 0.6, bw, bh, word, role="input")
        fwd.append(box(ax, x, 3.4, bw, bh, rf"$\overrightarrow{{h}}_{i + 1}$",
                       role="state"))
        bwd.append(box(ax, x, 6.2, bw, bh, rf"$\overleftarrow{{h}}_{i + 1}$",
                       role="state"))
        arrow(ax, (x + bw / 2, 0.6 + bh), (x + bw / 2, 3.4))
        arrow(ax, (x + bw - 0.25, 0.6 + bh), (x + bw - 0.25, 6.2), lw=0.6)
    for i in range(len(src) - 1):
        arrow(ax, (xs[i] + bw, 3.9), (xs[i + 1], 3.9), role="state")
        arrow(ax, (xs[i + 1], 6.7), (xs[i] + bw, 6.7), role="state")
    white = dict(facecolor="white", edgecolor="none", pad=0.5)
    text(ax, 6.0, 2.55, "forward GRU reads left to right", size=SMALL,
         bbox=white)
    text(ax, 6.0, 7.7, "backward GRU reads right to left", size=SMALL,
         bbox=white)

    # the summary: last forward state and first backward state, concatenated
    cx, cy = 13.6, 4.3
    vector(ax, cx, cy, 2, "output", vertical=True, cell=0.9)
    text(ax, cx + 0.45, cy - 0.6, "c", size=FONT + 2, role="output",
         weight="bold")
    text(ax, cx + 0.45, cy - 1.5, "(B, 64)", size=SMALL)
    text(ax, cx + 0.45, 9.9, "the only thing the\ndecoder sees:\nthe same "
         "size for\n3 or 60 words", size=SMALL, role="output")
    arrow(ax, (xs[-1] + bw, 3.9), (cx, cy + 0.45), role="output")
    arrow(ax, (xs[0] + bw / 2, 6.2 + bh), (cx, cy + 1.35), role="output",
          rad=-0.45)

    # the decoder: c initialises the state and is fed at every step
    text(ax, 23.6, 11.6, "decoder: GRU", size=FONT + 1, weight="bold")
    prev, out = ["<bos>", "le", "chat"], ["le", "chat", "noir"]
    dx = [17.6 + i * 4.1 for i in range(3)]
    for i, x in enumerate(dx):
        box(ax, x, 0.6, 2.6, bh, prev[i], role="input")
        box(ax, x, 4.3, 2.6, 1.3, rf"$s_{i + 1}$", role="state")
        box(ax, x, 8.0, 2.6, bh, out[i], role="none")
        arrow(ax, (x + 1.3, 0.6 + bh), (x + 1.3, 4.3))
        arrow(ax, (x + 1.3, 5.6), (x + 1.3, 8.0))
        arrow(ax, (cx + 0.9, cy + 0.2), (x + 0.4, 4.3), role="output",
              dashed=True, rad=0.25, lw=0.9)
        if i:
            arrow(ax, (dx[i - 1] + 2.6, 4.95), (x, 4.95), role="state")
    text(ax, 23.6, 9.6, "next word out", size=SMALL)
    text(ax, 21.2, 2.55, "c at every step", size=SMALL, role="output",
         bbox=white)
    return fig
