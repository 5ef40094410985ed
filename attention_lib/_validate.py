"""Input validation shared by the public functions.

Every public function of the library checks its inputs here, so that a wrong shape or dtype
fails at the boundary with a message that names the argument, what was expected and what was
given, instead of failing deep inside a matmul with a message about ``mat1`` and ``mat2``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

Tensor = torch.Tensor


def shape_str(t: Tensor | Sequence[int]) -> str:
    """``(2, 4, 8)`` for a tensor or a shape; ``(2,)`` for one axis, as Python writes it."""
    shape = tuple(t.shape) if isinstance(t, torch.Tensor) else tuple(t)
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tensor(name: str, t, *, ndim: Optional[int | Sequence[int]] = None,
                 floating: bool = True, layout: str = "") -> None:
    """Raise ``TypeError``/``ValueError`` unless ``t`` is a tensor of the expected rank and kind.

    ``layout`` (e.g. ``"(B, H, N, D)"``) is only used to make the message readable.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{' ' + layout if layout else ''}, "
                        f"got {type(t).__name__}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype} "
                        f"with shape {shape_str(t)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed:
            want = " or ".join(f"{n}-D" for n in allowed)
            raise ValueError(f"{name} must be {want}{' ' + layout if layout else ''}, "
                             f"got {t.dim()}-D with shape {shape_str(t)}")


def check_seq(name: str, x, dim: Optional[int] = None, dim_name: str = "D", *,
              n: str = "N", nonempty: bool = False) -> None:
    """A batch of sequences (B, N, dim): a 3-D float tensor with ``dim`` features on its last
    axis (any number with None) and, with ``nonempty``, at least one position."""
    check_tensor(name, x, ndim=3, layout=f"(B, {n}, {dim_name})")
    if dim is not None and x.shape[-1] != dim:
        raise ValueError(f"{name} must have last dim {dim_name}={dim}, got shape {shape_str(x)}")
    if nonempty and x.shape[1] == 0:
        raise ValueError(f"{name} has no positions: shape {shape_str(x)}")


def check_int(name: str, value, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer (not a bool) >= ``minimum``.

    The one integer check of the library: sizes, counts, seeds, block and window sizes.
    """
    if (not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_))
            or value < minimum):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_scale(scale) -> None:
    """Raise ``TypeError`` unless ``scale`` (the factor multiplying q.k) is a number or None."""
    if scale is not None and (not isinstance(scale, (int, float)) or isinstance(scale, bool)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")


def check_float(name: str, value, *, minimum: float = 0.0,
                maximum: Optional[float] = None) -> None:
    """Raise ``ValueError`` unless ``value`` is a real number in [minimum, maximum).

    The one check for epsilons (``minimum=0``), probabilities (``maximum=1``) and decays.
    """
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not ok or not (value >= minimum and (maximum is None or value < maximum)):
        want = f">= {minimum:g}" if maximum is None else f"in [{minimum:g}, {maximum:g})"
        raise ValueError(f"{name} must be a float {want}, got {value!r}")


def check_device(name: str, t: Optional[Tensor], like_name: str, like: Tensor) -> None:
    """Raise ``ValueError`` unless ``t`` (None passes) is on the device of ``like``."""
    if t is not None and t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but {like_name} is on {like.device}")


def broadcastable(shape: Sequence[int], target: Sequence[int]) -> bool:
    """True when a tensor of ``shape`` broadcasts to ``target`` without growing it."""
    if len(shape) > len(target):
        return False
    for s, t in zip(reversed(tuple(shape)), reversed(tuple(target))):
        if s != 1 and s != t:
            return False
    return True


def check_mask(name: str, mask: Optional[Tensor], target: Sequence[int],
               layout: str = "(B, H, Nq, Nk)") -> None:
    """A bool mask (True = may attend) that broadcasts to ``target``."""
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        hint = (" (to add a float bias to the scores, pass it as bias=...; to convert a 0/1 "
                "mask, use mask.bool())")
        raise TypeError(f"{name} must have dtype torch.bool (True = may attend), got "
                        f"{mask.dtype} with shape {shape_str(mask)}{hint}")
    if not broadcastable(mask.shape, target):
        raise ValueError(f"{name} with shape {shape_str(mask)} does not broadcast to the "
                         f"scores' shape {layout} = {shape_str(target)}")


def check_bias(name: str, bias: Optional[Tensor], target: Sequence[int],
               layout: str = "(B, H, Nq, Nk)") -> None:
    """A float additive bias that broadcasts to ``target``."""
    if bias is None:
        return
    check_tensor(name, bias)
    if not broadcastable(bias.shape, target):
        raise ValueError(f"{name} with shape {shape_str(bias)} does not broadcast to the "
                         f"scores' shape {layout} = {shape_str(target)}")


def check_qkv(query: Tensor, key: Tensor, value: Tensor, *,
              names: Sequence[str] = ("query", "key", "value"),
              self_attention: Optional[str] = None) -> None:
    """Shapes of an attention call in the (B, H, N, D) layout.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   value: (B, H, Nk, Dv)
    ``names`` are used in the messages (e.g. ``("phi_q", "phi_k", "value")`` for feature maps).
    ``self_attention``: the name of a family defined for self-attention only, which needs
    Nq = Nk (e.g. ``"sparse attention"``).
    """
    nq, nk, nv = names
    for name, t, lay in ((nq, query, "(B, H, Nq, D)"), (nk, key, "(B, H, Nk, D)"),
                         (nv, value, "(B, H, Nk, Dv)")):
        check_tensor(name, t, ndim=4, layout=lay)
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(f"{nq}, {nk} and {nv} must share a dtype, got {query.dtype}, "
                        f"{key.dtype} and {value.dtype}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"{nq} and {nk} must have the same head dim D (last axis): "
                         f"{nq} {shape_str(query)} vs {nk} {shape_str(key)}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{nk} and {nv} must have the same number of positions Nk "
                         f"(axis -2): {nk} {shape_str(key)} vs {nv} {shape_str(value)}")
    if query.shape[-1] == 0:
        raise ValueError(f"{nq} has head dim 0: {shape_str(query)}")
    if key.shape[-2] == 0 or query.shape[-2] == 0:
        raise ValueError(f"empty sequence: {nq} {shape_str(query)}, {nk} {shape_str(key)}; "
                         f"attention needs at least one query and one key")
    try:
        torch.broadcast_shapes(query.shape[:2], key.shape[:2], value.shape[:2])
    except RuntimeError:
        raise ValueError(f"batch/head axes (B, H) of {nq} {shape_str(query)}, {nk} "
                         f"{shape_str(key)} and {nv} {shape_str(value)} do not broadcast") from None
    if self_attention and query.shape[-2] != key.shape[-2]:
        raise ValueError(f"{self_attention} is defined for self-attention (Nq = Nk): {nq} "
                         f"{shape_str(query)} vs {nk} {shape_str(key)}")
    if not (query.device == key.device == value.device):
        raise ValueError(f"{nq}, {nk} and {nv} must be on one device, got {query.device}, "
                         f"{key.device} and {value.device}")
