"""Probes: call a submitted object on a check's cases and record what came back.

The same code runs in a notebook (``check(...)``, in-process) and in the grader's sandboxed
child process. A probe never raises: an exception inside the submission becomes an outcome
with ``status="error"`` and the exception's type and message. Everything a probe returns is
**sanitized** into plain containers (dict, list, str, int, float, bool, None) and plain CPU
tensors, so that the grader's parent can load it with ``torch.load(weights_only=True)`` and
judge it without ever running submitted code.

Outcome of one case (a dict)::

    status    "ok" | "error" | "missing" | "not_callable" | "timeout"
    output    the sanitized return value (see :func:`sanitize`)
    error     "TypeError: message" when status is "error"
    grads     list (one per ``case.wrt``) of tensors or None       (grad probe)
    peak_bytes  largest tensor storage a torch call returned        (trace probe)
    forbidden   names of forbidden functions that were called      (trace probe)
    seconds   wall time of the call
"""
from __future__ import annotations

import importlib
import math
import sys
import time
from typing import Any, Dict, Iterable, List, Optional

import torch

__all__ = ["run_probe", "sanitize", "resolve_forbidden", "MAX_NUMEL"]

#: Outputs with more elements are not sent back, only their shape (it bounds the memory a
#: hostile submission can make the grader's parent load). Keep check outputs below it.
MAX_NUMEL = 200_000
_MAX_ITEMS = 32
_MAX_STR = 2000

# Captured at import, before any submitted code runs (a submission may monkeypatch torch).
_Tensor = torch.Tensor
_perf_counter = time.perf_counter


def _short(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _type_name(obj: Any) -> str:
    t = type(obj)
    mod = getattr(t, "__module__", "") or ""
    return t.__qualname__ if mod in ("builtins", "") else f"{mod}.{t.__qualname__}"


def sanitize(obj: Any, depth: int = 0) -> Any:
    """Plain data describing ``obj``: safe to pickle with weights_only, safe to judge.

    Plain tensors pass (detached, on the CPU, at most :data:`MAX_NUMEL` elements); numbers,
    strings, bools and None pass; anything else becomes ``{"__type__": name, ...}`` with its
    items (tuple, list, dict) or a short repr. Never raises.
    """
    try:
        # plain builtins only: subclasses (numpy.float64 is a float) become the base type
        if obj is None:
            return None
        if isinstance(obj, bool):
            return bool(obj)
        if isinstance(obj, int):
            v = int.__int__(obj)
            return v if abs(v) < 2**62 else float(v)
        if isinstance(obj, float):
            return float.__float__(obj)
        if isinstance(obj, str):
            return str.__str__(obj)[:_MAX_STR]
        if isinstance(obj, _Tensor):
            with torch._C.DisableTorchFunctionSubclass():
                t = obj.detach()
                sub = type(obj) is not _Tensor and type(obj) is not torch.nn.Parameter
                if t.is_sparse or t.layout != torch.strided:
                    return {"__type__": "torch.Tensor(" + str(t.layout) + ")",
                            "shape": list(t.shape)}
                if t.numel() > MAX_NUMEL:
                    return {"__type__": "torch.Tensor(too large)", "shape": list(t.shape),
                            "dtype": str(t.dtype)}
                t = torch.Tensor.as_subclass(t, _Tensor).to("cpu").clone().contiguous()
            return {"__type__": _type_name(obj), "tensor": t} if sub else t
        if depth > 4:
            return {"__type__": _type_name(obj), "repr": "(nested too deep)"}
        if isinstance(obj, (tuple, list)):
            return {"__type__": _type_name(obj), "len": len(obj),
                    "items": [sanitize(x, depth + 1) for x in list(obj)[:_MAX_ITEMS]]}
        if isinstance(obj, dict):
            items = {}
            for k, v in list(obj.items())[:_MAX_ITEMS]:
                items[str(k)[:200]] = sanitize(v, depth + 1)
            return {"__type__": _type_name(obj), "items": items}
        mod = type(obj).__module__ or ""
        if mod.startswith("numpy"):
            shape = getattr(obj, "shape", None)
            if shape == ():  # numpy scalar
                try:
                    return {"__type__": _type_name(obj), "number": float(obj)}
                except Exception:
                    pass
            return {"__type__": _type_name(obj), "shape": list(shape) if shape else None,
                    "dtype": str(getattr(obj, "dtype", ""))}
        try:
            text = _short(repr(obj), 200)
        except BaseException:  # a hostile __repr__
            text = "(repr failed)"
        return {"__type__": _type_name(obj), "repr": text}
    except BaseException as e:  # never raise from here
        return {"__type__": "unprintable", "repr": _short(f"{type(e).__name__}: {e}", 200)}


def _error(e: BaseException) -> str:
    msg = ""
    try:
        msg = str(e)
    except BaseException:
        pass
    name = type(e).__name__
    return f"{name}: {_short(msg)}" if msg else name


# --------------------------------------------------------------------------- forbidden calls
def resolve_forbidden(names: Iterable[str]) -> Dict[str, Any]:
    """Dotted names -> the objects to watch for: Python code objects, builtins, torch op names.

    ``"op:scaled_dot_product"`` matches any torch function or tensor method whose name
    contains the text (however it was reached: ``F.x``, ``torch.x``, ``tensor.x``).
    Names that do not resolve are skipped (they cannot be called either).
    """
    watch = {"code": {}, "builtin": {}, "op": {}}
    for name in names:
        if name.startswith("op:"):
            watch["op"][name[3:]] = name[3:]
            continue
        mod, _, attr = name.rpartition(".")
        obj = None
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except Exception:
            try:  # a method: module.Class.method
                m2, _, cls = mod.rpartition(".")
                obj = getattr(getattr(importlib.import_module(m2), cls), attr)
            except Exception:
                continue
        func = getattr(obj, "forward", obj) if isinstance(obj, type) else obj
        code = getattr(func, "__code__", None)
        if code is not None:
            watch["code"][code] = name
        else:
            watch["builtin"][id(func)] = name
    return watch


class _Tracer:
    """Records the largest tensor storage created and calls to forbidden functions."""

    def __init__(self, watch: Optional[Dict[str, Any]]):
        self.watch = watch or {"code": {}, "builtin": {}, "op": {}}
        self.peak = 0
        self.forbidden: List[str] = []
        self._mode = None
        self._old_profile = None

    def _profile(self, frame, event, arg):
        try:
            if event == "call":
                name = self.watch["code"].get(frame.f_code)
                if name and name not in self.forbidden:
                    self.forbidden.append(name)
            elif event == "c_call":
                name = self.watch["builtin"].get(id(arg))
                if name and name not in self.forbidden:
                    self.forbidden.append(name)
        except Exception:
            pass

    def __enter__(self):
        # A torch *function* mode sees every torch call made from Python (functions, tensor
        # methods, operators) with its outputs. (A dispatch mode would also see the ops
        # inside composites, but entering one imports torch._dynamo: seconds per process.)
        try:
            from torch.overrides import TorchFunctionMode
        except Exception:  # pragma: no cover - very old torch
            TorchFunctionMode = None
        tracer = self
        if TorchFunctionMode is not None:
            class _Mode(TorchFunctionMode):
                def __torch_function__(self, func, types, args=(), kwargs=None):
                    out = func(*args, **(kwargs or {}))
                    try:
                        name = getattr(func, "__name__", "") or str(func)
                        for pat, label in tracer.watch["op"].items():
                            if pat in name and label not in tracer.forbidden:
                                tracer.forbidden.append(label)
                        for t in (out if isinstance(out, (tuple, list)) else (out,)):
                            if isinstance(t, _Tensor):
                                nbytes = t.untyped_storage().nbytes()
                                if nbytes > tracer.peak:
                                    tracer.peak = nbytes
                    except Exception:
                        pass
                    return out
            self._mode = _Mode()
            self._mode.__enter__()
        self._old_profile = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._old_profile)
        if self._mode is not None:
            self._mode.__exit__(*exc)
        return False


