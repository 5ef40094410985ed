"""Buggy versions of the exercises of exercises/15_random_features.ipynb, written the way a
student would (independently of the variants in attention_course.checks.chapters.ch15_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import math

import torch


def _rff(x, w, how="good"):
    m = w.shape[0]
    z = torch.matmul(x, w.T)
    parts = (torch.cos(z), torch.sin(z)) if how == "cos first" else (torch.sin(z), torch.cos(z))
    c = {"no scale": 1.0, "sqrt2": math.sqrt(2 / m)}.get(how, 1 / math.sqrt(m))
    return c * torch.cat(parts, dim=-1)


def _pos(x, w, how="good"):
    m = w.shape[0]
    z = torch.matmul(x, w.T)
    nrm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2
    expo = {"no norm": z, "plus": z + nrm / 2, "no half": z - nrm}.get(how, z - nrm / 2)
    return torch.exp(expo) * (1.0 if how == "no scale" else m ** -0.5)


def _performer(q, k, v, projections, how="good"):
    d = q.shape[-1]
    c = {"no scale": 1.0, "twice": d ** -0.5}.get(how, d ** -0.25)
    heads = []
    for h in range(q.shape[1]):
        w = projections[0 if how == "shared" else h]
        fq, fk = _pos(q[:, h] * c, w), _pos(k[:, h] * c, w)  # (B, N, m)
        num = fq @ (fk.transpose(1, 2) @ v[:, h])
        if how == "no norm":
            heads.append(num)
        else:
            heads.append(num / (fq @ fk.sum(1, keepdim=True).transpose(1, 2)))
    return torch.stack(heads, 1)


BUGGY = {
    ("random_fourier_features", "no 1/sqrt(m)"): lambda x, projection: _rff(x, projection,
                                                                            "no scale"),
    ("random_fourier_features", "sqrt(2/m)"): lambda x, projection: _rff(x, projection, "sqrt2"),
    ("random_fourier_features", "cos before sin"): lambda x, projection: _rff(x, projection,
                                                                              "cos first"),
    ("positive_random_features", "no 1/sqrt(m)"): lambda x, projection: _pos(x, projection,
                                                                             "no scale"),
    ("positive_random_features", "no norm term"): lambda x, projection: _pos(x, projection,
                                                                             "no norm"),
    ("positive_random_features", "plus instead of minus"):
        lambda x, projection: _pos(x, projection, "plus"),
    ("positive_random_features", "missing 1/2"): lambda x, projection: _pos(x, projection,
                                                                            "no half"),
    ("performer_attention_per_head", "shared projection"):
        lambda q, k, v, projections: _performer(q, k, v, projections, "shared"),
    ("performer_attention_per_head", "no normaliser"):
        lambda q, k, v, projections: _performer(q, k, v, projections, "no norm"),
    ("performer_attention_per_head", "no scale"):
        lambda q, k, v, projections: _performer(q, k, v, projections, "no scale"),
    ("performer_attention_per_head", "scaled twice"):
        lambda q, k, v, projections: _performer(q, k, v, projections, "twice"),
}
