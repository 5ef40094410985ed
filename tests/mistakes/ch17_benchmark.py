"""Buggy versions of the exercises of exercises/17_benchmark.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch17_benchmark).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""

import torch


def _frob(x):
    return torch.sqrt((x * x).sum())


def _running(value, divide_by_n=False, exclusive=False):
    n = value.shape[2]
    out = []
    total = torch.zeros_like(value[:, :, 0])
    for i in range(n):
        if not exclusive:
            total = total + value[:, :, i]
        out.append(total / (n if divide_by_n else i + 1))
        if exclusive:
            total = total + value[:, :, i]
    return torch.stack(out, dim=2)


def _uniform(value, is_causal=False, how="good"):
    if how == "features":
        if is_causal:
            d = value.shape[-1]
            return torch.cumsum(value, dim=3) / torch.arange(1, d + 1, dtype=value.dtype)
        return value.mean(dim=3, keepdim=True).repeat(1, 1, 1, value.shape[3])
    if is_causal and how != "ignore causal":
        return _running(value, divide_by_n=how == "by n", exclusive=how == "exclusive")
    return value.mean(dim=2, keepdim=True).repeat(1, 1, value.shape[2], 1)


def _lstsq(x, y):
    """Slope of y on x by the normal equations, with an intercept column."""
    a = torch.stack([x, torch.ones_like(x)], dim=1)  # (K, 2)
    sol = torch.linalg.solve(a.T @ a, a.T @ y[:, None])
    return sol[0, 0]


BUGGY = {
    ("relative_frobenius_error", "squared"):
        lambda out, ref: ((out - ref) ** 2).sum() / (ref ** 2).sum(),
    ("relative_frobenius_error", "relative to out"):
        lambda out, ref: _frob(out - ref) / _frob(out),
    ("relative_frobenius_error", "entrywise"):
        lambda out, ref: torch.mean(torch.abs((out - ref) / ref)),
    ("relative_frobenius_error", "per row"):
        lambda out, ref: torch.mean(torch.linalg.norm(out - ref, dim=-1)
                                    / torch.linalg.norm(ref, dim=-1)),
    ("relative_frobenius_error", "absolute"): lambda out, ref: _frob(out - ref),
    ("uniform_attention", "wrong axis"):
        lambda value, is_causal=False: _uniform(value, is_causal, "features"),
    ("uniform_attention", "causal divides by N"):
        lambda value, is_causal=False: _uniform(value, is_causal, "by n"),
    ("uniform_attention", "causal ignored"):
        lambda value, is_causal=False: _uniform(value, is_causal, "ignore causal"),
    ("uniform_attention", "causal excludes itself"):
        lambda value, is_causal=False: _uniform(value, is_causal, "exclusive"),
    ("fit_exponent", "linear space"):
        lambda sizes, measurements: _lstsq(sizes, measurements),
    ("fit_exponent", "semi-log"):
        lambda sizes, measurements: _lstsq(sizes, torch.log(measurements)),
    ("fit_exponent", "swapped axes"):
        lambda sizes, measurements: _lstsq(torch.log(measurements), torch.log(sizes)),
    ("fit_exponent", "endpoints"):
        lambda sizes, measurements: (torch.log(measurements[-1])
                                     - torch.log(measurements[0]))
        / (torch.log(sizes[-1]) - torch.log(sizes[0])),
}
