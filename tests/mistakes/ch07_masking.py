"""Buggy versions of the exercises of exercises/07_masking.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch07_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import torch


def _km(lengths, n, how="good"):
    j = torch.arange(n).unsqueeze(0)
    L = lengths.unsqueeze(1)
    m = {"good": j < L, "inverted": j >= L, "off": j <= L, "left": j >= n - L}[how]
    return m.unsqueeze(1).unsqueeze(1)


def _cp(lengths, n, how="good"):
    i = torch.arange(n).view(n, 1)
    j = torch.arange(n).view(1, n)
    tri = {"good": j <= i, "upper": j >= i, "strict": j < i, "plus one": j <= i + 1,
           "none": torch.ones(n, n, dtype=torch.bool)}.get(how, j <= i)
    pad = (torch.arange(n)[None] < lengths[:, None]).view(-1, 1, 1, n)
    if how == "no padding":
        pad = torch.ones_like(pad)
    out = pad & tri
    return ~out if how == "inverted" else out


def _tp(q, k, v, kpm, how="good"):
    s = q @ k.transpose(-1, -2)
    if how != "no scale":
        s = s / q.shape[-1] ** 0.5
    pad = kpm.view(kpm.shape[0], 1, 1, -1)
    if how == "flip":
        pad = ~pad
    if how == "after":
        return (torch.softmax(s, -1) * (~pad)) @ v
    if how == "nan":
        return torch.softmax(s.masked_fill(pad, float("-inf")), -1) @ v
    if how == "1e9":
        return torch.softmax(s.masked_fill(pad, -1e9), -1) @ v
    s = s.masked_fill(pad, float("-inf"))
    w = torch.softmax(s, -1)
    return torch.nan_to_num(w, nan=0.0) @ v


BUGGY = {
    ("key_mask_from_lengths", "inverted mask"): lambda L, n: _km(L, n, "inverted"),
    ("key_mask_from_lengths", "off by one"): lambda L, n: _km(L, n, "off"),
    ("key_mask_from_lengths", "left padding"): lambda L, n: _km(L, n, "left"),
    ("causal_padding_mask", "inverted mask"): lambda L, n: _cp(L, n, "inverted"),
    ("causal_padding_mask", "upper triangle"): lambda L, n: _cp(L, n, "upper"),
    ("causal_padding_mask", "diagonal excluded"): lambda L, n: _cp(L, n, "strict"),
    ("causal_padding_mask", "one step into the future"): lambda L, n: _cp(L, n, "plus one"),
    ("causal_padding_mask", "causal part missing"): lambda L, n: _cp(L, n, "none"),
    ("causal_padding_mask", "padding part missing"): lambda L, n: _cp(L, n, "no padding"),
    ("attention_with_torch_padding", "polarity not flipped"):
        lambda q, k, v, m: _tp(q, k, v, m, "flip"),
    ("attention_with_torch_padding", "no scale"): lambda q, k, v, m: _tp(q, k, v, m, "no scale"),
    ("attention_with_torch_padding", "mask after softmax"):
        lambda q, k, v, m: _tp(q, k, v, m, "after"),
    ("attention_with_torch_padding", "NaN on fully masked rows"):
        lambda q, k, v, m: _tp(q, k, v, m, "nan"),
    ("attention_with_torch_padding", "large negative fill"):
        lambda q, k, v, m: _tp(q, k, v, m, "1e9"),
}
