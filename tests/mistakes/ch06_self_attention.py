"""Buggy versions of the exercises of exercises/06_self_attention.ipynb, written the way a
student would (independently of the variants in attention_course.checks.chapters.ch06_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import math

import torch


def _pairs(positions, dim, two_i_over_dim):
    i = torch.arange(dim // 2, dtype=positions.dtype)
    return positions[:, None] * 10000.0 ** (-two_i_over_dim(i, dim))  # (N, dim/2)


def _sin(positions, dim, how="good"):
    if how == "own index":
        j = torch.arange(dim, dtype=positions.dtype)
        a = positions[:, None] / 10000.0 ** (j / dim)
        out = a.clone()
        out[:, 0::2], out[:, 1::2] = a[:, 0::2].sin(), a[:, 1::2].cos()
        return out
    expo = {"no 2": lambda i, d: i / d, "sign": lambda i, d: -2 * i / d}.get(
        how, lambda i, d: 2 * i / d)
    a = _pairs(positions, dim, expo)
    out = torch.empty(len(positions), dim, dtype=positions.dtype)
    if how == "halves":
        return torch.cat([a.sin(), a.cos()], dim=1)
    first, second = (a.cos(), a.sin()) if how == "swapped" else (a.sin(), a.cos())
    out[:, 0::2], out[:, 1::2] = first, second
    return out


def _rot(x, positions, how="good"):
    d, n = x.shape[-1], x.shape[-2]
    p = torch.arange(n) if how == "ignore" else positions
    i = torch.arange(d // 2, dtype=x.dtype)
    theta = 10000.0 ** (-(i if how == "no 2" else 2 * i) / d)
    a = p.to(x.dtype)[:, None] * theta
    if how == "wrong way":
        a = -a
    c, s = torch.cos(a), torch.sin(a)
    if how == "half":
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)
    x1, x2 = x[..., ::2], x[..., 1::2]
    r1, r2 = x1 * c - x2 * s, x1 * s + x2 * c
    if how == "halves out":
        return torch.cat([r1, r2], dim=-1)
    out = torch.empty_like(x)
    out[..., ::2], out[..., 1::2] = r1, r2
    return out


def _sa(x, wq, wk, wv, scale="dk", dim=-1, transpose=False):
    if transpose:
        wq, wk, wv = wq.T, wk.T, wv.T
    q, k, v = x @ wq, x @ wk, x @ wv
    dk = q.shape[-1]
    s = q @ k.transpose(1, 2)
    s = s * {"dk": 1 / math.sqrt(dk), "none": 1.0, "e": 1 / math.sqrt(x.shape[-1]),
             "1/dk": 1 / dk}[scale]
    return torch.softmax(s, dim=dim) @ v


BUGGY = {
    ("sinusoidal_positions", "sin and cos swapped"): lambda p, d: _sin(p, d, "swapped"),
    ("sinusoidal_positions", "halves"): lambda p, d: _sin(p, d, "halves"),
    ("sinusoidal_positions", "exponent without the 2"): lambda p, d: _sin(p, d, "no 2"),
    ("sinusoidal_positions", "exponent sign"): lambda p, d: _sin(p, d, "sign"),
    ("sinusoidal_positions", "cosine at its own index"): lambda p, d: _sin(p, d, "own index"),
    ("apply_rotary", "rotated the wrong way"): lambda x, p: _rot(x, p, "wrong way"),
    ("apply_rotary", "pairs (i, i + D/2)"): lambda x, p: _rot(x, p, "half"),
    ("apply_rotary", "pairs written back as halves"): lambda x, p: _rot(x, p, "halves out"),
    ("apply_rotary", "exponent without the 2"): lambda x, p: _rot(x, p, "no 2"),
    ("apply_rotary", "positions ignored"): lambda x, p: _rot(x, p, "ignore"),
    ("self_attention_layer", "no scale"): lambda x, q, k, v: _sa(x, q, k, v, scale="none"),
    ("self_attention_layer", "scaled by the model width"):
        lambda x, q, k, v: _sa(x, q, k, v, scale="e"),
    ("self_attention_layer", "scale 1/Dk"): lambda x, q, k, v: _sa(x, q, k, v, scale="1/dk"),
    ("self_attention_layer", "softmax over the queries"): lambda x, q, k, v: _sa(x, q, k, v,
                                                                                dim=1),
    ("self_attention_layer", "weights transposed"):
        lambda x, q, k, v: _sa(x, q, k, v, transpose=True),
}
