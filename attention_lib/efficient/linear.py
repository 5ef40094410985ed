"""Linear attention: kernel feature maps, the associativity trick, and attention as an RNN.

Softmax attention weighs value ``v_j`` by ``exp(q_i . k_j)``. Replace that similarity by a
kernel that is an inner product of feature maps, ``sim(q, k) = phi(q) . phi(k)``, and
attention becomes (Katharopoulos et al., 2020, eq. 4-6)

    out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / phi(q_i)^T (sum_j phi(k_j)).

The sums over keys do not depend on the query, so they are computed once: a (F, Dv) matrix
``phi(K)^T V`` and an (F,) vector ``phi(K)^T 1``. Computing ``phi(Q) (phi(K)^T V)`` instead of
``(phi(Q) phi(K)^T) V`` costs O(N F Dv) instead of O(N^2 (F + Dv)), and the (N, N) matrix is
never built. Causal attention keeps running sums instead, which makes it a recurrent network
whose state ``(S_t, z_t)`` has a fixed size:

    S_t = S_{t-1} + phi(k_t) v_t^T,   z_t = z_{t-1} + phi(k_t),
    out_t = phi(q_t)^T S_t / phi(q_t)^T z_t.

Read the other way round, ``S_t`` is a matrix of *fast weights* written by outer products of
keys and values and read by queries: linear attention is a fast weight programmer
(Schlag, Irie and Schmidhuber, 2021).

What is here:

* feature maps: :func:`elu_feature_map` (``elu(x) + 1``, the paper's choice),
  :func:`relu_feature_map`, :func:`identity_feature_map`, or any callable;
* :func:`kernel_attention` -- attention from precomputed features ``phi(Q), phi(K)``,
  non-causal or causal (the causal prefix sums are computed per chunk, see below);
  :func:`linear_attention` applies a feature map first;
* the recurrent form, :func:`kernel_attention_step` and :func:`kernel_attention_recurrent`
  (and :func:`linear_attention_recurrent`), which equals the causal parallel form;
* the gated recurrence ``S_t = g_t S_{t-1} + (1 - g_t) phi(k_t) v_t^T`` (gated RFA, Peng et
  al., 2021): :func:`gated_kernel_attention` (by chunks), :func:`gated_kernel_attention_step`
  and :func:`gated_kernel_attention_recurrent`; chapter 15's gated random-feature layer uses it;
* :func:`linear_attention_weights` -- the dense (Nq, Nk) weights, for pictures and tests only;
* the fast-weight view: :func:`write_memory`, :func:`read_memory` (an outer-product memory,
  with the sum or the delta update rule) and :func:`fast_weight_programmer`;
* multi-head: ``MultiHeadAttention(E, H, attn_fn=linear_attention)`` (``attention_lib.layers``).

**Causal, by chunks.** The obvious causal implementation takes a cumulative sum of the
per-position outer products ``phi(k_t) v_t^T`` and holds an (N, F, Dv) tensor: O(N F Dv)
memory, 64 times the size of the inputs when F = Dv = 64. Here the sequence is cut into
chunks of ``chunk_size`` positions. The states are summed *per chunk* (N/C of them, an
(N/C, F, Dv) tensor, prefix-summed over chunks), and inside a chunk the contribution of the
earlier positions of the same chunk is a small masked (C, C) product. Memory is
O(N F Dv / C + N C) instead of O(N F Dv), and all of it is batched matrix products.
``chunk_size=1`` is the plain cumulative sum.

Masks: ``attn_mask`` as everywhere (bool, True = may attend), but it may only hide whole keys:
broadcastable to (B, H, 1, Nk), like the (B, 1, 1, Nk) of :func:`attention_lib.masks.key_mask`.
Masked keys contribute nothing. A mask that depends on the query cannot be applied without
building the (Nq, Nk) matrix, which is what linear attention avoids, so it raises a
``ValueError`` (:func:`attention_lib.masks.per_key_mask`); the causal mask is ``is_causal``.
Queries with nothing to attend to (all keys masked, or a feature vector orthogonal to every
key's) get zeros, never NaN.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F

from .._validate import check_float, check_int, check_qkv, check_tensor, shape_str
from ..functional import work_dtype
from ..masks import per_key_mask

Tensor = torch.Tensor
FeatureMap = Union[str, Callable[[Tensor], Tensor]]

__all__ = [
    "elu_feature_map", "relu_feature_map", "identity_feature_map", "FEATURE_MAPS",
    "get_feature_map", "LinearAttentionState", "kernel_attention", "linear_attention",
    "kernel_attention_step", "kernel_attention_recurrent", "linear_attention_recurrent",
    "gated_kernel_attention", "gated_kernel_attention_step", "gated_kernel_attention_recurrent",
    "linear_attention_weights", "write_memory", "read_memory", "fast_weight_programmer",
]


# --------------------------------------------------------------------------- feature maps
def elu_feature_map(x: Tensor) -> Tensor:
    """``elu(x) + 1``: positive everywhere, the map of Katharopoulos et al. (2020), eq. 7.

    x: (..., D) -> (..., D). Positive features keep every attention weight positive and the
    normaliser away from zero; ``elu`` rather than ``relu`` keeps a gradient for x < 0.
    """
    return F.elu(x) + 1.0


def relu_feature_map(x: Tensor) -> Tensor:
    """``relu(x)``: non-negative, but a query whose features are all zero attends to nothing
    (its output is zero). x: (..., D) -> (..., D)."""
    return F.relu(x)


def identity_feature_map(x: Tensor) -> Tensor:
    """``phi(x) = x``: the kernel is the plain dot product ``q . k``.

    x: (..., D) -> (..., D). The weights ``q . k_j / sum_l q . k_l`` are well defined only
    when the normaliser stays away from zero, e.g. for non-negative q and k.
    """
    return x


#: The named feature maps accepted by ``feature_map=``.
FEATURE_MAPS = {"elu": elu_feature_map, "relu": relu_feature_map,
                "identity": identity_feature_map}


def get_feature_map(feature_map: FeatureMap) -> Callable[[Tensor], Tensor]:
    """The callable for ``feature_map``: a name in :data:`FEATURE_MAPS` or a callable
    ``(..., D) -> (..., F)`` applied to the last axis."""
    if callable(feature_map):
        return feature_map
    if isinstance(feature_map, str) and feature_map in FEATURE_MAPS:
        return FEATURE_MAPS[feature_map]
    raise ValueError(f"feature_map must be one of {sorted(FEATURE_MAPS)} or a callable, got "
                     f"{feature_map!r}")


# --------------------------------------------------------------------------- validation
def _check_features(name: str, phi: Tensor, x_shape) -> None:
    if (not isinstance(phi, Tensor) or phi.dim() != 4
            or tuple(phi.shape[:-1]) != tuple(x_shape[:-1])):
        got = shape_str(phi) if isinstance(phi, Tensor) else type(phi).__name__
        raise ValueError(f"feature_map must map {name} {shape_str(x_shape)} to "
                         f"{shape_str(tuple(x_shape[:-1]) + ('F',))}, got {got}")


def _apply_key_mask(phi_k: Tensor, keep: Optional[Tensor]) -> Tensor:
    """Zero the features of masked keys: (B, H, Nk, F) with ``keep`` (B, H, Nk) from
    :func:`~attention_lib.masks.per_key_mask`."""
    if keep is None:
        return phi_k
    return torch.where(keep[..., None], phi_k, torch.zeros((), dtype=phi_k.dtype,
                                                           device=phi_k.device))


def _divide(num: Tensor, den: Tensor, eps: float) -> Tensor:
    """num / (den + eps), and 0 where that denominator is exactly 0 (nothing attended)."""
    den = den + eps
    return num / torch.where(den == 0, torch.ones_like(den), den)


# --------------------------------------------------------------------------- the state
class LinearAttentionState(NamedTuple):
    """The recurrent state of causal linear attention after t positions.

    kv: (B, H, F, Dv) ``S_t = sum_{j<=t} phi(k_j) v_j^T``, the fast weights.
    k_sum: (B, H, F) ``z_t = sum_{j<=t} phi(k_j)``, the normaliser.
    Its size does not depend on t: F (Dv + 1) numbers per batch element and head.
    """
    kv: Tensor
    k_sum: Tensor


# --------------------------------------------------------------------------- parallel forms
def _noncausal(phi_q: Tensor, phi_k: Tensor, v: Tensor):
    """Returns num (B,H,Nq,Dv), den (B,H,Nq), kv (B,H,F,Dv), k_sum (B,H,F)."""
    kv = phi_k.transpose(-2, -1) @ v  # (B, H, F, Dv)
    k_sum = phi_k.sum(dim=-2)  # (B, H, F)
    num = phi_q @ kv  # (B, H, Nq, Dv)
    den = (phi_q @ k_sum.unsqueeze(-1)).squeeze(-1)  # (B, H, Nq)
    return num, den, kv, k_sum


def _causal_chunked(phi_q: Tensor, phi_k: Tensor, v: Tensor, chunk: int):
    """Causal sums by chunks: returns num (B,H,N,Dv), den (B,H,N), final kv and k_sum."""
    b, h, n, f = phi_q.shape
    dv = v.shape[-1]
    c = min(chunk, n)
    pad = (-n) % c
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # (B, H, N, Dv + 1): last = z
    if pad:  # zero features: padded keys add nothing, padded queries are cut off below
        phi_q = F.pad(phi_q, (0, 0, 0, pad))
        phi_k = F.pad(phi_k, (0, 0, 0, pad))
        v1 = F.pad(v1, (0, 0, 0, pad))
    nc = (n + pad) // c
    qc = phi_q.reshape(b, h, nc, c, f)  # (B, H, nc, C, F)
    kc = phi_k.reshape(b, h, nc, c, f)  # (B, H, nc, C, F)
    vc = v1.reshape(b, h, nc, c, dv + 1)  # (B, H, nc, C, Dv + 1)
    chunk_kv = kc.transpose(-2, -1) @ vc  # (B, H, nc, F, Dv + 1): one state per chunk
    total = chunk_kv.sum(dim=2)  # (B, H, F, Dv + 1)
    # exclusive prefix sum over chunks: the state before chunk c is the sum over chunks < c
    before = F.pad(torch.cumsum(chunk_kv[:, :, :-1], dim=2), (0, 0, 0, 0, 1, 0))
    del chunk_kv  # before: (B, H, nc, F, Dv + 1)
    out = qc @ before  # (B, H, nc, C, Dv + 1): earlier chunks
    del before
    scores = qc @ kc.transpose(-2, -1)  # (B, H, nc, C, C)
    tril = torch.ones(c, c, dtype=torch.bool, device=scores.device).tril()
    out += scores.masked_fill_(~tril, 0.0) @ vc  # this chunk, keys <= query (in place: the
    # matmuls save their inputs, not their outputs, so autograd allows it)
    out = out.reshape(b, h, nc * c, dv + 1)[:, :, :n]  # (B, H, N, Dv + 1)
    return out[..., :dv], out[..., dv], total[..., :dv], total[..., dv]


def kernel_attention(phi_q: Tensor, phi_k: Tensor, value: Tensor,
                     attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                     eps: float = 1e-6, chunk_size: int = 64, return_state: bool = False):
    """Attention with the kernel ``phi(q) . phi(k)``, from precomputed features, in O(N).

    phi_q: (B, H, Nq, F)   phi_k: (B, H, Nk, F)   value: (B, H, Nk, Dv)
    attn_mask: bool broadcastable to (B, H, 1, Nk), True = may attend (whole keys only).
    is_causal: query i sees keys j <= i (needs Nq == Nk).
    eps: added to the normaliser, as in the reference implementation of Katharopoulos et al.
    chunk_size: positions per chunk of the causal prefix sums (memory O(N F Dv / C + N C));
        1 gives the plain cumulative sum.

    Returns (B, H, Nq, Dv); with ``return_state`` also the :class:`LinearAttentionState` after
    all keys (what a decoder continues from). ``out_i = phi_q[i] @ S / (phi_q[i] . z + eps)``,
    with zeros where that denominator is exactly 0. Half-precision inputs are computed in
    float32 and the result cast back.

    Katharopoulos et al. (2020), eq. 5 (non-causal) and eq. 9 (causal, with prefix sums).
    Equivalent code (builds the (Nq, Nk) matrix, see :func:`linear_attention_weights`):
    ``A = phi_q @ phi_k.mT`` (``.tril()`` if causal), then
    ``(A @ value) / (A.sum(-1, keepdim=True) + eps)``.
    """
    keep = _check_kernel_args(phi_q, phi_k, value, attn_mask, is_causal, eps, chunk_size,
                              names=("phi_q", "phi_k", "value"))
    return _kernel_attention(phi_q, phi_k, value, keep, is_causal, eps, chunk_size, return_state)


def _check_kernel_args(query, key, value, attn_mask, is_causal, eps, chunk_size,
                       names=("query", "key", "value")) -> Optional[Tensor]:
    """The checks of every kernel attention; returns the per-key mask (B, H, Nk) or None."""
    check_qkv(query, key, value, names=names)
    keep = per_key_mask(attn_mask, query, key)
    check_float("eps", eps)
    check_int("chunk_size", chunk_size)
    if is_causal and query.shape[-2] != key.shape[-2]:
        raise ValueError(f"is_causal needs as many queries as keys: {names[0]} "
                         f"{shape_str(query)} vs {names[1]} {shape_str(key)}")
    return keep


def _kernel_attention(phi_q, phi_k, value, keep, is_causal, eps, chunk_size, return_state):
    """:func:`kernel_attention` on validated inputs, ``keep`` (B, H, Nk) or None."""
    out_dtype = value.dtype
    work = work_dtype(value.dtype)
    phi_q, phi_k, v = phi_q.to(work), phi_k.to(work), value.to(work)
    bshape = torch.broadcast_shapes(phi_q.shape[:2], phi_k.shape[:2], v.shape[:2])
    phi_k = _apply_key_mask(phi_k, keep)
    phi_q = phi_q.expand(*bshape, *phi_q.shape[2:])
    phi_k = phi_k.expand(*bshape, *phi_k.shape[2:])
    v = v.expand(*bshape, *v.shape[2:])
    if is_causal:
        num, den, kv, k_sum = _causal_chunked(phi_q, phi_k, v, chunk_size)
    else:
        num, den, kv, k_sum = _noncausal(phi_q, phi_k, v)
    out = _divide(num, den.unsqueeze(-1), eps).to(out_dtype)  # (B, H, Nq, Dv)
    if return_state:
        return out, LinearAttentionState(kv, k_sum)
    return out


def linear_attention(query: Tensor, key: Tensor, value: Tensor,
                     attn_mask: Optional[Tensor] = None, *, is_causal: bool = False,
                     feature_map: FeatureMap = "elu", eps: float = 1e-6, chunk_size: int = 64,
                     return_state: bool = False):
    """Linear attention of Katharopoulos et al. (2020): ``phi(Q) (phi(K)^T V)`` normalised.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   value: (B, H, Nk, Dv)
    attn_mask: bool broadcastable to (B, H, 1, Nk), True = may attend (whole keys only).
    feature_map: ``"elu"`` (elu + 1, the paper's), ``"relu"``, ``"identity"``, or a callable
        (..., D) -> (..., F) applied to queries and keys alike.
    is_causal, eps, chunk_size, return_state: as in :func:`kernel_attention`.

    Returns (B, H, Nq, Dv) (and the final state with ``return_state``). Cost O(N F Dv) time,
    O(N (F + Dv)) memory; the (Nq, Nk) matrix is never built.

    "Transformers are RNNs: Fast autoregressive transformers with linear attention",
    Katharopoulos, Vyas, Pappas and Fleuret (2020), eq. 4-9.
    """
    check_qkv(query, key, value)
    fm = get_feature_map(feature_map)
    phi_q, phi_k = fm(query), fm(key)
    _check_features("query", phi_q, query.shape)
    _check_features("key", phi_k, key.shape)
    return kernel_attention(phi_q, phi_k, value, attn_mask, is_causal=is_causal, eps=eps,
                            chunk_size=chunk_size, return_state=return_state)


def linear_attention_weights(query: Tensor, key: Tensor,
                             attn_mask: Optional[Tensor] = None, *,
                             is_causal: bool = False, feature_map: FeatureMap = "elu",
                             eps: float = 0.0) -> Tensor:
    """The (Nq, Nk) weights that linear attention applies implicitly -- for pictures and tests.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   ->   (B, H, Nq, Nk)
    ``A_ij = phi(q_i) . phi(k_j) / (sum_l phi(q_i) . phi(k_l) + eps)`` over the visible keys,
    so that ``linear_attention(q, k, v) == A @ v``. Builds the full matrix: O(Nq Nk) memory.
    """
    check_tensor("query", query, ndim=4, layout="(B, H, Nq, D)")
    check_tensor("key", key, ndim=4, layout="(B, H, Nk, D)")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key must have the same last dim: query {shape_str(query)} "
                         f"vs key {shape_str(key)}")
    keep = per_key_mask(attn_mask, query, key)
    check_float("eps", eps)
    fm = get_feature_map(feature_map)
    phi_q, phi_k = fm(query), fm(key)
    _check_features("query", phi_q, query.shape)
    _check_features("key", phi_k, key.shape)
    a = phi_q @ _apply_key_mask(phi_k, keep).transpose(-2, -1)  # (B, H, Nq, Nk)
    if is_causal:
        a = a.tril()
    return _divide(a, a.sum(dim=-1, keepdim=True), eps)


# --------------------------------------------------------------------------- recurrent form
def _step_shapes(phi_q, phi_k, v):
    for name, t, lay in (("phi_q", phi_q, "(B, H, F)"), ("phi_k", phi_k, "(B, H, F)"),
                         ("value", v, "(B, H, Dv)")):
        check_tensor(name, t, ndim=3, layout=lay)
    if phi_q.shape[-1] != phi_k.shape[-1]:
        raise ValueError(f"phi_q and phi_k must have the same feature dim F: phi_q "
                         f"{shape_str(phi_q)} vs phi_k {shape_str(phi_k)}")


def _step(phi_q, phi_k, value, state, eps, decay=None):
    """The RNN step shared by the plain and the gated recurrence: write ``phi_k v^T`` (phi_k
    already masked and scaled by the write strength), after decaying the state by ``decay``
    (B, H, 1) when given, then read with phi_q. Computes in the work dtype of ``value``."""
    work = work_dtype(value.dtype)
    phi_q, phi_k, v = phi_q.to(work), phi_k.to(work), value.to(work)
    write = phi_k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, F, Dv)
    if state is None:
        kv, k_sum = write, phi_k
    elif decay is None:
        kv, k_sum = state.kv + write, state.k_sum + phi_k
    else:
        kv = decay.unsqueeze(-1) * state.kv + write
        k_sum = decay * state.k_sum + phi_k
    num = (phi_q.unsqueeze(-2) @ kv).squeeze(-2)  # (B, H, Dv)
    den = (phi_q * k_sum).sum(-1, keepdim=True)  # (B, H, 1)
    return _divide(num, den, eps).to(value.dtype), LinearAttentionState(kv, k_sum)


def kernel_attention_step(phi_q: Tensor, phi_k: Tensor, value: Tensor,
                          state: Optional[LinearAttentionState] = None, *,
                          eps: float = 1e-6, key_mask: Optional[Tensor] = None):
    """One step of causal linear attention as an RNN: write (k_t, v_t), then read with q_t.

    phi_q: (B, H, F)   phi_k: (B, H, F)   value: (B, H, Dv)   -- one position t.
    state: the :class:`LinearAttentionState` after t - 1 positions (None: zeros).
    key_mask: bool (B, H) or broadcastable, True = this key is real (False: not written).

        S_t = S_{t-1} + phi(k_t) v_t^T,   z_t = z_{t-1} + phi(k_t),
        out_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + eps).

    Returns ``(out_t (B, H, Dv), new state)``. Time and memory per step are O(F Dv), whatever t.
    Katharopoulos et al. (2020), eq. 16-20 ("Transformers are RNNs").
    """
    _step_shapes(phi_q, phi_k, value)
    phi_k = phi_k.to(work_dtype(value.dtype))
    if key_mask is not None:
        phi_k = phi_k * key_mask.to(phi_k.dtype).unsqueeze(-1)
    return _step(phi_q, phi_k, value, state, eps)


def _recurrent(phi_q, phi_k, value, attn_mask, gate, eps, state, return_state):
    """The loop of the recurrent forms: one step per position, gated when ``gate`` is given.
    phi_q, phi_k: (B, H, N, F)   value: (B, H, N, Dv)   gate: None or (B, H, N)."""
    check_qkv(phi_q, phi_k, value, names=("phi_q", "phi_k", "value"))
    keep = per_key_mask(attn_mask, phi_q, phi_k)
    n = phi_q.shape[-2]
    if phi_k.shape[-2] != n:
        raise ValueError(f"the recurrent form needs as many queries as keys: phi_q "
                         f"{shape_str(phi_q)} vs phi_k {shape_str(phi_k)}")
    bshape = tuple(torch.broadcast_shapes(phi_q.shape[:2], phi_k.shape[:2], value.shape[:2]))
    if gate is not None:
        _check_gate(gate, bshape + (n,))
        gate = gate.expand(*bshape, n)
    phi_q = phi_q.expand(*bshape, *phi_q.shape[2:])
    phi_k = phi_k.expand(*bshape, *phi_k.shape[2:])
    value = value.expand(*bshape, *value.shape[2:])
    outs = []
    for t in range(n):
        args = (phi_q[:, :, t], phi_k[:, :, t], value[:, :, t])
        mask_t = None if keep is None else keep[:, :, t]
        if gate is None:
            out_t, state = kernel_attention_step(*args, state, eps=eps, key_mask=mask_t)
        else:
            out_t, state = gated_kernel_attention_step(*args, gate[:, :, t], state, eps=eps,
                                                       key_mask=mask_t)
        outs.append(out_t)
    out = torch.stack(outs, dim=-2)  # (B, H, N, Dv)
    return (out, state) if return_state else out


def kernel_attention_recurrent(phi_q: Tensor, phi_k: Tensor, value: Tensor,
                               attn_mask: Optional[Tensor] = None, *,
                               eps: float = 1e-6, state: Optional[LinearAttentionState] = None,
                               return_state: bool = False):
    """Causal kernel attention computed one position at a time (a Python loop over N).

    phi_q: (B, H, N, F)   phi_k: (B, H, N, F)   value: (B, H, N, Dv)
    attn_mask: bool broadcastable to (B, H, 1, N), True = may attend (whole keys only).
    state: start from this state (e.g. after a prompt) instead of zeros.
    Returns (B, H, N, Dv) (and the final state with ``return_state``); equals
    ``kernel_attention(..., is_causal=True)`` up to rounding. Slow: it shows the RNN.
    """
    return _recurrent(phi_q, phi_k, value, attn_mask, None, eps, state, return_state)


def linear_attention_recurrent(query: Tensor, key: Tensor, value: Tensor,
                               attn_mask: Optional[Tensor] = None, *,
                               feature_map: FeatureMap = "elu", eps: float = 1e-6,
                               state: Optional[LinearAttentionState] = None,
                               return_state: bool = False):
    """Causal linear attention as an RNN: :func:`kernel_attention_recurrent` after the
    feature map. query, key: (B, H, N, D)   value: (B, H, N, Dv)   ->   (B, H, N, Dv)."""
    check_qkv(query, key, value)
    fm = get_feature_map(feature_map)
    phi_q, phi_k = fm(query), fm(key)
    _check_features("query", phi_q, query.shape)
    _check_features("key", phi_k, key.shape)
    return kernel_attention_recurrent(phi_q, phi_k, value, attn_mask, eps=eps,
                                      state=state, return_state=return_state)


# --------------------------------------------------------------------------- gated recurrence
def _check_gate(gate: Tensor, shape) -> None:
    check_tensor("gate", gate, ndim=3, layout="(B, H, N)")
    if not all(g in (1, s) for g, s in zip(gate.shape, shape)):
        raise ValueError(f"gate must be (B, H, N) = {shape_str(shape)} (or broadcastable), "
                         f"got {shape_str(gate)}")
    if bool(((gate < 0) | (gate > 1) | torch.isnan(gate)).any()):
        raise ValueError(f"gate values must lie in [0, 1] (e.g. a sigmoid), got min "
                         f"{gate.min().item():.3g} and max {gate.max().item():.3g}")


def _segsum(a: Tensor) -> Tensor:
    """``out[..., t, j] = sum_{l=j+1}^{t} a[..., l]`` for j <= t, -inf above: (..., C, C).

    Summed directly (masked cumulative sum), not as a difference of cumulative sums, so there
    is no cancellation and ``a = -inf`` (a gate of exactly 0) gives 0 weight, not NaN.
    """
    c = a.shape[-1]
    x = a.unsqueeze(-1).expand(*a.shape, c)  # x[..., i, j] = a_i
    strict = torch.ones(c, c, dtype=torch.bool, device=a.device).tril(-1)
    s = x.masked_fill(~strict, 0.0).cumsum(dim=-2)  # sum over j < i' <= i
    return s.masked_fill(~strict.logical_or(torch.eye(c, dtype=torch.bool, device=a.device)),
                         float("-inf"))


def _gate_terms(gate: Tensor, keep: Optional[Tensor], shape, dtype):
    """log g (decay, 0 at masked keys) and 1 - g (write strength, 0 at masked keys);
    keep: (B, H, N) or None."""
    g = gate.to(dtype).expand(*shape)  # (B, H, N)
    write = 1.0 - g
    if keep is not None:
        g = torch.where(keep, g, torch.ones_like(g))
        write = torch.where(keep, write, torch.zeros_like(write))
    return torch.log(g), write


def gated_kernel_attention(phi_q: Tensor, phi_k: Tensor, value: Tensor, gate: Tensor,
                           attn_mask: Optional[Tensor] = None, *, eps: float = 0.0,
                           chunk_size: int = 64,
                           state: Optional[LinearAttentionState] = None,
                           return_state: bool = False):
    """Causal kernel attention whose state decays with a gate (gated RFA), in parallel form.

    phi_q, phi_k: (B, H, N, F)   value: (B, H, N, Dv)   gate: (B, H, N) in [0, 1].
    attn_mask: bool broadcastable to (B, H, 1, N), True = real key: a masked position neither writes
    nor decays the state (its gate is taken as 1).

        S_t = g_t S_{t-1} + (1 - g_t) phi(k_t) v_t^T,   z_t = g_t z_{t-1} + (1 - g_t) phi(k_t)
        out_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + eps)

    Unrolled, key j reaches query t >= j with weight ``(1 - g_j) prod_{l=j+1}^{t} g_l``.
    Computed by chunks of ``chunk_size``: inside a chunk a (C, C) matrix of those decays
    (from a segment sum of log g, no cancellation), between chunks a scan over the N / C
    chunk states. Equals :func:`gated_kernel_attention_recurrent` (tested).
    Peng et al. (2021), section 3.2, eq. 7.
    """
    keep = _check_kernel_args(phi_q, phi_k, value, attn_mask, True, eps, chunk_size,
                              names=("phi_q", "phi_k", "value"))  # gated attention is causal
    bshape = tuple(torch.broadcast_shapes(phi_q.shape[:2], phi_k.shape[:2], value.shape[:2]))
    n = phi_q.shape[-2]
    _check_gate(gate, bshape + (n,))
    out_dtype = value.dtype
    work = work_dtype(value.dtype)
    phi_q = phi_q.to(work).expand(*bshape, *phi_q.shape[2:])
    phi_k = phi_k.to(work).expand(*bshape, *phi_k.shape[2:])
    v = value.to(work).expand(*bshape, *value.shape[2:])
    log_g, write = _gate_terms(gate, keep, bshape + (n,), work)
    b, h, _, f = phi_q.shape
    dv = v.shape[-1]
    c = min(chunk_size, n)
    pad = (-n) % c
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # (B, H, N, Dv + 1)
    if pad:
        phi_q, phi_k = F.pad(phi_q, (0, 0, 0, pad)), F.pad(phi_k, (0, 0, 0, pad))
        v1 = F.pad(v1, (0, 0, 0, pad))
        log_g, write = F.pad(log_g, (0, pad)), F.pad(write, (0, pad))
    nc = (n + pad) // c
    qc = phi_q.reshape(b, h, nc, c, f)  # (B, H, nc, C, F)
    kc = phi_k.reshape(b, h, nc, c, f)  # (B, H, nc, C, F)
    vc = v1.reshape(b, h, nc, c, dv + 1)  # (B, H, nc, C, Dv + 1)
    a = log_g.reshape(b, h, nc, c)  # (B, H, nc, C)
    w = write.reshape(b, h, nc, c)  # (B, H, nc, C)
    seg = _segsum(a)  # (B, H, nc, C, C): log decay from key j to query t
    decay_in = torch.exp(seg) * w.unsqueeze(-2)  # (B, H, nc, C, C), 0 above the diagonal
    out = ((qc @ kc.transpose(-2, -1)) * decay_in) @ vc  # this chunk
    to_end = torch.exp(seg[..., -1, :]) * w  # (B, H, nc, C): key j -> end of its chunk
    chunk_states = (kc * to_end.unsqueeze(-1)).transpose(-2, -1) @ vc  # (B, H, nc, F, Dv + 1)
    from_start = torch.exp(torch.cumsum(a, dim=-1))  # (B, H, nc, C): chunk start -> query t
    chunk_decay = from_start[..., -1]  # (B, H, nc)
    s = (torch.zeros(b, h, f, dv + 1, dtype=work, device=v.device) if state is None else
         torch.cat([state.kv, state.k_sum.unsqueeze(-1)], dim=-1).to(work).expand(b, h, f, dv + 1))
    befores = []
    for i in range(nc):  # scan over chunks: O(N / C) small steps
        befores.append(s)
        s = chunk_decay[:, :, i, None, None] * s + chunk_states[:, :, i]
    before = torch.stack(befores, dim=2)  # (B, H, nc, F, Dv + 1)
    out = out + from_start.unsqueeze(-1) * (qc @ before)  # earlier chunks, decayed
    out = out.reshape(b, h, nc * c, dv + 1)[:, :, :n]  # (B, H, N, Dv + 1)
    res = _divide(out[..., :dv], out[..., dv:], eps).to(out_dtype)
    if return_state:
        return res, LinearAttentionState(s[..., :dv], s[..., dv])
    return res


def gated_kernel_attention_step(phi_q: Tensor, phi_k: Tensor, value: Tensor, gate: Tensor,
                                state: Optional[LinearAttentionState] = None, *,
                                eps: float = 0.0, key_mask: Optional[Tensor] = None):
    """One step of gated RFA as an RNN.

    phi_q, phi_k: (B, H, F)   value: (B, H, Dv)   gate: (B, H) in [0, 1]
    state: :class:`LinearAttentionState` (None: zeros).
    key_mask: bool (B, H), False = padding: the state passes through unchanged.
    Returns ``(out_t (B, H, Dv), new state)``.
    """
    _step_shapes(phi_q, phi_k, value)
    check_tensor("gate", gate, ndim=2, layout="(B, H)")
    work = work_dtype(value.dtype)
    g = gate.to(work)
    wr = 1.0 - g
    if key_mask is not None:
        g = torch.where(key_mask, g, torch.ones_like(g))
        wr = torch.where(key_mask, wr, torch.zeros_like(wr))
    return _step(phi_q, wr[..., None] * phi_k.to(work), value, state, eps, decay=g[..., None])


def gated_kernel_attention_recurrent(phi_q: Tensor, phi_k: Tensor, value: Tensor, gate: Tensor,
                                     attn_mask: Optional[Tensor] = None, *,
                                     eps: float = 0.0,
                                     state: Optional[LinearAttentionState] = None,
                                     return_state: bool = False):
    """Gated RFA one position at a time (a Python loop): the definition, for testing.

    Same arguments and result as :func:`gated_kernel_attention`.
    """
    return _recurrent(phi_q, phi_k, value, attn_mask, gate, eps, state, return_state)


# --------------------------------------------------------------------------- fast weights
def _check_rule(rule: str) -> None:
    if rule not in ("sum", "delta"):
        raise ValueError(f"rule must be 'sum' or 'delta', got {rule!r}")


def write_memory(keys: Tensor, values: Tensor, *, rule: str = "sum",
                 beta: Union[float, Tensor] = 1.0, memory: Optional[Tensor] = None) -> Tensor:
    """Write key-value pairs into an outer-product memory (fast weights), in order.

    keys: (..., N, Dk)   values: (..., N, Dv)   memory: (..., Dv, Dk) to start from (zeros).
    rule ``"sum"``: ``W <- W + v k^T`` (Hebbian; what linear attention does).
    rule ``"delta"``: ``W <- W + beta (v - W k) k^T`` -- first read what the memory holds
    for ``k``, then move it towards ``v`` (Schlag et al., 2021, eq. 23-24; the delta rule of
    Widrow and Hoff). With unit-norm keys and ``beta = 1`` a write *replaces* the value
    stored under that key instead of adding to it. ``beta``: float or (..., N) tensor.

    Returns the memory W: (..., Dv, Dk). Reading is ``W q`` (:func:`read_memory`).
    Schlag, Irie and Schmidhuber (2021), "Linear transformers are secretly fast weight
    programmers", section 4.
    """
    check_tensor("keys", keys, layout="(..., N, Dk)")
    check_tensor("values", values, layout="(..., N, Dv)")
    _check_rule(rule)
    if keys.dim() < 2 or values.dim() < 2 or keys.shape[-2] != values.shape[-2]:
        raise ValueError(f"keys (..., N, Dk) and values (..., N, Dv) must have the same N: "
                         f"keys {shape_str(keys)} vs values {shape_str(values)}")
    batch = torch.broadcast_shapes(keys.shape[:-2], values.shape[:-2])
    dv, dk = values.shape[-1], keys.shape[-1]
    if memory is None:
        memory = keys.new_zeros(*batch, dv, dk)
    else:
        check_tensor("memory", memory, layout="(..., Dv, Dk)")
        if memory.shape[-2:] != (dv, dk):
            raise ValueError(f"memory must be (..., Dv, Dk) = (..., {dv}, {dk}), got "
                             f"{shape_str(memory)}")
    if rule == "sum":
        return memory + values.transpose(-2, -1) @ keys  # sum_j v_j k_j^T: (..., Dv, Dk)
    beta_t = torch.as_tensor(beta, dtype=keys.dtype, device=keys.device)
    if beta_t.dim() > 0:
        beta_t = beta_t.expand(*batch, keys.shape[-2])
    w = memory
    for t in range(keys.shape[-2]):
        k_t, v_t = keys[..., t, :], values[..., t, :]  # (..., Dk), (..., Dv)
        b_t = beta_t if beta_t.dim() == 0 else beta_t[..., t, None]
        old = (w @ k_t.unsqueeze(-1)).squeeze(-1)  # (..., Dv): what W holds for k_t
        w = w + (b_t * (v_t - old)).unsqueeze(-1) * k_t.unsqueeze(-2)
    return w


def read_memory(memory: Tensor, queries: Tensor) -> Tensor:
    """Read an outer-product memory: ``W q`` for each query.

    memory: (..., Dv, Dk)   queries: (..., Nq, Dk)   ->   (..., Nq, Dv)
    """
    check_tensor("memory", memory, layout="(..., Dv, Dk)")
    check_tensor("queries", queries, layout="(..., Nq, Dk)")
    if memory.dim() < 2 or queries.dim() < 2 or memory.shape[-1] != queries.shape[-1]:
        raise ValueError(f"memory (..., Dv, Dk) and queries (..., Nq, Dk) must share Dk: "
                         f"memory {shape_str(memory)} vs queries {shape_str(queries)}")
    return queries @ memory.transpose(-2, -1)  # (..., Nq, Dv)


def fast_weight_programmer(query: Tensor, key: Tensor, value: Tensor, *,
                           feature_map: FeatureMap = "elu", rule: str = "sum",
                           beta: Union[float, Tensor] = 1.0, normalize: bool = True,
                           eps: float = 1e-6, return_memory: bool = False):
    """Causal linear attention written as a fast weight programmer (a loop over positions).

    query, key: (B, H, N, D)   value: (B, H, N, Dv)   beta: float or (B, H, N).
    At each step t the "slow" network's key and value *program* the fast weights W_t
    (Dv, F), which then map the query:

        rule "sum":   W_t = W_{t-1} + v_t phi(k_t)^T
        rule "delta": W_t = W_{t-1} + beta_t (v_t - W_{t-1} phi(k_t)) phi(k_t)^T
        y_t = W_t phi(q_t)

    normalize: with the sum rule, divide by ``z_t . phi(q_t)`` (z_t = sum of phi(k_j)), which
    makes this *exactly* causal :func:`linear_attention`; with the delta rule, normalise
    phi(k) and phi(q) to sum 1 instead, as Schlag et al. do (their "sum normalisation").

    Returns (B, H, N, Dv), and the final W (B, H, Dv, F) with ``return_memory``.
    Schlag, Irie and Schmidhuber (2021), eq. 13-15 (sum) and 23-26 (delta rule).
    """
    check_qkv(query, key, value)
    _check_rule(rule)
    check_float("eps", eps)
    fm = get_feature_map(feature_map)
    phi_q, phi_k = fm(query), fm(key)
    _check_features("query", phi_q, query.shape)
    _check_features("key", phi_k, key.shape)
    bshape = torch.broadcast_shapes(phi_q.shape[:2], phi_k.shape[:2], value.shape[:2])
    phi_q = phi_q.expand(*bshape, *phi_q.shape[2:])
    phi_k = phi_k.expand(*bshape, *phi_k.shape[2:])
    value = value.expand(*bshape, *value.shape[2:])
    if rule == "delta" and normalize:
        phi_q = phi_q / phi_q.sum(-1, keepdim=True)
        phi_k = phi_k / phi_k.sum(-1, keepdim=True)
    n, f, dv = phi_q.shape[-2], phi_q.shape[-1], value.shape[-1]
    beta_t = torch.as_tensor(beta, dtype=value.dtype, device=value.device)
    w = value.new_zeros(*bshape, dv, f)  # (B, H, Dv, F)
    z = value.new_zeros(*bshape, f)  # (B, H, F)
    outs = []
    for t in range(n):
        k_t, v_t, q_t = phi_k[:, :, t], value[:, :, t], phi_q[:, :, t]
        if rule == "sum":
            w = w + v_t.unsqueeze(-1) * k_t.unsqueeze(-2)  # + v_t phi(k_t)^T
        else:
            b_t = beta_t if beta_t.dim() == 0 else beta_t.expand(*bshape, n)[:, :, t, None]
            old = (w @ k_t.unsqueeze(-1)).squeeze(-1)  # (B, H, Dv)
            w = w + (b_t * (v_t - old)).unsqueeze(-1) * k_t.unsqueeze(-2)
        y = (w @ q_t.unsqueeze(-1)).squeeze(-1)  # (B, H, Dv)
        if rule == "sum" and normalize:
            z = z + k_t
            y = _divide(y, (z * q_t).sum(-1, keepdim=True), eps)
        outs.append(y)
    out = torch.stack(outs, dim=-2)  # (B, H, N, Dv)
    return (out, w) if return_memory else out
