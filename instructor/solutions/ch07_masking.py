# INSTRUCTOR ONLY -- reference solutions of exercises/07_masking.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import math

import torch


def key_mask_from_lengths(lengths, num_keys):
    """lengths: (B,) int  ->  (B, 1, 1, Nk) bool, True where key j < length (a real token)."""
    keys = torch.arange(num_keys, device=lengths.device)  # (Nk,)
    return (keys[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Nk)


def causal_padding_mask(lengths, num_keys):
    """lengths: (B,) int  ->  (B, 1, N, N) bool: key j is real and j <= query i."""
    pos = torch.arange(num_keys, device=lengths.device)
    real = (pos[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, N)
    causal = pos[None, :] <= pos[:, None]  # (N, N): key <= query
    return real & causal  # (B, 1, N, N)


def attention_with_torch_padding(query, key, value, key_padding_mask):
    """query: (B, H, Nq, D)  key: (B, H, Nk, D)  value: (B, H, Nk, Dv)
    key_padding_mask: (B, Nk) bool, True = padding (torch's polarity)  ->  (B, H, Nq, Dv)."""
    keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Nk): True = may attend
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (B, H, Nq, Nk)
    scores = scores.masked_fill(~keep, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(scores - row_max)  # 0 where masked, and no -inf - (-inf)
    total = e.sum(dim=-1, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total)) @ value  # (B, H, Nq, Dv)


answer_empty_rows = 10

answer_float_mask_weight = 0.42

my_lookahead = 2
