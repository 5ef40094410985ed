"""Random feature attention: softmax attention through random feature maps, in O(N).

**Bochner's theorem.** A continuous shift-invariant kernel ``k(x - y)`` with ``k(0) = 1`` is
positive definite exactly when it is the Fourier transform of a probability density p:
``k(x - y) = E_{w ~ p}[cos(w . (x - y))]``. For the Gaussian kernel
``exp(-|x - y|^2 / 2)`` the density is the standard normal. Sampling m frequencies
``w_1 ... w_m`` gives the *random Fourier features* of Rahimi and Recht (2007),

    phi(x) = m^{-1/2} [sin(w_1 . x), ..., sin(w_m . x), cos(w_1 . x), ..., cos(w_m . x)],

with ``E[phi(x) . phi(y)] = exp(-|x - y|^2 / 2)`` (:func:`gaussian_rff`).

**The softmax kernel** ``SM(x, y) = exp(x . y)`` is a Gaussian kernel in disguise,
``exp(x . y) = exp(|x|^2 / 2) exp(|y|^2 / 2) exp(-|x - y|^2 / 2)``, so random features give
``exp(q . k) ~ phi(q) . phi(k)``, and attention becomes linear attention
(:mod:`attention_lib.efficient.linear`) with a random feature map:

* RFA (Peng et al., 2021) l2-normalises q and k, so the norm factors are constant, and uses
  the sin/cos map (:func:`rfa_attention` with ``kernel="gaussian"``), or a ReLU map that
  estimates the arc-cosine kernel of Cho and Saul (2009) (``kernel="arccos"``). *Gated* RFA
  lets the recurrent state decay, ``S_t = g_t S_{t-1} + (1 - g_t) phi(k_t) v_t^T``, with a
  gate ``g_t = sigmoid(w_g . x_t + b_g)`` learned from the input (the gated recurrence is
  :func:`attention_lib.efficient.linear.gated_kernel_attention`, on any feature map).
* FAVOR+ of the Performer (Choromanski et al., 2021) uses *positive* features
  ``phi(x) = m^{-1/2} exp(w_i . x - |x|^2 / 2)`` (Lemma 1), also unbiased for ``exp(x . y)``,
  whose error vanishes where the kernel is small -- the trigonometric estimator's does not
  (Lemma 2, :func:`softmax_kernel_mse`) -- and *orthogonal* random projections, which lower
  the error further (Theorem 2) (:func:`performer_attention`).

Randomness only enters through a ``torch.Generator`` or a given projection tensor:
:func:`random_projection` draws one, every feature map takes one. :class:`RandomFeatures`,
the ``attn_fn`` that makes :class:`attention_lib.layers.MultiHeadAttention` a Performer or RFA
layer, keeps its projection in a buffer and draws a new one on :meth:`RandomFeatures.redraw`.

Layout (B, H, N, D) as everywhere; projections are (m, D), shared by all heads (or
(H, m, D), one per head).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_device, check_int, check_qkv, check_tensor, shape_str
from ..functional import work_dtype
from ..layers import MultiHeadAttention, split_heads
from ..masks import per_key_mask
from .linear import (
    LinearAttentionState,
    _check_kernel_args,
    _kernel_attention,
    gated_kernel_attention,
    gated_kernel_attention_step,
    kernel_attention,
    kernel_attention_step,
)

Tensor = torch.Tensor

__all__ = [
    "random_projection", "gaussian_rff", "softmax_kernel_features", "arccos_features",
    "rfa_features", "softmax_kernel_estimate", "softmax_kernel_mse", "arccos_kernel",
    "optimal_a", "performer_features", "performer_attention", "rfa_attention",
    "RandomFeatures", "random_feature_step",
]

SOFTMAX_KINDS = ("positive", "trig", "optimized")
RFA_KERNELS = ("gaussian", "arccos")


# --------------------------------------------------------------------------- projections
def random_projection(num_features: int, dim: int, *, generator: torch.Generator,
                      orthogonal: bool = False, dtype: torch.dtype = torch.float32,
                      device=None) -> Tensor:
    """m random frequencies ``w_i ~ N(0, I_D)``, as the rows of an (m, D) matrix.

    orthogonal=False: iid Gaussian rows.
    orthogonal=True: block-orthogonal rows (Yu et al., 2016; the Performer's ORFs): each block
    of D rows is a uniformly random orthonormal basis (QR of a Gaussian matrix, signs fixed
    so that it is Haar-distributed), and every row is then rescaled by an independent
    chi(D)-distributed norm -- the norm of a fresh D-dim Gaussian vector. Each row is then
    still exactly N(0, I_D) (unbiased estimators), but rows within a block are orthogonal,
    which lowers the variance. With m > D there are ceil(m / D) independent blocks.

    generator: the only source of randomness (numbers are drawn on its device, in float64,
    then moved to ``device`` and cast to ``dtype``). Returns (num_features, dim).
    Choromanski et al. (2021), section 2.4.
    """
    check_int("num_features", num_features)
    check_int("dim", dim)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    gdev = generator.device
    if not orthogonal:
        w = torch.randn(num_features, dim, generator=generator, device=gdev,
                        dtype=torch.float64)
    else:
        nb = math.ceil(num_features / dim)
        g = torch.randn(nb, dim, dim, generator=generator, device=gdev, dtype=torch.float64)
        qmat, r = torch.linalg.qr(g)  # (nb, D, D), one orthogonal matrix per block
        sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))  # (nb, D)
        qmat = qmat * sign.masked_fill(sign == 0, 1.0).unsqueeze(-2)  # Haar: fix the signs
        w = qmat.transpose(-2, -1).reshape(nb * dim, dim)[:num_features]  # (m, D), unit rows
        norms = torch.randn(num_features, dim, generator=generator, device=gdev,
                            dtype=torch.float64).norm(dim=1)  # chi(D)
        w = w * norms[:, None]
    return w.to(device=gdev if device is None else device, dtype=dtype)


def _project(name: str, x: Tensor, projection: Tensor) -> Tensor:
    """x @ projection^T with checks: x (..., D), projection (m, D) or (H, m, D)."""
    check_tensor(name, x, layout="(..., D)")
    check_tensor("projection", projection, ndim=(2, 3), layout="(m, D) or (H, m, D)")
    if x.dim() < 1 or projection.shape[-1] != x.shape[-1]:
        raise ValueError(f"projection (m, D) must have the same D as {name} (..., D): "
                         f"projection {shape_str(projection)} vs {name} {shape_str(x)}")
    check_device("projection", projection, name, x)
    if projection.dim() == 3:
        try:
            if x.dim() < 2:
                raise RuntimeError
            torch.broadcast_shapes(x.shape[:-2], projection.shape[:-2])
        except RuntimeError:
            raise ValueError(f"a per-head projection (H, m, D) needs {name} (B, H, N, D) with "
                             f"the same H: projection {shape_str(projection)} vs {name} "
                             f"{shape_str(x)}") from None
    return x @ projection.to(x.dtype).transpose(-2, -1)  # (..., m)


# --------------------------------------------------------------------------- feature maps
def gaussian_rff(x: Tensor, projection: Tensor, *, offset: Optional[Tensor] = None,
                 sigma: Union[float, Tensor] = 1.0) -> Tensor:
    """Random Fourier features of the Gaussian kernel ``exp(-|x - y|^2 / (2 sigma^2))``.

    x: (..., D)   projection: (m, D) with rows ~ N(0, I) (:func:`random_projection`).
    offset=None: ``m^{-1/2} [sin(W x / sigma), cos(W x / sigma)]``, (..., 2m).
    offset: (m,) phases ~ U[0, 2 pi): ``(2/m)^{1/2} cos(W x / sigma + b)``, (..., m), the form
    of Rahimi and Recht's paper (same mean, higher variance).
    ``E[phi(x) . phi(y)] = exp(-|x - y|^2 / (2 sigma^2))`` exactly (Bochner's theorem).

    Rahimi and Recht (2007), "Random features for large-scale kernel machines", Algorithm 1.
    """
    if offset is None:
        return _sincos("x", x / sigma, projection)
    p = _project("x", x / sigma, projection)  # (..., m)
    m = projection.shape[-2]
    check_tensor("offset", offset, layout="(m,)")
    if offset.shape[-1] != m:
        raise ValueError(f"offset must have m = {m} entries (one per row of projection), got "
                         f"{shape_str(offset)}")
    return torch.cos(p + offset.to(p.dtype)) * math.sqrt(2.0 / m)


def _sincos(name: str, x: Tensor, projection: Tensor, scaled: bool = True) -> Tensor:
    """``m^{-1/2} [sin(W x), cos(W x)]``, (..., 2m), with one matrix product and one sin.

    ``cos t = sin(t + pi/2)``: the projection is stacked twice, with a column holding the
    phase 0 or pi/2 that multiplies a constant 1 appended to x. ``scaled=False``: without the
    factor ``m^{-1/2}`` (for normalised attention, where a constant factor cancels).
    """
    probe = x[..., :0, :] if isinstance(x, Tensor) and x.dim() >= 2 else x
    _project(name, probe, projection)  # checks only (on an empty slice: no work)
    m = projection.shape[-2]
    w = projection.to(x.dtype)
    phase = torch.zeros(*w.shape[:-1], 2, dtype=x.dtype, device=x.device)  # (.., m, 2)
    phase[..., 1] = math.pi / 2
    w2 = torch.cat([torch.cat([w, phase[..., :1]], -1), torch.cat([w, phase[..., 1:]], -1)], -2)
    x1 = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)  # (..., D + 1)
    t = x1 @ w2.transpose(-2, -1)  # (..., 2m): sin of it is sin(Wx), then sin(Wx + pi/2)
    # Without autograd, sin in place on the product's fresh buffer: a second (..., 2m)
    # allocation costs more than the sin itself. With autograd, sin's backward needs t.
    out = t.sin() if t.requires_grad else t.sin_()
    return out.mul_(1.0 / math.sqrt(m)) if scaled else out


def _check_kind(kind: str) -> None:
    if kind not in SOFTMAX_KINDS:
        raise ValueError(f"kind must be one of {SOFTMAX_KINDS}, got {kind!r}")


def softmax_kernel_features(x: Tensor, projection: Tensor, *, kind: str = "positive",
                            a: Union[float, Tensor, None] = None) -> Tensor:
    """Unbiased random features for the softmax kernel ``SM(x, y) = exp(x . y)``.

    x: (..., D)   projection: (m, D), rows ~ N(0, I).
    kind="positive": ``m^{-1/2} exp(W x - |x|^2 / 2)``, (..., m) -- every feature > 0
        (Choromanski et al., 2021, Lemma 1; the "+" of FAVOR+).
    kind="trig": ``m^{-1/2} exp(|x|^2 / 2) [sin(W x), cos(W x)]``, (..., 2m) -- the Gaussian
        random Fourier features times the norm factors; features of both signs.
    kind="optimized": FAVOR++'s optimised positive features (Likhosherstov et al., 2022),
        ``m^{-1/2} (1 - 4a)^{D/4} exp(a |w|^2 + sqrt(1 - 4a) w . x - |x|^2 / 2)``, (..., m),
        for a given ``a < 1/8`` (float or tensor broadcastable to x[..., :1]); ``a = 0`` is
        "positive". Every such ``a`` is unbiased; :func:`optimal_a` picks the one of least
        variance for given data.
    ``E[phi(x) . phi(y)] = exp(x . y)`` for all three. No numerical stabilisation here (see
    :func:`performer_features`).
    """
    _check_kind(kind)
    p = _project("x", x, projection)  # (..., m)
    m = projection.shape[-2]
    half_sq = 0.5 * (x * x).sum(-1, keepdim=True)  # (..., 1)
    if kind == "optimized":
        return torch.exp(_optimized_exponent(p, x, projection, _check_a(a)) - half_sq
                         - 0.5 * math.log(m))
    if kind == "positive":
        return torch.exp(p - half_sq) / math.sqrt(m)
    return torch.exp(half_sq) * torch.cat([torch.sin(p), torch.cos(p)], dim=-1) / math.sqrt(m)


def arccos_features(x: Tensor, projection: Tensor) -> Tensor:
    """ReLU random features: ``(2/m)^{1/2} relu(W x)``, (..., m), for the arc-cosine kernel.

    ``E[phi(x) . phi(y)] = k_1(x, y)`` of Cho and Saul (2009), see :func:`arccos_kernel`.
    (Peng et al.'s map has ``(1/m)^{1/2}``: half the kernel; the constant cancels in attention.)
    """
    p = _project("x", x, projection)
    return F.relu(p) * math.sqrt(2.0 / projection.shape[-2])


def arccos_kernel(x: Tensor, y: Tensor) -> Tensor:
    """The arc-cosine kernel of degree 1 (Cho and Saul, 2009), in closed form.

    x: (..., D)   y: (..., D)  (broadcast)  ->  (...)
    ``k_1(x, y) = |x| |y| (sin t + (pi - t) cos t) / pi`` with t the angle between x and y;
    it equals ``2 E_w[relu(w . x) relu(w . y)]`` for ``w ~ N(0, I)``.
    """
    check_tensor("x", x, layout="(..., D)")
    check_tensor("y", y, layout="(..., D)")
    nx, ny = x.norm(dim=-1), y.norm(dim=-1)
    cos = ((x * y).sum(-1) / (nx * ny).clamp_min(torch.finfo(x.dtype).tiny)).clamp(-1.0, 1.0)
    t = torch.arccos(cos)
    return nx * ny * (torch.sin(t) + (math.pi - t) * cos) / math.pi


def rfa_features(x: Tensor, projection: Tensor, *, kernel: str = "gaussian",
                 sigma: Union[float, Tensor] = 1.0) -> Tensor:
    """RFA's feature map (Peng et al., 2021): l2-normalise x, then map.

    x: (..., D)   projection: (m, D).
    kernel="gaussian": :func:`gaussian_rff` of ``x / |x|`` with bandwidth ``sigma``, (..., 2m).
        For unit vectors ``exp(-|x - y|^2 / (2 sigma^2)) = exp(-1/sigma^2) exp(x . y / sigma^2)``,
        so normalised attention with these features estimates softmax attention on the
        normalised q, k with temperature ``sigma^2`` (the constant cancels).
    kernel="arccos": :func:`arccos_features` of ``x / |x|``, (..., m).
    sigma: float or tensor broadcastable to x[..., :1] (e.g. (H, 1, 1), one per head).
    """
    return _rfa_features(x, projection, kernel, sigma, scaled=True)


def _rfa_features(x, projection, kernel, sigma, scaled):
    if kernel not in RFA_KERNELS:
        raise ValueError(f"kernel must be one of {RFA_KERNELS}, got {kernel!r}")
    check_tensor("x", x, layout="(..., D)")
    xn = x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    if kernel == "gaussian":
        return _sincos("x", xn / sigma, projection, scaled)
    return arccos_features(xn, projection)


def softmax_kernel_estimate(x: Tensor, y: Tensor, projection: Tensor, *,
                            kind: str = "positive",
                            a: Union[float, Tensor, None] = None) -> Tensor:
    """The random-feature estimate ``phi(x) . phi(y)`` of ``exp(x . y)``, pair by pair.

    x: (..., D)   y: (..., D)  (broadcast)   projection: (m, D)   ->   (...)
    a: FAVOR++'s parameter, for kind="optimized" only (see :func:`softmax_kernel_features`).
    """
    return (softmax_kernel_features(x, projection, kind=kind, a=a)
            * softmax_kernel_features(y, projection, kind=kind, a=a)).sum(-1)


def _check_a(a) -> Union[float, Tensor]:
    if a is None:
        raise ValueError("kind='optimized' needs a (FAVOR++'s parameter, a < 1/8): pass a "
                         "float or a tensor, e.g. from optimal_a(query, key)")
    if isinstance(a, Tensor):
        check_tensor("a", a, layout="broadcastable to (..., 1)")
        if not bool((a < 0.125).all()):
            raise ValueError(f"a must be < 1/8 (finite variance), got max {float(a.max())}")
        return a
    if not isinstance(a, (int, float)) or isinstance(a, bool) or not a < 0.125:
        raise ValueError(f"a must be a float < 1/8 (finite variance), got {a!r}")
    return float(a)


def _optimized_exponent(p: Tensor, x: Tensor, projection: Tensor, a) -> Tensor:
    """``a |w|^2 + sqrt(1 - 4a) w . x + (D/4) log(1 - 4a)`` from p = W x: (..., m)."""
    d = x.shape[-1]
    w_sq = (projection * projection).sum(-1).to(p.dtype)  # (m,) or (H, m)
    if projection.dim() == 3:
        w_sq = w_sq.unsqueeze(-2)  # (H, 1, m): broadcasts against (B, H, N, m)
    if isinstance(a, Tensor):
        a = a.to(p.dtype)
        b, log_d = torch.sqrt(1 - 4 * a), 0.25 * d * torch.log1p(-4 * a)
    else:
        b, log_d = math.sqrt(1 - 4 * a), 0.25 * d * math.log1p(-4 * a)
    return a * w_sq + b * p + log_d


def optimal_a(query: Tensor, key: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
    """FAVOR++'s variance-minimising parameter for (already scaled) queries and keys.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   ->   a: (B, H, 1, 1), a <= 0.
    attn_mask: bool broadcastable to (B, H, 1, Nk), True = real key (whole keys only).
    With ``rho`` the mean of ``|q_i + k_j|^2 / D`` over all (query, real key) pairs (computed
    in O(N D) from the means), ``a = (1 - 2 rho - sqrt((2 rho + 1)^2 + 8 rho)) / 16`` minimises
    the variance of the estimate of ``exp(q . k)`` averaged that way (Likhosherstov et al.,
    2022, "Chefs' random tables", section 3). It looks at every key: a causal model must fix
    ``a`` beforehand instead.
    """
    check_tensor("query", query, ndim=4, layout="(B, H, Nq, D)")
    check_tensor("key", key, ndim=4, layout="(B, H, Nk, D)")
    return _optimal_a(query, key, per_key_mask(attn_mask, query, key))


def _optimal_a(query: Tensor, key: Tensor, keep: Optional[Tensor]) -> Tensor:
    """:func:`optimal_a` with the per-key mask ``keep`` (B, H, Nk) or None."""
    qq = (query * query).sum(-1).mean(-1)  # (B, H)
    q_mean = query.mean(-2)  # (B, H, D)
    if keep is None:
        kk, k_mean = (key * key).sum(-1).mean(-1), key.mean(-2)
    else:
        w = keep[..., None].to(key.dtype).expand(*key.shape[:-1], 1)  # (B, H, Nk, 1)
        count = w.sum(-2).clamp_min(1.0)  # (B, H, 1)
        kk = ((key * key).sum(-1, keepdim=True) * w).sum(-2).squeeze(-1) / count.squeeze(-1)
        k_mean = (key * w).sum(-2) / count
    rho = (qq + kk + 2 * (q_mean * k_mean).sum(-1)) / query.shape[-1]  # (B, H)
    a = (1 - 2 * rho - torch.sqrt((2 * rho + 1) ** 2 + 8 * rho)) / 16
    return a[..., None, None]


def softmax_kernel_mse(x: Tensor, y: Tensor, num_features: int, *,
                       kind: str = "positive", a: Union[float, Tensor, None] = None) -> Tensor:
    """Mean squared error of the m-feature estimate of ``exp(x . y)`` with iid frequencies.

    x: (..., D)   y: (..., D)  (broadcast)  ->  (...). Choromanski et al. (2021), Lemma 2:

        MSE_trig = (1 / 2m) exp(|x + y|^2) SM(x, y)^{-2} (1 - exp(-|x - y|^2))^2
        MSE_pos  = (1 / m)  exp(|x + y|^2) SM(x, y)^2   (1 - exp(-|x + y|^2))

    where m is the number of frequencies (the trig map has 2m features, sin and cos).
    As ``SM(x, y) -> 0`` the positive estimator's MSE goes to 0; the trig one's does not.
    kind="optimized" (FAVOR++ with parameter ``a``; our derivation from the moment generating
    function of ``w ~ N(0, I_D)``, equal to MSE_pos at ``a = 0``):

        MSE_opt = (1 / m) [ (1 - 4a)^D (1 - 8a)^{-D/2} exp(2 (1 - 4a) |x + y|^2 / (1 - 8a)
                            - |x|^2 - |y|^2) - SM(x, y)^2 ]
    """
    _check_kind(kind)
    check_int("num_features", num_features)
    check_tensor("x", x, layout="(..., D)")
    check_tensor("y", y, layout="(..., D)")
    xx, yy, xy = (x * x).sum(-1), (y * y).sum(-1), (x * y).sum(-1)
    if kind == "optimized":
        a = _check_a(a)
        if isinstance(a, Tensor):
            a = a.to(x.dtype).squeeze(-1) if a.dim() and a.shape[-1] == 1 else a.to(x.dtype)
        else:
            a = torch.tensor(a, dtype=x.dtype, device=x.device)
        d = x.shape[-1]
        ss = xx + yy + 2 * xy
        log_second = (d * torch.log1p(-4 * a) - 0.5 * d * torch.log1p(-8 * a)
                      + 2 * (1 - 4 * a) * ss / (1 - 8 * a) - xx - yy)
        return (torch.exp(log_second) - torch.exp(2 * xy)) / num_features
    if kind == "positive":  # SM^2 (exp(|x+y|^2) - 1)
        return torch.exp(2 * xy) * torch.expm1(xx + yy + 2 * xy) / num_features
    # exp(|x+y|^2) SM^-2 = exp(|x|^2 + |y|^2)
    return torch.exp(xx + yy) * (-torch.expm1(-(xx + yy - 2 * xy))) ** 2 / (2 * num_features)


# --------------------------------------------------------------------------- attention
def _scale_qk(query: Tensor, key: Tensor, scale: Optional[float]):
    s = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if not isinstance(s, (int, float)) or isinstance(s, bool) or s <= 0:
        raise ValueError(f"scale must be a positive float or None, got {scale!r}")
    r = math.sqrt(s)  # (r q) . (r k) = s q . k
    return query * r, key * r


def performer_features(query: Tensor, key: Tensor, projection: Tensor, *,
                       kind: str = "positive", stabilize: bool = True,
                       attn_mask: Optional[Tensor] = None, causal: bool = False,
                       a: Union[float, Tensor, None] = None):
    """FAVOR+ features of (already scaled) queries and keys, numerically stabilised.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   projection: (m, D) or (H, m, D).
    Returns ``(phi_q, phi_k)``: (B, H, N, m) for "positive" and "optimized", (B, H, N, 2m) for
    "trig". kind="optimized" (FAVOR++): ``a`` defaults to :func:`optimal_a` of these queries
    and keys, which looks at all of them -- so a causal call must pass ``a`` (a float, or a
    tensor broadcastable to (B, H, 1, 1)) rather than let future keys choose it.

    attn_mask: bool broadcastable to (B, H, 1, Nk), True = real key (only used to stabilise).
    stabilize: multiply each query's features by a constant (positive: divide by its largest
    feature, so that it becomes ``m^{-1/2}``; trig: drop its ``exp(|q|^2 / 2)``) and, unless
    ``causal``, all keys' features of one (batch, head) by one constant (the largest exponent
    over the unmasked keys and features), as the Performer's code does. Such constants cancel
    exactly in normalised attention, but keep ``exp`` from underflowing (or overflowing) in
    float32 when |q| and |k| are large. In causal attention a key-side constant would have to
    be known before the keys are (the recurrent form could not use it), so only queries are
    stabilised there. Because the stabilised features are rescaled, any ``eps`` added to the
    normaliser should be 0 (the default of the functions here).
    """
    return _performer_features(query, key, projection, kind, stabilize,
                               per_key_mask(attn_mask, query, key), causal, a)


def _performer_features(query, key, projection, kind, stabilize, keep, causal, a):
    """:func:`performer_features` with the per-key mask ``keep`` (B, H, Nk) or None."""
    _check_kind(kind)
    pq = _project("query", query, projection)  # (B, H, Nq, m)
    pk = _project("key", key, projection)  # (B, H, Nk, m)
    m = projection.shape[-2]
    hq = 0.5 * (query * query).sum(-1, keepdim=True)  # (B, H, Nq, 1)
    hk = 0.5 * (key * key).sum(-1, keepdim=True)  # (B, H, Nk, 1)
    if kind == "optimized":
        if a is None:
            if causal:
                raise ValueError("kind='optimized' with causal=True needs a given a: "
                                 "optimal_a would look at future keys")
            a = _optimal_a(query, key, keep)
        a = _check_a(a)
        pq = _optimized_exponent(pq, query, projection, a)
        pk = _optimized_exponent(pk, key, projection, a)
    elif a is not None:
        raise ValueError(f"a is FAVOR++'s parameter: only for kind='optimized', not {kind!r}")
    if kind in ("positive", "optimized"):
        # exponents w . x - |x|^2 / 2 - log sqrt(m), shifted by the stabilisers; updated in
        # place (each pass over an (N, m) tensor costs as much as the matmul on a CPU)
        log_sqrt_m = 0.5 * math.log(m)
        eq, ek = pq.sub_(hq + log_sqrt_m), pk.sub_(hk + log_sqrt_m)
        if stabilize:
            eq = eq.sub_(eq.detach().amax(dim=-1, keepdim=True) + log_sqrt_m)
            if not causal:
                ek = ek.sub_(_masked_max(ek, keep) + log_sqrt_m)
        return eq.exp_(), ek.exp_()
    fq = torch.cat([torch.sin(pq), torch.cos(pq)], dim=-1) / math.sqrt(m)
    fk = torch.cat([torch.sin(pk), torch.cos(pk)], dim=-1) / math.sqrt(m)
    if stabilize:
        if not causal:
            hk = hk - _masked_max(hk, keep)
        return fq, torch.exp(hk) * fk
    return torch.exp(hq) * fq, torch.exp(hk) * fk


def _masked_max(e: Tensor, keep: Optional[Tensor]) -> Tensor:
    """max over keys and features of exponents e (B, H, Nk, F) -> (B, H, 1, 1), detached,
    over the kept keys only (``keep`` (B, H, Nk); 0 where every key is masked)."""
    if keep is not None:
        e = e.masked_fill(~keep[..., None], float("-inf"))
    mx = e.detach().amax(dim=(-2, -1), keepdim=True)
    return torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))


def performer_attention(query: Tensor, key: Tensor, value: Tensor, projection: Tensor,
                        attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                        scale: Optional[float] = None, kind: str = "positive",
                        stabilize: bool = True, eps: float = 0.0, chunk_size: int = 64,
                        return_state: bool = False, a: Union[float, Tensor, None] = None):
    """Performer attention, FAVOR+: softmax attention estimated with random features.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   value: (B, H, Nk, Dv)
    projection: (m, D) or (H, m, D), rows ~ N(0, I): iid or orthogonal
        (:func:`random_projection`); the only randomness.
    attn_mask: bool broadcastable to (B, H, 1, Nk), True = may attend (whole keys only; a mask
        that depends on the query raises ``ValueError``).
    scale: the softmax's scale, default 1/sqrt(D) as in SDPA: q and k are multiplied by
        sqrt(scale) before the feature map, so the estimated kernel is ``exp(scale q . k)``.
    kind: "positive" (FAVOR+), "optimized" (FAVOR++, Likhosherstov et al., 2022: positive
        features with a data-dependent parameter ``a`` of least variance -- see
        :func:`performer_features`; ``a`` is needed when causal) or "trig" (for comparison:
        same mean, can go negative).
    stabilize, chunk_size, return_state: see :func:`performer_features` and
        :func:`~attention_lib.efficient.linear.kernel_attention`. A state to decode from
        (:func:`~attention_lib.efficient.linear.kernel_attention_step`) should come from a
        causal call: a non-causal call stabilises the keys by a constant that the steps lack.
    eps: added to the normaliser; 0 by default, since positive features keep it > 0 and the
        stabilisation rescales it (a fixed eps would not be negligible).

    Returns (B, H, Nq, Dv). As m grows it converges to
    ``reference_attention(query, key, value, is_causal=is_causal, scale=scale)``. Cost
    O(N m (D + Dv)) time and O(N (m + Dv)) memory.
    Choromanski et al. (2021), "Rethinking attention with Performers", section 2-3.
    """
    keep = _check_kernel_args(query, key, value, attn_mask, is_causal, eps, chunk_size)
    work = work_dtype(query.dtype)
    q, k = _scale_qk(query.to(work), key.to(work), scale)
    phi_q, phi_k = _performer_features(q, k, projection, kind, stabilize, keep, is_causal, a)
    res = _kernel_attention(phi_q, phi_k, value.to(work), keep, is_causal, eps, chunk_size,
                            return_state)
    if return_state:
        return res[0].to(value.dtype), res[1]
    return res.to(value.dtype)


def rfa_attention(query: Tensor, key: Tensor, value: Tensor, projection: Tensor,
                  attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                  kernel: str = "gaussian", sigma: Union[float, Tensor] = 1.0,
                  gate: Optional[Tensor] = None, eps: float = 0.0, chunk_size: int = 64,
                  return_state: bool = False):
    """Random feature attention (RFA) of Peng et al. (2021), optionally gated.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   value: (B, H, Nk, Dv)   projection: (m, D).
    attn_mask: bool broadcastable to (B, H, 1, Nk), True = may attend (whole keys only).
    kernel="gaussian": sin/cos features of the l2-normalised q, k (:func:`rfa_features`);
        estimates ``softmax(q_hat . k_hat / sigma^2)`` attention.
    kernel="arccos": ReLU features of the normalised q, k: arc-cosine kernel attention.
    sigma: float or tensor broadcastable to (B, H, 1, 1), e.g. a learned (H, 1, 1).
    gate: None, or (B, H, N) values in [0, 1]: gated RFA (needs ``is_causal``), whose state
        decays, ``S_t = g_t S_{t-1} + (1 - g_t) phi(k_t) v_t^T`` (same for z_t) -- a learned
        recency bias (Peng et al., 2021, eq. 7); see
        :func:`~attention_lib.efficient.linear.gated_kernel_attention`.
    eps, chunk_size, return_state: as in :func:`~attention_lib.efficient.linear.kernel_attention`
        (``eps`` defaults to 0 here).

    Returns (B, H, Nq, Dv) (and the final state with ``return_state``).
    Note: sin/cos features take both signs, so the normaliser ``phi(q) . z`` can come close
    to 0 for small m; positive features (Performer) do not have that problem.
    """
    check_qkv(query, key, value)  # the mask is checked by the kernel attention below
    work = work_dtype(query.dtype)
    # unscaled features: the constant 1/sqrt(m) cancels in the normalised attention
    phi_q = _rfa_features(query.to(work), projection, kernel, sigma, scaled=eps > 0)
    phi_k = _rfa_features(key.to(work), projection, kernel, sigma, scaled=eps > 0)
    v = value.to(work)
    if gate is not None:
        if not is_causal:
            raise ValueError("gate needs is_causal=True: gated RFA is a causal recurrence")
        res = gated_kernel_attention(phi_q, phi_k, v, gate, attn_mask, eps=eps,
                                     chunk_size=chunk_size, return_state=return_state)
    else:
        res = kernel_attention(phi_q, phi_k, v, attn_mask, is_causal=is_causal, eps=eps,
                               chunk_size=chunk_size, return_state=return_state)
    if return_state:
        return res[0].to(value.dtype), res[1]
    return res.to(value.dtype)


# --------------------------------------------------------------------------- modules
_FEATURES = ("positive", "trig", "gaussian", "arccos")


class RandomFeatures(nn.Module):
    """Attention with a random feature map in place of the softmax, as the ``attn_fn`` of
    :class:`attention_lib.layers.MultiHeadAttention`: the multi-head Performer is
    ``MultiHeadAttention(E, H, attn_fn=RandomFeatures(H, E // H, m))``, RFA is
    ``RandomFeatures(H, E // H, m, feature="gaussian", orthogonal=False)``.

    Holds a buffer ``projection`` (num_features, head_dim) of random frequencies shared by the
    heads.
    feature: "positive" / "trig" (Performer, Choromanski et al., 2021,
        :func:`performer_attention`, estimating ``softmax(q . k / sqrt(Dh))``; orthogonal
        frequencies by default), or "gaussian" / "arccos" (RFA, Peng et al., 2021,
        :func:`rfa_attention` on l2-normalised q, k, with a learned per-head bandwidth
        ``sigma`` for "gaussian", stored as ``log_sigma`` and starting at sigma = 1; the paper
        draws iid frequencies: pass ``orthogonal=False``).
    num_features: m; default ``round(Dh * ln Dh)``, the Performer paper's m = Theta(d log d).
    gated: gated RFA (needs ``is_causal=True``): ``g_t = sigmoid(w_h . k_t + b_h)`` per head,
        from the head's key (parameters ``gate_weight`` (H, Dh) and ``gate_bias`` (H,),
        initialised to 2, so g ~ 0.88 at the start: long memory). The paper computes the gate
        from the layer input x_t; here it reads the projected key k_t = W_k x_t.
    generator: draws the first projection (default: torch's global generator, like the
        parameters' initialisation); :meth:`redraw` draws a new one.
    eps: added to the normaliser (default 0, see :func:`performer_features`);
    chunk_size: of the causal prefix sums.

    forward(query, key, value, attn_mask=None, *, is_causal=False): (B, H, N, Dh) tensors;
    attn_mask: a key mask, broadcastable to (B, 1, 1, Nk), True = real key. Returns
    (B, H, Nq, Dh). :meth:`step` decodes one position at a time from a recurrent state, and
    :func:`random_feature_step` does it for a whole layer.
    """

    def __init__(self, num_heads: int, head_dim: int, num_features: Optional[int] = None, *,
                 feature: str = "positive", orthogonal: bool = True, gated: bool = False,
                 generator: Optional[torch.Generator] = None, eps: float = 0.0,
                 chunk_size: int = 64):
        super().__init__()
        check_int("num_heads", num_heads)
        check_int("head_dim", head_dim)
        if feature not in _FEATURES:
            raise ValueError(f"feature must be one of {_FEATURES}, got {feature!r}")
        if gated and feature not in RFA_KERNELS:
            raise ValueError(f"gated=True is gated RFA: use feature='gaussian' or 'arccos', "
                             f"got {feature!r}")
        self.head_dim = dh = head_dim
        if num_features is None:
            num_features = max(1, round(dh * math.log(max(dh, 2))))
        check_int("num_features", num_features)
        self.num_features, self.feature, self.orthogonal = num_features, feature, orthogonal
        self.gated, self.eps, self.chunk_size = gated, eps, chunk_size
        if feature == "gaussian":  # bandwidth sigma per head, learned; starts at 1
            self.log_sigma = nn.Parameter(torch.zeros(num_heads))
        if gated:
            bound = dh ** -0.5  # as nn.Linear(Dh, 1) would draw it, one row per head
            self.gate_weight = nn.Parameter(torch.empty(num_heads, dh).uniform_(-bound, bound))
            self.gate_bias = nn.Parameter(torch.full((num_heads,), 2.0))
        self.register_buffer("projection", torch.zeros(num_features, dh))
        self.redraw(generator)

    @torch.no_grad()
    def redraw(self, generator: Optional[torch.Generator] = None) -> Tensor:
        """Draw new random frequencies into ``projection`` (and return them).

        generator: default torch's global generator. The Performer redraws periodically
        during training, so that no single unlucky draw is trained against.
        """
        gen = torch.default_generator if generator is None else generator
        w = random_projection(self.num_features, self.head_dim, generator=gen,
                              orthogonal=self.orthogonal, dtype=self.projection.dtype,
                              device=self.projection.device)
        self.projection.copy_(w)
        return self.projection

    def _features(self, q: Tensor, k: Tensor, attn_mask, causal: bool):
        """(phi_q, phi_k) for (B, H, N, Dh) queries and keys."""
        if self.feature in SOFTMAX_KINDS:
            q, k = _scale_qk(q, k, None)
            return performer_features(q, k, self.projection, kind=self.feature,
                                      attn_mask=attn_mask, causal=causal)
        sigma = torch.exp(self.log_sigma).view(-1, 1, 1) if self.feature == "gaussian" else 1.0
        return (rfa_features(q, self.projection, kernel=self.feature, sigma=sigma),
                rfa_features(k, self.projection, kernel=self.feature, sigma=sigma))

    def _gate(self, k: Tensor) -> Tensor:
        """k: (B, H, N, Dh) -> g (B, H, N) in (0, 1)."""
        w, b = self.gate_weight[:, None, :].to(k.dtype), self.gate_bias[:, None].to(k.dtype)
        return torch.sigmoid((k * w).sum(-1) + b)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                attn_mask: Optional[Tensor] = None, *, is_causal: bool = False) -> Tensor:
        if self.gated and not is_causal:
            raise ValueError("a gated RFA layer is causal: call it with is_causal=True")
        phi_q, phi_k = self._features(query, key, attn_mask, is_causal)
        if self.gated:
            return gated_kernel_attention(phi_q, phi_k, value, self._gate(key), attn_mask,
                                          eps=self.eps, chunk_size=self.chunk_size)
        return kernel_attention(phi_q, phi_k, value, attn_mask, is_causal=is_causal,
                                eps=self.eps, chunk_size=self.chunk_size)

    def step(self, query: Tensor, key: Tensor, value: Tensor,
             state: Optional[LinearAttentionState] = None):
        """Causal attention for one new position, as an RNN.

        query, key, value: (B, H, Dh) at position t; state: after t - 1 positions (None at
        t = 0). Returns ``(out (B, H, Dh), new state)``; the state has a fixed size,
        (B, H, F, Dh) + (B, H, F). Running ``step`` over a sequence equals the causal forward.
        """
        phi_q, phi_k = self._features(query[:, :, None], key[:, :, None], None, True)
        if self.gated:
            return gated_kernel_attention_step(phi_q[:, :, 0], phi_k[:, :, 0], value,
                                               self._gate(key[:, :, None])[:, :, 0], state,
                                               eps=self.eps)
        return kernel_attention_step(phi_q[:, :, 0], phi_k[:, :, 0], value, state, eps=self.eps)

    def extra_repr(self) -> str:
        return (f"num_features={self.num_features}, feature={self.feature}, "
                f"orthogonal={self.orthogonal}, gated={self.gated}")


def random_feature_step(layer: MultiHeadAttention, x: Tensor,
                        state: Optional[LinearAttentionState] = None):
    """Causal self-attention of ``layer`` for one new position, as an RNN.

    layer: a :class:`~attention_lib.layers.MultiHeadAttention` whose ``attn_fn`` is a
    :class:`RandomFeatures` (and ``num_kv_heads == num_heads``); x: (B, E), the input at
    position t; state: after t - 1 positions (None at t = 0). Returns ``(y (B, E), new
    state)``. Running it over a sequence equals ``layer(x, is_causal=True)``.
    """
    check_tensor("x", x, ndim=2, layout="(B, E)")
    if x.shape[-1] != layer.embed_dim:
        raise ValueError(f"x must be (B, E) with E = {layer.embed_dim}, got {shape_str(x)}")
    h = layer.num_heads
    q, k, v = (split_heads(p(x[:, None]), h)[:, :, 0]  # (B, H, Dh)
               for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    out, state = layer.attn_fn.step(q, k, v, state)
    return layer.out_proj(out.reshape(x.shape[0], layer.embed_dim)), state  # (B, E)
