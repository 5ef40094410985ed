"""Time, peak memory and output error of every attention variant against naive softmax and SDPA.

    python benchmarks/efficient.py                 # N = 512 ... 8192, writes results/
    python benchmarks/efficient.py --with-16k      # adds N = 16384 (naive needs ~6 GB there)
    python benchmarks/efficient.py --quick         # N = 512 ... 2048, 3 repeats (smoke test)
    python benchmarks/efficient.py --device cuda --dtype bfloat16 --with-16k   # on a GPU
    python benchmarks/efficient.py --diagnostics-only   # redo only the performer-pytorch check

Variants, all at D = 64 with (B, H) = (1, 2), float32, on the CPU, in the same run (on a GPU,
``--device cuda``, in ``--dtype`` float32, float16 or bfloat16; see the end of this text):

* ``naive``   softmax(Q K^T / sqrt(D)) V written out: builds the (N, N) matrix;
* ``sdpa``    ``torch.nn.functional.scaled_dot_product_attention`` (torch picks the backend;
              on CPU a fused flash kernel in C++);
* ``flash``   ``attention_lib.efficient.flash.flash_attention`` (tiles of 512 x 512, a Python
              loop over tiles);
* ``local``   ``attention_lib.efficient.sparse.sliding_window_attention`` with window 256
              (|i - j| <= 256: up to 513 keys per query) -- a different, sparser computation;
* ``linear``  ``attention_lib.efficient.linear.linear_attention`` (elu + 1 features);
* ``rfa``     ``attention_lib.efficient.random_features.rfa_attention`` (Gaussian sin/cos
              features of the l2-normalised q, k; 256 orthogonal random frequencies);
* ``performer`` ``attention_lib.efficient.random_features.performer_attention`` (FAVOR+:
              positive features, the same 256 orthogonal random frequencies);
* ``linformer``, ``lsh``, ``routing``, ``sinkhorn`` (chapters 12-13; parameters in
  ``attention_lib.efficient.zoo.catalog``): Linformer with untrained random projections of
  length 256, Reformer's shared-QK LSH attention (2 rounds, chunks of 64), routing attention
  (k-means centroids, clusters of 256), Sparse Sinkhorn attention (blocks of 64);
* ``uniform``: the mean of the values, a baseline for the error of the approximations;
* peers, when importable (``pip install .[peers]``; not course requirements), at equal
  settings: ``local-attention`` -- lucidrains' ``local_attention.LocalAttention`` with the
  same exact window (``exact_windowsize=True``, no rotary embedding); ``performer-pytorch``
  -- lucidrains' ``performer_pytorch.FastAttention`` with 256 orthogonal features;
  ``reformer-pytorch`` -- lucidrains' ``LSHAttention`` (shared QK, 2 rounds, chunks of 64,
  duplicate pairs removed), like our ``lsh``. The ``linformer`` package of the extra has no
  functional entry point (its module projects its own q, k, v from x), so it is not timed
  here: equal settings would mean timing its projections too.

Error: every output is compared with full softmax attention (``relative_error_vs_full``,
||out - softmax|| / ||softmax||, at every N) and with the exact computation it stands for
(``relative_error_vs_own_target``: the window's softmax for ``local``, softmax of the
l2-normalised q, k for ``rfa``; None for ``linear``, which is a different model, not an
estimate). The exact variants are also checked against ``reference_attention`` at N = 1024
(``max_abs_error``). Inputs are unit Gaussian q, k, v; at D = 64 that makes softmax attention
peaked enough that random features estimate it poorly (see chapters 15 and 17).
``performer_peer_diagnostics`` (in the JSON) explains why ``performer-pytorch`` errs less there:
given our projections and its eps set to 0 it computes our output; its eps = 1e-4 pulls the
output towards the average of the values.

Each variant runs both non-causal and causal. Time: the median of ``--repeats`` runs after a
warm-up, with the variants interleaved round-robin so that machine noise hits them alike;
ratios are taken within the run. Ratios and fitted exponents use the fastest of the repeats
by default (``--statistic min``): interference from other processes only ever adds time, so
on a shared machine the minimum is the steadier estimate of what the code costs. The median
of every point is kept in the JSON as well (``--statistic median`` bases the ratios on it). Memory,
two honest measures:

* ``tracked``: ``attention_lib.efficient.memory.peak_memory`` -- the peak total size of the
  tensors created by the call and alive together (deterministic; blind to scratch buffers
  allocated and freed inside one fused kernel);
* ``rss`` (non-causal only, unless ``--no-rss``; Linux): growth of the process's peak
  resident set size during one call (``VmHWM`` after resetting it through
  ``/proc/self/clear_refs``), each (variant, N) in a fresh subprocess after a tiny warm-up.
  It sees everything, fused-kernel scratch included, but has a noise floor of a few MB
  (allocator and page granularity), so it is meaningful only for large N.

The load average before and after the run is recorded: on a shared machine, other processes
competing for the cores slow down code made of many small parallel operations (the Python
tile loop, the blocked window) much more than one fused kernel, so compare runs made on a
quiet machine. Fitted exponents are least-squares slopes of log(time) and log(memory)
against log(N) over the whole sweep, and between the two largest N ("tail"). Writes
``benchmarks/results/efficient_cpu.json`` and ``benchmarks/results/efficient_cpu.png``.

On a GPU (``--device cuda``) the same variants run on the device in ``--dtype``, and three
more pin torch SDPA to one backend with ``torch.nn.attention.sdpa_kernel``: ``sdpa-flash``
(FlashAttention; float16 and bfloat16 only), ``sdpa-efficient`` (memory-efficient attention)
and ``sdpa-math`` (the unfused reference). Times are taken between
``torch.cuda.synchronize()`` calls; memory adds ``cuda_peak_bytes``, the growth of
``torch.cuda.max_memory_allocated`` during one call, which also sees the workspace of fused
kernels; there is no RSS. A variant (or peer) that cannot run on the device in that dtype is
left out and named under ``skipped`` with its error. The CPU targets are not evaluated there.
Writes ``efficient_<device>_<dtype>.json`` and ``.png`` (``efficient_cpu.json`` for the CPU
in float32).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attention_lib import reference_attention  # noqa: E402
from attention_lib.efficient import zoo  # noqa: E402
from attention_lib.masks import sliding_window_mask  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WINDOW = 256
FLASH_BLOCK = 512
NUM_FEATURES = 256
BUCKET = 64
D, B, H = 64, 1, 2
#: Where and in which dtype the variants run (``--device``, ``--dtype``).
DEVICE, DTYPE = torch.device("cpu"), torch.float32
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SDPA_BACKENDS = {"sdpa-flash": "FLASH_ATTENTION", "sdpa-efficient": "EFFICIENT_ATTENTION",
                 "sdpa-math": "MATH"}


def results_stem(device=None, dtype=None):
    """File name, without extension, of the results of one (device, dtype)."""
    device, dtype = torch.device(device or DEVICE), dtype or DTYPE
    if device.type == "cpu" and dtype == torch.float32:
        return "efficient_cpu"
    return f"efficient_{device.type}_{str(dtype).removeprefix('torch.')}"


def make_peer(is_causal):
    """The local-attention package's LocalAttention with our exact window, or None."""
    try:
        from local_attention import LocalAttention
    except Exception:  # not installed (optional), or broken: skip it
        return None
    return LocalAttention(window_size=WINDOW, causal=is_causal, look_backward=1,
                          look_forward=0 if is_causal else 1, exact_windowsize=True,
                          autopad=True, use_rotary_pos_emb=False, dropout=0.0).eval().to(DEVICE)


