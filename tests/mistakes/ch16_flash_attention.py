"""Buggy versions of the exercises of exercises/16_flash_attention.ipynb, written the way a
student would (independently of the variants in attention_course.checks.chapters.ch16_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import math

import torch


def _merge(m_a, l_a, o_a, m_b, l_b, o_b, how="good"):
    m = torch.max(m_a, m_b)
    ref = m if how == "nan" else torch.where(m == float("-inf"), torch.zeros_like(m), m)
    if how == "no rescale":
        ea, eb = torch.ones_like(m), torch.ones_like(m)
    elif how == "inverse":
        ea = torch.where(l_a > 0, torch.exp(ref - m_a), torch.zeros_like(m))
        eb = torch.where(l_b > 0, torch.exp(ref - m_b), torch.zeros_like(m))
    else:
        ea, eb = torch.exp(m_a - ref), torch.exp(m_b - ref)
    la, lb = l_a * ea, l_b * eb
    l = la + lb
    if how == "average":
        return m, l, 0.5 * (o_a + o_b)
    out = o_a * la.unsqueeze(-1) + o_b * lb.unsqueeze(-1)
    if how == "no renorm":
        return m, l, out
    if how == "nan":
        return m, l, out / l.unsqueeze(-1)
    return m, l, out / l.clamp(min=1e-300).unsqueeze(-1)


def _tiled(q, k, v, bs, is_causal=False, how="good"):
    nq, nk, d = q.shape[2], k.shape[2], q.shape[3]
    q = q if how == "no scale" else q / math.sqrt(d)
    if how == "dim":  # the whole matrix, softmax over the queries
        s = q @ k.transpose(2, 3)
        if is_causal:
            s = s.masked_fill(torch.ones(nq, nk, dtype=torch.bool).triu(1), float("-inf"))
        return torch.softmax(s, dim=2) @ v
    mx = torch.full(q.shape[:3] + (1,), float("-inf"), dtype=q.dtype)
    tot = torch.zeros(q.shape[:3] + (1,), dtype=q.dtype)
    acc = torch.zeros(q.shape[:3] + (v.shape[3],), dtype=q.dtype)
    tiles = []
    for j in range(0, nk, bs):
        s = q @ k[:, :, j:j + bs].transpose(2, 3)
        if is_causal:
            i_idx = torch.arange(nq)[:, None]
            j_idx = torch.arange(j, min(j + bs, nk))[None, :]
            hide = (j_idx < i_idx) if how == "future" else (j_idx > i_idx)
            s = s.masked_fill(hide, float("-inf"))
        if how == "average":
            tiles.append(torch.softmax(s, dim=-1) @ v[:, :, j:j + bs])
            continue
        new = torch.maximum(mx, s.max(dim=-1, keepdim=True).values)
        new0 = torch.nan_to_num(new, neginf=0.0)
        p = torch.exp(s - new0)
        if how == "no rescale":
            tot, acc = tot + p.sum(-1, keepdim=True), acc + p @ v[:, :, j:j + bs]
        else:
            c = torch.exp(mx - new0)
            tot, acc = tot * c + p.sum(-1, keepdim=True), acc * c + p @ v[:, :, j:j + bs]
        mx = new
    if how == "average":
        return torch.stack(tiles).nan_to_num().mean(0)
    return acc / tot.clamp(min=1e-300)


BUGGY = {
    ("merge_softmax_states", "no rescaling"): lambda *s: _merge(*s, how="no rescale"),
    ("merge_softmax_states", "inverse rescaling"): lambda *s: _merge(*s, how="inverse"),
    ("merge_softmax_states", "output not renormalised"): lambda *s: _merge(*s, how="no renorm"),
    ("merge_softmax_states", "outputs averaged"): lambda *s: _merge(*s, how="average"),
    ("merge_softmax_states", "NaN on empty states"): lambda *s: _merge(*s, how="nan"),
    ("tiled_attention", "no scale"):
        lambda q, k, v, block_size, is_causal=False: _tiled(q, k, v, block_size, is_causal,
                                                            "no scale"),
    ("tiled_attention", "no rescaling"):
        lambda q, k, v, block_size, is_causal=False: _tiled(q, k, v, block_size, is_causal,
                                                            "no rescale"),
    ("tiled_attention", "tiles averaged"):
        lambda q, k, v, block_size, is_causal=False: _tiled(q, k, v, block_size, is_causal,
                                                            "average"),
    ("tiled_attention", "future instead of past"):
        lambda q, k, v, block_size, is_causal=False: _tiled(q, k, v, block_size, is_causal,
                                                            "future"),
    ("tiled_attention", "softmax over the queries"):
        lambda q, k, v, block_size, is_causal=False: _tiled(q, k, v, block_size, is_causal,
                                                            "dim"),
}
