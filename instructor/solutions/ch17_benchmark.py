# INSTRUCTOR ONLY -- reference solutions of exercises/17_benchmark.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import torch


def relative_frobenius_error(out, ref):
    """out, ref: the same shape (...)  ->  0-dim tensor ||out - ref||_F / ||ref||_F
    (the absolute error ||out - ref||_F when ref is all zeros)."""
    diff = torch.linalg.vector_norm(out - ref)  # every entry: the Frobenius norm
    size = torch.linalg.vector_norm(ref)
    return torch.where(size > 0, diff / torch.where(size > 0, size, torch.ones_like(size)), diff)


def uniform_attention(value, is_causal=False):
    """value: (B, H, N, Dv)  ->  (B, H, N, Dv): the mean of the values each query may see."""
    n = value.shape[-2]
    if not is_causal:
        return value.mean(dim=-2, keepdim=True).expand(value.shape)  # (B, H, N, Dv)
    seen = torch.arange(1, n + 1, dtype=value.dtype, device=value.device)  # i + 1 values
    return value.cumsum(dim=-2) / seen.unsqueeze(-1)  # (B, H, N, Dv): running mean


def fit_exponent(sizes, measurements):
    """sizes, measurements: (K,) positive  ->  0-dim tensor, the least-squares slope of
    log(measurements) against log(sizes)."""
    x, y = torch.log(sizes), torch.log(measurements)  # (K,)
    dx = x - x.mean()
    return (dx * (y - y.mean())).sum() / (dx * dx).sum()


answer_naive_mib = 65.0

my_workload_pick = ("sdpa", 1.0)
