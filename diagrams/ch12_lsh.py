"""Chapter 12: LSH attention, from buckets to chunks, drawn from the library's own code."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.patches import Rectangle

from attention_lib.efficient import clustered as C
from diagrams.style import FONT, INK, SMALL, canvas, diagram, matrix, text

N, BUCKETS, CHUNK = 12, 4, 3


def _example():
    """Bucket of every position (N,), the sorted order (N,) and the LSH mask (N, N)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 1, N, 8, generator=gen, dtype=torch.float64)
    rot = C.random_rotations(8, BUCKETS, generator=gen, dtype=torch.float64)
    buckets = C.lsh_hash(x, rot)  # (1, 1, 1, N)
    b = buckets[0, 0, 0]
    order = (b * N + torch.arange(N)).argsort()  # by (bucket, position)
    mask = C.lsh_mask(buckets, CHUNK)[0, 0]
    return b.numpy(), order.numpy(), mask.numpy()


def _row(ax, x0, y0, buckets, positions):
    """A row of tokens: the bucket inside each cell, the position above it."""
    shade = 0.15 + 0.2 * buckets[None, :]
    cells = matrix(ax, x0, y0, 1, N, "query", values=shade)
    for i in range(N):
        cx, cy = cells[0, i]
        text(ax, cx, cy, str(buckets[i]), size=SMALL)
        text(ax, cx, cy + 0.85, str(positions[i]), size=SMALL, role="input")
    return cells


@diagram("12_lsh_buckets")
def lsh_buckets():
    b, order, mask = _example()
    fig, ax = canvas(34, 16.5)
    # 1. hash every vector, 2. sort by bucket and cut into chunks
    text(ax, 0.3, 15.6, "1. hash: bucket = argmax [x R ; −x R]", ha="left",
         size=FONT, weight="bold")
    text(ax, 0.3, 14.5, "positions (grey) and their buckets", ha="left",
         size=SMALL)
    _row(ax, 0.3, 11.6, b, np.arange(N))
    text(ax, 0.3, 9.6, "2. sort by (bucket, position), cut into chunks",
         ha="left", size=FONT, weight="bold")
    _row(ax, 0.3, 5.6, b[order], order)
    for c in range(N // CHUNK + 1):
        ax.plot([0.3 + c * CHUNK] * 2, [5.2, 6.9], color=INK, lw=2.2)
    for c in range(N // CHUNK):
        text(ax, 0.3 + (c + 0.5) * CHUNK, 4.6, f"chunk {c}", size=SMALL)
    text(ax, 0.3, 3.0, "each chunk attends to itself and the chunk before",
         ha="left", size=SMALL)
    text(ax, 0.3, 2.0, "(cyclically), to keys of its own bucket only",
         ha="left", size=SMALL)
    # 3. the scores computed, in sorted order
    x0, y0 = 17.5, 1.0
    text(ax, x0 + N / 2, 15.6, "3. scores, sorted order", size=FONT,
         weight="bold")
    sorted_mask = mask[order][:, order]
    matrix(ax, x0, y0, N, N, "score", masked=~sorted_mask, lw=0.3)
    for c in range(N // CHUNK):  # the (m, 2m) tile each chunk computes
        top = y0 + N - (c + 1) * CHUNK
        cols = [c - 1 if c else N // CHUNK - 1, c]
        for k in cols:
            ax.add_patch(Rectangle((x0 + k * CHUNK, top), CHUNK, CHUNK,
                                   fill=False, edgecolor=INK, lw=1.6))
    text(ax, x0 - 0.5, y0 + N / 2, "queries", size=SMALL, rotation=90)
    text(ax, x0 + N / 2, y0 + N + 0.6, "keys", size=SMALL)
    text(ax, x0 + N + 0.4, y0 + N - 1.5, "framed: tiles\ncomputed", size=SMALL,
         ha="left")
    text(ax, x0 + N + 0.4, y0 + N - 5.0, "purple: same\nbucket", size=SMALL,
         ha="left")
    return fig
