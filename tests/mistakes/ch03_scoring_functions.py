"""Buggy versions of the exercises of exercises/03_scoring_functions.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch03_scoring_functions).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import torch


def _softmax_rows(s, mask=None, fill=float("-inf")):
    return (s if mask is None else s.masked_fill(~mask, fill)).softmax(-1)


def _sdpa(q, k, v, m, scale="sqrt", dim=-1, how="fill"):
    d = q.shape[-1]
    s = q @ k.transpose(-2, -1) * {"sqrt": d ** -0.5, "none": 1.0, "d": 1.0 / d,
                                   "times": d ** 0.5}[scale]
    if m is None or how == "ignore":
        return s.softmax(dim) @ v
    if how == "after":
        return (s.softmax(-1) * m) @ v
    if how == "inverted":
        m = ~m
    if how in ("fill", "inverted"):
        # a correct masked softmax (zeros on empty rows), along `dim`
        s = s.masked_fill(~m, float("-inf"))
        mx = s.amax(dim, keepdim=True)
        e = torch.exp(s - torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx)))
        tot = e.sum(dim, keepdim=True)
        return e / torch.where(tot > 0, tot, torch.ones_like(tot)) @ v
    return s.masked_fill(~m, {"nan": float("-inf"), "1e9": -1e9}[how]).softmax(-1) @ v


def _concat(q, k, w, v, swap=False, act=torch.tanh, reduce="v"):
    dq, dk = q.shape[-1], k.shape[-1]
    wq, wk = (w[:, dk:], w[:, :dk]) if swap else (w[:, :dq], w[:, dq:])
    hidden = act((q @ wq.T)[:, :, None, :] + (k @ wk.T)[:, None, :, :])
    return hidden.sum(-1) if reduce == "sum" else hidden @ v


def _heads(x, h, how):
    b, n, e = x.shape
    if how == "view":
        return x.view(b, h, n, e // h) if x.is_contiguous() else x.reshape(b, h, n, e // h)
    if how == "interleave":
        return x.reshape(b, n, e // h, h).permute(0, 3, 1, 2)
    return x.reshape(b, n, h, e // h).transpose(1, 2)


def _mh(q, k, h, split="good", scale="head"):
    qh, kh = _heads(q, h, split), _heads(k, h, split)
    d = {"head": q.shape[-1] // h, "model": q.shape[-1]}.get(scale)
    return qh @ kh.transpose(-2, -1) * (1.0 if scale == "none" else d ** -0.5)


def _ms(s, mask, how):
    if mask is None:
        return torch.softmax(s, dim=-2 if how == "dim-2" else -1)
    if how == "after":
        return torch.softmax(s, dim=-1) * mask
    keep = ~mask if how == "inverted" else mask
    dim = -2 if how == "dim-2" else -1
    s = s.masked_fill(~keep, float("-inf"))
    mx = s.amax(dim, keepdim=True)
    e = torch.exp(s - torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx)))
    tot = e.sum(dim, keepdim=True)
    return e / torch.where(tot > 0, tot, torch.ones_like(tot))



BUGGY = {
    ("masked_softmax", "inverted mask"): lambda s, mask=None: _ms(s, mask, "inverted"),
    ("masked_softmax", "mask after softmax"): lambda s, mask=None: _ms(s, mask, "after"),
    ("masked_softmax", "mask ignored"): lambda s, mask=None: torch.softmax(s, dim=-1),
    ("masked_softmax", "NaN on fully masked rows"): lambda s, mask=None: _softmax_rows(s, mask),
    ("masked_softmax", "large negative fill"):
        lambda s, mask=None: _softmax_rows(s, mask, fill=-1e9),
    ("masked_softmax", "zero fill"): lambda s, mask=None: _softmax_rows(s, mask, fill=0.0),
    ("masked_softmax", "softmax over the queries"): lambda s, mask=None: _ms(s, mask, "dim-2"),
    ("scaled_dot_product_attention", "no scale"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, scale="none"),
    ("scaled_dot_product_attention", "scale 1/D"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, scale="d"),
    ("scaled_dot_product_attention", "scale sqrt(D)"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, scale="times"),
    ("scaled_dot_product_attention", "softmax over the queries"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, dim=-2),
    ("scaled_dot_product_attention", "inverted mask"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="inverted"),
    ("scaled_dot_product_attention", "mask after softmax"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="after"),
    ("scaled_dot_product_attention", "mask ignored"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="ignore"),
    ("scaled_dot_product_attention", "NaN on fully masked rows"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="nan"),
    ("scaled_dot_product_attention", "large negative fill"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="1e9"),
    ("concat_score", "halves swapped"): lambda q, k, w, v: _concat(q, k, w, v, swap=True),
    ("concat_score", "no tanh"): lambda q, k, w, v: _concat(q, k, w, v, act=lambda x: x),
    ("concat_score", "sum instead of v"): lambda q, k, w, v: _concat(q, k, w, v, reduce="sum"),
    ("multi_head_scores", "view without transpose"): lambda q, k, h: _mh(q, k, h, split="view"),
    ("multi_head_scores", "scaled by the model dim"): lambda q, k, h: _mh(q, k, h, scale="model"),
    ("multi_head_scores", "no scale"): lambda q, k, h: _mh(q, k, h, scale="none"),
    ("multi_head_scores", "heads interleaved"): lambda q, k, h: _mh(q, k, h, split="interleave"),
}
