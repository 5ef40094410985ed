# INSTRUCTOR ONLY -- reference solutions of exercises/03_scoring_functions.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import math

import torch


def masked_softmax(scores, mask=None):
    """scores: (..., Nk); mask: bool broadcastable to scores, True = may attend."""
    if mask is None:
        return torch.softmax(scores, dim=-1)
    scores = scores.masked_fill(~mask, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(scores - row_max)  # exactly 0 where masked; no -inf - -inf
    total = e.sum(dim=-1, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


def scaled_dot_product_attention(query, key, value, attn_mask=None):
    """query: (B, H, Nq, D)  key: (B, H, Nk, D)  value: (B, H, Nk, Dv)  ->  (B, H, Nq, Dv)."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (B, H, Nq, Nk)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(scores - row_max)
    total = e.sum(dim=-1, keepdim=True)
    weights = e / torch.where(total > 0, total, torch.ones_like(total))  # (B, H, Nq, Nk)
    return weights @ value  # (B, H, Nq, Dv)


def concat_score(query, key, weight, v):
    """query: (B, Nq, Dq)  key: (B, Nk, Dk)  weight: (Hd, Dq + Dk)  v: (Hd,)  ->  (B, Nq, Nk)."""
    dq = query.shape[-1]
    w_q, w_k = weight[:, :dq], weight[:, dq:]  # W [q; k] = W_q q + W_k k
    q = query @ w_q.T  # (B, Nq, Hd)
    k = key @ w_k.T  # (B, Nk, Hd)
    hidden = torch.tanh(q[:, :, None, :] + k[:, None, :, :])  # (B, Nq, Nk, Hd)
    return hidden @ v  # (B, Nq, Nk)


def multi_head_scores(query, key, num_heads):
    """query: (B, Nq, H*D)  key: (B, Nk, H*D)  ->  scores (B, H, Nq, Nk), scaled by 1/sqrt(D)."""
    b, nq, e = query.shape
    nk, d = key.shape[1], e // num_heads
    q = query.reshape(b, nq, num_heads, d).transpose(1, 2)  # (B, H, Nq, D)
    k = key.reshape(b, nk, num_heads, d).transpose(1, 2)  # (B, H, Nk, D)
    return q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, Nq, Nk)


answer_dot_std = 16.0

my_saturation_dim = 256
