"""Figures: attention heatmaps and training/measurement curves.

Plain matplotlib, returning the ``Figure`` so that notebooks can save or assert on it.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["show_heatmaps", "plot_curves"]


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def show_heatmaps(weights, *, row_labels: Optional[Sequence[str]] = None,
                  col_labels: Optional[Sequence[str]] = None,
                  titles: Optional[Sequence[str]] = None, xlabel: str = "keys",
                  ylabel: str = "queries", cmap: str = "Reds", vmin: Optional[float] = 0.0,
                  vmax: Optional[float] = None, cell_size: float = 0.35,
                  max_size: float = 4.0, colorbar: bool = True, suptitle: str = ""):
    """Grid of attention heatmaps.

    weights: (Nq, Nk) for one map, (C, Nq, Nk) for a row of C maps, or (R, C, Nq, Nk) for a
    grid (e.g. examples x heads). row_labels / col_labels: token strings for the query
    (y) and key (x) axes, shared by all panels. titles: one per panel (row-major).
    All panels share one colour scale (default 0..max). Returns the ``Figure``.
    """
    w = _to_numpy(weights)
    if w.ndim == 2:
        w = w[None, None]
    elif w.ndim == 3:
        w = w[None]
    if w.ndim != 4:
        raise ValueError(f"weights must be 2-D (Nq, Nk), 3-D (C, Nq, Nk) or 4-D (R, C, Nq, Nk),"
                         f" got shape {tuple(w.shape)}")
    r, c, nq, nk = w.shape
    for name, labels, n in (("row_labels", row_labels, nq), ("col_labels", col_labels, nk)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} entries but the maps have {n} "
                             f"{'rows' if name == 'row_labels' else 'columns'}")
    scale = min(cell_size, max_size / max(nq, nk))
    fig, axes = plt.subplots(r, c, figsize=(1.0 + c * max(1.6, nk * scale),
                                             0.6 + r * max(1.4, nq * scale)),
                             squeeze=False, sharex=True, sharey=True)
    vmax = float(np.nanmax(w)) if vmax is None else vmax
    im = None
    for i in range(r):
        for j in range(c):
            ax = axes[i, j]
            im = ax.imshow(w[i, j], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                           interpolation="nearest")
            if titles is not None and i * c + j < len(titles):
                ax.set_title(titles[i * c + j], fontsize=9)
            if col_labels is not None:
                ax.set_xticks(range(nk))
                ax.set_xticklabels(col_labels, rotation=90, fontsize=8)
            if row_labels is not None:
                ax.set_yticks(range(nq))
                ax.set_yticklabels(row_labels, fontsize=8)
            if i == r - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
    if colorbar and im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_curves(series: Mapping[str, Sequence[float]], x: Optional[Sequence[float]] = None, *,
                xlabel: str = "", ylabel: str = "", title: str = "", logx: bool = False,
                logy: bool = False, ax=None, markers: bool = True):
    """Several named curves on one axis. ``series``: name -> y values; ``x`` shared
    (default 0..n-1), or pass (x, y) pairs as values. Returns the ``Figure``."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
    else:
        fig = ax.figure
    for name, ys in series.items():
        if isinstance(ys, tuple) and len(ys) == 2:
            xs, ys = ys
        else:
            xs = range(len(ys)) if x is None else x
        ax.plot(list(xs), _to_numpy(ys), marker="o" if markers else None, ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
