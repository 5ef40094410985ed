"""Low-rank attention: singular-value spectra, the best rank-k matrix, and Linformer.

An (Nq, Nk) attention matrix ``P = softmax(Q K^T / sqrt(D))`` can be expensive to build, but
if it is close to a matrix of rank k it could be replaced by one. Two questions follow, and
this module has the tools for both:

* **Is it low rank?** :func:`attention_spectrum` gives the singular values of attention
  matrices, :func:`energy_rank` the number of them needed for a given share of the energy
  (the sum of squared singular values), :func:`effective_rank` the entropy-based effective
  rank of Roy and Vetterli (2007). :func:`best_rank_k` is the optimum (Eckart-Young: the
  truncated SVD is the closest rank-k matrix in Frobenius and spectral norm) and
  :func:`best_rank_k_error` its relative error, which no rank-k method can beat.
* **Linformer** (Wang et al., 2020) projects the *sequence axis* of the keys and values to
  a fixed length k with two (k, N) matrices E and F:

      out = softmax(Q (E K)^T / sqrt(D)) (F V)        Q: (Nq, D), E K: (k, D), F V: (k, Dv)

  The scores are (Nq, k) instead of (Nq, N): time and memory O(N k). The output equals
  ``(P_bar F) V`` with ``P_bar = softmax(Q (E K)^T / sqrt(D))``, so Linformer's implicit
  (Nq, N) attention matrix ``P_bar F`` has rank at most k (:func:`linformer_weights` builds
  it, for pictures and tests); its error is never below :func:`best_rank_k_error`.

Projections: in the paper E and F are learned parameters (:class:`LinformerProjections`, the
``attn_fn`` of :class:`attention_lib.layers.MultiHeadAttention`).
:func:`linformer_projection` draws them as Johnson-Lindenstrauss maps, Gaussian N(0, 1/k)
entries (the paper's Theorem 1) or random signs +-1/sqrt(k) (Achlioptas, 2003), from a
``torch.Generator``; :func:`pooling_projection` averages consecutive segments of N/k
positions (the "pooling" alternative of the paper's section 4). With k = N and E = F = the
identity, Linformer is softmax attention exactly.

**Not causal, fixed length.** Each projected key ``(E K)_r = sum_j E_rj k_j`` mixes keys from
every position, so query i would see keys j > i: there is no causal mask to apply
(``is_causal=True`` is rejected). E has one column per position, so the sequence length is
at most the N the projections were made for; a shorter sequence uses the first Nk columns
(the same as padding the keys with zeros to length N).

**Key padding.** An ``attn_mask`` that hides whole keys (True = real key, broadcastable to
(B, H, 1, Nk), e.g. :func:`attention_lib.masks.key_mask`) zeroes the padded keys and values
*before* the projection, so that only valid keys are mixed into the k projected ones. This
is what the padded positions of the zero-padded sequence would give; it is not the same as
attention over the valid keys alone (the projection still has k rows, and a row whose
positions are all padding contributes a zero key, i.e. a score of 0, with a zero value).
A mask that depends on the query cannot be applied after the keys are mixed: it raises a
``ValueError``. A sequence whose keys are all padding gives zeros.

Layout (B, H, N, D) as everywhere. References: Wang, Li, Khabsa, Fang and Ma (2020),
"Linformer: Self-attention with linear complexity"; Eckart and Young (1936); Roy and
Vetterli (2007), "The effective rank"; Achlioptas (2003), "Database-friendly random
projections".
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .._validate import (
    check_device,
    check_int,
    check_qkv,
    check_scale,
    check_tensor,
    shape_str,
)
from ..functional import upcast  # half precision is computed in float32 (SVD, softmax)
from ..masks import per_key_mask

Tensor = torch.Tensor

__all__ = [
    # spectra and the optimum
    "attention_spectrum", "energy_rank", "effective_rank", "best_rank_k", "best_rank_k_error",
    # Linformer
    "linformer_projection", "pooling_projection", "linformer_attention", "linformer_weights",
    "LinformerProjections", "LINFORMER_SHARING",
]

#: Parameter sharing of :class:`LinformerProjections` (Wang et al., 2020, section 4).
LINFORMER_SHARING = ("none", "headwise", "key-value", "layerwise")


# --------------------------------------------------------------------------- helpers
def _check_matrices(name: str, weights: Tensor) -> None:
    check_tensor(name, weights, layout="(..., Nq, Nk)")
    if weights.dim() < 2:
        raise ValueError(f"{name} must have at least 2 dims (..., Nq, Nk), got "
                         f"{weights.dim()}-D with shape {shape_str(weights)}")
    if weights.shape[-1] == 0 or weights.shape[-2] == 0:
        raise ValueError(f"{name} has an empty matrix axis: {shape_str(weights)}")


# --------------------------------------------------------------------------- spectra
def attention_spectrum(weights: Tensor) -> Tensor:
    """Singular values of attention matrices, largest first.

    weights: (..., Nq, Nk) float.  Returns (..., min(Nq, Nk)), in the dtype of ``weights``
    (half precision is computed in float32 and cast back).
    Equivalent code: ``torch.linalg.svdvals(weights)``.
    """
    _check_matrices("weights", weights)
    return torch.linalg.svdvals(upcast(weights)).to(weights.dtype)


def _spectrum_of(x: Tensor, singular_values: bool) -> Tensor:
    if singular_values:
        check_tensor("weights", x, layout="(..., R) singular values")
        if x.dim() < 1 or x.shape[-1] == 0:
            raise ValueError(f"singular values must have a non-empty last axis, got "
                             f"{shape_str(x)}")
        return upcast(x)
    return upcast(attention_spectrum(x))


def energy_rank(weights: Tensor, energy: float = 0.9, *, singular_values: bool = False) -> Tensor:
    """The number r of singular values that hold a share ``energy`` of the squared ones.

    weights: (..., Nq, Nk) attention matrices, or (..., R) singular values (largest first)
    with ``singular_values=True``.  Returns (...) long: the smallest r with
    ``sum_{i<=r} s_i^2 >= energy * sum_i s_i^2``. By Eckart-Young, the best rank-r matrix
    then has relative Frobenius error at most ``sqrt(1 - energy)``. A zero matrix has rank 0.
    """
    if not isinstance(energy, (int, float)) or isinstance(energy, bool) or not 0 < energy <= 1:
        raise ValueError(f"energy must be a float in (0, 1], got {energy!r}")
    s2 = _spectrum_of(weights, singular_values).double().square()  # (..., R)
    total = s2.sum(-1, keepdim=True)
    frac = s2.cumsum(-1) / torch.where(total > 0, total, torch.ones_like(total))
    # tolerance: a share that reaches `energy` up to rounding counts as reaching it
    below = frac < energy - 1e-12 * max(1, s2.shape[-1])
    return torch.where(total.squeeze(-1) > 0, below.sum(-1) + 1,
                       torch.zeros_like(below.sum(-1)))


def effective_rank(weights: Tensor, *, singular_values: bool = False) -> Tensor:
    """Effective rank ``exp(H(p))`` with ``p_i = s_i / sum_j s_j`` (Roy and Vetterli, 2007).

    weights: (..., Nq, Nk) attention matrices, or (..., R) singular values with
    ``singular_values=True``.  Returns (...) float: between 1 (rank one) and R (all singular
    values equal, e.g. a permutation matrix); 0 for a zero matrix.
    """
    s = _spectrum_of(weights, singular_values)
    total = s.sum(-1, keepdim=True)
    p = s / torch.where(total > 0, total, torch.ones_like(total))
    h = -(p * torch.where(p > 0, p, torch.ones_like(p)).log()).sum(-1)
    return torch.where(total.squeeze(-1) > 0, h.exp(), torch.zeros_like(h)).to(s.dtype)


def best_rank_k(weights: Tensor, k: int) -> Tensor:
    """The closest matrix of rank at most k: the truncated SVD (Eckart and Young, 1936).

    weights: (..., Nq, Nk).  Returns (..., Nq, Nk), ``U[:, :k] diag(s[:k]) V[:, :k]^T``.
    No rank-k matrix is closer to ``weights`` in Frobenius (or spectral) norm.
    """
    _check_matrices("weights", weights)
    check_int("k", k, 0)
    u, s, vh = torch.linalg.svd(upcast(weights), full_matrices=False)
    r = min(k, s.shape[-1])
    out = (u[..., :, :r] * s[..., None, :r]) @ vh[..., :r, :]  # (..., Nq, Nk)
    return out.to(weights.dtype)


def best_rank_k_error(weights: Tensor, k: int) -> Tensor:
    """Relative Frobenius error of the best rank-k matrix: ``sqrt(sum_{i>k} s_i^2 / sum s_i^2)``.

    weights: (..., Nq, Nk).  Returns (...). A lower bound for the relative error
    ``||P - A||_F / ||P||_F`` of any A of rank <= k, e.g. Linformer's ``P_bar F``.
    """
    check_int("k", k, 0)
    s2 = attention_spectrum(weights).double().square()  # (..., R)
    total = s2.sum(-1)
    tail = s2[..., k:].sum(-1)
    err = torch.sqrt(tail / torch.where(total > 0, total, torch.ones_like(total)))
    return err.to(upcast(weights).dtype)


# --------------------------------------------------------------------------- projections
def linformer_projection(k: int, seq_len: int, *, kind: str = "gaussian",
                         num_heads: Optional[int] = None,
                         generator: Optional[torch.Generator] = None,
                         dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """A random Johnson-Lindenstrauss projection of the sequence axis, (k, N) or (H, k, N).

    kind: ``"gaussian"``: entries N(0, 1/k), Linformer's Theorem 1 (Wang et al., 2020);
    ``"sign"``: entries +-1/sqrt(k) with probability 1/2 each (Achlioptas, 2003), the
    database-friendly JL map. Either way ``E[R^T R] = I_N``: for a fixed vector x,
    ``||R x||^2`` estimates ``||x||^2`` with relative standard deviation sqrt(2/k).
    num_heads: one independent matrix per head, (H, k, N), for ``E``/``F`` per head.
    Randomness only from ``generator``; drawn on the CPU, so the matrix is the same on every
    device.
    """
    check_int("k", k)
    check_int("seq_len", seq_len)
    if num_heads is not None:
        check_int("num_heads", num_heads)
    shape = (k, seq_len) if num_heads is None else (num_heads, k, seq_len)
    if kind == "gaussian":
        r = torch.randn(shape, generator=generator, dtype=torch.float64)
    elif kind == "sign":
        r = torch.randint(0, 2, shape, generator=generator).double() * 2 - 1
    else:
        raise ValueError(f"kind must be 'gaussian' or 'sign', got {kind!r}")
    return (r / math.sqrt(k)).to(dtype=dtype, device=device)


def pooling_projection(k: int, seq_len: int, *, dtype: torch.dtype = torch.float32,
                       device=None) -> Tensor:
    """Mean pooling of the sequence axis into k segments: a (k, N) projection.

    Row r averages positions ``[floor(r N / k), floor((r + 1) N / k))`` (k <= N), so each
    projected key is the mean key of a segment (the "pooling" projection of Wang et al.,
    2020, section 4). With k = N it is the identity.
    """
    check_int("k", k)
    check_int("seq_len", seq_len)
    if k > seq_len:
        raise ValueError(f"pooling needs k <= seq_len, got k={k} and seq_len={seq_len}")
    bounds = [r * seq_len // k for r in range(k + 1)]
    out = torch.zeros(k, seq_len, dtype=torch.float64)
    for r in range(k):
        out[r, bounds[r]:bounds[r + 1]] = 1.0 / (bounds[r + 1] - bounds[r])
    return out.to(dtype=dtype, device=device)


# --------------------------------------------------------------------------- Linformer
def _check_projection(name: str, proj: Tensor, key: Tensor, heads: int) -> None:
    check_tensor(name, proj, ndim=(2, 3), layout="(k, N) or (H, k, N)")
    if proj.dtype != key.dtype:
        raise TypeError(f"{name} must have the dtype of key, got {proj.dtype} and {key.dtype}")
    check_device(name, proj, "key", key)
    if proj.shape[-2] == 0:
        raise ValueError(f"{name} has k = 0 rows: {shape_str(proj)}")
    nk = key.shape[-2]
    if proj.shape[-1] < nk:
        raise ValueError(f"{name} {shape_str(proj)} projects sequences of at most "
                         f"{proj.shape[-1]} positions, but key {shape_str(key)} has Nk={nk}")
    if proj.dim() == 3 and proj.shape[0] not in (1, heads):
        raise ValueError(f"{name} {shape_str(proj)} has {proj.shape[0]} heads, but the inputs "
                         f"have H={heads}")


def _linformer_parts(query, key, value, E, F, attn_mask, is_causal, scale):
    """Validated inputs -> (q, projected keys (B, H, k, D), projected values (B, H, k, Dv),
    scale), in the working dtype."""
    if is_causal:
        raise ValueError("Linformer cannot be causal: each projected key (E K)_r = "
                         "sum_j E_rj k_j mixes keys from every position, so a query would see "
                         "later keys. Use full, sparse or linear attention for causal models.")
    check_qkv(query, key, value)
    heads = torch.broadcast_shapes(query.shape[:2], key.shape[:2], value.shape[:2])[1]
    F = E if F is None else F
    _check_projection("E", E, key, heads)
    _check_projection("F", F, key, heads)
    if E.shape[-2] != F.shape[-2]:
        raise ValueError(f"E and F must project to the same k (axis -2): E {shape_str(E)} vs "
                         f"F {shape_str(F)}")
    check_scale(scale)
    keep = per_key_mask(attn_mask, query, key)  # (B, H, Nk) or None
    nk = key.shape[-2]
    s = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    q, k, v = upcast(query), upcast(key), upcast(value)
    E, F = upcast(E)[..., :nk], upcast(F)[..., :nk]  # (k, Nk) or (H, k, Nk): shorter = zero-padded
    if keep is not None:
        keep = keep[..., None]  # (B, H, Nk, 1)
        zero = torch.zeros((), dtype=k.dtype, device=k.device)
        k = torch.where(keep, k, zero)  # padded keys and values mix nothing into the projection
        v = torch.where(keep, v, zero)
    if E.dim() == 3:
        E = E.unsqueeze(0)  # (1, H, k, Nk): broadcasts over the batch
    if F.dim() == 3:
        F = F.unsqueeze(0)
    k_proj = E @ k  # (B, H, k, D)
    v_proj = F @ v  # (B, H, k, Dv)
    return q, k_proj, v_proj, s


def linformer_attention(query: Tensor, key: Tensor, value: Tensor, E: Tensor,
                        F: Optional[Tensor] = None,
                        attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                        scale: Optional[float] = None, return_weights: bool = False):
    """Linformer attention: keys and values projected to k positions (Wang et al., 2020, eq. 7).

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   value: (B, H, Nk, Dv)
    E, F: (k, N) or per head (H, k, N), with N >= Nk (a shorter sequence uses the first Nk
        columns); ``F=None`` shares E for keys and values (the paper's key-value sharing).
    attn_mask: bool broadcastable to (B, H, 1, Nk), True = real key (whole keys only: a mask
        that depends on the query raises ``ValueError``). Padded keys and values are set to
        zero *before* the projection (see the module docstring).
    is_causal: must be False; Linformer mixes positions and cannot be causal (ValueError).
    scale: multiplies the scores, default 1/sqrt(D).

    Returns (B, H, Nq, Dv), or ``(out, weights)`` with weights (B, H, Nq, k) over the
    projected keys. Time and memory O(Nq k + k Nk); no (Nq, Nk) tensor is built.
    Half-precision inputs are computed in float32 and the result cast back.

    Equivalent code: ``softmax(q @ (E @ key).mT * scale) @ (F @ value)``. With k = N and
    E = F = the identity it equals :func:`attention_lib.functional.reference_attention`.
    """
    q, k_proj, v_proj, s = _linformer_parts(query, key, value, E, F, attn_mask, is_causal,
                                            scale)
    weights = torch.softmax((q @ k_proj.transpose(-2, -1)) * s, dim=-1)  # (B, H, Nq, k)
    out = (weights @ v_proj).to(value.dtype)  # (B, H, Nq, Dv)
    if return_weights:
        return out, weights.to(query.dtype)
    return out


def linformer_weights(query: Tensor, key: Tensor, E: Tensor, F: Optional[Tensor] = None,
                      attn_mask: Optional[Tensor] = None, *,
                      scale: Optional[float] = None) -> Tensor:
    """Linformer's implicit attention matrix ``P_bar F``, of rank <= k. For pictures and tests.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   E, F, attn_mask: as in
    :func:`linformer_attention`.  Returns (B, H, Nq, Nk) such that
    ``linformer_attention(query, key, value, E, F) == linformer_weights(...) @ value`` (padded
    keys get weight 0). This builds the (Nq, Nk) matrix that Linformer avoids: compare it with
    the softmax matrix and with :func:`best_rank_k`.
    """
    check_tensor("key", key, ndim=4, layout="(B, H, Nk, D)")
    # the implicit matrix is what the projection does to an identity "value" per key
    eye = torch.eye(key.shape[-2], dtype=key.dtype, device=key.device)
    eye = eye.expand(*key.shape[:2], -1, -1)  # (B, H, Nk, Nk)
    return linformer_attention(query, key, eye, E, F, attn_mask, scale=scale)


# --------------------------------------------------------------------------- module
class LinformerProjections(nn.Module):
    """Linformer's learned projections of the sequence axis (Wang et al., 2020), as the
    ``attn_fn`` of :class:`attention_lib.layers.MultiHeadAttention`; non-causal.

    ``MultiHeadAttention(d_model, H, attn_fn=LinformerProjections(H, seq_len, k))`` is the
    multi-head Linformer layer: the usual ``q_proj, k_proj, v_proj, out_proj`` and, here, the
    learned E and F, of shape (k, seq_len) or (H, k, seq_len) (``attn_fn.E``, ``attn_fn.F``),
    initialised by :func:`linformer_projection` (``init="gaussian"`` or ``"sign"``, from
    ``generator``) or :func:`pooling_projection` (``init="pooling"``).

    sharing (the paper's section 4), from most to fewest projection parameters:
        ``"none"``: one E and one F per head, (H, k, N) each;
        ``"headwise"``: one E and one F shared by all heads of the layer, (k, N) each;
        ``"key-value"``: one (k, N) matrix E used for both keys and values (``F`` is None);
        ``"layerwise"``: one (k, N) matrix for keys and values *in every layer*: pass the
            first layer's ``E`` as ``projection=`` to the other layers.

    forward(query, key, value, attn_mask=None, *, is_causal=False, return_weights=False):
    query: (B, H, Nq, D)   key, value: (B, H, N, D), N <= seq_len;
    attn_mask: bool broadcastable to (B, 1, 1, N), True = real key.
    Returns (B, H, Nq, D), or ``(out, weights)`` with weights (B, H, Nq, k):
    :func:`linformer_attention` with this module's E and F.
    """

    def __init__(self, num_heads: int, seq_len: int, k: int, *, sharing: str = "headwise",
                 init: str = "gaussian", projection: Optional[nn.Parameter] = None,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        for name, v in (("num_heads", num_heads), ("seq_len", seq_len), ("k", k)):
            check_int(name, v)
        if sharing not in LINFORMER_SHARING:
            raise ValueError(f"sharing must be one of {LINFORMER_SHARING}, got {sharing!r}")
        if init not in ("gaussian", "sign", "pooling"):
            raise ValueError(f"init must be 'gaussian', 'sign' or 'pooling', got {init!r}")
        if projection is not None and sharing != "layerwise":
            raise ValueError(f"projection= is for sharing='layerwise', got sharing={sharing!r}")
        self.num_heads, self.seq_len, self.k, self.sharing = num_heads, seq_len, k, sharing

        def new(heads):
            if init == "pooling":
                p = pooling_projection(k, seq_len)
                return nn.Parameter(p if heads is None else p.expand(heads, k, seq_len).clone())
            return nn.Parameter(linformer_projection(k, seq_len, kind=init, num_heads=heads,
                                                  generator=generator))

        if projection is not None:
            check_tensor("projection", projection, ndim=2, layout="(k, seq_len)")
            if tuple(projection.shape) != (k, seq_len):
                raise ValueError(f"projection must be (k, seq_len) = ({k}, {seq_len}), got "
                                 f"{shape_str(projection)}")
            if not isinstance(projection, nn.Parameter):
                raise TypeError("projection must be an nn.Parameter (another layer's E)")
            self.E = projection  # the same Parameter object: shared, trained once
        else:
            self.E = new(num_heads if sharing == "none" else None)
        if sharing in ("none", "headwise"):
            self.F = new(num_heads if sharing == "none" else None)
        else:
            self.register_parameter("F", None)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                return_weights: bool = False):
        if is_causal:  # before any shape check: the reason is not the shapes
            raise ValueError("Linformer cannot be causal: the projection E mixes keys from "
                             "every position into each projected key")
        if key.shape[-2] > self.seq_len:
            raise ValueError(f"key has {key.shape[-2]} positions, but this layer projects "
                             f"sequences of at most seq_len={self.seq_len}: key {shape_str(key)}")
        E, F = self.E.to(query.dtype), None if self.F is None else self.F.to(query.dtype)
        return linformer_attention(query, key, value, E, F, attn_mask,
                                   return_weights=return_weights)

    def extra_repr(self) -> str:
        return f"seq_len={self.seq_len}, k={self.k}, sharing={self.sharing}"
