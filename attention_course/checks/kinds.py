"""Ready-made checks: the building blocks chapter modules declare exercises with.

* :func:`output_check` -- call the function, compare the output with the reference
  (``values=False``: type, shape and dtype only);
* :func:`grad_check` -- backpropagate a fixed upstream gradient, compare the input gradients;
* :func:`trace_check` -- watch the call: largest tensor created (efficiency) and calls to
  functions the exercise forbids (rules); the output must also be right;
* :func:`answer_check` -- a predicted number, compared with the truth (predict-then-verify);
* :class:`~attention_course.checks.core.Check` with a custom ``judge`` for anything else.

Every judge tolerates garbage: a missing name, an exception, a wrong type, NaN, a tuple
instead of a tensor all become a failed :class:`~attention_course.checks.core.Verdict` with a
specific message, never an exception.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from .compare import (
    as_tensor,
    compare_tensors,
    describe,
    error_hint,
    expected_output,
    match_mistake,
    shape_hint,
    upcast,
)
from .core import Case, Check, Exercise, Verdict

__all__ = ["output_check", "grad_check", "trace_check", "answer_check", "status_problem",
           "number_of", "judge_output_case"]


def status_problem(ex: Exercise, oc: Any) -> Optional[Verdict]:
    """A failed verdict when the probe did not get an output at all, else None."""
    if not isinstance(oc, dict):
        return Verdict(False, "no result for this check (the submission stopped early?)")
    status = oc.get("status")
    if status == "ok":
        return None
    if status == "missing":
        what = "function" if ex.kind == "function" else "variable"
        return Verdict(False, f"the notebook defines no {what} called `{ex.name}` (was its cell "
                              f"deleted, renamed or never run?)")
    if status == "not_callable":
        return Verdict(False, f"`{ex.name}` is not a function: {oc.get('error', '')}")
    if status == "timeout":
        return Verdict(False, str(oc.get("error") or "did not return within the time limit"),
                       hint="look for an endless loop, or work that grows much faster than "
                            "the inputs")
    if status == "error":
        err = str(oc.get("error", ""))
        if err.startswith("NotImplementedError"):
            return Verdict(False, "not implemented yet (the stub raises NotImplementedError)")
        return Verdict(False, f"raised {err}", hint=error_hint(err))
    return Verdict(False, f"malformed result from the submission ({str(status)[:40]!r})")


def _label(cases: List[Case], i: int) -> str:
    lab = cases[i].label or "a random case"
    return f"case {i + 1} of {len(cases)}: {lab}" if len(cases) > 1 else f"case: {lab}"


def judge_output_case(ex: Exercise, case: Case, oc: Any, *, values: bool = True,
                      exact_zeros: bool = False) -> Verdict:
    """Type, shape, dtype, then (if ``values``) the values of one output; hints on failure."""
    bad = status_problem(ex, oc)
    if bad:
        return bad
    actual, msg = as_tensor(oc.get("output"))
    if actual is None:
        return Verdict(False, msg)
    expected = expected_output(ex, case)
    dtype = case.dtype
    if not values:
        if tuple(actual.shape) != tuple(expected.shape):
            return Verdict(False, f"output has shape {_s(actual.shape)}, expected "
                                  f"{_s(expected.shape)}",
                           hint=shape_hint(actual.shape, expected.shape))
        if dtype is not None and actual.dtype != dtype:
            lines = compare_tensors(actual, expected.to(dtype), dtype)
            return Verdict(False, lines[0])
        return Verdict(True, f"shape {_s(actual.shape)}, dtype {actual.dtype}")
    lines = compare_tensors(actual, expected, dtype, exact_zeros=exact_zeros)
    if lines is None:
        return Verdict(True)
    m = match_mistake(ex, case, actual, expected)
    hint = m.hint if m else None
    if hint is None and tuple(actual.shape) != tuple(expected.shape):
        hint = shape_hint(actual.shape, expected.shape)
    return Verdict(False, lines[0], hint, lines[1:])


def _s(shape) -> str:
    shape = tuple(shape)
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _for_each(cases, outcomes, one) -> Verdict:
    outcomes = list(outcomes) if isinstance(outcomes, (list, tuple)) else []
    for i, case in enumerate(cases):
        oc = outcomes[i] if i < len(outcomes) else None
        v = one(case, oc)
        if not v.passed:
            v.details.insert(0, _label(cases, i))
            return v
    n = len(cases)
    return Verdict(True, f"{n} case{'s' if n != 1 else ''}")


# --------------------------------------------------------------------------- factories
def output_check(name: str, tier: str, cases, *, values: bool = True,
                 exact_zeros: bool = False, points: float = 1.0) -> Check:
    """Call the function on each case; compare with ``exercise.reference``.

    ``values=False`` checks type, shape and dtype only (the ``shape`` tier).
    ``exact_zeros=True`` also requires exact zeros where the reference is zero (masks).
    """
    def judge(ex, cs, outcomes):
        return _for_each(cs, outcomes, lambda c, oc: judge_output_case(
            ex, c, oc, values=values, exact_zeros=exact_zeros))
    return Check(name, tier, cases, judge, probe="call", points=points)


def _expected_grads(ex: Exercise, case: Case):
    key = ("grads", ex.name)
    if key in case._cache:
        return case._cache[key]
    args, kwargs = list(upcast(case.args)), dict(upcast(case.kwargs))
    leaves = []
    for w in case.wrt:
        src = args if isinstance(w, int) else kwargs
        x = src[w]
        x = (x.detach().clone() if isinstance(x, torch.Tensor)
             else torch.tensor(float(x), dtype=torch.float64)).requires_grad_(True)
        src[w] = x
        leaves.append(x)
    with torch.enable_grad():
        out = ex.reference(*args, **kwargs)
        up = case.upstream.double() if case.upstream is not None else torch.ones_like(out)
        grads = torch.autograd.grad((out * up).sum(), leaves, allow_unused=True)
    case._cache[key] = grads
    return grads


def _wrt_name(case: Case, w, ex: Exercise) -> str:
    if isinstance(w, str):
        return w
    sig = ex.signature
    try:
        params = sig[sig.index("(") + 1: sig.rindex(")")].split(",")
        return params[w].split("=")[0].strip().lstrip("*")
    except Exception:
        return f"argument {w}"


def grad_check(name: str, cases, *, points: float = 1.0, tier: str = "gradients") -> Check:
    """Backpropagate ``case.upstream`` through the function; compare the gradients of the
    ``case.wrt`` inputs with the reference's (10x the dtype's tolerance)."""
    def one(ex, case, oc):
        v = judge_output_case(ex, case, oc)
        if not v.passed:
            return Verdict(False, "the output is already wrong, so its gradient is too: "
                                  + v.message, v.hint, v.details)
        grads = oc.get("grads")
        if not isinstance(grads, list):
            return Verdict(False, oc.get("note") or "no gradients came back")
        expected = _expected_grads(ex, case)
        dtype = case.dtype
        for w, g, e in zip(case.wrt, grads, expected):
            arg = _wrt_name(case, w, ex)
            if e is None:
                continue
            if g is None:
                return Verdict(False, f"no gradient reaches `{arg}`: the output does not "
                                      f"depend on it through differentiable operations",
                               hint=error_hint("does not require grad"))
            g_t, msg = as_tensor(g)
            if g_t is None:
                return Verdict(False, f"gradient of `{arg}`: {msg}")
            lines = compare_tensors(g_t, e, dtype or g_t.dtype, what=f"the gradient of `{arg}`",
                                    tol_scale=10.0, check_dtype=False)
            if lines:
                hint = None
                if torch.isnan(g_t).any():
                    hint = ("NaN gradients although the output is finite: a fully masked row "
                            "makes softmax compute exp(-inf - (-inf)) = NaN, and NaN * 0 is "
                            "still NaN in the backward pass. Avoid -inf - (-inf): e.g. "
                            "replace a row max of -inf by 0 before subtracting it")
                return Verdict(False, lines[0], hint, lines[1:])
        return Verdict(True)

    def judge(ex, cs, outcomes):
        return _for_each(cs, outcomes, lambda c, oc: one(ex, c, oc))
    return Check(name, tier, cases, judge, probe="grad", points=points)


def trace_check(name: str, tier: str, cases, *, forbid: Sequence[str] = (),
                max_bytes: Optional[Callable[[Case], int]] = None,
                max_rss: Optional[Callable[[Case], int]] = None, explain: str = "",
                points: float = 1.0) -> Check:
    """Watch the call. The output must be right, no ``forbid``-den function may be called,
    and (with ``max_bytes``) no tensor larger than ``max_bytes(case)`` bytes may be created.

    With ``max_rss``, the grader also limits the peak resident memory the call adds, which
    its sandbox measures from outside the call (``rss_bytes``, counted by the kernel for a
    forked process: threads, numpy and anything else included). ``check(...)`` in a notebook
    has no such measurement and skips this part.

    ``forbid`` holds dotted names (``"attention_lib.functional.masked_softmax"``) or
    ``"op:<text>"`` for torch functions whose name contains ``<text>``.
    """
    def one(ex, case, oc):
        v = judge_output_case(ex, case, oc)
        if not v.passed:
            return Verdict(False, "the output must be right too: " + v.message, v.hint,
                           v.details)
        called = oc.get("forbidden") or []
        if called:
            names = ", ".join(str(c) for c in called[:3])
            return Verdict(False, f"calls {names}",
                           hint="this exercise asks you to build it from torch operations: "
                                "the library's version is what your code is compared with")
        if max_bytes is not None:
            peak, limit = oc.get("peak_bytes"), max_bytes(case)
            if not isinstance(peak, int):
                return Verdict(False, "no memory measurement came back")
            if peak > limit:
                return Verdict(False, f"the largest tensor it creates has {peak:,} bytes; the "
                                      f"limit for this case is {limit:,} bytes", hint=explain)
        rss = oc.get("rss_bytes")
        if max_rss is not None and rss is not None:
            if not isinstance(rss, int):
                return Verdict(False, "no memory measurement came back")
            if rss > max_rss(case):
                return Verdict(False, f"the call's peak memory grew by {rss / 2**20:,.1f} MiB "
                                      f"(measured by the grader's sandbox); the limit for this "
                                      f"case is {max_rss(case) / 2**20:,.1f} MiB", hint=explain)
        return Verdict(True)

    def judge(ex, cs, outcomes):
        return _for_each(cs, outcomes, lambda c, oc: one(ex, c, oc))
    return Check(name, tier, cases, judge, probe="trace", points=points,
                 options={"forbid": list(forbid)})


def number_of(out: Any) -> Tuple[Optional[float], Optional[str]]:
    """(value, None) for a real number (int, float, numpy scalar, 1-element tensor); else
    (None, message)."""
    if out is None:
        return None, "not answered yet: replace None by your prediction"
    if isinstance(out, bool):
        return None, f"expected a number, got {describe(out)}"
    if isinstance(out, (int, float)):
        return float(out), None
    if isinstance(out, torch.Tensor) and out.numel() == 1 and out.dtype != torch.bool:
        return float(out.reshape(())), None
    if isinstance(out, dict) and isinstance(out.get("number"), float):
        return out["number"], None
    return None, f"expected a number, got {describe(out)}"


def measured_number(ex: Exercise, outcomes: Sequence[Any],
                    what: str) -> Tuple[Optional[float], Optional[Verdict]]:
    """The number an experiment exercise stored, as ``(value, None)``, or ``(None, verdict)``
    with the failed verdict that says why there is none. ``what`` names the number in the
    message, e.g. "the length you measured"."""
    oc = outcomes[0] if outcomes else None
    bad = status_problem(ex, oc)
    if bad:
        return None, bad
    value, msg = number_of(oc.get("output"))
    if value is None:
        return None, Verdict(False, msg.replace("your prediction", what))
    return value, None


def answer_check(name: str, expected: Callable[[], float], *, rtol: float = 0.02,
                 atol: float = 0.0, wrong: Sequence[Tuple[float, str]] = (),
                 tier: str = "values", points: float = 1.0) -> Check:
    """A predicted number: right when within ``atol + rtol * |truth|`` of ``expected()``.

    ``wrong`` lists (value, hint) pairs for predictions that come from a known mistake. The
    message says "too high" or "too low", never the value itself.
    """
    cache = {}

    def judge(ex, cs, outcomes):
        oc = outcomes[0] if isinstance(outcomes, (list, tuple)) and outcomes else None
        bad = status_problem(ex, oc)
        if bad:
            return bad
        value, msg = number_of(oc.get("output"))
        if value is None:
            return Verdict(False, msg)
        if "truth" not in cache:
            cache["truth"] = float(expected())
        truth = cache["truth"]
        if not (abs(value - truth) <= atol + rtol * abs(truth)):
            hint = None
            for w, h in wrong:
                if abs(value - w) <= 1e-6 + rtol * abs(w):
                    hint = h
                    break
            side = "too high" if value > truth else "too low"
            if value != value:
                side = "not a number"
            within = f"{rtol:.0%}" if rtol else f"{atol:g}"
            return Verdict(False, f"your prediction {value:g} is {side} (it must be within "
                                  f"{within} of what the experiment measures)", hint)
        return Verdict(True, f"{value:g} is right")

    return Check(name, tier, [Case(label="the value of the variable")], judge, probe="value",
                 points=points)
