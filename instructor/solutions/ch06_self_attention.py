# INSTRUCTOR ONLY -- reference solutions of exercises/06_self_attention.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import math

import torch


def sinusoidal_positions(positions, dim):
    """positions: (N,) float  dim: even int  ->  (N, dim): sin at 2i, cos at 2i+1."""
    two_i = torch.arange(0, dim, 2, dtype=positions.dtype, device=positions.device)
    omega = 10000.0 ** (-two_i / dim)  # (dim/2,): one frequency per pair
    angles = positions[:, None] * omega  # (N, dim/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (N, dim)


def apply_rotary(x, positions):
    """x: (..., N, D), D even  positions: (N,)  ->  x with pair (2i, 2i+1) rotated by p theta_i."""
    d = x.shape[-1]
    two_i = torch.arange(0, d, 2, dtype=x.dtype, device=x.device)
    theta = 10000.0 ** (-two_i / d)  # (D/2,)
    angles = positions.to(x.dtype)[:, None] * theta  # (N, D/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., N, D/2): the two halves of each pair
    r1 = x1 * cos - x2 * sin  # (x1 + i x2) * exp(i p theta)
    r2 = x1 * sin + x2 * cos
    return torch.stack((r1, r2), dim=-1).flatten(-2)  # (..., N, D)


def self_attention_layer(x, w_q, w_k, w_v):
    """x: (B, N, E)  w_q, w_k: (E, Dk)  w_v: (E, Dv)  ->  (B, N, Dv)."""
    q, k, v = x @ w_q, x @ w_k, x @ w_v  # (B, N, Dk), (B, N, Dk), (B, N, Dv)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, N, N)
    return torch.softmax(scores, dim=-1) @ v  # (B, N, Dv)


answer_distinct_rows = 5

answer_rotary_shift = 1.525

my_rope_base = 1e8