def make_performer_peer(is_causal):
    """performer-pytorch's FastAttention (FAVOR+, orthogonal, NUM_FEATURES features), or None."""
    try:
        import contextlib
        import io

        from performer_pytorch import FastAttention
    except Exception:  # not installed (optional), or broken: skip it
        return None
    torch.manual_seed(0)  # the package draws its projection from the global generator
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a notice in causal mode
        return FastAttention(dim_heads=D, nb_features=NUM_FEATURES,
                             causal=is_causal).eval().to(DEVICE)


def make_reformer_peer(is_causal):
    """reformer-pytorch's LSHAttention (shared QK, 2 hashing rounds, chunks of 64 like ours,
    duplicates removed like ours) as fn(q, k, v) on (B, H, N, D), or None. Like ours it hashes
    the queries and uses them as keys; ``k`` is not used."""
    try:
        from reformer_pytorch.reformer_pytorch import LSHAttention
    except Exception:  # not installed (optional), or broken: skip it
        return None
    lsh = LSHAttention(bucket_size=BUCKET, n_hashes=2, causal=is_causal,
                       allow_duplicate_attention=False).eval().to(DEVICE)

    def fn(q, k, v):
        b, h, n, d = q.shape
        qk, vv = q.reshape(b * h, n, d), v.reshape(b * h, n, v.shape[-1])
        pad = -n % (2 * BUCKET)  # the package needs N divisible by twice the chunk size:
        if pad:  # pad, and mask the padding out of the keys
            qk = torch.nn.functional.pad(qk, (0, 0, 0, pad))
            vv = torch.nn.functional.pad(vv, (0, 0, 0, pad))
        mask = torch.arange(n + pad, device=q.device).expand(b * h, -1) < n
        out = lsh(qk, vv, input_mask=mask if pad else None)[0][:, :n]
        return out.reshape(b, h, n, v.shape[-1])
    return fn


