# INSTRUCTOR ONLY -- reference solutions of exercises/08_multi_head.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import math

import torch


def concat_heads(x):
    """x: (B, H, N, D)  ->  (B, N, H * D), head h in features h*D .. (h+1)*D - 1."""
    tokens_first = x.permute(0, 2, 1, 3)  # (B, N, H, D): the heads of each token together
    return tokens_first.flatten(start_dim=2)  # (B, N, H * D)


def multi_head_forward(x, w_q, w_k, w_v, w_o, num_heads, attn_mask=None):
    """x: (B, N, E)  w_q, w_k, w_v, w_o: (E, E)  attn_mask: bool, broadcastable to
    (B, H, N, N), True = may attend  ->  (B, N, E)."""
    b, n, e = x.shape
    d = e // num_heads

    def heads(t):  # (B, N, E) -> (B, H, N, D)
        return t.reshape(b, n, num_heads, d).transpose(1, 2)

    q, k, v = heads(x @ w_q), heads(x @ w_k), heads(x @ w_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, N, N)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v  # (B, H, N, D)
    return out.transpose(1, 2).reshape(b, n, e) @ w_o  # (B, N, E)


def expand_kv_heads(x, num_groups):
    """x: (B, Hkv, N, D)  ->  (B, Hkv * num_groups, N, D); query head h reads x[:, h // G]."""
    return x.repeat_interleave(num_groups, dim=1)


answer_kv_cache_mib = 768

answer_gqa_params = 656640

my_flop_crossover = 512
