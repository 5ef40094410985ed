"""Attention pooling as kernel regression (chapter 2, "Queries, keys and values").

Nadaraya (1964) and Watson (1964) estimate a regression function from samples
``(k_i, v_i)`` by a weighted average of the values,

    f(q) = sum_i alpha(q, k_i) v_i,    alpha(q, k_i) = K(|q - k_i| / h) / sum_j K(|q - k_j| / h),

with a kernel ``K`` and a bandwidth ``h``. This is *attention pooling* with a fixed score:
the weights are ``masked_softmax(log K(u))``, where the mask is the kernel's support. For the
Gaussian kernel the weights are ``softmax(-|q - k|^2 / (2 h^2))`` over the keys; for kernels
with compact support (boxcar, Epanechnikov) keys outside the window ``|q - k| <= h`` are
masked, exactly like a local attention window.

Shapes. Two modes, chosen by the rank of ``queries`` and ``keys``:

* scalar features (both 1-D): queries (Nq,), keys (Nk,), values (Nk,) or (Nk, Dv)
  -> (Nq,) or (Nq, Dv);
* vector features: queries (..., Nq, D), keys (..., Nk, D), values (..., Nk, Dv)
  -> (..., Nq, Dv); leading axes broadcast. Distances are Euclidean.

Weights have shape (Nq, Nk), or (..., Nq, Nk). Like everywhere in this library, a query
with no key to pool from (every key masked, or outside a compact kernel's window) gets
weights and output **zero**, never NaN. Pure functions; inputs are never modified.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn

from ._validate import check_device, check_int, check_mask, check_tensor, shape_str
from .functional import masked_softmax

Tensor = torch.Tensor
Bandwidth = Union[float, int, Tensor]

__all__ = [
    "gaussian_kernel", "boxcar_kernel", "epanechnikov_kernel", "KERNELS",
    "kernel_scores", "kernel_weights", "nadaraya_watson", "leave_one_out_mask",
    "NadarayaWatson", "toy_function", "make_toy_data",
]


# --------------------------------------------------------------------------- kernels
def gaussian_kernel(u: Tensor) -> Tensor:
    """Gaussian kernel ``K(u) = exp(-u^2 / 2) / sqrt(2 pi)``, elementwise; integrates to 1."""
    return torch.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)


def boxcar_kernel(u: Tensor) -> Tensor:
    """Boxcar (uniform) kernel ``K(u) = 1/2`` for ``|u| <= 1``, else 0; integrates to 1."""
    return 0.5 * (u.abs() <= 1).to(u.dtype)


def epanechnikov_kernel(u: Tensor) -> Tensor:
    """Epanechnikov kernel ``K(u) = 3/4 (1 - u^2)`` for ``|u| < 1``, else 0; integrates to 1.

    Epanechnikov (1969): the kernel with the smallest asymptotic mean integrated squared error.
    """
    return 0.75 * (1.0 - u * u).clamp(min=0.0)


#: name -> kernel function K(u), elementwise on the scaled distance u = |q - k| / h.
KERNELS: Dict[str, Callable[[Tensor], Tensor]] = {
    "gaussian": gaussian_kernel,
    "boxcar": boxcar_kernel,
    "epanechnikov": epanechnikov_kernel,
}


# --------------------------------------------------------------------------- validation
def _check_kernel(kernel: str) -> None:
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")


def _check_bandwidth(bandwidth: Bandwidth, like: Tensor) -> Tensor:
    """A positive, finite scalar (number or 1-element float tensor) as a 0-d tensor."""
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float, torch.Tensor)):
        raise TypeError(f"bandwidth must be a positive float or a 1-element float tensor, got "
                        f"{type(bandwidth).__name__}")
    if isinstance(bandwidth, torch.Tensor):
        if not bandwidth.is_floating_point():
            raise TypeError(f"bandwidth must be a floating-point tensor, got dtype "
                            f"{bandwidth.dtype} with shape {shape_str(bandwidth)}")
        if bandwidth.numel() != 1:
            raise ValueError(f"bandwidth must be a scalar (1 element), got shape "
                             f"{shape_str(bandwidth)}")
        check_device("bandwidth", bandwidth, "queries", like)
        value = float(bandwidth.detach())
        h = bandwidth.reshape(()).to(like.dtype)
    else:
        value = float(bandwidth)
        h = torch.tensor(value, dtype=like.dtype, device=like.device)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"bandwidth must be positive and finite, got {value}")
    return h


def _prepare(queries: Tensor, keys: Tensor) -> Tuple[Tensor, Tensor, bool]:
    """Validate queries/keys; return them as (..., N, D) and whether they were scalar."""
    check_tensor("queries", queries, layout="(Nq,) or (..., Nq, D)")
    check_tensor("keys", keys, layout="(Nk,) or (..., Nk, D)")
    if queries.dim() == 0 or keys.dim() == 0:
        raise ValueError(f"queries and keys must be 1-D (N,) or (..., N, D), got queries "
                         f"{shape_str(queries)} and keys {shape_str(keys)}")
    scalar = queries.dim() == 1
    if scalar != (keys.dim() == 1):
        raise ValueError(f"queries and keys must both be 1-D (scalar features) or both be "
                         f"(..., N, D), got queries {shape_str(queries)} and keys "
                         f"{shape_str(keys)}")
    if queries.dtype != keys.dtype:
        raise TypeError(f"queries and keys must share a dtype, got {queries.dtype} and "
                        f"{keys.dtype}")
    if queries.device != keys.device:
        raise ValueError(f"queries and keys must be on one device, got {queries.device} and "
                         f"{keys.device}")
    if scalar:
        queries, keys = queries[:, None], keys[:, None]  # (Nq, 1), (Nk, 1)
    elif queries.shape[-1] != keys.shape[-1]:
        raise ValueError(f"queries and keys must have the same feature dim D (last axis): "
                         f"queries {shape_str(queries)} vs keys {shape_str(keys)}")
    try:
        torch.broadcast_shapes(queries.shape[:-2], keys.shape[:-2])
    except RuntimeError:
        raise ValueError(f"leading (batch) axes of queries {shape_str(queries)} and keys "
                         f"{shape_str(keys)} do not broadcast") from None
    if queries.shape[-2] == 0 or keys.shape[-2] == 0:
        raise ValueError(f"empty input: queries {shape_str(queries)}, keys {shape_str(keys)}; "
                         f"pooling needs at least one query and one key")
    return queries, keys, scalar


# --------------------------------------------------------------------------- the estimator
def kernel_scores(queries: Tensor, keys: Tensor, *, kernel: str = "gaussian",
                  bandwidth: Bandwidth = 1.0) -> Tuple[Tensor, Optional[Tensor]]:
    """Attention scores ``log K(|q - k| / h)`` and the kernel's support as a mask.

    queries: (Nq,) or (..., Nq, D)   keys: (Nk,) or (..., Nk, D)
    Returns ``(scores, support)``: scores (Nq, Nk) or (..., Nq, Nk), support a bool tensor of
    the same shape (True = key inside the kernel's window), or ``None`` for the Gaussian
    kernel, whose support is everything. Normalising constants of ``K`` are dropped (they
    cancel in the softmax), so ``masked_softmax(scores, support)`` are the Nadaraya-Watson
    weights:

    * gaussian: ``-|q - k|^2 / (2 h^2)``, no mask;
    * boxcar: ``0`` on ``|q - k| <= h``;
    * epanechnikov: ``log(1 - |q - k|^2 / h^2)`` on ``|q - k| < h``.

    Scores outside the support are 0 (finite), so gradients stay finite.
    """
    _check_kernel(kernel)
    q, k, _ = _prepare(queries, keys)
    h = _check_bandwidth(bandwidth, q)
    sq_dist = (q.unsqueeze(-2) - k.unsqueeze(-3)).pow(2).sum(-1)  # (..., Nq, Nk)
    u2 = sq_dist / (h * h)  # squared scaled distance
    if kernel == "gaussian":
        return -0.5 * u2, None
    if kernel == "boxcar":
        support = u2 <= 1
        return torch.zeros_like(u2), support
    support = u2 < 1  # epanechnikov
    safe = torch.where(support, u2, torch.zeros_like(u2))  # no log(0) / NaN grads outside
    return torch.log1p(-safe), support


def kernel_weights(queries: Tensor, keys: Tensor, *, kernel: str = "gaussian",
                   bandwidth: Bandwidth = 1.0, attn_mask: Optional[Tensor] = None) -> Tensor:
    """Nadaraya-Watson attention weights ``K(u_i) / sum_j K(u_j)``, ``u_i = |q - k_i| / h``.

    queries: (Nq,) or (..., Nq, D)   keys: (Nk,) or (..., Nk, D)
    attn_mask: bool, broadcastable to the weights, True = may attend (e.g.
    :func:`leave_one_out_mask`). Returns (Nq, Nk) or (..., Nq, Nk): non-negative, each row
    sums to 1, except rows with no key in the window (or all masked), which are all zeros.

    Equivalent code (Gaussian): ``(-(q[:, None] - k[None]) ** 2 / (2 * h**2)).softmax(-1)``.
    """
    scores, support = kernel_scores(queries, keys, kernel=kernel, bandwidth=bandwidth)
    if attn_mask is not None:
        check_mask("attn_mask", attn_mask, scores.shape,
                   layout="(Nq, Nk)" if queries.dim() == 1 else "(..., Nq, Nk)")
        check_device("attn_mask", attn_mask, "queries", scores)
        support = attn_mask if support is None else support & attn_mask
    return masked_softmax(scores, support)  # (..., Nq, Nk)


def nadaraya_watson(queries: Tensor, keys: Tensor, values: Tensor, *,
                    kernel: str = "gaussian", bandwidth: Bandwidth = 1.0,
                    attn_mask: Optional[Tensor] = None, return_weights: bool = False):
    """Nadaraya-Watson kernel regression = attention pooling with a kernel score.

    queries: (Nq,) or (..., Nq, D)   keys: (Nk,) or (..., Nk, D)
    values: (Nk,) or (Nk, Dv) with 1-D queries/keys; (..., Nk, Dv) otherwise.
    kernel: ``"gaussian"`` (default), ``"boxcar"`` or ``"epanechnikov"`` (see :data:`KERNELS`).
    bandwidth: h > 0, a number or a 1-element tensor (differentiable: it may be learned).
    attn_mask: bool broadcastable to (Nq, Nk) / (..., Nq, Nk), True = may attend.

    Returns the pooled values, (Nq,) / (Nq, Dv) / (..., Nq, Dv), or ``(out, weights)`` when
    ``return_weights``. Small ``h`` tends to nearest-neighbour lookup, large ``h`` to the
    plain mean of the values (average pooling). A query with no key in its window gets 0.

    Nadaraya (1964); Watson (1964). Equivalent code:
    ``kernel_weights(queries, keys, kernel=kernel, bandwidth=h) @ values``.
    """
    check_tensor("values", values, layout="(Nk,) / (Nk, Dv) or (..., Nk, Dv)")
    weights = kernel_weights(queries, keys, kernel=kernel, bandwidth=bandwidth,
                             attn_mask=attn_mask)  # (..., Nq, Nk)
    nk = weights.shape[-1]
    scalar_values = queries.dim() == 1 and values.dim() == 1
    if queries.dim() == 1 and values.dim() not in (1, 2):
        raise ValueError(f"with 1-D queries and keys, values must be (Nk,) or (Nk, Dv), got "
                         f"{shape_str(values)}")
    if queries.dim() > 1 and values.dim() < 2:
        raise ValueError(f"values must be (..., Nk, Dv) like keys {shape_str(keys)}, got "
                         f"{shape_str(values)}")
    v = values[:, None] if scalar_values else values  # (..., Nk, Dv)
    if v.shape[-2] != nk:
        raise ValueError(f"keys and values must have the same number of positions Nk: keys "
                         f"{shape_str(keys)} vs values {shape_str(values)}")
    if values.dtype != queries.dtype:
        raise TypeError(f"values must have the dtype of queries ({queries.dtype}), got "
                        f"{values.dtype}")
    check_device("values", values, "queries", queries)
    try:
        torch.broadcast_shapes(weights.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"leading (batch) axes of queries/keys and values "
                         f"{shape_str(values)} do not broadcast") from None
    out = weights @ v  # (..., Nq, Dv)
    if scalar_values:
        out = out[:, 0]  # (Nq,)
    return (out, weights) if return_weights else out


def leave_one_out_mask(n: int, *, device=None) -> Tensor:
    """(n, n) bool mask that hides the diagonal: query i may attend to every key but key i.

    With the training inputs as both queries and keys, pooling under this mask predicts each
    training point from the others: leave-one-out cross-validation in one call, and the
    training objective that stops a learned bandwidth from collapsing to zero.
    Equivalent code: ``~torch.eye(n, dtype=torch.bool)``.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an int >= 2 (leaving one out needs another key), got "
                         f"{n!r}")
    return ~torch.eye(n, dtype=torch.bool, device=device)  # (n, n)