def sdpa_backend(backend):
    """``build(n, is_causal)`` of torch SDPA pinned to one backend (a ``SDPBackend`` name)."""
    def build(n, is_causal):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def fn(q, k, v):
            with sdpa_kernel(getattr(SDPBackend, backend)):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v,
                                                                       is_causal=is_causal)
        return fn
    return build


def all_variants():
    """Every benchmarked attention, name -> ``attention_lib.efficient.zoo.Variant``: the
    course's (``zoo.catalog``), the peers that are installed (``pip install .[peers]``) and,
    on a GPU, torch SDPA pinned to each of its backends."""
    variants = zoo.catalog(head_dim=D, window=WINDOW, flash_block=FLASH_BLOCK,
                           num_features=NUM_FEATURES, bucket_size=BUCKET, device=DEVICE)
    if DEVICE.type == "cuda":
        for name, backend in SDPA_BACKENDS.items():
            variants[name] = zoo.Variant(name, "exact", "full", "16_flash_attention", True,
                                         "time N^2, memory N (fused kernel)",
                                         sdpa_backend(backend))
    if make_peer(False) is not None:
        variants["local-attention"] = zoo.Variant(
            "local-attention", "sparse", "window", "11_sparse_attention", True,
            "time N w, memory N w", lambda n, c: make_peer(c))
    if make_reformer_peer(False) is not None:
        variants["reformer-pytorch"] = zoo.Variant(
            "reformer-pytorch", "learned sparsity", None, "12_learned_sparsity", True,
            "time N c, memory N c (c: chunk)", lambda n, c: make_reformer_peer(c))
    if make_performer_peer(False) is not None:
        variants["performer-pytorch"] = zoo.Variant(
            "performer-pytorch", "random features", "full", "15_random_features", True,
            "time N m D, memory N m", lambda n, c: make_performer_peer(c))
    return variants


PEERS = ("local-attention", "performer-pytorch", "reformer-pytorch")
_USABLE = {}  # (device, dtype) -> (variants that run there, {skipped name: reason})


def usable_variants():
    """:func:`all_variants` less those that fail on a small input on ``DEVICE`` in ``DTYPE``
    (e.g. FlashAttention in float32 on a GPU, a peer that mixes dtypes); the skipped ones,
    with their errors, are given by :func:`skipped_variants`."""
    key = (DEVICE, DTYPE)
    if key not in _USABLE:
        ok, skipped = {}, {}
        q, k, v = inputs(4 * BUCKET, seed=3)
        for name, var in all_variants().items():
            try:
                with torch.no_grad():
                    for causal in (False, True) if var.causal else (False,):
                        var.build(4 * BUCKET, causal)(q, k, v)
                ok[name] = var
            except Exception as err:  # recorded in the results, not fatal
                skipped[name] = f"{type(err).__name__}: {str(err)[:200]}"
        _USABLE[key] = (ok, skipped)
    return _USABLE[key][0]


def skipped_variants():
    usable_variants()
    return _USABLE[(DEVICE, DTYPE)][1]


def variants(is_causal, n=None):
    """name -> fn(q, k, v) for every variant that supports ``is_causal``."""
    return {name: var.build(n, is_causal) for name, var in usable_variants().items()
            if var.causal or not is_causal}


def exact_names(fns):
    allv = usable_variants()
    return [name for name in fns if allv[name].family in ("exact", "sparse")]