# --------------------------------------------------------------------------- running
def _prepare_grad(case: dict):
    args, kwargs = list(case["args"]), dict(case["kwargs"])
    leaves = []
    for w in case.get("wrt", []):
        src = args if isinstance(w, int) else kwargs
        x = src[w]
        if isinstance(x, _Tensor):
            x = x.detach().clone().requires_grad_(True)
        else:  # a number to differentiate: make it a 0-d tensor
            x = torch.tensor(float(x), dtype=torch.float64, requires_grad=True)
        src[w] = x
        leaves.append(x)
    return args, kwargs, leaves


def _one(obj: Any, probe: str, case: dict, watch) -> dict:
    start = _perf_counter()
    out: Dict[str, Any] = {"status": "ok"}
    try:
        if probe == "grad":
            args, kwargs, leaves = _prepare_grad(case)
            with torch.enable_grad():
                result = obj(*args, **kwargs)
                out["output"] = sanitize(result)
                if not isinstance(result, _Tensor):
                    raise TypeError(f"cannot backpropagate through a {_type_name(result)}: "
                                    f"return a torch.Tensor")
                if not result.requires_grad:
                    out["grads"] = [None for _ in leaves]
                    out["note"] = "the output does not require grad (detached from the inputs?)"
                else:
                    up = case.get("upstream")
                    if up is None or tuple(up.shape) != tuple(result.shape):
                        up = torch.ones_like(result)
                    loss = (result * up.to(result.dtype)).sum()
                    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
                    out["grads"] = [sanitize(g) for g in grads]
        elif probe == "trace":
            with _Tracer(watch) as tr:
                result = obj(*case["args"], **case["kwargs"])
            out["output"] = sanitize(result)
            out["peak_bytes"] = int(tr.peak)
            out["forbidden"] = list(tr.forbidden)
        else:  # call
            result = obj(*case["args"], **case["kwargs"])
            out["output"] = sanitize(result)
    except BaseException as e:  # noqa: BLE001 - a submission may raise anything
        if type(e).__name__ == "_SoftTimeout":
            raise
        out["status"] = "error"
        out["error"] = _error(e)
        if isinstance(e, KeyboardInterrupt):
            out["error"] = "KeyboardInterrupt"
    out["seconds"] = float(_perf_counter() - start)
    return out


def run_probe(obj: Any, probe: str, cases: List[dict], *, options: Optional[dict] = None,
              missing: bool = False, watch: Optional[dict] = None) -> List[dict]:
    """Run ``probe`` on each case (wire format, see :meth:`Case.to_wire`); one outcome each.

    ``missing=True`` means the notebook does not define the name at all. ``watch`` is the
    result of :func:`resolve_forbidden` for ``options["forbid"]``, resolved before any
    submitted code ran (the grader does this); by default it is resolved now.
    """
    options = options or {}
    if missing:
        return [{"status": "missing"} for _ in cases] or [{"status": "missing"}]
    if probe == "value":
        return [{"status": "ok", "output": sanitize(obj)}]
    if not callable(obj):
        return [{"status": "not_callable", "error": f"it is a {_type_name(obj)}"}
                for _ in cases]
    if probe == "trace" and watch is None:
        watch = resolve_forbidden(options.get("forbid", ()))
    return [_one(obj, probe, c, watch) for c in cases]


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
