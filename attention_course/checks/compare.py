"""Comparing a submitted output with the reference, and recognising known mistakes.

Messages follow one order: the **type** and **shape** first (nothing else is meaningful
when they are wrong), then the **dtype**, then NaN/inf, then the **values** with the largest
absolute and relative errors, the index of the worst entry and the dtype's tolerance. A
failing output is then compared with each known-wrong variant of the exercise
(:class:`~attention_course.checks.core.Mistake`); a match gives a targeted hint.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import torch

from .core import Case, Exercise, Mistake

__all__ = ["TOLERANCES", "tolerance", "describe", "as_tensor", "compare_tensors",
           "shape_hint", "error_hint", "match_mistake", "upcast", "expected_output"]

#: dtype -> (rtol, atol) for an output compared with a float64 reference. Looser than the
#: library's own test table: a student's correct formula may round differently.
TOLERANCES = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 2e-2),
}


def tolerance(dtype: Optional[torch.dtype], scale: float = 1.0) -> Tuple[float, float]:
    rtol, atol = TOLERANCES.get(dtype, TOLERANCES[torch.float32])
    return rtol * scale, atol * scale


def describe(out: Any) -> str:
    """What a sanitized output is, in words: 'a tuple of 2 items', 'None', ..."""
    if out is None:
        return "None"
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {_shape(out.shape)} and dtype {out.dtype}"
    if isinstance(out, bool):
        return f"a bool ({out})"
    if isinstance(out, (int, float)):
        return f"a number ({out:g})"
    if isinstance(out, str):
        return f"a string ({out[:40]!r})"
    if isinstance(out, dict) and "__type__" in out:
        t = out["__type__"]
        if "len" in out:
            return f"a {t} of {out['len']} items"
        if "shape" in out and out["shape"] is not None:
            return f"a {t} of shape {_shape(out['shape'])}"
        if "tensor" in out:
            return f"a tensor subclass {t}"
        return f"a {t}"
    return f"a {type(out).__name__}"


def _shape(shape) -> str:
    shape = tuple(shape)
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def as_tensor(out: Any) -> Tuple[Optional[torch.Tensor], Optional[str]]:
    """(tensor, None) when ``out`` is a plain tensor, else (None, message)."""
    if isinstance(out, torch.Tensor) and type(out) is torch.Tensor:
        return out, None
    msg = f"expected a torch.Tensor, got {describe(out)}"
    if isinstance(out, dict) and out.get("__type__") in ("tuple", "list") and out.get("len") == 2:
        msg += " (return only the output, not (output, weights))"
    elif isinstance(out, dict) and str(out.get("__type__", "")).startswith("numpy"):
        msg += " (stay in torch: numpy drops gradients and the device)"
    elif isinstance(out, dict) and "tensor" in out:
        msg += " (return a plain torch.Tensor)"
    return None, msg


def shape_hint(actual: tuple, expected: tuple) -> Optional[str]:
    """A guess at why a shape is wrong, from the shapes alone."""
    actual, expected = tuple(actual), tuple(expected)
    if len(actual) == len(expected) and len(actual) >= 2:
        if actual[:-2] == expected[:-2] and actual[-2:] == expected[-2:][::-1]:
            return "the last two axes are swapped: did you transpose the result, or compute " \
                   "k @ q instead of q @ k^T?"
        if sorted(actual) == sorted(expected):
            return "the right sizes in the wrong order: check the order of your transposes " \
                   "and of the axes in view/reshape"
    if tuple(s for s in actual if s != 1) == tuple(s for s in expected if s != 1):
        return "only axes of size 1 differ: a missing squeeze/unsqueeze, or keepdim=True " \
               "where the result should drop the axis (or the reverse)"
    if len(actual) == len(expected) - 1 and actual == expected[1:]:
        return "the leading (batch) axis is missing"
    return None


def error_hint(error: str) -> Optional[str]:
    """A hint for common exception messages."""
    e = error or ""
    if "view size is not compatible" in e:
        return "view() needs a contiguous tensor: use reshape(), or .contiguous() first"
    if "must match the size of tensor" in e or "shapes cannot be multiplied" in e:
        return "the shapes do not line up: write the shape of every intermediate next to it " \
               "as a comment, e.g. # (B, H, Nq, Nk)"
    if "expected scalar type" in e or ("dtype" in e and "expected" in e):
        return "mixed dtypes: build new tensors with dtype=x.dtype (and device=x.device)"
    if "does not require grad" in e or "doesn't require grad" in e:
        return "the output is detached from the inputs: avoid .detach(), .item(), .numpy() " \
               "and torch.tensor(...) on intermediate results"
    if "in-place operation" in e:
        return "do not modify the inputs in place (e.g. masked_fill_): use the out-of-place " \
               "version (masked_fill), which leaves the caller's tensors alone"
    if "out of memory" in e or "can't allocate memory" in e or e.startswith("MemoryError"):
        return "the function allocates far more memory than the inputs need"
    return None


def upcast(x: Any) -> Any:
    """A float64, detached copy of the float tensors in ``x`` (tuples/lists/dicts walked)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        return x.double() if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(upcast(v) for v in x)
    if isinstance(x, dict):
        return {k: upcast(v) for k, v in x.items()}
    return x