def inputs(n, seed=0):
    """Unit Gaussian q, k, v of shape (B, H, n, D), drawn on the CPU (the same numbers on every
    device), then moved to ``DEVICE`` in ``DTYPE``."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, n, D, generator=gen).to(DEVICE, DTYPE) for _ in range(3)]


def check_correctness(is_causal, n=1024):
    """Max abs error of each exact variant against ``reference_attention`` (the windowed ones:
    with the window's mask) at one N, in float32."""
    q, k, v = inputs(n, seed=1)
    full = reference_attention(q, k, v, is_causal=is_causal)
    windowed = reference_attention(q, k, v, sliding_window_mask(n, WINDOW), is_causal=is_causal)
    errs = {}
    fns = variants(is_causal, n)
    with torch.no_grad():
        for name in exact_names(fns):
            ref = windowed if usable_variants()[name].target == "window" else full
            errs[name] = float((fns[name](q, k, v).float() - ref.float()).abs().max())
    return errs


def performer_peer_diagnostics(n=2048, scales=(0.25, 0.5, 0.75, 1.0), draws=8):
    """Why performer-pytorch's error on unit-Gaussian inputs is lower than ours: its feature
    map adds eps = 1e-4 to every (stabilised) feature, which at D = 64 dwarfs most of them and
    pulls its output towards the uniform average of the values.

    Both get the same inputs and, for each of ``draws`` draws, the same orthogonal projection
    (ours, copied into the package's ``projection_matrix`` buffer), so that the only
    difference left is the package's eps. Measured at several input scales (q and k multiplied
    by the scale), as the mean over the draws: the relative error against full attention of
    ours, of FAVOR++ (same draws), of the package with its own eps and with eps = 0, and each
    package output's distance from the uniform average; ``max relative difference, package
    eps=0 vs ours`` is the largest, over the draws, of
    ``||package(eps = 0) - ours|| / ||ours||``. None when the package is missing."""
    try:
        import performer_pytorch.performer_pytorch as pp
    except Exception:
        return None
    from attention_lib.efficient.random_features import performer_attention, random_projection

    q0, k0, v = inputs(n, seed=2)
    peer = make_performer_peer(False)
    projections = [random_projection(NUM_FEATURES, D, orthogonal=True, dtype=q0.dtype,
                                     generator=torch.Generator().manual_seed(seed)).to(DEVICE)
                   for seed in range(draws)]
    uniform = v.mean(-2, keepdim=True).expand_as(v)
    default_eps = pp.softmax_kernel.__kwdefaults__["eps"]
    labels = {default_eps: f"performer-pytorch eps={default_eps:g}", 0.0: "performer-pytorch eps=0"}
    rows = []
    with torch.no_grad():
        for s in scales:
            q, k = q0 * s, k0 * s
            ref = zoo.targets(q, k, v, window=WINDOW)["full"]
            errs = {key: [] for key in ("performer", "favor++", *labels.values(),
                                        *(f"{lab} distance to uniform" for lab in labels.values()))}
            same = []
            try:
                for proj in projections:
                    peer.projection_matrix.copy_(proj)
                    ours = performer_attention(q, k, v, proj)
                    errs["performer"].append(zoo.relative_error(ours, ref))
                    errs["favor++"].append(zoo.relative_error(
                        performer_attention(q, k, v, proj, kind="optimized"), ref))
                    for eps, label in labels.items():
                        pp.softmax_kernel.__kwdefaults__["eps"] = eps
                        o = peer(q, k, v)
                        errs[label].append(zoo.relative_error(o, ref))
                        errs[f"{label} distance to uniform"].append(zoo.relative_error(o, uniform))
                        if eps == 0.0:
                            same.append(zoo.relative_error(o, ours))
            finally:
                pp.softmax_kernel.__kwdefaults__["eps"] = default_eps
            row = {"scale": s, "uniform": zoo.relative_error(uniform, ref)}
            row.update({key: sum(vals) / len(vals) for key, vals in errs.items()})
            row["performer min..max over draws"] = [min(errs["performer"]), max(errs["performer"])]
            row["max relative difference, package eps=0 vs ours"] = max(same)
            rows.append(row)
            print("  " + ", ".join(f"{key} {val:.3g}" for key, val in row.items()
                                   if not isinstance(val, list)), flush=True)
    return {"n": n, "draws": draws, "rows": rows, "peer_projection_is_ours": True,
            "note": f"mean over {draws} orthogonal projections (seeds 0..{draws - 1}), each "
                    "given to both implementations"}


def cuda_peak_bytes(fn, q, k, v):
    """Growth of the CUDA allocator's peak during one call (fused kernels' workspace too)."""
    torch.cuda.synchronize(DEVICE)
    torch.cuda.reset_peak_memory_stats(DEVICE)
    base = torch.cuda.memory_allocated(DEVICE)
    with torch.no_grad():
        out = fn(q, k, v)
    torch.cuda.synchronize(DEVICE)
    peak = torch.cuda.max_memory_allocated(DEVICE) - base
    del out
    return peak


def record(r: dict) -> dict:
    """One ``zoo.measure`` result as a point of the results JSON."""
    return {"time_s": r["time_s"], "time_min_s": r["time_min_s"], "times_s": r["times_s"],
            "tracked_peak_bytes": r["peak_bytes"], "tracked_largest_bytes": r["largest_bytes"],
            "relative_error_vs_full": r["error_vs_full"],
            "relative_error_vs_own_target": r["error_vs_target"]}


def time_sweep(sizes, repeats, is_causal):
    out = {}
    for n in sizes:
        q, k, v = inputs(n)
        usable = usable_variants()
        res = zoo.measure(usable, q, k, v, is_causal=is_causal, repeats=repeats,
                          window=WINDOW)
        out[n] = {name: record(r) for name, r in res.items()}
        if DEVICE.type == "cuda":
            for name in res:
                out[n][name]["cuda_peak_bytes"] = cuda_peak_bytes(
                    usable[name].build(n, is_causal), q, k, v)
        line = "  ".join(f"{name} {r['time_s'] * 1e3:.1f} ms "
                         f"{r['tracked_peak_bytes'] / 2**20:.1f} MiB"
                         for name, r in out[n].items())
        print(f"  N={n:6d}  {line}", flush=True)
        del q, k, v
    return out


RSS_SCRIPT = r"""
import sys, torch
sys.path.insert(0, {root!r})
import benchmarks.efficient as be
torch.set_num_threads({threads})
fn = be.all_variants()[{name!r}].build({n}, {causal})

def status(field):  # kB, from the kernel's accounting of this process
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

with torch.no_grad():
    # lazy initialisation (thread pools, kernels) before measuring, on a small input
    be.all_variants()[{name!r}].build(64, {causal})(*be.inputs(64))
    q, k, v = be.inputs({n})
    # Reset the high-water mark to the current RSS (Linux: clear_refs "5"). ru_maxrss would
    # not do: it is inherited from the parent across fork and exec.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    out = fn(q, k, v)
    after = status("VmHWM")
print((after - before) * 1024)
"""


def rss_sweep(sizes, names, is_causal):
    out = {}
    for n in sizes:
        out[n] = {}
        for name in names:
            code = RSS_SCRIPT.format(root=str(ROOT), threads=torch.get_num_threads(),
                                     causal=is_causal, name=name, n=n)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                     [str(ROOT), os.environ.get("PYTHONPATH", "")])})
            if res.returncode != 0:
                print(f"  rss {name} N={n} failed: {res.stderr.strip()[-300:]}")
                continue
            out[n][name] = int(res.stdout.strip().splitlines()[-1])
        print(f"  rss N={n:6d}  " + "  ".join(f"{k} {v / 2**20:7.1f} MiB"
                                             for k, v in out[n].items()), flush=True)
    return out


