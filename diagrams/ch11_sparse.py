"""Chapter 11: fixed sparse patterns, drawn from the library's own mask builders."""
from __future__ import annotations

import torch

from attention_lib import masks
from diagrams.style import FONT, SMALL, canvas, diagram, legend, matrix, text

N, BLOCK = 16, 2


def _patterns() -> dict:
    """The five masks of the figure, (N, N) bool, True = may attend."""
    gen = torch.Generator().manual_seed(3)
    nb = N // BLOCK
    rand = masks.random_blocks(nb, 1, window_blocks=1, num_global_blocks=1,
                               generator=gen)                    # (blocks, 1)
    only_random = torch.zeros(nb, nb, dtype=torch.bool)
    rows = torch.arange(nb)[:, None].expand_as(rand)
    only_random[rows[rand >= 0], rand[rand >= 0]] = True
    return {
        ("sliding window", "|i − j| ≤ 2"): masks.sliding_window_mask(N, 2),
        ("strided", "(i − j) mod 4 = 0"): masks.dilated_window_mask(N, N, 4),
        ("global tokens", "i = 0 or j = 0"): masks.create_mask(
            masks.global_tokens_mod(1), N),
        ("random blocks", "1 block per row"): masks.create_mask(
            masks.block_layout_mod(only_random, BLOCK), N),
        ("BigBird", "window ∪ global ∪ random"): masks.bigbird_mask(
            N, BLOCK, rand, window_blocks=1, num_global_blocks=1),
    }


@diagram("11_sparse_patterns")
def sparse_patterns():
    step, y0 = N + 4.0, 4.8
    fig, ax = canvas(5 * step + 1.0, N + 10.6)
    for i, ((title, rule), allowed) in enumerate(_patterns().items()):
        x0 = 2.2 + i * step
        matrix(ax, x0, y0, N, N, "score", masked=~allowed.numpy(), lw=0.25)
        text(ax, x0 + N / 2, y0 + N + 4.2, title, size=FONT, weight="bold")
        text(ax, x0 + N / 2, y0 + N + 1.6, rule, size=SMALL)
        text(ax, x0 + N / 2, y0 - 1.4,
             f"≤ {int(allowed.sum(-1).max())} keys per query", size=SMALL)
    text(ax, 1.3, y0 + N / 2, "query i", size=SMALL, rotation=90)
    legend(ax, 2.2, 0.7, ["score", "mask"],
           labels={"score": "score computed", "mask": "masked (skipped)"},
           step=16)
    text(ax, 2.2 + 2 * step + 8, 1.0,
         "each grid: rows are queries i, columns keys j, N = 16",
         size=SMALL, ha="left")
    return fig
