"""Learned sparsity by clustering: LSH buckets (Reformer) and k-means routing (Routing Transformer).

A fixed sparse pattern (chapter 11) decides in advance which keys a query may see. Softmax
attention is dominated by the keys most similar to the query, so a better pattern puts a
query together with the keys *it is close to*. Two ways to find them without computing all
N^2 scores:

* **angular LSH** (Reformer): a random rotation R (D, b/2) hashes x to
  ``argmax([x R, -x R])``, one of b buckets; vectors at a small angle usually share a bucket.
  Several independent rounds (``n_hashes``) catch the pairs one round splits.
* **k-means routing** (Routing Transformer): centroids learned by (mini-batch, spherical)
  k-means; every query and key is routed to the clusters whose centroid it is nearest to.

As in :mod:`~attention_lib.efficient.sparse`, every pattern comes twice:

* a **dense mask** ``(B, H, N, N)`` bool (True = may attend), for pictures and tests:
  :func:`lsh_mask`, :func:`routing_mask`;
* the **blocked implementation**, which sorts the tokens by bucket (or gathers each
  cluster's members), cuts them into equal blocks and attends only inside the blocks:
  O(N chunk) time and memory, never an (N, N) tensor. :func:`lsh_attention` equals
  ``reference_attention(qk, normalize(qk), v, lsh_mask(...))``, :func:`routing_attention`
  equals ``reference_attention(q, k, v, routing_mask(...))``.

When a query meets the same key in several rounds (LSH) or clusters (routing), the key must
count once. Each block's scores for such a pair are lowered by log(count), the number of
blocks in which the pair meets, and the blocks' results are merged with logsumexp weights
(Kitaev et al., 2020, section 2, "multi-round LSH attention"). The result is exactly the
softmax over the *union* of the keys the query met.

References: Kitaev, Kaiser & Levskaya (2020), "Reformer: The Efficient Transformer";
Roy, Saffar, Vaswani & Grangier (2021), "Efficient Content-Based Sparse Attention with Routing
Transformers"; Andoni et al. (2015) and Charikar (2002) for angular LSH.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import (
    check_device,
    check_float,
    check_int,
    check_qkv,
    check_scale,
    check_tensor,
    shape_str,
)
from ..functional import masked_softmax, merge_by_lse, upcast
from ..layers import MultiHeadAttention
from ..masks import causal_mask

Tensor = torch.Tensor

__all__ = [
    # LSH (Reformer)
    "random_rotations", "lsh_hash", "hyperplane_collision_probability", "lsh_mask",
    "lsh_attention", "shared_qk_keys", "LSHBuckets", "lsh_self_attention",
    # k-means routing (Routing Transformer)
    "init_centroids", "route", "kmeans_update", "kmeans", "routing_topk", "routing_mask",
    "routing_attention", "RoutingCentroids",
]


# --------------------------------------------------------------------------- helpers
def _take(x: Tensor, ids: Tensor) -> Tensor:
    """x: (B, H, N, ...), ids: (B, H, ...) long -> x[b, h, ids[b, h, ...]]: (B, H, ..., ...)."""
    b, h = x.shape[:2]
    bi = torch.arange(b, device=x.device).view(b, *([1] * (ids.dim() - 1)))
    hi = torch.arange(h, device=x.device).view(1, h, *([1] * (ids.dim() - 2)))
    return x[bi, hi, ids]


def _append_sentinel(x: Tensor, value=0) -> Tensor:
    """Pad axis 2 of (B, H, N, ...) with one extra entry (index N), for padded slots."""
    pad = [0, 0] * (x.dim() - 3) + [0, 1]
    return F.pad(x, pad, value=value)


def _blocks_attend(qs: Tensor, ks: Tensor, vs: Tensor, allowed: Tensor,
                   count: Optional[Tensor] = None):
    """Softmax inside each block, with duplicate pairs down-weighted by log(count).

    qs: (..., M, D) scaled queries; ks: (..., S, D); vs: (..., S, Dv); allowed: (..., M, S)
    bool; count: None (every pair once) or (..., M, S) >= 1 where allowed. Returns
    (out (..., M, Dv), lse (..., M)); rows with nothing allowed have out = 0, lse = -inf.
    """
    s = qs @ ks.transpose(-2, -1)  # (..., M, S)
    if count is not None:  # log(count) by table lookup: one pass instead of three
        log_table = torch.arange(int(count.max()) + 1, device=s.device, dtype=s.dtype).log()
        s = s - log_table.clamp_min(0)[count.int()]
    weights, lse = masked_softmax(s, allowed, return_lse=True)
    return weights @ vs, lse  # (..., M, Dv), (..., M)


def _merge(out: Tensor, lse: Tensor, ids: Tensor, n: int) -> Tensor:
    """Merge the block results of each query: out (B, H, E, Dv), lse and ids (B, H, E), ids
    the query positions in [0, n] (n = padding, dropped). Returns (B, H, n, Dv) and the
    merged lse (B, H, n), -inf for a query with no usable entry (its output is zeros)."""
    merged, lse = merge_by_lse(out, lse, index=ids, size=n + 1)
    return merged[:, :, :n], lse[:, :, :n]


# =========================================================================== LSH (Reformer)
def random_rotations(dim: int, n_buckets: int, *, n_hashes: int = 1,
                     generator: Optional[torch.Generator] = None, device=None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """The random rotations of angular LSH: (n_hashes, dim, n_buckets // 2), i.i.d. N(0, 1).

    One round hashes x to ``argmax([x R, -x R])`` (see :func:`lsh_hash`). ``n_buckets`` must be
    even, or 1 (every vector in bucket 0: the rotation is empty). Drawn on the CPU from
    ``generator`` (the same numbers on every device), then moved to ``device``.
    Kitaev et al. (2020), section 2, after Andoni et al. (2015).
    """
    check_int("dim", dim, 1)
    check_int("n_buckets", n_buckets, 1)
    check_int("n_hashes", n_hashes, 1)
    if n_buckets != 1 and n_buckets % 2:
        raise ValueError(f"n_buckets must be even (or 1) for angular LSH, got {n_buckets}")
    r = torch.randn(n_hashes, dim, n_buckets // 2, generator=generator, dtype=torch.float64)
    return r.to(device=device, dtype=dtype)


def lsh_hash(x: Tensor, rotations: Tensor) -> Tensor:
    """Angular LSH buckets of every vector, one row per round.

    x: (B, H, N, D)   rotations: (R, D, b/2) from :func:`random_rotations`.
    Returns (B, H, R, N) long in [0, b): ``argmax(cat([x R_r, -x R_r]))``. The bucket depends
    only on the direction of x; two vectors at angle theta share a bucket with a probability
    that falls with theta (for b = 2: 1 - theta / pi, :func:`hyperplane_collision_probability`).
    """
    check_tensor("x", x, ndim=4, layout="(B, H, N, D)")
    check_tensor("rotations", rotations, ndim=3, layout="(n_hashes, D, n_buckets // 2)")
    if rotations.shape[1] != x.shape[-1]:
        raise ValueError(f"rotations must be (n_hashes, D, n_buckets // 2) with D = "
                         f"{x.shape[-1]} (the last axis of x {shape_str(x)}), got "
                         f"{shape_str(rotations)}")
    check_device("rotations", rotations, "x", x)
    b, h, n, _ = x.shape
    if rotations.shape[-1] == 0:  # one bucket
        return torch.zeros(b, h, rotations.shape[0], n, dtype=torch.long, device=x.device)
    proj = torch.einsum("bhnd,rdk->bhrnk", upcast(x), rotations.to(upcast(x).dtype))
    return torch.cat([proj, -proj], dim=-1).argmax(dim=-1)  # (B, H, R, N)


def hyperplane_collision_probability(angle: Tensor, n_hashes: int = 1) -> Tensor:
    """Closed form for b = 2 buckets: P(two vectors at ``angle`` share a bucket).

    With one Gaussian direction r, x and y share a bucket when sign(x.r) = sign(y.r), which
    happens with probability 1 - angle / pi (Charikar, 2002). With ``n_hashes`` independent
    rounds, the probability that they share a bucket in at least one round is
    1 - (angle / pi) ** n_hashes. angle: any shape, radians in [0, pi].
    """
    check_int("n_hashes", n_hashes, 1)
    angle = torch.as_tensor(angle)
    return 1 - (angle / math.pi) ** n_hashes


def shared_qk_keys(qk: Tensor) -> Tensor:
    """The keys of shared-QK attention: the unit-normalised shared vectors, (..., N, D).

    Reformer uses one projection for queries and keys, k_j = q_j / ||q_j||, so that
    ``lsh_hash(q) == lsh_hash(k)``: a query and its keys fall in the same buckets.
    """
    return F.normalize(qk, dim=-1)


def _sort_by_bucket(buckets: Tensor):
    """Stable sort of positions by bucket. buckets: (B, H, R, N) -> perm, inv: (B, H, R, N).

    perm[..., s] is the position at sorted index s; inv[..., i] the sorted index of position i.
    """
    n = buckets.shape[-1]
    pos = torch.arange(n, device=buckets.device)
    perm = (buckets * n + pos).argsort(dim=-1)
    return perm, perm.argsort(dim=-1)


def _self_rule(mask: Tensor, n: int) -> Tensor:
    """Shared QK: hide the diagonal, but give it back to rows left with nothing else."""
    eye = torch.eye(n, dtype=torch.bool, device=mask.device)
    others = mask & ~eye
    return others | (eye & ~others.any(-1, keepdim=True))


def lsh_mask(buckets: Tensor, chunk_size: Optional[int] = None, *,
             is_causal: bool = False) -> Tensor:
    """Which keys each query may see under LSH attention: (B, H, N, N) bool, for pictures.

    buckets: (B, H, R, N) long from :func:`lsh_hash`.
    chunk_size=None: the ideal pattern, query i sees key j when they share a bucket in at least
        one round. With a chunk size: the pattern :func:`lsh_attention` computes, i.e. in round
        r the positions are sorted by (bucket, position) and cut into chunks of ``chunk_size``,
        and i sees j when they share the round's bucket and j's chunk is i's or the one
        before (cyclically); the union over rounds.
    is_causal: also j <= i. Shared-QK rule (Kitaev et al., 2020, section 2): a query never
    sees itself unless it would otherwise see nothing.
    """
    check_tensor("buckets", buckets, ndim=4, floating=False, layout="(B, H, R, N)")
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, 1)
    n = buckets.shape[-1]
    same = buckets[..., :, None] == buckets[..., None, :]  # (B, H, R, N, N)
    if chunk_size is not None:
        cs = min(chunk_size, n)
        nc = math.ceil(n / cs)
        _, inv = _sort_by_bucket(buckets)
        c = inv // cs  # (B, H, R, N) chunk of each position
        cq, ck = c[..., :, None], c[..., None, :]
        same = same & ((ck == cq) | (ck == (cq - 1) % nc))
    mask = same.any(dim=2)  # (B, H, N, N)
    if is_causal:
        mask = mask & causal_mask(n, device=mask.device)
    return _self_rule(mask, n)


def lsh_attention(qk: Tensor, value: Tensor, rotations: Tensor, *, chunk_size: int = 64,
                  is_causal: bool = False, scale: Optional[float] = None) -> Tensor:
    """Reformer's LSH attention with shared queries and keys, in O(R N chunk_size).

    qk: (B, H, N, D) the shared query/key vectors   value: (B, H, N, Dv)
    rotations: (R, D, b/2) from :func:`random_rotations` (R = n_hashes rounds, b buckets).
    Keys are ``shared_qk_keys(qk)`` = qk / ||qk||; scores (q_i . k_j) * scale, scale = 1/sqrt(D)
    by default. In each round the positions are sorted by (bucket, position), cut into chunks
    of ``chunk_size`` (the tail chunk is padded and the padding hidden), and each chunk of
    queries attends to its own chunk and the previous one (cyclically), to the keys of its own
    bucket only: (B, H, R, N / chunk, chunk, 2 chunk) scores. The rounds are merged by
    logsumexp weights, with each score lowered by log(number of rounds in which the pair
    meets), so that a key met several times counts once.

    Shared-QK rule: q_i . k_i is the largest score q_i can have, so a query would mostly
    attend to itself; Reformer forbids that unless the query has no other key (e.g. the first
    position of a causal sequence), where it attends to itself alone.
    is_causal: keys j > i are hidden. Which earlier keys share i's chunks depends on how the
    whole sequence sorts, later positions included; the *values* of later positions never
    reach position i.

    Returns (B, H, N, Dv), equal to ``reference_attention(qk, shared_qk_keys(qk), value,
    lsh_mask(lsh_hash(qk, rotations), chunk_size, is_causal=is_causal))``. With one bucket and
    chunk_size >= N / 2 this is full shared-QK attention. Kitaev et al. (2020), section 2.
    """
    check_qkv(qk, qk, value, names=("qk", "qk", "value"))
    if qk.shape[:2] != value.shape[:2]:
        raise ValueError(f"qk and value must have the same (B, H), got qk {shape_str(qk)} and "
                         f"value {shape_str(value)}")
    check_int("chunk_size", chunk_size, 1)
    check_scale(scale)
    q, v = upcast(qk), upcast(value)
    v = v.to(q.dtype)
    b, h, n, d = q.shape
    s = d ** -0.5 if scale is None else float(scale)
    buckets = lsh_hash(q, rotations)  # (B, H, R, N)
    r = buckets.shape[2]
    perm, inv = _sort_by_bucket(buckets)
    cs = min(chunk_size, n)
    nc = math.ceil(n / cs)
    npad = nc * cs
    bucket_of = F.pad(buckets, (0, 1), value=-1)  # (B, H, R, N + 1), index N = padding
    ids = F.pad(perm, (0, npad - n), value=n)  # (B, H, R, npad): sorted positions, n = pad
    k = shared_qk_keys(q)
    qs = _take(_append_sentinel(q * s), ids).view(b, h, r, nc, cs, d)  # (B, H, R, nc, cs, D)
    ks = _take(_append_sentinel(k), ids).view(b, h, r, nc, cs, d)
    vs = _take(_append_sentinel(v), ids).view(b, h, r, nc, cs, v.shape[-1])
    idq = ids.view(b, h, r, nc, cs)  # (B, H, R, nc, cs)

    def look_back(x):  # own chunk and the previous one: (B, H, R, nc, 2 cs, ...)
        return x if nc == 1 else torch.cat([x, x.roll(1, dims=3)], dim=4)

    kk, vv, idk = look_back(ks), look_back(vs), look_back(idq)
    iq, ik = idq[..., :, None], idk[..., None, :]  # (..., cs, 1), (..., 1, S)
    # not the query itself; padding (id n, bucket -1) meets no real position, and no padding
    # slot another (all have id n)
    base = iq != ik
    if is_causal:
        base = base & (ik <= iq)
    own_b = bucket_of.gather(3, ids).view(b, h, r, nc, cs)  # bucket in this round
    own_bk = look_back(own_b)
    allowed = base & (own_b[..., :, None] == own_bk[..., None, :])
    count = None
    if r > 1:  # the rounds in which each pair meets, for the duplicate correction
        # code = bucket * 2 nc + chunk: two positions meet in a round exactly when
        # code_i - code_j is 0, 1 (j one chunk back) or 1 - nc (back across the wrap-around);
        # different buckets differ by more than nc. The padding never meets (not allowed).
        code = F.pad(buckets * (2 * nc) + inv // cs, (0, 1), value=-1)
        if int(code.max()) < 2**31 - 1:
            code = code.to(torch.int32)  # half the memory of the (..., cs, 2 cs) differences
        count = torch.zeros_like(allowed, dtype=torch.int16)
        for rr in range(r):
            cr = code[:, :, rr]  # (B, H, N + 1)
            diff = _take(cr, idq)[..., :, None] - _take(cr, idk)[..., None, :]
            count += ((diff == 0) | (diff == 1) | (diff == 1 - nc)).to(torch.int16)
    out, lse = _blocks_attend(qs, kk, vv, allowed, count)  # (B, H, R, nc, cs, Dv)
    merged, lse = _merge(out.reshape(b, h, r * npad, -1), lse.reshape(b, h, r * npad),
                         ids.reshape(b, h, r * npad), n)
    merged = torch.where(torch.isfinite(lse)[..., None], merged, v)  # nothing else: itself
    return merged.to(value.dtype)  # (B, H, N, Dv)


class LSHBuckets(nn.Module):
    """Reformer attention with shared queries and keys (Kitaev et al., 2020), as the
    ``attn_fn`` of :class:`attention_lib.layers.MultiHeadAttention`; build the multi-head
    layer with :func:`lsh_self_attention`, which makes the key projection the query's.

    forward(query, key, value, attn_mask=None, *, is_causal=False): query (the shared
    query/key vectors), value: (B, H, N, Dh) -> (B, H, N, Dh) by :func:`lsh_attention` (the
    key argument is not read). Reformer draws new rotations at every call: set ``rotations``
    (R, Dh, b/2) to fix them, or ``generator`` to draw them reproducibly (None: torch's
    default generator, as dropout).
    """

    def __init__(self, head_dim: int, *, n_buckets: int = 8, n_hashes: int = 2,
                 chunk_size: int = 64, generator: Optional[torch.Generator] = None):
        super().__init__()
        check_int("head_dim", head_dim, 1)
        check_int("n_hashes", n_hashes, 1)
        check_int("chunk_size", chunk_size, 1)
        random_rotations(1, n_buckets)  # validates n_buckets
        self.head_dim, self.n_buckets, self.n_hashes = head_dim, n_buckets, n_hashes
        self.chunk_size, self.generator = chunk_size, generator
        self.rotations: Optional[Tensor] = None

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                attn_mask: Optional[Tensor] = None, *, is_causal: bool = False) -> Tensor:
        if attn_mask is not None:
            raise ValueError("LSH attention takes no attn_mask (only is_causal)")
        rotations = self.rotations
        if rotations is None:
            rotations = random_rotations(self.head_dim, self.n_buckets, n_hashes=self.n_hashes,
                                         generator=self.generator, device=query.device,
                                         dtype=query.dtype)
        return lsh_attention(query, value, rotations, chunk_size=self.chunk_size,
                             is_causal=is_causal)

    def extra_repr(self) -> str:
        return (f"n_buckets={self.n_buckets}, n_hashes={self.n_hashes}, "
                f"chunk_size={self.chunk_size}")


def lsh_self_attention(embed_dim: int, num_heads: int, *, bias: bool = True,
                       **kwargs) -> MultiHeadAttention:
    """The multi-head Reformer layer: :class:`~attention_lib.layers.MultiHeadAttention` whose
    ``k_proj`` is its ``q_proj`` (shared QK) and whose ``attn_fn`` is :class:`LSHBuckets`
    (kwargs: n_buckets, n_hashes, chunk_size, generator). x: (B, N, E) -> (B, N, E)."""
    mha = MultiHeadAttention(embed_dim, num_heads, bias=bias)
    mha.attn_fn = LSHBuckets(mha.head_dim, **kwargs)
    mha.k_proj = mha.q_proj  # one projection for the shared query/key vectors
    return mha

# =========================================================================== k-means routing
def _check_centroids(centroids: Tensor, x: Optional[Tensor] = None) -> None:
    check_tensor("centroids", centroids, ndim=(2, 3), layout="(C, D) or (H, C, D)")
    if x is None:
        return
    if centroids.shape[-1] != x.shape[-1]:
        raise ValueError(f"centroids must have the head dim D = {x.shape[-1]} of "
                         f"{shape_str(x)} as last axis, got {shape_str(centroids)}")
    if centroids.dim() == 3 and centroids.shape[0] not in (1, x.shape[1]):
        raise ValueError(f"centroids (H, C, D) must have H = {x.shape[1]} heads like "
                         f"{shape_str(x)}, got {shape_str(centroids)}")
    check_device("centroids", centroids, "x", x)


def _similarity(x: Tensor, centroids: Tensor) -> Tensor:
    """Cosine similarity of every vector to every centroid: (B, H, N, C)."""
    xn = F.normalize(upcast(x), dim=-1)
    mu = F.normalize(centroids.to(xn.dtype), dim=-1)
    if mu.dim() == 3:
        mu = mu.unsqueeze(0)  # (1, H, C, D)
    return xn @ mu.transpose(-2, -1)


def init_centroids(num_clusters: int, dim: int, *, num_heads: Optional[int] = None,
                   generator: Optional[torch.Generator] = None, device=None,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Random unit centroids: (C, D), or (H, C, D) with ``num_heads``. Drawn on the CPU from
    ``generator``, then moved to ``device``."""
    check_int("num_clusters", num_clusters, 1)
    check_int("dim", dim, 1)
    shape = (num_clusters, dim) if num_heads is None else (num_heads, num_clusters, dim)
    if num_heads is not None:
        check_int("num_heads", num_heads, 1)
    mu = torch.randn(*shape, generator=generator, dtype=torch.float64)
    return F.normalize(mu, dim=-1).to(device=device, dtype=dtype)


def route(x: Tensor, centroids: Tensor) -> Tensor:
    """Nearest centroid (largest cosine similarity) of every vector: (B, H, N) long.

    x: (B, H, N, D)   centroids: (C, D) shared by the heads, or (H, C, D) one set per head.
    """
    check_tensor("x", x, ndim=4, layout="(B, H, N, D)")
    _check_centroids(centroids, x)
    return _similarity(x, centroids).argmax(-1)


def kmeans_update(centroids: Tensor, x: Tensor, *, decay: float = 0.0) -> Tensor:
    """One mini-batch step of spherical k-means; returns new centroids, changes nothing.

    centroids: (C, D) or (H, C, D)   x: (B, H, N, D) a batch of queries/keys.
    Each vector is assigned to its nearest centroid (:func:`route`); the unit-normalised mean
    m_c of the vectors assigned to c gives ``normalize(decay * mu_c + (1 - decay) * m_c)``.
    decay = 0 is a Lloyd step; decay close to 1 is the exponential moving average the Routing
    Transformer applies at every training step (Roy et al., 2021). Clusters that receive no vector
    keep their centroid. Returns a tensor like ``centroids``.
    """
    check_tensor("x", x, ndim=4, layout="(B, H, N, D)")
    _check_centroids(centroids, x)
    check_float("decay", decay, maximum=1.0)
    xn = F.normalize(upcast(x), dim=-1)
    c = centroids.shape[-2]
    onehot = F.one_hot(route(x, centroids), c).to(xn.dtype)  # (B, H, N, C)
    if centroids.dim() == 2:
        sums = torch.einsum("bhnc,bhnd->cd", onehot, xn)  # (C, D)
        counts = onehot.sum((0, 1, 2))[:, None]  # (C, 1)
    else:
        sums = torch.einsum("bhnc,bhnd->hcd", onehot, xn)  # (H, C, D)
        counts = onehot.sum((0, 2))[..., None]  # (H, C, 1)
    old = F.normalize(centroids.to(xn.dtype), dim=-1)
    mean = F.normalize(sums, dim=-1)
    new = torch.where(counts > 0, decay * old + (1 - decay) * mean, old)
    return F.normalize(new, dim=-1).to(centroids.dtype)


def kmeans(x: Tensor, num_clusters: int, *, n_iters: int = 10, per_head: bool = False,
           generator: Optional[torch.Generator] = None) -> Tensor:
    """Spherical k-means on x (B, H, N, D): ``n_iters`` Lloyd steps (:func:`kmeans_update`
    with decay 0) from ``num_clusters`` distinct vectors of x drawn with ``generator``.
    Returns (C, D), or (H, C, D) with ``per_head``."""
    check_tensor("x", x, ndim=4, layout="(B, H, N, D)")
    check_int("num_clusters", num_clusters, 1)
    check_int("n_iters", n_iters, 0)
    b, h, n, d = x.shape
    if num_clusters > b * n:
        raise ValueError(f"num_clusters = {num_clusters} exceeds the B * N = {b * n} vectors "
                         f"of x {shape_str(x)}")
    pick = torch.randperm(b * n, generator=generator)[:num_clusters].to(x.device)
    flat = x.transpose(0, 1).reshape(h, b * n, d)  # (H, B N, D)
    mu = flat[:, pick] if per_head else flat[0, pick]  # (H, C, D) or (C, D)
    mu = F.normalize(upcast(mu), dim=-1)
    for _ in range(n_iters):
        mu = kmeans_update(mu, upcast(x))
    return mu.to(x.dtype)


def routing_topk(x: Tensor, centroids: Tensor, window: int) -> Tensor:
    """Balanced routing: each centroid takes the ``window`` vectors most similar to it.

    x: (B, H, N, D)   centroids: (C, D) or (H, C, D).
    Returns (B, H, C, window) long positions, ascending in each cluster. Every cluster has
    exactly ``window`` members, so the blocks have equal size; a vector may belong to several
    clusters or to none. Roy et al. (2021) (the balanced variant of routing).
    """
    check_tensor("x", x, ndim=4, layout="(B, H, N, D)")
    _check_centroids(centroids, x)
    check_int("window", window, 1)
    if window > x.shape[-2]:
        raise ValueError(f"window = {window} exceeds the N = {x.shape[-2]} positions of x "
                         f"{shape_str(x)}")
    sims = _similarity(x, centroids).transpose(-2, -1)  # (B, H, C, N)
    return sims.topk(window, dim=-1).indices.sort(dim=-1).values  # (B, H, C, w)


_BITS = 30  # clusters per int32 word of the membership bitsets


def _first_cluster(qi: Tensor, ki: Tensor, n: int) -> Tensor:
    """(B, H, C, w, w) bool: pair (i, j) of cluster c's tile is kept only in the first cluster
    that holds both i (as a query) and j (as a key), so that no pair is counted twice.

    Each position's clusters are a bitset (int32 words of 30 clusters); the first common
    cluster is the lowest set bit of ``bits_q[i] & bits_k[j]``, ``x & -x``. The cost is a
    few integer operations per score and per word of 30 clusters.
    """
    c = qi.shape[2]
    cl = torch.arange(c, device=qi.device)
    first = torch.zeros(*qi.shape, ki.shape[-1], dtype=torch.bool, device=qi.device)
    seen = torch.zeros_like(first)
    for w0 in range(0, c, _BITS):
        w1 = min(c, w0 + _BITS)
        weights = torch.zeros(c, dtype=torch.int32, device=qi.device)
        weights[w0:w1] = 2 ** torch.arange(w1 - w0, device=qi.device, dtype=torch.int32)
        bq = (_members(qi, n).int() * weights[:, None]).sum(2, dtype=torch.int32)  # (B, H, N)
        bk = (_members(ki, n).int() * weights[:, None]).sum(2, dtype=torch.int32)
        x = _take(bq, qi)[..., :, None] & _take(bk, ki)[..., None, :]  # (B, H, C, w, w)
        in_word = ((cl >= w0) & (cl < w1)).view(c, 1, 1)
        first |= in_word & ~seen & ((x & -x) == weights.view(c, 1, 1))
        seen |= x != 0
    return first


def _members(idx: Tensor, n: int) -> Tensor:
    """(B, H, C, w) positions -> (B, H, C, N) bool membership."""
    m = torch.zeros(*idx.shape[:-1], n, dtype=torch.bool, device=idx.device)
    return m.scatter(-1, idx, True)


def routing_mask(query_idx: Tensor, key_idx: Tensor, n: int, *,
                 is_causal: bool = False) -> Tensor:
    """Which keys each query may see under routing attention: (B, H, N, N) bool, for pictures.

    query_idx, key_idx: (B, H, C, w) from :func:`routing_topk`. Query i sees key j when some
    cluster holds both i (among its queries) and j (among its keys); is_causal: also j <= i.
    A query in no cluster sees nothing (its output is zeros).
    """
    for name, t in (("query_idx", query_idx), ("key_idx", key_idx)):
        check_tensor(name, t, ndim=4, floating=False, layout="(B, H, C, w)")
    check_int("n", n, 1)
    mq = _members(query_idx, n).to(torch.float32)  # (B, H, C, N)
    mk = _members(key_idx, n).to(torch.float32)
    mask = (mq.transpose(-2, -1) @ mk) > 0  # (B, H, N, N)
    if is_causal:
        mask = mask & causal_mask(n, device=mask.device)
    return mask


def routing_attention(query: Tensor, key: Tensor, value: Tensor, centroids: Tensor, *,
                      window: Optional[int] = None, is_causal: bool = False,
                      scale: Optional[float] = None) -> Tensor:
    """Routing attention: each k-means cluster attends within itself, in O(N window).

    query, key: (B, H, N, D)   value: (B, H, N, Dv)   centroids: (C, D) or (H, C, D).
    window: members per cluster (default ceil(N / C), so that C window ~ N). Each centroid
    takes its ``window`` nearest queries and its ``window`` nearest keys
    (:func:`routing_topk`), and each cluster's queries attend to its keys: (B, H, C, w, w)
    scores. A query met by several clusters merges them by logsumexp weights, each pair
    kept only in the first cluster that holds both (a bitset test, a few integer operations
    per score), so a key counts once. is_causal: keys j > i are hidden.

    Returns (B, H, N, Dv), equal to ``reference_attention(q, k, v, routing_mask(
    routing_topk(q, centroids, w), routing_topk(k, centroids, w), N, is_causal=is_causal))``.
    Queries routed to no cluster (or seeing no key) give zeros. With one cluster and
    window = N this is full attention. Roy et al. (2021).
    """
    check_qkv(query, key, value, self_attention="routing attention")
    if not (query.shape[:2] == key.shape[:2] == value.shape[:2]):
        raise ValueError(f"query, key and value must have the same (B, H), got "
                         f"{shape_str(query)}, {shape_str(key)} and {shape_str(value)}")
    _check_centroids(centroids, query)
    check_scale(scale)
    b, h, n, d = query.shape
    c = centroids.shape[-2]
    w = math.ceil(n / c) if window is None else window
    check_int("window", w, 1)
    q, k, v = upcast(query), upcast(key), upcast(value)
    s = d ** -0.5 if scale is None else float(scale)
    qi = routing_topk(q, centroids, w)  # (B, H, C, w)
    ki = routing_topk(k, centroids, w)
    qs, ks, vs = _take(q * s, qi), _take(k, ki), _take(v, ki)  # (B, H, C, w, D/Dv)
    allowed = _first_cluster(qi, ki, n)  # (B, H, C, w, w): each pair in one cluster only
    if is_causal:
        allowed = allowed & (ki[..., None, :] <= qi[..., :, None])
    out, lse = _blocks_attend(qs, ks, vs, allowed)  # (B, H, C, w, Dv)
    e = qi.shape[2] * qi.shape[3]
    merged, _ = _merge(out.reshape(b, h, e, -1), lse.reshape(b, h, e), qi.reshape(b, h, e), n)
    return merged.to(value.dtype)  # (B, H, N, Dv)


class RoutingCentroids(nn.Module):
    """Routing attention (Routing Transformer, Roy et al., 2021) with its centroids, as the
    ``attn_fn`` of :class:`attention_lib.layers.MultiHeadAttention`:
    ``MultiHeadAttention(E, H, attn_fn=RoutingCentroids(H, E // H, num_clusters))``.

    The centroids, one set per head, are a buffer ``centroids`` (H, C, Dh), not a parameter:
    they are trained by k-means, not by gradients. ``forward`` never changes them; call
    :meth:`update` (which uses the pure :func:`kmeans_update`) explicitly during training.

    forward(query, key, value, attn_mask=None, *, is_causal=False): (B, H, N, Dh) ->
    (B, H, N, Dh) by :func:`routing_attention` (self-attention; no mask).
    """

    def __init__(self, num_heads: int, head_dim: int, num_clusters: int, *,
                 window: Optional[int] = None, generator: Optional[torch.Generator] = None):
        super().__init__()
        if window is not None:
            check_int("window", window, 1)
        self.num_clusters, self.window = num_clusters, window
        self.register_buffer("centroids", init_centroids(
            num_clusters, head_dim, num_heads=num_heads, generator=generator))

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                attn_mask: Optional[Tensor] = None, *, is_causal: bool = False) -> Tensor:
        if attn_mask is not None:
            raise ValueError("routing attention takes no attn_mask (only is_causal)")
        return routing_attention(query, key, value, self.centroids.to(query.dtype),
                                 window=self.window, is_causal=is_causal)

    @torch.no_grad()
    def update(self, query: Tensor, key: Tensor, *, decay: float = 0.999) -> Tensor:
        """One k-means step on a batch's queries and keys (B, H, N, Dh); stores and returns
        the new centroids."""
        new = kmeans_update(self.centroids,
                            torch.cat([query, key], dim=2).to(self.centroids.dtype), decay=decay)
        self.centroids.copy_(new)
        return new

    def extra_repr(self) -> str:
        return f"num_clusters={self.num_clusters}, window={self.window}"
