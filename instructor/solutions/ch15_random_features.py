# INSTRUCTOR ONLY -- reference solutions of exercises/15_random_features.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import math

import torch


def random_fourier_features(x, projection):
    """x: (..., D)  projection: (m, D)  ->  (..., 2m) = [sin(W x), cos(W x)] / sqrt(m)."""
    angles = torch.einsum("...d,md->...m", x, projection)  # (..., m): w_i . x
    feats = torch.cat((angles.sin(), angles.cos()), dim=-1)  # (..., 2m)
    return feats * (1.0 / math.sqrt(projection.shape[0]))


def positive_random_features(x, projection):
    """x: (..., D)  projection: (m, D)  ->  (..., m) = exp(W x - |x|^2 / 2) / sqrt(m)."""
    angles = torch.einsum("...d,md->...m", x, projection)  # (..., m)
    half_norm = x.pow(2).sum(dim=-1, keepdim=True) / 2  # (..., 1)
    return torch.exp(angles - half_norm - 0.5 * math.log(projection.shape[0]))


def performer_attention_per_head(query, key, value, projections):
    """query: (B, H, Nq, D)  key: (B, H, Nk, D)  value: (B, H, Nk, Dv)
    projections: (H, m, D), one per head  ->  (B, H, Nq, Dv) ~ softmax(q k^T / sqrt(D)) v."""
    r = query.shape[-1] ** -0.25  # (r q) . (r k) = q . k / sqrt(D)

    def features(x):  # (B, H, N, D) -> (B, H, N, m), head h with projections[h]
        angles = torch.einsum("bhnd,hmd->bhnm", x * r, projections)
        return torch.exp(angles - (x * r).pow(2).sum(-1, keepdim=True) / 2)

    fq, fk = features(query), features(key)
    memory = torch.einsum("bhkm,bhkv->bhmv", fk, value)  # (B, H, m, Dv)
    totals = fk.sum(dim=2)  # (B, H, m)
    out = torch.einsum("bhqm,bhmv->bhqv", fq, memory)  # (B, H, Nq, Dv)
    return out / torch.einsum("bhqm,bhm->bhq", fq, totals).unsqueeze(-1)


answer_trig_mse = math.exp(2) * (1 - math.exp(-4)) ** 2 / 128

my_performer_features = 256