def slope(xs, ys):
    """Least-squares slope of log(ys) against log(xs)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-12)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


#: Which time of the repeats the ratios and fitted exponents use (see --statistic).
STATISTIC = {"min": "time_min_s", "median": "time_s"}


def summarise(sweep, rss, statistic="min"):
    sizes = sorted(sweep)
    names = list(sweep[sizes[0]])
    summary = {}
    key = STATISTIC[statistic]
    for name in names:
        t = [sweep[n][name][key] for n in sizes]
        m = [sweep[n][name]["tracked_peak_bytes"] for n in sizes]
        t_med = [sweep[n][name]["time_s"] for n in sizes]
        s = {"time_statistic": statistic,
             "time_exponent": slope(sizes, t), "time_exponent_tail": slope(sizes[-2:], t[-2:]),
             "time_exponent_of_median": slope(sizes, t_med),
             "tracked_memory_exponent": slope(sizes, m),
             "tracked_memory_exponent_tail": slope(sizes[-2:], m[-2:]),
             "speedup_vs_sdpa": {n: sweep[n]["sdpa"][key] / sweep[n][name][key]
                                 for n in sizes},
             "speedup_vs_naive": {n: sweep[n]["naive"][key] / sweep[n][name][key]
                                  for n in sizes},
             "tracked_memory_vs_naive": {n: sweep[n][name]["tracked_peak_bytes"]
                                         / sweep[n]["naive"]["tracked_peak_bytes"]
                                         for n in sizes},
             "relative_error_vs_full": {n: sweep[n][name]["relative_error_vs_full"]
                                        for n in sizes}}
        if all("cuda_peak_bytes" in sweep[n][name] for n in sizes):
            cm = [sweep[n][name]["cuda_peak_bytes"] for n in sizes]
            s["cuda_memory_exponent"] = slope(sizes, cm)
            s["cuda_memory_vs_naive"] = {n: sweep[n][name]["cuda_peak_bytes"]
                                         / max(sweep[n]["naive"]["cuda_peak_bytes"], 1)
                                         for n in sizes}
        if rss:
            rs = [n for n in sorted(rss) if name in rss[n] and "naive" in rss[n]]
            s["rss_bytes"] = {n: rss[n][name] for n in rs}
            s["rss_vs_naive"] = {n: rss[n][name] / max(rss[n]["naive"], 1) for n in rs}
            big = [n for n in rs if n >= 2048]  # below, RSS is under its noise floor
            if len(big) >= 2:
                s["rss_exponent_large_n"] = slope(big, [rss[n][name] for n in big])
        summary[name] = s
    return summary


def targets(results):
    """The targets at N = 8192 (non-causal): measured values and whether each was met."""
    nc = results["non_causal"]
    config = results["config"]
    if config.get("device", "cpu") != "cpu" or config["dtype"] != "float32":
        return {}  # the targets are those of the CPU in float32
    if 8192 not in nc["sweep"]:
        return {}
    at = nc["sweep"][8192]
    sm = nc["summary"]
    t, ok = {}, {}

    def add(key, value, met):
        t[key], ok[key] = value, met

    key = STATISTIC[results["config"]["time_statistic"]]

    def faster(name, than):
        return at[than][key] / at[name][key]

    add("local >= 2x faster than sdpa at N=8192", faster("local", "sdpa"), lambda x: x >= 2.0)
    add("local fitted time exponent <= 1.15", sm["local"]["time_exponent"], lambda x: x <= 1.15)
    add("local tracked peak memory <= 1/10 of naive at N=8192",
        sm["local"]["tracked_memory_vs_naive"][8192], lambda x: x <= 0.1)
    add("flash tracked peak-memory exponent <= 1.1", sm["flash"]["tracked_memory_exponent"],
        lambda x: x <= 1.1)
    add("flash max abs error vs reference (float32, N=1024)", nc["max_abs_error"]["flash"],
        lambda x: x <= 1e-5)
    add("linear >= 5x faster than sdpa at N=8192", faster("linear", "sdpa"), lambda x: x >= 5.0)
    add("linear fitted time exponent <= 1.15", sm["linear"]["time_exponent"],
        lambda x: x <= 1.15)
    add("linear tracked peak memory <= 1/10 of naive at N=8192",
        sm["linear"]["tracked_memory_vs_naive"][8192], lambda x: x <= 0.1)
    for name in ("rfa", "performer"):
        add(f"{name} ({NUM_FEATURES} features) >= 3x faster than sdpa at N=8192",
            faster(name, "sdpa"), lambda x: x >= 3.0)
    if "local-attention" in at:
        add("local at least as fast as the local-attention package at N=8192",
            faster("local", "local-attention"), lambda x: x >= 1.0)
    if "performer-pytorch" in at:
        add("performer at least as fast as the performer-pytorch package at N=8192",
            faster("performer", "performer-pytorch"), lambda x: x >= 1.0)
        add("performer relative error vs full attention <= performer-pytorch's (+5%), N=8192",
            at["performer"]["relative_error_vs_full"]
            / at["performer-pytorch"]["relative_error_vs_full"], lambda x: x <= 1.05)
    if "reformer-pytorch" in at:
        add("lsh at least as fast as the reformer-pytorch package at N=8192",
            faster("lsh", "reformer-pytorch"), lambda x: x >= 1.0)
    if "rss_vs_naive" in sm["local"] and 8192 in sm["local"]["rss_vs_naive"]:
        add("local peak RSS growth <= 1/10 of naive at N=8192", sm["local"]["rss_vs_naive"][8192],
            lambda x: x <= 0.1)
    return {k: {"measured": v, "met": bool(ok[k](v))} for k, v in t.items()}


# One colour and one marker per method, the same in every panel (colour-blind-safe
# Okabe-Ito and Tol colours; the marker tells apart methods whose colours are close).
STYLE = {
    "naive": ("#D55E00", "o"), "sdpa": ("#000000", "s"), "flash": ("#009E73", "^"),
    "local": ("#E69F00", "o"), "local-attention": ("#882255", "D"),
    "lsh": ("#0072B2", "o"), "routing": ("#CC79A7", "s"), "sinkhorn": ("#117733", "D"),
    "reformer-pytorch": ("#999933", "v"),
    "linformer": ("#56B4E9", "o"), "linear": ("#AA4499", "s"), "uniform": ("#777777", "x"),
    "rfa": ("#994F00", "^"), "performer": ("#332288", "s"), "favor++": ("#44AA99", "D"),
    "performer-pytorch": ("#E41A1C", "v"),
}
FAMILIES = {
    "exact": ("naive", "sdpa", "flash"),
    "sliding window": ("local", "local-attention"),
    "learned sparsity": ("lsh", "routing", "sinkhorn", "reformer-pytorch"),
    "low rank and kernel": ("linformer", "linear", "uniform"),
    "random features": ("rfa", "performer", "favor++", "performer-pytorch"),
}


def plot(results, path):
    """Small multiples of the non-causal sweep: one panel of time against N per family
    (SDPA in grey in each, for reference), and one of error against speed-up at the
    largest N. One colour and marker per method throughout; 6.9 in wide, for the book's
    content column."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    key = STATISTIC[results["config"].get("time_statistic", "median")]
    sweep = {int(n): v for n, v in results["non_causal"]["sweep"].items()}
    sizes = sorted(sweep)
    top = sizes[-1]
    with plt.rc_context({"font.size": 9, "legend.fontsize": 8}):
        fig, axes = plt.subplots(2, 3, figsize=(6.9, 5.0), sharex=False)
        for ax, (family, names) in zip(axes.flat, FAMILIES.items()):
            sdpa = [sweep[n]["sdpa"][key] * 1e3 for n in sizes]
            ax.plot(sizes, sdpa, color="#BBBBBB", lw=2.5, zorder=0,
                    label="sdpa" if "sdpa" not in names else None)
            for name in names:
                if name not in sweep[top]:
                    continue
                colour, marker = STYLE[name]
                t = [sweep[n][name][key] * 1e3 for n in sizes]
                ax.plot(sizes, t, color=colour, marker=marker, ms=4, lw=1.2,
                        ls=":" if name in PEERS else "-", label=name)
            ax.set(xscale="log", yscale="log", title=family)
            ax.set_xticks([sizes[0], 2048, top], [str(sizes[0]), "2K", f"{top // 1024}K"])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", handlelength=1.8, borderaxespad=0.3)
        for ax in axes[:, 0]:
            ax.set_ylabel("time per call (ms)")
        for ax in axes[1, :2]:
            ax.set_xlabel("sequence length N")
        ax = axes[1, 2]
        for name, (colour, marker) in STYLE.items():
            if name in FAMILIES["exact"] or name not in sweep[top]:
                continue
            r = sweep[top][name]
            speed = sweep[top]["sdpa"][key] / r[key]
            err = r.get("relative_error_vs_full")
            if err is not None:
                ax.scatter(speed, err, color=colour, marker=marker, s=22)
        flat = sweep[top]["uniform"]["relative_error_vs_full"]
        ax.axhline(flat, color="#777777", lw=1, ls="--")
        ax.text(30, flat * 1.3, "uniform", va="bottom", fontsize=8, color="#555555")
        ax.axvline(1.0, color="#BBBBBB", lw=1)
        ax.set(xscale="log", yscale="log", xlabel=f"speed-up over SDPA, {top // 1024}K",
               ylabel=f"error against softmax, {top // 1024}K",
               title="error against speed")
        ax.grid(alpha=0.3)
        fig.tight_layout(pad=0.4, h_pad=0.6, w_pad=0.4)
        fig.savefig(path, dpi=100)
    plt.close(fig)


