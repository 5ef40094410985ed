"""Buggy versions of the exercises of exercises/13_low_rank.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch13_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import math

import torch


def _rank_error(w, k, how):
    s = torch.linalg.svd(w, full_matrices=False).S  # (..., R)
    if how == "plain":
        return torch.sqrt(s[..., k:].sum(-1) / s.sum(-1))
    if how == "share":
        return (s[..., k:] ** 2).sum(-1) / (s ** 2).sum(-1)
    if how == "k+1":
        return torch.sqrt((s[..., k + 1:] ** 2).sum(-1) / (s ** 2).sum(-1))
    if how == "absolute":
        return torch.sqrt((s[..., k:] ** 2).sum(-1))
    return s[..., k] / s[..., 0]


def _linformer(q, k, v, E, F, how):
    d = q.shape[-1]
    kp, vp = torch.einsum("rn,bhnd->bhrd", E, k), torch.einsum("rn,bhnd->bhrd", F, v)
    if how == "swap":
        kp, vp = torch.einsum("rn,bhnd->bhrd", F, k), torch.einsum("rn,bhnd->bhrd", E, v)
    qq = torch.einsum("rn,bhnd->bhrd", E, q) if how == "project q" else q
    scores = torch.einsum("bhqd,bhrd->bhqr", qq, kp)
    if how == "no scale":
        pass
    elif how == "sqrt k":
        scores = scores / math.sqrt(E.shape[0])
    else:
        scores = scores / math.sqrt(d)
    w = torch.softmax(scores, dim=2 if how == "dim" else 3)
    return torch.einsum("bhqr,bhrd->bhqd", w, vp)


BUGGY = {
    ("rank_k_error", "singular values not squared"):
        lambda weights, k: _rank_error(weights, k, "plain"),
    ("rank_k_error", "no square root"): lambda weights, k: _rank_error(weights, k, "share"),
    ("rank_k_error", "off by one"): lambda weights, k: _rank_error(weights, k, "k+1"),
    ("rank_k_error", "absolute error"): lambda weights, k: _rank_error(weights, k, "absolute"),
    ("rank_k_error", "spectral norm"): lambda weights, k: _rank_error(weights, k, "spectral"),
    ("linformer_forward", "no scale"): lambda q, k, v, E, F: _linformer(q, k, v, E, F,
                                                                        "no scale"),
    ("linformer_forward", "scale by k"): lambda q, k, v, E, F: _linformer(q, k, v, E, F,
                                                                          "sqrt k"),
    ("linformer_forward", "E and F swapped"): lambda q, k, v, E, F: _linformer(q, k, v, E, F,
                                                                               "swap"),
    ("linformer_forward", "softmax over the wrong dim"):
        lambda q, k, v, E, F: _linformer(q, k, v, E, F, "dim"),
    ("linformer_forward", "queries projected"):
        lambda q, k, v, E, F: _linformer(q, k, v, E, F, "project q"),
}
