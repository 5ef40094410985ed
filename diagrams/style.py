"""The book's visual language: one colour per role, one set of drawing primitives.

Every diagram in the book is drawn with these functions, so a query is always the same blue,
a key the same orange, and a mask the same hatched grey, in every chapter. Coordinates are
in "cells": one cell of a matrix is 1 x 1, and a canvas is ``width`` x ``height`` cells.

A diagram is a function decorated with :func:`diagram`; ``python -m diagrams`` (``make
figures``) calls them all and writes ``book/figures/<name>.svg``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import (  # noqa: E402
    FancyArrowPatch,
    FancyBboxPatch,
    PathPatch,
    Rectangle,
)
from matplotlib.path import Path as CurvePath  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "book" / "figures"

# Okabe & Ito's colour-blind-safe palette, one colour per role.
ROLE = {
    "query": "#0072B2",    # blue
    "key": "#E69F00",      # orange
    "value": "#009E73",    # green
    "score": "#CC79A7",    # reddish purple: scores and attention weights
    "mask": "#6E6E6E",     # grey, hatched where a position may not attend
    "output": "#D55E00",   # vermillion: context vectors, attention outputs
    "state": "#56B4E9",    # sky blue: recurrent hidden states, running statistics
    "input": "#9E9E9E",    # light grey: tokens, embeddings, anything not yet projected
    "none": "#FFFFFF",
}
INK = "#222222"            # text and arrows
FONT = 9                   # points; a 6.9 in wide figure shown in the 688 px column: 12 px
SMALL = 8                  # the smallest text allowed (11 px as displayed)
WIDTH_IN = 6.9             # the content column

_REGISTRY: dict[str, Callable[[], plt.Figure]] = {}

plt.rcParams.update({
    "svg.hashsalt": "attention-course",   # deterministic ids: the SVGs diff cleanly
    "svg.fonttype": "path",               # glyphs as paths: the same on every machine
    "font.family": "DejaVu Sans",
    "font.size": FONT,
})


def diagram(name: str):
    """Register ``fn`` as the diagram ``book/figures/<name>.svg``."""
    def register(fn: Callable[[], plt.Figure]):
        if name in _REGISTRY:
            raise ValueError(f"diagram name {name!r} is used twice")
        _REGISTRY[name] = fn
        return fn
    return register


def registry() -> dict[str, Callable[[], plt.Figure]]:
    return dict(_REGISTRY)


def canvas(width: float, height: float, *, inches: float = WIDTH_IN):
    """A blank figure ``inches`` wide whose axes span ``width`` x ``height`` cells, origin at
    the bottom left. Returns ``(fig, ax)``."""
    fig = plt.figure(figsize=(inches, inches * height / width), facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def tint(role: str, amount: float) -> tuple:
    """The role's colour mixed with white: 0 = white, 1 = the full colour."""
    rgb = np.array(matplotlib.colors.to_rgb(ROLE[role]))
    return tuple(1 - amount * (1 - rgb))


def text(ax, x: float, y: float, s: str, *, size: float = FONT, role: Optional[str] = None,
         ha: str = "center", va: str = "center", **kw):
    """Text in the ink colour, or in the role's colour."""
    if size < SMALL:
        raise ValueError(f"size must be >= {SMALL} pt (readable in the column), got {size}")
    return ax.text(x, y, s, fontsize=size, color=ROLE[role] if role else INK, ha=ha, va=va,
                   **kw)


