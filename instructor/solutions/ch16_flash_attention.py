# INSTRUCTOR ONLY -- reference solutions of exercises/16_flash_attention.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import math

import torch


def merge_softmax_states(m_a, l_a, o_a, m_b, l_b, o_b):
    """m_*, l_*: (...,)  o_*: (..., Dv)  ->  the merged (max, sum, output)."""
    new_max = torch.maximum(m_a, m_b)
    finite_max = torch.nan_to_num(new_max, neginf=0.0)  # -inf (nothing read yet) -> 0
    w_a = l_a * torch.exp(m_a - finite_max)  # the sums, rescaled to the new maximum
    w_b = l_b * torch.exp(m_b - finite_max)
    total = w_a + w_b
    safe = torch.where(total > 0, total, torch.ones_like(total))
    merged = (o_a * w_a[..., None] + o_b * w_b[..., None]) / safe[..., None]
    return new_max, total, merged


def tiled_attention(query, key, value, block_size, is_causal=False):
    """query: (B, H, Nq, D)  key: (B, H, Nk, D)  value: (B, H, Nk, Dv)  ->  (B, H, Nq, Dv).

    Exact softmax attention, one block of keys at a time, with a running (max, sum, output)
    per query: nothing larger than (B, H, Nq, block_size) is ever built.
    """
    b, h, nq, d = query.shape
    nk = key.shape[-2]
    q = query / math.sqrt(d)
    run_max = query.new_full((b, h, nq), float("-inf"))
    run_sum = query.new_zeros((b, h, nq))
    run_out = query.new_zeros((b, h, nq, value.shape[-1]))
    rows = torch.arange(nq, device=query.device).unsqueeze(-1)  # (Nq, 1)
    for start in range(0, nk, block_size):
        stop = min(start + block_size, nk)
        s = q @ key[:, :, start:stop].transpose(-1, -2)  # (B, H, Nq, bk): one tile
        if is_causal:
            cols = torch.arange(start, stop, device=query.device)
            s = s.masked_fill(cols > rows, float("-inf"))
        new_max = torch.maximum(run_max, s.amax(dim=-1))
        base = torch.nan_to_num(new_max, neginf=0.0)
        p = torch.exp(s - base[..., None])  # (B, H, Nq, bk)
        kept = run_sum * torch.exp(run_max - base)  # the old sum under the new maximum
        run_sum = kept + p.sum(dim=-1)
        denom = torch.where(run_sum > 0, run_sum, torch.ones_like(run_sum))
        run_out = (run_out * kept[..., None] + p @ value[:, :, start:stop]) / denom[..., None]
        run_max = new_max
    return run_out


answer_causal_tiles = 36

my_flash_memory_n = 1024
