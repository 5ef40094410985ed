# INSTRUCTOR ONLY -- reference solutions of exercises/10_transformer.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import math

import torch


def encoder_layer_forward(x, weights, num_heads, mask=None, norm_first=False):
    """x: (B, N, E)  weights: dict (x @ w layout)  mask: bool, True = may attend  ->  (B, N, E)."""
    w = weights
    b, n, e = x.shape
    d = e // num_heads

    def layer_norm(t, i):
        mu = t.mean(-1, keepdim=True)
        var = t.var(-1, unbiased=False, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-5) * w[f"ln{i}_weight"] + w[f"ln{i}_bias"]

    def heads(t):
        return t.reshape(b, n, num_heads, d).transpose(1, 2)  # (B, H, N, D)

    def self_attention(t):
        q = heads(t @ w["w_q"] + w["b_q"])
        k = heads(t @ w["w_k"] + w["b_k"])
        v = heads(t @ w["w_v"] + w["b_v"])
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, N, N)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        top = scores.amax(-1, keepdim=True)
        top = torch.where(torch.isinf(top), torch.zeros_like(top), top)  # empty rows
        p = torch.exp(scores - top)
        total = p.sum(-1, keepdim=True)
        attn = p / torch.where(total == 0, torch.ones_like(total), total)  # zeros, not NaN
        out = (attn @ v).transpose(1, 2).reshape(b, n, e)  # (B, N, E)
        return out @ w["w_o"] + w["b_o"]

    def feed_forward(t):
        return torch.relu(t @ w["w_1"] + w["b_1"]) @ w["w_2"] + w["b_2"]

    if norm_first:
        x = x + self_attention(layer_norm(x, 1))
        return x + feed_forward(layer_norm(x, 2))
    x = layer_norm(x + self_attention(x), 1)
    return layer_norm(x + feed_forward(x), 2)


def masked_batch_norm(x, token_mask, weight, bias, eps=1e-05):
    """x: (B, N, d)  token_mask: (B, N) bool  weight, bias: (d,)  ->  (B, N, d)."""
    tokens = x[token_mask]  # (M, d): the real tokens of the whole batch
    mean = tokens.mean(dim=0)
    var = ((tokens - mean) ** 2).mean(dim=0)  # biased, as BatchNorm normalises
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


answer_encoder_layer_params = 3152384

my_bn_batch_size = 32
