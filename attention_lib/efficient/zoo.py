"""Every attention of the course behind one signature, to compare them on equal terms (chapter 17).

A :class:`Variant` names one way of computing attention, its family, what its output should be
compared with, and a ``build(n, is_causal)`` that returns ``fn(q, k, v) -> out`` on
(B, H, N, D) inputs with the variant's parameters fixed (window, number of random features,
projection length, ...). :func:`catalog` lists them; :func:`measure` times one call per variant
(median of round-robin repeats, so machine noise hits all alike), tracks its peak tensor memory
and its error against full softmax attention and against its own exact target; :func:`sweep`
does that over sequence lengths and returns flat records (one per variant and N) that
``pandas.DataFrame`` takes as they are. ``benchmarks/efficient.py`` runs the long sweep with
the same catalogue, so the chapter's live numbers and the benchmark's are the same code.

Targets (``Variant.target``):

* ``"full"``: softmax attention over every key (exact variants must equal it; approximations
  are judged by their distance from it);
* ``"window"``: softmax attention restricted to ``|i - j| <= window`` (sliding-window
  variants are exact for that pattern);
* ``"normalized"``: softmax attention of the l2-normalised q, k with scale 1 -- what RFA's
  Gaussian random features estimate (Peng et al., 2021);
* ``None``: a different model rather than an estimate (linear attention with elu + 1; LSH
  attention, whose keys are the normalised queries: shared QK), or
  the ``uniform`` baseline (the mean of the visible values): an approximation whose error is
  not below the baseline's has learned nothing about the scores.

Errors are relative Frobenius norms ``||out - ref|| / ||ref||``, the reference computed by
``torch.nn.functional.scaled_dot_product_attention`` in float64.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn.functional as F

from .._validate import check_int, check_qkv
from ..masks import causal_mask, sliding_window_mask
from .clustered import kmeans, lsh_attention, random_rotations, routing_attention
from .flash import flash_attention
from .linear import linear_attention
from .lowrank import linformer_attention, linformer_projection
from .memory import peak_memory
from .random_features import performer_attention, random_projection, rfa_attention
from .sinkhorn import block_summaries, sinkhorn_attention, soft_permutation
from .sparse import sliding_window_attention

Tensor = torch.Tensor
AttentionFn = Callable[[Tensor, Tensor, Tensor], Tensor]

__all__ = ["Variant", "catalog", "TARGETS", "targets", "relative_error", "measure", "sweep"]

TARGETS = ("full", "window", "normalized")


@dataclass(frozen=True)
class Variant:
    """One attention implementation with its parameters fixed.

    name: short label ("sdpa", "local", "performer", ...); family: "exact", "sparse", "kernel",
    "random features", ...; target: one of :data:`TARGETS` or None (see the module docstring);
    chapter: where the course explains it; causal: whether ``is_causal=True`` is supported;
    cost: time and memory in N (sequence length), for tables;
    build: ``build(n, is_causal) -> fn(q, k, v)`` with q, k, v: (B, H, N, D).
    """
    name: str
    family: str
    target: Optional[str]
    chapter: str
    causal: bool
    cost: str
    build: Callable[[int, bool], AttentionFn]


def _follows_input(t: Tensor, *, dtype: bool = False) -> Callable[[Tensor], Tensor]:
    """``like -> t`` on ``like``'s device (and dtype, with ``dtype=True``), copied there once
    and then kept: a fixed projection must not be copied to the GPU again at every call."""
    cache: Dict[tuple, Tensor] = {}

    def on(like: Tensor) -> Tensor:
        key = (like.device, like.dtype if dtype else t.dtype)
        if key not in cache:
            cache[key] = t.to(device=key[0], dtype=key[1])
        return cache[key]
    return on


def _naive(q: Tensor, k: Tensor, v: Tensor, is_causal: bool) -> Tensor:
    """softmax(Q K^T / sqrt(D)) V written out: the (B, H, N, N) matrix in memory."""
    s = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, N, N)
    if is_causal:
        s = s.masked_fill(~causal_mask(q.shape[-2], device=q.device), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def _mean(v: Tensor, is_causal: bool) -> Tensor:
    """Uniform attention: every query gets the mean of the values it may see."""
    if not is_causal:
        return v.mean(-2, keepdim=True).expand_as(v)
    counts = torch.arange(1, v.shape[-2] + 1, device=v.device, dtype=v.dtype)
    return v.cumsum(-2) / counts[:, None]


def catalog(*, head_dim: int = 64, window: int = 256, flash_block: int = 512,
            num_features: int = 256, projected_length: int = 256, bucket_size: int = 64,
            seed: int = 0,
            device: Optional[torch.device] = None) -> Dict[str, Variant]:
    """The course's attention variants, name -> :class:`Variant`, at one set of parameters.

    head_dim: D of the inputs (the random projections are drawn for it); window: the sliding
    window's half-width (up to 2 window + 1 keys per query); flash_block: FlashAttention's tile
    size; num_features: m of RFA and the Performer (one orthogonal (m, D) projection, drawn
    from ``torch.Generator().manual_seed(seed)``, shared by both); projected_length: Linformer's
    k (random Gaussian E, F of shape (min(k, N), N), drawn for each N from the same seed --
    untrained, so this measures the cost, and the error of an untrained projection);
    bucket_size: the chunk of LSH attention (shared QK, 2 hashing rounds, about N / bucket_size
    buckets) and the block of Sinkhorn attention (blocks sorted by a parameter-free soft
    permutation of mean-pooled block summaries; N must be a multiple of it). Routing attention
    uses N / window clusters of ``window`` members each, their centroids fitted by k-means to
    the keys of the first call and then kept, as a trained model would keep them.
    """
    for name, value in (("head_dim", head_dim), ("window", window),
                        ("flash_block", flash_block), ("num_features", num_features),
                        ("projected_length", projected_length),
                        ("bucket_size", bucket_size)):
        check_int(name, value)
    proj = random_projection(num_features, head_dim, orthogonal=True,
                             generator=torch.Generator().manual_seed(seed))
    if device is not None:
        proj = proj.to(device)

    def linformer(n, c):
        if c:
            raise ValueError("Linformer cannot be causal: it mixes the sequence axis")
        gen = torch.Generator().manual_seed(seed)
        e, f = (_follows_input(linformer_projection(min(projected_length, n), n, generator=gen),
                               dtype=True) for _ in range(2))
        return lambda q, k, v: linformer_attention(q, k, v, e(q), f(q))

    def lsh(n, c):
        n_buckets = max(2, 2 * (n // (2 * bucket_size)))  # even, about N / bucket_size
        rot = _follows_input(random_rotations(head_dim, n_buckets, n_hashes=2,
                                              generator=torch.Generator().manual_seed(seed)))
        return lambda q, k, v: lsh_attention(q, v, rot(q), chunk_size=bucket_size,
                                             is_causal=c)

    def routing(n, c):
        cache = {}  # centroids: k-means of the first keys seen, then kept (as after training)

        def fn(q, k, v):
            if "mu" not in cache:
                cache["mu"] = kmeans(k, max(1, n // window), n_iters=3,
                                     generator=torch.Generator().manual_seed(seed))
            return routing_attention(q, k, v, cache["mu"].to(q.device), window=min(window, n),
                                     is_causal=c)
        return fn

    def sinkhorn(n, c):
        def fn(q, k, v):
            logits = (block_summaries(q, bucket_size) @ block_summaries(k, bucket_size)
                      .transpose(-2, -1)) * head_dim ** -0.5  # (B, H, nb, nb)
            return sinkhorn_attention(q, k, v, soft_permutation(logits, is_causal=c),
                                      bucket_size, is_causal=c)
        return fn

    on_input = _follows_input(proj)

    def with_proj(fn):
        return lambda n, c: (lambda q, k, v: fn(q, k, v, on_input(q), is_causal=c))

    variants = [
        Variant("uniform", "baseline", None, "02_attention_pooling", True,
                "time N D, memory N D", lambda n, c: (lambda q, k, v: _mean(v, c))),
        Variant("naive", "exact", "full", "03_scoring_functions", True, "time N^2, memory N^2",
                lambda n, c: (lambda q, k, v: _naive(q, k, v, c))),
        Variant("sdpa", "exact", "full", "16_flash_attention", True,
                "time N^2, memory N (fused kernel)",
                lambda n, c: (lambda q, k, v: F.scaled_dot_product_attention(q, k, v,
                                                                            is_causal=c))),
        Variant("flash", "exact", "full", "16_flash_attention", True,
                "time N^2, memory N (tiles)",
                lambda n, c: (lambda q, k, v: flash_attention(q, k, v, is_causal=c,
                                                              block_q=flash_block,
                                                              block_k=flash_block))),
        Variant("local", "sparse", "window", "11_sparse_attention", True,
                "time N w, memory N w",
                lambda n, c: (lambda q, k, v: sliding_window_attention(q, k, v, window,
                                                                       is_causal=c))),
        Variant("linformer", "low rank", "full", "13_low_rank", False,
                "time N k D, memory N k", linformer),
        Variant("lsh", "learned sparsity", None, "12_learned_sparsity", True,
                "time N c, memory N c (c: chunk)", lsh),
        Variant("routing", "learned sparsity", "full", "12_learned_sparsity", True,
                "time N w, memory N w", routing),
        Variant("sinkhorn", "learned sparsity", "full", "12_learned_sparsity", True,
                "time N b + N^2 D / b, memory N b", sinkhorn),
        Variant("linear", "kernel", None, "14_linear_attention", True, "time N D^2, memory N D",
                lambda n, c: (lambda q, k, v: linear_attention(q, k, v, is_causal=c))),
        Variant("rfa", "random features", "normalized", "15_random_features", True,
                "time N m D, memory N m", with_proj(rfa_attention)),
        Variant("performer", "random features", "full", "15_random_features", True,
                "time N m D, memory N m", with_proj(performer_attention)),
        Variant("favor++", "random features", "full", "15_random_features", False,
                "time N m D, memory N m",
                lambda n, c: (lambda q, k, v: performer_attention(q, k, v, on_input(q),
                                                                  kind="optimized"))),
    ]
    return {v.name: v for v in variants}


def targets(q: Tensor, k: Tensor, v: Tensor, *, is_causal: bool = False,
            window: int = 256) -> Dict[str, Tensor]:
    """The exact outputs of :data:`TARGETS`, in float64: ``{"full", "window", "normalized"}``.

    q, k, v: (B, H, N, D). Computed with ``F.scaled_dot_product_attention`` (no N x N tensor
    on its fused paths; the window's (N, N) bool mask is built). Each (B, H, N, D).
    """
    check_qkv(q, k, v)
    n = q.shape[-2]
    q, k, v = q.double(), k.double(), v.double()
    unit = [x / x.norm(dim=-1, keepdim=True) for x in (q, k)]
    mask = sliding_window_mask(n, window, is_causal=is_causal, device=q.device)
    sdpa = F.scaled_dot_product_attention
    return {"full": sdpa(q, k, v, is_causal=is_causal),
            "window": sdpa(q, k, v, attn_mask=mask),
            "normalized": sdpa(*unit, v, is_causal=is_causal, scale=1.0)}


def relative_error(out: Tensor, ref: Tensor) -> float:
    """``||out - ref||_F / ||ref||_F`` in float64 (0 when both are 0)."""
    if out.shape != ref.shape:
        raise ValueError(f"out and ref must have the same shape, got {tuple(out.shape)} and "
                         f"{tuple(ref.shape)}")
    diff = (out.double() - ref.double()).norm()
    norm = ref.double().norm()
    return float(diff / norm) if norm > 0 else float(diff)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(variants: Dict[str, Variant], q: Tensor, k: Tensor, v: Tensor, *,
            is_causal: bool = False, repeats: int = 5, window: int = 256,
            memory: bool = True, clock: str = "wall") -> Dict[str, dict]:
    """Time, peak memory and error of each variant on the same (B, H, N, D) inputs.

    Returns name -> dict(time_s (median), time_min_s, times_s, peak_bytes, largest_bytes
    (tracked tensor memory of one call, :func:`~attention_lib.efficient.memory.peak_memory`;
    None with ``memory=False``), error_vs_full, error_vs_target (None when the variant has no
    target)). Variants that do not support ``is_causal`` are skipped when it is True. ``window``
    must be the catalogue's, for the "window" target.

    ``clock="wall"``: elapsed time (``time.perf_counter``). ``clock="cpu"``: CPU time of this
    process (``time.process_time``), as in :func:`~attention_lib.complexity.time_call`; with
    one torch thread it leaves out the time the process waits while others use the cores.
    """
    check_qkv(q, k, v)
    check_int("repeats", repeats)
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.process_time
    n = q.shape[-2]
    fns = {name: var.build(n, is_causal) for name, var in variants.items()
           if var.causal or not is_causal}
    out: Dict[str, dict] = {}
    with torch.no_grad():
        ref = targets(q, k, v, is_causal=is_causal, window=window)
        for name, fn in fns.items():  # warm-up, and the error of each output
            o = fn(q, k, v)
            tgt = variants[name].target
            out[name] = {"error_vs_full": relative_error(o, ref["full"]),
                         "error_vs_target": relative_error(o, ref[tgt]) if tgt else None}
            del o
        del ref
        times: Dict[str, List[float]] = {name: [] for name in fns}
        for _ in range(repeats):  # round-robin: noise hits every variant alike
            for name, fn in fns.items():
                _sync(q.device)
                t0 = now()
                fn(q, k, v)
                _sync(q.device)
                times[name].append(now() - t0)
        for name, fn in fns.items():
            ts = times[name]
            out[name].update(time_s=sorted(ts)[len(ts) // 2], time_min_s=min(ts), times_s=ts)
            stats = peak_memory(fn, q, k, v) if memory else None
            out[name].update(peak_bytes=stats.peak_bytes if stats else None,
                             largest_bytes=stats.largest_bytes if stats else None)
    return out


def sweep(sizes: Iterable[int], *, variants: Optional[Dict[str, Variant]] = None,
          names: Optional[Sequence[str]] = None, is_causal: bool = False, repeats: int = 3,
          batch: int = 1, heads: int = 2, head_dim: int = 64, window: int = 256,
          seed: int = 0, device=None, dtype: torch.dtype = torch.float32,
          clock: str = "wall",
          progress: Optional[Callable[[str], None]] = None) -> List[dict]:
    """:func:`measure` at every N in ``sizes``; one flat record per (variant, N).

    Each record: name, family, n, causal, time_s, time_min_s, peak_bytes, largest_bytes,
    error_vs_full, error_vs_target, speedup_vs_sdpa, memory_vs_naive (the last two within the
    same N, when "sdpa" / "naive" were measured). q, k, v ~ N(0, 1) of shape
    (batch, heads, N, head_dim) from ``torch.Generator().manual_seed(seed)``.
    ``variants`` defaults to :func:`catalog` (``head_dim``, ``window``); ``names`` picks some.
    ``clock``: as in :func:`measure`.
    """
    variants = catalog(head_dim=head_dim, window=window) if variants is None else variants
    if names is not None:
        unknown = [n for n in names if n not in variants]
        if unknown:
            raise ValueError(f"unknown variant name(s) {unknown}; known: {sorted(variants)}")
        variants = {n: variants[n] for n in names}
    records: List[dict] = []
    for n in sizes:
        check_int("sizes", n)
        gen = torch.Generator().manual_seed(seed)
        q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen, dtype=dtype)
                   .to(device or "cpu") for _ in range(3))
        res = measure(variants, q, k, v, is_causal=is_causal, repeats=repeats, window=window,
                      clock=clock)
        for name, r in res.items():
            rec = {"name": name, "family": variants[name].family, "n": n, "causal": is_causal,
                   **{key: val for key, val in r.items() if key != "times_s"}}
            if "sdpa" in res:
                rec["speedup_vs_sdpa"] = res["sdpa"]["time_s"] / r["time_s"]
            if "naive" in res and r["peak_bytes"] is not None:
                rec["memory_vs_naive"] = r["peak_bytes"] / res["naive"]["peak_bytes"]
            records.append(rec)
        if progress is not None:
            progress(f"N = {n}: " + ", ".join(f"{name} {r['time_s'] * 1e3:.1f} ms"
                                              for name, r in res.items()))
        del q, k, v
    return records
