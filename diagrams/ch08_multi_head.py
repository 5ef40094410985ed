"""Chapter 08: multi-head attention's split and merge of the heads."""
from __future__ import annotations

import numpy as np

from diagrams.style import SMALL, arrow, box, canvas, diagram, matrix, text

N, H, D = 3, 2, 3  # tokens, heads, features per head: E = H * D = 6
SHADE = (0.6, 0.15)  # head 1's features dark, head 2's light


def _cells(ax, x, y, tokens, shades, role):
    """A grid whose cells are shaded by head and labelled with their token."""
    tokens, shades = np.asarray(tokens), np.asarray(shades)
    centres = matrix(ax, x, y, *tokens.shape, role, values=shades)
    for (r, c), tok in np.ndenumerate(tokens):
        text(ax, *centres[r, c], str(tok), size=SMALL)
    return centres


def _merged(role):
    """(N, E): every row a token; columns 0..D-1 head 1, D..E-1 head 2."""
    tokens = np.repeat(np.arange(N)[:, None], H * D, axis=1)
    shades = np.tile(np.repeat(SHADE, D), (N, 1))
    return tokens, shades


@diagram("08_split_merge")
def split_merge():
    fig, ax = canvas(37.5, 18)
    top = 11.0
    tokens, shades = _merged("query")
    # the projected queries, (B, N, E)
    text(ax, 3.5, top + 4.6, "q = x W_Q", weight="bold")
    text(ax, 3.5, top + 3.7, "(B, N, E)", size=SMALL)
    _cells(ax, 0.5, top, tokens, shades, "query")
    # right: view as (B, N, H, D), then transpose to (B, H, N, D)
    arrow(ax, (6.8, top + 1.5), (9.6, top + 1.5))
    text(ax, 8.2, top + 2.6, "view", size=SMALL)
    text(ax, 8.2, top + 0.4, "transpose", size=SMALL)
    text(ax, 13.25, top + 4.6, "one block per head", weight="bold")
    text(ax, 13.25, top + 3.7, "(B, H, N, D)", size=SMALL)
    for h in range(H):
        x0 = 10.0 + h * 3.5
        _cells(ax, x0, top, tokens[:, :D], np.full((N, D), SHADE[h]), "query")
        text(ax, x0 + 1.5, top - 0.55, f"head {h + 1}", size=SMALL)
    # attention per head
    box(ax, 17.6, top + 0.25, 4.3, 2.5, "")
    text(ax, 19.75, top + 1.9, "attention", size=SMALL)
    text(ax, 19.75, top + 1.1, "per head", size=SMALL)
    arrow(ax, (16.6, top + 1.5), (17.6, top + 1.5))
    arrow(ax, (21.9, top + 1.5), (22.9, top + 1.5))
    for h in range(H):
        x0 = 23.0 + h * 3.5
        _cells(ax, x0, top, tokens[:, :D], np.full((N, D), SHADE[h]), "output")
        text(ax, x0 + 1.5, top - 0.55, f"head {h + 1}", size=SMALL)
    text(ax, 26.25, top + 3.7, "(B, H, N, D)", size=SMALL)
    # merge: transpose back, reshape to (B, N, E)
    arrow(ax, (29.8, top + 1.5), (32.6, top + 1.5))
    text(ax, 31.2, top + 2.6, "transpose", size=SMALL)
    text(ax, 31.2, top + 0.4, "reshape", size=SMALL)
    text(ax, 35.0, top + 4.6, "merged", weight="bold")
    text(ax, 35.0, top + 3.7, "(B, N, E)", size=SMALL)
    m_tokens, m_shades = _merged("output")
    # narrower cells so the merged output fits the page
    centres = matrix(ax, 32.75, top + 0.75, N, H * D, "output",
                     values=m_shades, cell=0.75)
    for (r, c), tok in np.ndenumerate(m_tokens):
        text(ax, *centres[r, c], str(tok), size=SMALL)
    text(ax, 35.0, top - 0.55, "then W_O", size=SMALL)

    # the bug: view(B, H, N, D) without the transpose
    bot = 2.4
    arrow(ax, (3.5, top - 0.3), (9.8, bot + 1.5), dashed=True, rad=0.35)
    text(ax, 3.0, bot + 1.5, "the bug:", size=SMALL, role="output")
    text(ax, 3.0, bot + 0.6, "view(B, H, N, D)", size=SMALL, role="output")
    text(ax, 3.0, bot - 0.3, "alone", size=SMALL, role="output")
    flat = tokens.reshape(H, N, D)  # what the memory holds, cut into H blocks
    flat_shades = shades.reshape(H, N, D)
    text(ax, 13.25, bot + 4.0, "same shape, wrong rows", weight="bold")
    for h in range(H):
        x0 = 10.0 + h * 3.5
        _cells(ax, x0, bot, flat[h], flat_shades[h], "query")
        text(ax, x0 + 1.5, bot - 0.55, f"head {h + 1}", size=SMALL)
    notes = ("Row-major memory cut into H blocks of N·D numbers:",
             "head 1 reads all of token 0 and half of token 1, head 2",
             "the rest. A row is no longer a token, so a padding or",
             "causal mask hides the wrong entries. No error is raised.")
    for i, line in enumerate(notes):
        text(ax, 17.6, bot + 3.2 - 0.95 * i, line, size=SMALL, ha="left")
    text(ax, 0.5, 0.35, "Cells: the token each number belongs to. "
         "Dark: features of head 1; light: features of head 2.",
         size=SMALL, ha="left")
    return fig
