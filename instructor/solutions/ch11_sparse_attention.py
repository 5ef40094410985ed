# INSTRUCTOR ONLY -- reference solutions of exercises/11_sparse_attention.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import math

import torch


def local_window_mask(n, window, is_causal=False):
    """(N, N) bool, True where |i - j| <= window (and j <= i when is_causal)."""
    pos = torch.arange(n)
    offset = pos.view(-1, 1) - pos.view(1, -1)  # (N, N): i - j
    inside = offset.abs() <= window
    if is_causal:
        inside = inside & (offset >= 0)
    return inside


def blocked_window_attention(query, key, value, window):
    """query, key: (B, H, N, D)   value: (B, H, N, Dv)  ->  (B, H, N, Dv), |i - j| <= window."""
    b, h, n, d = query.shape
    bs = min(max(window, 1), n)  # block size: the window, at most the sequence
    nb = -(-n // bs)  # number of blocks
    tail = nb * bs - n
    dev = query.device
    qb = torch.nn.functional.pad(query, (0, 0, 0, tail)).view(b, h, nb, bs, d)  # (B,H,nb,bs,D)
    # one block of padding on each side, so that block c's neighbours c-1 and c+1 exist
    kp = torch.nn.functional.pad(key, (0, 0, bs, bs + tail))  # (B, H, (nb + 2) bs, D)
    vp = torch.nn.functional.pad(value, (0, 0, bs, bs + tail))
    rows = torch.arange(nb, device=dev).unsqueeze(1) * bs + torch.arange(3 * bs, device=dev)
    kb, vb = kp[:, :, rows], vp[:, :, rows]  # (B, H, nb, 3 bs, D) and (B, H, nb, 3 bs, Dv)
    scores = qb @ kb.transpose(-1, -2) / math.sqrt(d)  # (B, H, nb, bs, 3 bs)
    q_pos = torch.arange(nb * bs, device=dev).view(nb, bs, 1)
    k_pos = (rows - bs).unsqueeze(1)  # (nb, 1, 3 bs): real key positions
    keep = ((q_pos - k_pos).abs() <= window) & (k_pos >= 0) & (k_pos < n)
    scores = scores.masked_fill(~keep, float("-inf"))
    top = scores.amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = (scores - top).exp()
    den = e.sum(-1, keepdim=True)
    probs = e / torch.where(den > 0, den, torch.ones_like(den))
    out = probs @ vb  # (B, H, nb, bs, Dv)
    return out.reshape(b, h, nb * bs, -1)[:, :, :n]  # (B, H, N, Dv)


answer_bigbird_density = 119 / 256

my_window_layers = 16