def expected_output(ex: Exercise, case: Case) -> Any:
    """The reference output for ``case`` (float64; cached on the case)."""
    key = ("expected", ex.name)
    if key not in case._cache:
        with torch.no_grad():
            case._cache[key] = ex.reference(*upcast(case.args), **upcast(case.kwargs))
    return case._cache[key]


def compare_tensors(actual: torch.Tensor, expected: torch.Tensor, dtype: Optional[torch.dtype],
                    *, what: str = "output", exact_zeros: bool = False,
                    tol_scale: float = 1.0, check_dtype: bool = True) -> Optional[List[str]]:
    """None when ``actual`` matches ``expected`` within the tolerance of ``dtype``; else the
    lines of a message (shape first, then dtype, NaN/inf, values)."""
    if tuple(actual.shape) != tuple(expected.shape):
        return [f"{what} has shape {_shape(actual.shape)}, expected {_shape(expected.shape)}"]
    if check_dtype and dtype is not None and actual.dtype != dtype:
        if dtype == torch.bool:
            return [f"{what} has dtype {actual.dtype}, expected torch.bool (a mask: build it "
                    f"from comparisons and &, |, ~, not from 0/1 numbers)"]
        if dtype == torch.int64:
            return [f"{what} has dtype {actual.dtype}, expected torch.int64 (whole numbers "
                    f"such as indices or counts: keep integer tensors, e.g. what argmax "
                    f"returns, rather than converting them to float)"]
        return [f"{what} has dtype {actual.dtype}, expected {dtype} (the dtype of the inputs: "
                f"do not hard-code float32/float64; build new tensors with dtype=x.dtype)"]
    if not (actual.is_floating_point() or actual.is_complex()):
        actual = actual.to(torch.float64)
    a, e = actual.detach().to(torch.float64), expected.detach().to(torch.float64)
    if a.numel() == 0:
        return None
    bad_nan = ~torch.isfinite(a) & torch.isfinite(e)
    if bad_nan.any():
        idx = tuple(int(i) for i in bad_nan.nonzero()[0])
        kind = "NaN" if torch.isnan(a[idx]) else "inf"
        n = int(bad_nan.sum())
        return [f"{what} has {n} non-finite value{'s' if n > 1 else ''} ({kind} first at "
                f"{list(idx)}, where the expected value is {e[idx].item():.6g})"]
    rtol, atol = tolerance(dtype, tol_scale)
    if exact_zeros:
        zero = (e == 0) & (a != 0)
        if zero.any():
            idx = tuple(int(i) for i in zero.nonzero()[0])
            return [f"{what} must be exactly 0 where the expected value is 0 (masked or outside "
                    f"the window): got {a[idx].item():.3g} at {list(idx)} "
                    f"({int(zero.sum())} such entries)"]
    both = torch.isfinite(a) & torch.isfinite(e)
    err = torch.where(both, (a - e).abs(), torch.zeros_like(a))
    mismatch_inf = (~both) & ~((a == e) | (torch.isnan(a) & torch.isnan(e)))
    bound = atol + rtol * e.abs()
    bad = (err > bound) | mismatch_inf
    if not bad.any():
        return None
    flat = int(torch.argmax(torch.where(bad, err, torch.zeros_like(err))))
    idx = _unravel(flat, tuple(a.shape))
    max_abs = float(err.max())
    rel = err / e.abs().clamp_min(1e-300)
    max_rel = float(torch.where(e.abs() > atol, rel, torch.zeros_like(rel)).max())
    where = f" at {list(idx)}" if idx else ""
    return [f"max abs error {max_abs:.2e}{where} (got {a[idx].item():.6g}, expected "
            f"{e[idx].item():.6g}); max rel error {max_rel:.2e}; {int(bad.sum())} of "
            f"{a.numel()} entries outside the tolerance",
            f"tolerance for {str(dtype).replace('torch.', '')}: |error| <= {atol:.0e} + "
            f"{rtol:.0e} * |expected|"]


def _unravel(flat: int, shape: tuple) -> tuple:
    """The index of entry ``flat`` of a row-major tensor of ``shape`` (torch < 2.2 has no
    ``torch.unravel_index``)."""
    idx = []
    for size in reversed(shape):
        idx.append(flat % size)
        flat //= size
    return tuple(reversed(idx))


def _close_to(actual: torch.Tensor, variant: Any) -> bool:
    if not isinstance(variant, torch.Tensor) or tuple(variant.shape) != tuple(actual.shape):
        return False
    a, v = actual.detach().double(), variant.detach().double()
    finite = v[torch.isfinite(v)]
    scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
    return bool(torch.allclose(a, v, rtol=1e-3, atol=1e-4 * scale, equal_nan=True))


def match_mistake(ex: Exercise, case: Case, actual: torch.Tensor,
                  expected: Any = None) -> Optional[Mistake]:
    """The first known mistake whose output ``actual`` matches (and that differs from the
    expected output on this case), or None."""
    for m in ex.mistakes:
        try:
            if m.applies is not None and not m.applies(case):
                continue
            key = ("mistake", ex.name, m.name)
            if key not in case._cache:
                with torch.no_grad():
                    case._cache[key] = m.fn(*upcast(case.args), **upcast(case.kwargs))
            variant = case._cache[key]
            if isinstance(expected, torch.Tensor) and _close_to(expected, variant):
                continue  # this case cannot tell the mistake apart
            if _close_to(actual, variant):
                return m
        except Exception:  # a variant that cannot run on this case says nothing
            continue
    return None


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
