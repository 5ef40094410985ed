# INSTRUCTOR ONLY -- reference solutions of exercises/18_visual_attention.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import torch
import torch.nn.functional as F


def spatial_softmax(scores, mask=None):
    """scores: (B, C, H, W); mask: bool broadcastable to it (True = may attend) or None
    ->  (B, C, H, W), each map a distribution over its H*W positions; fully masked maps 0."""
    b, c, h, w = scores.shape
    flat = scores.reshape(b, c, h * w)  # (B, C, HW): the positions of each map
    if mask is None:
        return torch.softmax(flat, dim=-1).reshape(b, c, h, w)
    keep = mask.expand(b, c, h, w).reshape(b, c, h * w)  # (B, C, HW)
    flat = flat.masked_fill(~keep, float("-inf"))
    top = flat.amax(dim=-1, keepdim=True)  # (B, C, 1); -inf on a fully masked map
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    e = torch.exp(flat - top)  # exactly 0 where masked
    total = e.sum(dim=-1, keepdim=True)
    weights = e / torch.where(total > 0, total, torch.ones_like(total))
    return weights.reshape(b, c, h, w)


def se_block(x, w1, b1, w2, b2):
    """x: (B, C, H, W); w1: (C/r, C), b1: (C/r,); w2: (C, C/r), b2: (C,)  ->  (B, C, H, W)."""
    z = x.mean(dim=(2, 3))  # squeeze: (B, C)
    s = torch.sigmoid(F.linear(F.relu(F.linear(z, w1, b1)), w2, b2))  # excite: (B, C)
    return x * s[:, :, None, None]  # (B, C, H, W)


def pointing_score(attn, regions):
    """attn: (M, h, w) float; regions: (M, H, W) bool, H, W multiples of h, w
    ->  0-dim tensor (dtype of attn): the fraction of maps whose peak cell overlaps its region."""
    m, h, w = attn.shape
    H, W = regions.shape[1:]
    cells = regions.reshape(m, h, H // h, w, W // w).any(dim=4).any(dim=2)  # (M, h, w)
    peak = attn.reshape(m, h * w).argmax(dim=1)  # (M,): the first maximum on ties
    hits = cells.reshape(m, h * w)[torch.arange(m), peak]  # (M,) bool
    return hits.to(attn.dtype).mean()


answer_uniform_pointing = 9 / 64

my_receptive_cells = (9, 25)
