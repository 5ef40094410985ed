"""Buggy versions of the exercises of exercises/02_attention_pooling.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch02_attention_pooling).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import math

import torch


def _box(q, k, h, inside=None, norm_dim=-1):
    inside = (q[:, None] - k[None, :]).abs() <= h if inside is None else inside
    w = inside.to(q.dtype)
    s = w.sum(norm_dim, keepdim=True)
    return w / torch.where(s > 0, s, torch.ones_like(s))


def _loo(x, y, h, how):
    n = len(x)
    s = -(x[:, None] - x[None, :]) ** 2 / (2 * h**2)
    eye = torch.eye(n, dtype=torch.bool)
    if how == "no mask":
        w = torch.softmax(s, -1)
    elif how == "after":
        w = torch.softmax(s, -1).masked_fill(eye, 0.0)
    elif how == "inverted":
        w = torch.softmax(s.masked_fill(~eye, float("-inf")), -1)
    else:
        w = torch.softmax(s.masked_fill(eye, float("-inf")), 0 if how == "dim0" else -1)
    err = (w @ y - y) ** 2
    return {"sum": err.sum(), "rmse": err.mean().sqrt()}.get(how, err.mean())


BUGGY = {
    ("nw_gaussian", "weights not normalised"):
        lambda q, k, v, h: torch.exp(-(q[:, None] - k) ** 2 / (2 * h**2)) @ v,
    ("nw_gaussian", "kernel density not normalised"):
        lambda q, k, v, h: (torch.exp(-0.5 * ((q[:, None] - k) / h) ** 2)
                            / (h * math.sqrt(2 * math.pi))) @ v,
    ("nw_gaussian", "softmax over the queries"):
        lambda q, k, v, h: torch.softmax(-(q[:, None] - k) ** 2 / (2 * h**2), dim=0) @ v,
    ("nw_gaussian", "missing 1/2"):
        lambda q, k, v, h: torch.softmax(-(q[:, None] - k) ** 2 / h**2, dim=-1) @ v,
    ("nw_gaussian", "h not squared"):
        lambda q, k, v, h: torch.softmax(-(q[:, None] - k) ** 2 / (2 * h), dim=-1) @ v,
    ("nw_gaussian", "multiplied by h"):
        lambda q, k, v, h: torch.softmax(-((q[:, None] - k) * h) ** 2 / 2, dim=-1) @ v,
    ("nw_gaussian", "underflow"):
        lambda q, k, v, h: (lambda w: (w / w.sum(1, keepdim=True)) @ v)(
            torch.exp(-(q[:, None] - k) ** 2 / (2 * h**2))),
    ("nw_gaussian", "ignores the queries"):
        lambda q, k, v, h: v.mean(dim=0, keepdim=True).repeat(len(q), 1),
    ("boxcar_weights", "inverted mask"):
        lambda q, k, h: _box(q, k, h, inside=(q[:, None] - k).abs() > h),
    ("boxcar_weights", "indicator not normalised"):
        lambda q, k, h: ((q[:, None] - k).abs() <= h).to(q.dtype),
    ("boxcar_weights", "kernel not normalised"):
        lambda q, k, h: torch.where((q[:, None] - k).abs() <= h, 0.5, 0.0).to(q.dtype),
    ("boxcar_weights", "NaN on empty rows"):
        lambda q, k, h: (lambda m: m / m.sum(-1, keepdim=True))(
            ((q[:, None] - k).abs() <= h).to(q.dtype)),
    ("boxcar_weights", "strict inequality"):
        lambda q, k, h: _box(q, k, h, inside=(q[:, None] - k).abs() < h),
    ("boxcar_weights", "normalised over the queries"): lambda q, k, h: _box(q, k, h, norm_dim=0),
    ("boxcar_weights", "window of width h"):
        lambda q, k, h: _box(q, k, h, inside=(q[:, None] - k).abs() <= h / 2),
    ("loo_mse", "no mask"): lambda x, y, h: _loo(x, y, h, "no mask"),
    ("loo_mse", "mask after softmax"): lambda x, y, h: _loo(x, y, h, "after"),
    ("loo_mse", "inverted mask"): lambda x, y, h: _loo(x, y, h, "inverted"),
    ("loo_mse", "softmax over the queries"): lambda x, y, h: _loo(x, y, h, "dim0"),
    ("loo_mse", "sum instead of mean"): lambda x, y, h: _loo(x, y, h, "sum"),
    ("loo_mse", "root mean square"): lambda x, y, h: _loo(x, y, h, "rmse"),
}
