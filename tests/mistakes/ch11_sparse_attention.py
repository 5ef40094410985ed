"""Buggy versions of the exercises of exercises/11_sparse_attention.ipynb, written the way a
student would (independently of the variants in attention_course.checks.chapters.ch11_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import math

import torch


def _mask(n, window, is_causal=False, how="good"):
    rows = torch.arange(n).unsqueeze(1).expand(n, n)
    cols = torch.arange(n).unsqueeze(0).expand(n, n)
    dist = rows - cols
    if how == "strict":
        keep = dist.abs() < window
    elif how == "one-sided":
        keep = (dist >= 0) & (dist <= window)
    else:
        keep = dist.abs() <= window
    if is_causal:
        keep = keep & ((cols >= rows) if how == "future" else (cols <= rows))
    return ~keep if how == "inverted" else keep


def _window_attn(q, k, v, window, how="good"):
    d = q.shape[-1]
    s = torch.matmul(q, k.transpose(2, 3))
    if how != "no scale":
        s = s / math.sqrt(d)
    n = q.shape[2]
    keep = _mask(n, window, how={"strict": "strict", "one-sided": "one-sided"}.get(how, "good"))
    if how == "ignored":
        return torch.softmax(s, dim=3) @ v
    if how == "after":
        return (torch.softmax(s, dim=3) * keep) @ v
    s = torch.where(keep, s, torch.tensor(float("-inf"), dtype=s.dtype))
    w = torch.softmax(s, dim=3)
    return torch.nan_to_num(w) @ v


BUGGY = {
    ("local_window_mask", "inverted mask"):
        lambda n, window, is_causal=False: _mask(n, window, is_causal, "inverted"),
    ("local_window_mask", "strict inequality"):
        lambda n, window, is_causal=False: _mask(n, window, is_causal, "strict"),
    ("local_window_mask", "one-sided window"):
        lambda n, window, is_causal=False: _mask(n, window, is_causal, "one-sided"),
    ("local_window_mask", "future instead of past"):
        lambda n, window, is_causal=False: _mask(n, window, is_causal, "future"),
    ("blocked_window_attention", "no scale"):
        lambda q, k, v, window: _window_attn(q, k, v, window, "no scale"),
    ("blocked_window_attention", "window ignored"):
        lambda q, k, v, window: _window_attn(q, k, v, window, "ignored"),
    ("blocked_window_attention", "strict inequality"):
        lambda q, k, v, window: _window_attn(q, k, v, window, "strict"),
    ("blocked_window_attention", "one-sided window"):
        lambda q, k, v, window: _window_attn(q, k, v, window, "one-sided"),
    ("blocked_window_attention", "mask after softmax"):
        lambda q, k, v, window: _window_attn(q, k, v, window, "after"),
}
