"""Buggy versions of the exercises of exercises/08_multi_head.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch08_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import math

import torch


def _mh(x, wq, wk, wv, wo, h, m=None, how="good"):
    b, n, e = x.shape
    d = e // h
    if how == "transposed":
        wq, wk, wv, wo = wq.t(), wk.t(), wv.t(), wo.t()
    if how == "view":
        split = lambda t: t.reshape(b, h, n, d)  # noqa: E731
        merge = lambda t: t.reshape(b, n, e)  # noqa: E731
    else:
        split = lambda t: t.reshape(b, n, h, d).permute(0, 2, 1, 3)  # noqa: E731
        merge = lambda t: t.permute(0, 2, 1, 3).reshape(b, n, e)  # noqa: E731
    q, k, v = split(x @ wq), split(x @ wk), split(x @ wv)
    s = torch.einsum("bhqd,bhkd->bhqk", q, k)
    s = s * {"model": 1 / math.sqrt(e), "none": 1.0}.get(how, 1 / math.sqrt(d))
    if m is not None:
        s = s.masked_fill(m if how == "inverted" else ~m, float("-inf"))
    y = merge(torch.softmax(s, dim=-1) @ v)
    return y if how == "no out" else y @ wo


BUGGY = {
    ("concat_heads", "reshape without transpose"):
        lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]),
    ("concat_heads", "heads interleaved"):
        lambda x: torch.cat([x[:, :, :, j:j + 1].transpose(1, 2).flatten(2)
                             for j in range(x.shape[3])], dim=-1),
    ("multi_head_forward", "view without transpose"):
        lambda x, a, b, c, d, h, m=None: _mh(x, a, b, c, d, h, m, "view"),
    ("multi_head_forward", "scaled by the model width"):
        lambda x, a, b, c, d, h, m=None: _mh(x, a, b, c, d, h, m, "model"),
    ("multi_head_forward", "no scale"):
        lambda x, a, b, c, d, h, m=None: _mh(x, a, b, c, d, h, m, "none"),
    ("multi_head_forward", "output projection missing"):
        lambda x, a, b, c, d, h, m=None: _mh(x, a, b, c, d, h, m, "no out"),
    ("multi_head_forward", "weights transposed"):
        lambda x, a, b, c, d, h, m=None: _mh(x, a, b, c, d, h, m, "transposed"),
    ("multi_head_forward", "inverted mask"):
        lambda x, a, b, c, d, h, m=None: _mh(x, a, b, c, d, h, m, "inverted"),
    ("expand_kv_heads", "heads tiled"):
        lambda x, g: torch.cat([x] * g, dim=1),
}
