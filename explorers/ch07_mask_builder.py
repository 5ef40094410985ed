"""Chapter 7's mask builder: every combination of padding, causal, window and global token.

For N = 8 tokens and each choice of the controls (valid length, padding side, causal,
sliding window, a global first token) the mask is built by ``attention_lib.masks`` exactly as
chapter 7 builds it (a key mask AND a structure mask) and the weights are
``attention_lib.functional.masked_softmax`` of one fixed score matrix under that mask: rows
with no key left are all zeros, and flagged.
"""
from __future__ import annotations

import itertools

import torch

from attention_lib.functional import masked_softmax
from attention_lib.masks import (
    causal_mask,
    combine_masks,
    longformer_mask,
    padding_mask,
    sliding_window_mask,
)
from explorers import explorer, rounded

N = 8
TOKENS = ["<s>", "the", "cat", "sat", "on", "the", "mat", "."]
WINDOWS = (None, 1, 2)  # None: no window (every key in reach)


def scores() -> torch.Tensor:
    """The fixed (N, N) score matrix, rounded to two decimals so the JSON holds it exactly."""
    g = torch.Generator().manual_seed(7)
    return (torch.randn(N, N, generator=g, dtype=torch.float64) * 1.5).round(decimals=2)


def key_valid(length: int, side: str) -> torch.Tensor:
    """(N,) bool: the real tokens of a sentence of ``length`` padded on ``side``."""
    if side == "right":
        return padding_mask(torch.tensor([length]), N)[0]
    return torch.arange(N) >= N - length  # left padding, as chapter 7's decoder batch


def build(length: int, side: str, causal: bool, window, global_first: bool):
    """The (N, N) bool mask of one setting of the controls, from the library's builders."""
    if window is None:
        structure = causal_mask(N) if causal else None
    elif global_first:
        structure = longformer_mask(N, window, 1, is_causal=causal)
    else:
        structure = sliding_window_mask(N, window, is_causal=causal)
    mask = combine_masks(key_valid(length, side)[None, :], structure)
    return mask.expand(N, N)


def key(length: int, side: str, causal: bool, window, global_first: bool) -> str:
    return f"L{length}{side[0]}c{int(causal)}w{window if window is not None else '-'}" \
           f"g{int(global_first)}"


@explorer("07_mask_builder")
def mask_builder() -> dict:
    s = scores()
    settings = {}
    for length, side, causal, window, glob in itertools.product(
            range(1, N + 1), ("right", "left"), (False, True), WINDOWS, (False, True)):
        m = build(length, side, causal, window, glob)
        w = masked_softmax(s, m)
        settings[key(length, side, causal, window, glob)] = {
            "mask": ["".join("1" if v else "0" for v in row) for row in m.tolist()],
            "weights": rounded(w, 3),
            "empty_rows": [i for i in range(N) if not bool(m[i].any())],
        }
    return {"n": N, "tokens": TOKENS, "windows": [w if w is not None else "-" for w in WINDOWS],
            "scores": rounded(s, 3), "settings": settings}
