"""Buggy versions of the exercises of exercises/09_complexity.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch09_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import math

import torch


def _flops(n, d, k, how="good"):
    conv = 2 * k * n * d * d
    if how == "conv no k":
        conv = 2 * n * d * d
    gru = 3 * 2 * (2 * n * d * d)
    if how == "gru input only":
        gru = 3 * (2 * n * d * d)
    proj, scores, mix = 4 * 2 * n * d * d, 2 * n * n * d, 2 * n * n * d
    if how == "no proj":
        proj = 0
    elif how == "no out proj":
        proj = 3 * 2 * n * d * d
    elif how == "no mix":
        mix = 0
    out = torch.stack([conv, gru, proj + scores + mix], dim=1)
    return out // 2 if how == "halved" else out


def _paths(n, k, how="good"):
    out = torch.zeros(n, n, dtype=torch.int64)
    r = {"k": k, "k-1": k - 1}.get(how, k // 2)
    for i in range(n):
        for j in range(n):
            gap = abs(i - j)
            if how == "floor":
                out[i, j] = gap // r + 1
            elif how == "diag0":
                out[i, j] = math.ceil(gap / r)
            else:
                out[i, j] = max(1, math.ceil(gap / r))
    return out


BUGGY = {
    ("layer_flop_counts", "multiply-adds counted once"): lambda n, d, k: _flops(n, d, k, "halved"),
    ("layer_flop_counts", "attention without projections"):
        lambda n, d, k: _flops(n, d, k, "no proj"),
    ("layer_flop_counts", "attention without the output projection"):
        lambda n, d, k: _flops(n, d, k, "no out proj"),
    ("layer_flop_counts", "attention without the weighted sum"):
        lambda n, d, k: _flops(n, d, k, "no mix"),
    ("layer_flop_counts", "GRU state side missing"):
        lambda n, d, k: _flops(n, d, k, "gru input only"),
    ("layer_flop_counts", "convolution without the kernel size"):
        lambda n, d, k: _flops(n, d, k, "conv no k"),
    ("conv_path_lengths", "reach k per layer"): lambda n, k: _paths(n, k, "k"),
    ("conv_path_lengths", "reach k - 1 per layer"): lambda n, k: _paths(n, k, "k-1"),
    ("conv_path_lengths", "zero on the diagonal"): lambda n, k: _paths(n, k, "diag0"),
    ("conv_path_lengths", "floor plus one"): lambda n, k: _paths(n, k, "floor"),
}