def add_sweep_arguments(p: argparse.ArgumentParser, *, quick_help: str) -> None:
    """The options of a sweep over N (this script's and sparse_patterns.py's)."""
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    p.add_argument("--with-16k", action="store_true", help="also N = 16384")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's choice, one per core); on a busy "
                        "shared machine, 1 thread avoids stalls at every parallel region")
    p.add_argument("--statistic", choices=sorted(STATISTIC), default="min",
                   help="time of the repeats that ratios and exponents use (default: min; "
                        "the medians are kept in the JSON either way)")
    p.add_argument("--out", type=Path, default=RESULTS)


def sweep_settings(args) -> tuple[list[int], int]:
    """Apply ``--threads``; return the lengths and the repeats the options ask for."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = [512, 1024, 2048] if args.quick else list(args.sizes)
    if args.with_16k and 16384 not in sizes:
        sizes.append(16384)
    return sizes, 3 if args.quick else args.repeats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_sweep_arguments(p, quick_help="N = 512..2048, 3 repeats, no RSS")
    p.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS measurement")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--diagnostics-only", action="store_true",
                   help="no timing: recompute only the performer-pytorch diagnostics (errors, "
                        "deterministic) into the JSON already in --out")
    p.add_argument("--replot", action="store_true",
                   help="no measurement: recompute the summaries, targets and PNG from the "
                        "JSON already in --out (e.g. with another --statistic)")
    args = p.parse_args(argv)
    global DEVICE, DTYPE
    DEVICE, DTYPE = torch.device(args.device), DTYPES[args.dtype]
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    stem = results_stem()
    if args.diagnostics_only:
        path = args.out / f"{stem}.json"
        if not path.is_file():
            p.error(f"--diagnostics-only updates {path}, which does not exist: run the "
                    "benchmark first")
        results = json.loads(path.read_text())
        diag = performer_peer_diagnostics()
        if diag is None:
            p.error("--diagnostics-only needs performer-pytorch (pip install .[peers])")
        results["performer_peer_diagnostics"] = diag
        path.write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote the diagnostics into {path}")
        return
    if args.replot:  # no measurement: summaries, targets and figure again from the sweep
        results = json.loads((args.out / f"{stem}.json").read_text())
        results["config"]["time_statistic"] = args.statistic
        for mode in ("non_causal", "causal"):
            r = results[mode]
            r["sweep"] = {int(n): v for n, v in r["sweep"].items()}
            rss = {int(n): v for n, v in r["rss_bytes"].items()} if r.get("rss_bytes") else None
            r["summary"] = summarise(r["sweep"], rss, args.statistic)
        results["targets"] = targets(results)
        (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
        plot(results, args.out / f"{stem}.png")
        return
    sizes, repeats = sweep_settings(args)
    if torch.cuda.is_available() and DEVICE.type == "cpu":
        print("note: this run measures the CPU; --device cuda measures the GPU")
    load = os.getloadavg()[0]
    if DEVICE.type == "cpu" and load > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs: other processes "
              f"compete for the cores, and timings of many small operations suffer most")
    results = {
        "machine": {"torch": torch.__version__, "python": platform.python_version(),
                    "platform": platform.platform(), "processor": platform.processor(),
                    "threads": torch.get_num_threads(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg(),
                    "gpu": (torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda"
                            else None)},
        "config": {"D": D, "B": B, "H": H, "device": DEVICE.type, "dtype": args.dtype,
                   "window": WINDOW,
                   "flash_block": FLASH_BLOCK, "sizes": sizes, "repeats": repeats,
                   "num_features": NUM_FEATURES, "time_statistic": args.statistic,
                   "peer_local_attention": make_peer(False) is not None,
                   "peer_performer_pytorch": make_performer_peer(False) is not None,
                   "peer_reformer_pytorch": make_reformer_peer(False) is not None,
                   "memory": "tracked = attention_lib.efficient.memory.peak_memory; rss = "
                             "VmHWM growth during one call in a fresh subprocess; "
                             "cuda_peak_bytes = growth of torch.cuda.max_memory_allocated"},
        "skipped": skipped_variants(),
    }
    for name, reason in results["skipped"].items():
        print(f"skipped {name}: {reason}")
    for mode, causal in (("non_causal", False), ("causal", True)):
        n_check = min(1024, max(sizes))
        print(f"== {mode}: correctness at N = {n_check}", flush=True)
        errs = check_correctness(causal, n_check)
        print("  max abs error:", {k: f"{v:.1e}" for k, v in errs.items()})
        print(f"== {mode}: time and tracked memory", flush=True)
        sweep = time_sweep(sizes, repeats, causal)
        rss = None
        if mode == "non_causal" and DEVICE.type == "cpu" and not (args.quick or args.no_rss):
            print(f"== {mode}: peak RSS growth, one fresh process per point", flush=True)
            rss = rss_sweep(sizes, list(sweep[sizes[0]]), causal)
        results[mode] = {"max_abs_error": errs, "sweep": sweep, "rss_bytes": rss,
                         "summary": summarise(sweep, rss, args.statistic)}
    if not args.quick:
        print("== performer-pytorch vs ours against input scale", flush=True)
        results["performer_peer_diagnostics"] = performer_peer_diagnostics()
    results["machine"]["load_average_after"] = os.getloadavg()
    results["targets"] = targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    plot(results, args.out / f"{stem}.png")
    print("== summary (non-causal)")
    for name, s in results["non_causal"]["summary"].items():
        print(f"  {name:16s} time ~ N^{s['time_exponent']:.2f} "
              f"(tail {s['time_exponent_tail']:.2f}),"
              f" tracked memory ~ N^{s['tracked_memory_exponent']:.2f}, speed-up vs SDPA at "
              f"N={sizes[-1]}: {s['speedup_vs_sdpa'][sizes[-1]]:.2f}x")
    for k, v in results["targets"].items():
        print(f"  target: {k}: {v['measured']:.3g} -> {'met' if v['met'] else 'MISSED'}")
    print(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.png')}")


if __name__ == "__main__":
    main()