def matrix(ax, x: float, y: float, rows: int, cols: int, role: str, *,
           values: Optional[np.ndarray] = None, masked: Optional[np.ndarray] = None,
           cell: float = 1.0, label: Optional[str] = None, label_side: str = "top",
           lw: float = 0.8):
    """A ``rows`` x ``cols`` grid with its bottom-left corner at (x, y).

    ``values`` in [0, 1] (same shape) shade each cell from white to the role's colour;
    ``masked`` (bool, True = may NOT attend) hatches cells in the mask colour. Returns the
    centre of every cell as an array (rows, cols, 2), row 0 at the top.
    """
    centres = np.zeros((rows, cols, 2))
    hidden_corners = []
    for r in range(rows):
        for c in range(cols):
            x0, y0 = x + c * cell, y + (rows - 1 - r) * cell
            shade = 0.55 if values is None else float(values[r, c])
            hidden = masked is not None and bool(masked[r, c])
            ax.add_patch(Rectangle((x0, y0), cell, cell,
                                   facecolor="white" if hidden else tint(role, shade),
                                   edgecolor=INK, lw=lw))
            if hidden:
                hidden_corners.append((x0, y0))
            centres[r, c] = (x0 + cell / 2, y0 + cell / 2)
    if hidden_corners:
        # one hatched shape for all masked cells: a browser prints one pattern fill quickly,
        # and a thousand of them (chapter 11's patterns) slowly
        shape = _cells_path(hidden_corners, cell)
        for colour in (INK, ROLE["mask"]):  # the grey hatch over an ink one, as in the legend
            ax.add_patch(PathPatch(shape, facecolor="none", edgecolor=colour, lw=0,
                                   hatch="////"))
    if label:
        w, h = cols * cell, rows * cell
        where = {"top": (x + w / 2, y + h + 0.45, "center", "bottom"),
                 "bottom": (x + w / 2, y - 0.45, "center", "top"),
                 "left": (x - 0.3, y + h / 2, "right", "center"),
                 "right": (x + w + 0.3, y + h / 2, "left", "center")}[label_side]
        text(ax, where[0], where[1], label, ha=where[2], va=where[3])
    return centres


def _cells_path(corners: Sequence[tuple[float, float]], cell: float) -> CurvePath:
    """One path made of the squares of side ``cell`` at the bottom-left ``corners``."""
    square = np.array([(0, 0), (cell, 0), (cell, cell), (0, cell), (0, 0)], dtype=float)
    vertices = np.concatenate([square + corner for corner in corners])
    codes = np.tile([CurvePath.MOVETO] + [CurvePath.LINETO] * 3 + [CurvePath.CLOSEPOLY],
                    len(corners))
    return CurvePath(vertices, codes)


def vector(ax, x: float, y: float, n: int, role: str, *, vertical: bool = False,
           cell: float = 1.0, label: Optional[str] = None, label_side: Optional[str] = None,
           values: Optional[Sequence[float]] = None):
    """A vector of ``n`` cells (a row, or a column when ``vertical``)."""
    rows, cols = (n, 1) if vertical else (1, n)
    vals = None if values is None else np.asarray(values, dtype=float).reshape(rows, cols)
    side = label_side or ("top" if vertical else "left")
    return matrix(ax, x, y, rows, cols, role, values=vals, cell=cell, label=label,
                  label_side=side)


def box(ax, x: float, y: float, w: float, h: float, label: str = "", *,
        role: Optional[str] = None, size: float = FONT, fill: float = 0.18, dashed=False):
    """A rounded box: an operation or a module. Filled lightly with the role's colour."""
    face = tint(role, fill) if role else "#F4F4F4"
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.25",
                                facecolor=face, edgecolor=ROLE[role] if role else INK,
                                lw=1.2, ls="--" if dashed else "-"))
    if label:
        text(ax, x + w / 2, y + h / 2, label, size=size)
    return (x + w / 2, y + h / 2)


def arrow(ax, start, end, *, role: Optional[str] = None, label: Optional[str] = None,
          rad: float = 0.0, lw: float = 1.1, style: str = "-|>", dashed: bool = False,
          label_offset=(0.0, 0.3)):
    """An arrow from ``start`` to ``end`` (bent by ``rad``), in ink or the role's colour."""
    colour = ROLE[role] if role else INK
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, lw=lw,
                                 color=colour, connectionstyle=f"arc3,rad={rad}",
                                 shrinkA=2, shrinkB=2, ls="--" if dashed else "-"))
    if label:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        text(ax, mx + label_offset[0], my + label_offset[1], label, size=SMALL)


def legend(ax, x: float, y: float, roles: Sequence[str], *, labels: Optional[dict] = None,
           step: float = 2.6):
    """A row of role swatches starting at (x, y): the book's colour key."""
    for i, r in enumerate(roles):
        x0 = x + i * step
        ax.add_patch(Rectangle((x0, y), 0.6, 0.6, facecolor=tint(r, 0.55),
                               edgecolor=INK, lw=0.6, hatch="////" if r == "mask" else None))
        text(ax, x0 + 0.8, y + 0.3, (labels or {}).get(r, r), ha="left", size=SMALL)


def save(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` as a deterministic SVG (no date, fixed ids) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None},
                facecolor="white")
    plt.close(fig)
    return path
