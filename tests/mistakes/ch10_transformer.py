"""Buggy versions of the exercises of exercises/10_transformer.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch10_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import math

import torch
import torch.nn.functional as F


def _layer(x, w, h, mask=None, norm_first=False, how="good"):
    b, n, e = x.shape
    d = e // h

    def ln(t, i):
        return F.layer_norm(t, (e,), w[f"ln{i}_weight"], w[f"ln{i}_bias"], eps=1e-5)

    def split(t):
        if how == "view":
            return t.view(b, h, n, d)
        return t.view(b, n, h, d).permute(0, 2, 1, 3)

    def merge(t):
        if how == "view":
            return t.reshape(b, n, e)
        return t.permute(0, 2, 1, 3).reshape(b, n, e)

    def attn(t):
        q, k, v = (split(t @ w[f"w_{c}"] + w[f"b_{c}"]) for c in "qkv")
        scale = {"none": 1.0, "model": 1 / math.sqrt(e)}.get(how, 1 / math.sqrt(d))
        s = torch.einsum("bhqd,bhkd->bhqk", q, k) * scale
        if mask is not None:
            keep = ~mask if how == "inverted" else mask
            s = s.masked_fill(~keep, float("-inf"))
        a = torch.softmax(s, dim=-1)
        if how != "nan":
            a = torch.nan_to_num(a, nan=0.0)
        return merge(a @ v) @ w["w_o"] + w["b_o"]

    def ffn(t):
        return F.relu(t @ w["w_1"] + w["b_1"]) @ w["w_2"] + w["b_2"]

    res_a = 0 if how == "no res att" else 1
    res_f = 0 if how == "no res ff" else 1
    pre = norm_first if how != "swap" else not norm_first
    if pre:
        x = res_a * x + attn(ln(x, 1))
        x = res_f * x + ffn(ln(x, 2))
        return ln(x, 2) if how == "final" else x
    x = ln(res_a * x + attn(x), 1)
    return ln(res_f * x + ffn(x), 2)


def _bn(x, token_mask, weight, bias, eps=1e-5, how="good"):
    if how == "all":
        flat = x.flatten(0, 1)
        mean, var = flat.mean(0), flat.var(0, unbiased=False)
    elif how == "divide all":
        xm = x * token_mask.unsqueeze(-1)
        mean = xm.mean(dim=(0, 1))
        var = (((x - mean) * token_mask.unsqueeze(-1)) ** 2).mean(dim=(0, 1))
    elif how == "sentence":
        rows = []
        for i in range(x.shape[0]):
            r = x[i][token_mask[i]]
            mu = r.mean(0) if len(r) else torch.zeros_like(x[i, 0])
            var_i = r.var(0, unbiased=False) if len(r) else torch.ones_like(x[i, 0])
            rows.append((x[i] - mu) / torch.sqrt(var_i + eps))
        return torch.stack(rows) * weight + bias
    elif how == "features":
        return F.layer_norm(x, x.shape[-1:], eps=eps) * weight + bias
    else:
        r = x[token_mask]
        mean, var = r.mean(0), r.var(0, unbiased=(how == "unbiased"))
    return (x - mean) / (var + eps).sqrt() * weight + bias


def _enc(how):
    return lambda x, w, h, mask=None, norm_first=False: _layer(x, w, h, mask, norm_first, how)


def _bnb(how):
    return lambda x, token_mask, weight, bias, eps=1e-5: _bn(x, token_mask, weight, bias, eps, how)


BUGGY = {
    ("encoder_layer_forward", "layer norm in the wrong place"): _enc("swap"),
    ("encoder_layer_forward", "residual missing around attention"): _enc("no res att"),
    ("encoder_layer_forward", "residual missing around the feed-forward network"):
        _enc("no res ff"),
    ("encoder_layer_forward", "inverted mask"): _enc("inverted"),
    ("encoder_layer_forward", "NaN on fully masked rows"): _enc("nan"),
    ("encoder_layer_forward", "no scale"): _enc("none"),
    ("encoder_layer_forward", "scaled by the model width"): _enc("model"),
    ("encoder_layer_forward", "view without transpose"): _enc("view"),
    ("encoder_layer_forward", "final norm in pre-norm"): _enc("final"),
    ("masked_batch_norm", "padding included in the statistics"): _bnb("all"),
    ("masked_batch_norm", "masked sum divided by all positions"): _bnb("divide all"),
    ("masked_batch_norm", "unbiased variance"): _bnb("unbiased"),
    ("masked_batch_norm", "statistics per sentence"): _bnb("sentence"),
    ("masked_batch_norm", "statistics over the features"): _bnb("features"),
}