class NadarayaWatson(nn.Module):
    """Nadaraya-Watson regression whose bandwidth is a parameter learned by gradient descent.

    The bandwidth is stored as ``log_bandwidth`` so that it stays positive under any update;
    read it as ``module.bandwidth``. With ``learnable=False`` it is a buffer instead.
    forward(queries, keys, values, attn_mask=None, *, return_weights=False): the shapes and
    semantics of :func:`nadaraya_watson`. When the queries are the training keys
    themselves, pass ``attn_mask=leave_one_out_mask(n)``: otherwise the loss is minimised by
    ``h -> 0`` (every point looks itself up).

    Nadaraya (1964); Watson (1964). d2l's ``NWKernelRegression`` learns ``w = 1/h`` instead.
    """

    def __init__(self, bandwidth: float = 1.0, *, kernel: str = "gaussian",
                 learnable: bool = True):
        super().__init__()
        _check_kernel(kernel)
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not (
                math.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"bandwidth must be a positive finite float, got {bandwidth!r}")
        self.kernel = kernel
        log_h = torch.tensor(math.log(float(bandwidth)))
        if learnable:
            self.log_bandwidth = nn.Parameter(log_h)
        else:
            self.register_buffer("log_bandwidth", log_h)

    @property
    def bandwidth(self) -> Tensor:
        """The current bandwidth h = exp(log_bandwidth), a 0-d tensor."""
        return self.log_bandwidth.exp()

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor,
                attn_mask: Optional[Tensor] = None, *, return_weights: bool = False):
        return nadaraya_watson(queries, keys, values, kernel=self.kernel,
                               bandwidth=self.bandwidth, attn_mask=attn_mask,
                               return_weights=return_weights)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, bandwidth={float(self.bandwidth.detach()):.4g}"


# --------------------------------------------------------------------------- toy data
def toy_function(x: Tensor) -> Tensor:
    """The regression target of the chapter (and of d2l): ``f(x) = 2 sin(x) + x^0.8``, x >= 0."""
    return 2 * torch.sin(x) + x.clamp(min=0) ** 0.8


def make_toy_data(n: int, *, noise: float = 0.5, low: float = 0.0, high: float = 5.0,
                  generator: Optional[torch.Generator] = None,
                  dtype: torch.dtype = torch.float32) -> Tuple[Tensor, Tensor]:
    """``n`` noisy samples of :func:`toy_function`: x ~ U(low, high) sorted,
    y = f(x) + noise * N(0, 1).

    Returns ``(x, y)``, both (n,), on the CPU (move them with ``.to(device)``); deterministic
    given ``generator``.
    """
    check_int("n", n, 1)
    if not (high > low):
        raise ValueError(f"need low < high, got low={low}, high={high}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    x = torch.rand(n, generator=generator, dtype=torch.float64) * (high - low) + low
    x, _ = x.sort()
    eps = torch.randn(n, generator=generator, dtype=torch.float64)
    y = toy_function(x) + noise * eps
    return x.to(dtype), y.to(dtype)
