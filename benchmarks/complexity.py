"""Self-attention, convolution and recurrence measured as n, d and k grow (chapter 9's sweep).

    python benchmarks/complexity.py            # the full sweep, a few minutes; writes results/
    python benchmarks/complexity.py --quick    # small sizes (smoke test, seconds)
    python benchmarks/complexity.py --refit    # recompute fits and claims of the saved JSON

For the three layers of ``attention_lib.complexity`` (a same-length Conv1d of kernel k, a GRU,
single-head self-attention with its four projections), all mapping (1, n, d) to (1, n, d),
float32, on the CPU, inference (``no_grad``):

* **FLOPs**, counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
  convolutions) while the layer runs (the GRU's n steps make this the slow part: every
  ``aten`` op passes through the Python counter);
* **time**, the median of ``--repeats`` runs after a warm-up, the layers interleaved
  round-robin so that machine noise hits them alike. Fits use the **CPU time** of the
  process (``time.process_time``, one torch thread): unlike wall time it does not count the
  time the thread waits for a core while other processes run, which on a shared machine
  swamps everything else. Wall time (median and minimum) is recorded too;
* **peak memory**, the peak total size of the tensors the call creates
  (``attention_lib.efficient.memory.peak_memory``);
* **sequential steps**, the critical path of dependent ``aten`` operations
  (``attention_lib.complexity.sequential_steps``), at small d;
* **maximum path length**, the fewest stacked layers (for the GRU: cell steps) after which every
  output depends on every input it can see, from gradients (``path_lengths``), at d = 4.

Sweeps: n at fixed d (``n >> d``, so that attention's n^2 d term dominates its 8 n d^2 of
projections), d at fixed n (the same regime, n >= 8 d), and k for the convolution. Exponents
are least-squares slopes in log-log space. FLOP exponents are fitted over the whole sweep and
must be within 0.2 of Table 1 of Vaswani et al. (2017). Time exponents are fitted over the
three largest sizes of each sweep only, where the fixed cost of a call (Python, dispatch,
thread start-up: tens of microseconds per operation) is small beside the arithmetic, and where
self-attention's n x n matrices (64 MiB and more at n >= 4096) are past the last-level cache
of a typical CPU and past the size up to which glibc's allocator reuses freed memory instead
of mapping fresh pages on every call (32 MiB): below that, the cost per element of a pass over
the matrices changes with n, and the fitted exponent with it. They are
compared with the same table where the layer does enough arithmetic per operation for time to
follow FLOPs (see ``TIME_CLAIMS``), and only reported elsewhere: the convolution at d = 32
takes about a millisecond per call, and at batch 1 each GRU step is a (1, d) x (d, 3d)
product, so its time in d is mostly per-step overhead on a CPU.

The crossover where self-attention's FLOPs overtake the GRU's is found from counted FLOPs on a
grid of n for several d (theory: 4 n^2 d + 8 n d^2 = 12 n d^2 at n = d); the same crossover in
wall time is measured too, and lies far beyond n = d on a CPU: the GRU's n sequential steps
cannot use the machine's parallel arithmetic, attention's few large products can.

Torch runs single-threaded by default (``--threads``): the exponents describe how the work
grows, not how well it parallelises, and one thread is also the least disturbed on a busy
shared machine. Writes ``benchmarks/results/complexity_cpu.json`` and ``complexity_cpu.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attention_lib.complexity import (  # noqa: E402
    LAYER_KINDS,
    TEXTBOOK,
    count_flops,
    crossover,
    fit_exponent,
    make_layer,
    max_path_length,
    path_lengths,
    sequential_steps,
)
from attention_lib.efficient.memory import peak_memory  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KERNEL = 3
FULL = dict(n_sweep=[512, 1024, 2048, 4096, 8192, 16384], n_sweep_d=32,
            d_sweep=[32, 64, 128, 256, 512], d_sweep_n=4096,
            k_sweep=[3, 5, 9, 17, 33], k_sweep_nd=(2048, 128),
            steps_n=[64, 128, 256, 512, 1024], steps_d=8,
            path_n=[8, 16, 32, 64], path_d=4,
            cross_d=[16, 32, 64, 128],
            time_cross_d=[32, 128], time_cross_n=[64, 256, 1024, 4096, 8192])
QUICK = dict(n_sweep=[64, 128, 256], n_sweep_d=8, d_sweep=[8, 16, 32], d_sweep_n=256,
             k_sweep=[3, 5, 9], k_sweep_nd=(128, 16), steps_n=[8, 16, 32], steps_d=4,
             path_n=[4, 8, 16], path_d=3, cross_d=[4, 8],
             time_cross_d=[8], time_cross_n=[8, 32, 128])

#: (kind, sweep) pairs whose fitted time exponent is compared with Table 1 (within
#: TIME_TOLERANCE): those where each operation does enough arithmetic for time to follow it.
#: Reported only: the convolution in n at d = 32 (one call takes about a millisecond, so a
#: fixed cost per call is a large part of it) and the GRU in d (each of its n steps is a
#: handful of operations on a (1, d) state, a few microseconds each, mostly fixed cost).
TIME_CLAIMS = [("attention", "n"), ("attention", "d"), ("rnn", "n"), ("conv", "d"),
               ("conv", "k")]
TIME_TOLERANCE = 0.3
FLOP_TOLERANCE = 0.2


def _layer(kind, d, k=KERNEL, device="cpu"):
    return make_layer(kind, d, kernel_size=k, generator=torch.Generator().manual_seed(0),
                      device=device)


def _timed(fn, x):
    """(wall seconds, CPU seconds of this process) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn(x)
    return time.perf_counter() - w0, time.process_time() - c0


def _median(xs):
    return sorted(xs)[len(xs) // 2]


def sweep(points, repeats):
    """points: list of (label, {kind: (layer, x)}) -> {kind: {flops, cpu_time_s, ...}} lists."""
    out = {}
    for label, cases in points:
        with torch.no_grad():
            for layer, x in cases.values():  # warm-up
                layer(x)
            times = {kind: [] for kind in cases}
            for _ in range(repeats):  # round-robin
                for kind, (layer, x) in cases.items():
                    times[kind].append(_timed(layer, x))
            for kind, (layer, x) in cases.items():
                r = out.setdefault(kind, {"flops": [], "cpu_time_s": [], "wall_time_s": [],
                                          "wall_time_min_s": [], "peak_bytes": []})
                r["flops"].append(count_flops(layer, x))
                r["cpu_time_s"].append(max(_median([c for _, c in times[kind]]), 1e-9))
                r["wall_time_s"].append(_median([w for w, _ in times[kind]]))
                r["wall_time_min_s"].append(min(w for w, _ in times[kind]))
                r["peak_bytes"].append(peak_memory(layer, x).peak_bytes)
        print(f"  {label:>10}  " + "  ".join(
            f"{kind} {out[kind]['cpu_time_s'][-1] * 1e3:8.2f} ms "
            f"{out[kind]['peak_bytes'][-1] / 2**20:7.2f} MiB"
            for kind in cases), flush=True)
    return out


def _x(n, d, seed=0):
    return torch.randn(1, n, d, generator=torch.Generator().manual_seed(seed))


def run(cfg, repeats):
    res = {}
    d = cfg["n_sweep_d"]
    print(f"== n sweep at d = {d}", flush=True)
    res["n"] = {"fixed": {"d": d, "k": KERNEL}, "values": cfg["n_sweep"], "results": sweep(
        [(f"n={n}", {kind: (_layer(kind, d), _x(n, d)) for kind in LAYER_KINDS})
         for n in cfg["n_sweep"]], repeats)}
    n = cfg["d_sweep_n"]
    print(f"== d sweep at n = {n}", flush=True)
    res["d"] = {"fixed": {"n": n, "k": KERNEL}, "values": cfg["d_sweep"], "results": sweep(
        [(f"d={dd}", {kind: (_layer(kind, dd), _x(n, dd)) for kind in LAYER_KINDS})
         for dd in cfg["d_sweep"]], repeats)}
    n, d = cfg["k_sweep_nd"]
    print(f"== k sweep (convolution) at n = {n}, d = {d}", flush=True)
    res["k"] = {"fixed": {"n": n, "d": d}, "values": cfg["k_sweep"], "results": sweep(
        [(f"k={k}", {"conv": (_layer("conv", d, k), _x(n, d))}) for k in cfg["k_sweep"]],
        repeats)}
    d = cfg["steps_d"]
    print(f"== sequential steps at d = {d}", flush=True)
    steps = {kind: [sequential_steps(_layer(kind, d), _x(n, d)) for n in cfg["steps_n"]]
             for kind in LAYER_KINDS}
    print("  ", steps, flush=True)
    res["sequential"] = {"fixed": {"d": d, "k": KERNEL}, "values": cfg["steps_n"],
                         "steps": steps}
    d = cfg["path_d"]
    print(f"== maximum path length at d = {d}", flush=True)
    paths = {kind: [max_path_length(path_lengths(kind, n, d, kernel_size=KERNEL))
                    for n in cfg["path_n"]] for kind in LAYER_KINDS}
    print("  ", paths, flush=True)
    res["path"] = {"fixed": {"d": d, "k": KERNEL}, "values": cfg["path_n"],
                   "max_path_length": paths}
    print("== crossover: where self-attention overtakes the GRU", flush=True)
    # for each d, n from about d/7 to 7d, spaced by sqrt(2) and never exactly d: the crossover
    # is interpolated between measured points, not read off a grid point
    grids = {dd: sorted({max(1, round(dd * 2 ** ((i + 0.5) / 2))) for i in range(-6, 6)})
             for dd in cfg["cross_d"]}
    flops = {dd: {kind: [count_flops(_layer(kind, dd), _x(nn, dd)) for nn in grid]
                  for kind in ("rnn", "attention")} for dd, grid in grids.items()}
    n_star = {dd: crossover(grids[dd], f["attention"], f["rnn"]) for dd, f in flops.items()}
    tgrid = cfg["time_cross_n"]
    tcross = {}
    for dd in cfg["time_cross_d"]:
        r = sweep([(f"d={dd} n={nn}", {kind: (_layer(kind, dd), _x(nn, dd))
                                       for kind in ("rnn", "attention")}) for nn in tgrid],
                  repeats)
        tcross[dd] = {"cpu_time_s": {kind: r[kind]["cpu_time_s"] for kind in r},
                      "n_star": crossover(tgrid, r["attention"]["cpu_time_s"],
                                          r["rnn"]["cpu_time_s"])}
    print(f"   FLOPs crossover n* by d: {n_star}; time crossover n* by d: "
          f"{ {dd: c['n_star'] for dd, c in tcross.items()} }", flush=True)
    res["crossover"] = {"n_grid": grids, "flops": flops, "flops_n_star": n_star,
                        "time_n_grid": tgrid, "time": tcross}
    return res


def _tail(xs, ys, m=3):
    return fit_exponent(xs[-m:], ys[-m:])


def fits(res):
    out = {}
    for kind in LAYER_KINDS:
        f = {}
        for sw in ("n", "d", "k"):
            r = res[sw]["results"].get(kind)
            if r is None:
                continue
            xs = res[sw]["values"]
            f[f"flops_{sw}"] = fit_exponent(xs, r["flops"])
            f[f"time_{sw}"] = _tail(xs, r["cpu_time_s"])
            f[f"wall_time_{sw}"] = _tail(xs, r["wall_time_s"])
            f[f"memory_{sw}"] = fit_exponent(xs, r["peak_bytes"])
        seq = res["sequential"]
        f["sequential_n"] = fit_exponent(seq["values"], seq["steps"][kind])
        p = res["path"]
        f["path_n"] = fit_exponent(p["values"], p["max_path_length"][kind])
        out[kind] = f
    ds = sorted(res["crossover"]["flops_n_star"], key=int)
    stars = [res["crossover"]["flops_n_star"][d] for d in ds]
    ds = [int(d) for d in ds]
    if len(ds) >= 2 and all(s is not None for s in stars):
        out["crossover_exponent_in_d"] = fit_exponent(ds, stars)
    return out


def claims(res, fit):
    """Every comparison with Table 1: measured, expected, tolerance, met."""
    c = {}

    def add(name, measured, expected, tol):
        c[name] = {"measured": measured, "expected": expected, "tolerance": tol,
                   "met": bool(abs(measured - expected) <= tol)}

    for kind in LAYER_KINDS:
        tb = TEXTBOOK[kind]
        for var, p in tb["flops_exponents"].items():
            add(f"{kind} FLOPs exponent in {var}", fit[kind][f"flops_{var}"], p, FLOP_TOLERANCE)
        add(f"{kind} sequential-steps exponent in n", fit[kind]["sequential_n"],
            tb["sequential_exponent"], FLOP_TOLERANCE)
        add(f"{kind} maximum-path-length exponent in n", fit[kind]["path_n"],
            tb["path_exponent"], FLOP_TOLERANCE)
    for kind, var in TIME_CLAIMS:
        add(f"{kind} CPU-time exponent in {var} (3 largest sizes)", fit[kind][f"time_{var}"],
            TEXTBOOK[kind]["flops_exponents"][var], TIME_TOLERANCE)
    for d, n_star in res["crossover"]["flops_n_star"].items():
        if n_star is not None:
            add(f"FLOPs crossover n*/d at d = {d}", n_star / int(d), 1.0, 0.2)
    return c


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    colors = {"conv": "C0", "rnn": "C3", "attention": "C2"}
    labels = {"conv": f"Conv1d (k={KERNEL})", "rnn": "GRU", "attention": "self-attention"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    sw = results["sweeps"]
    fit = results["fits"]
    panels = [(axes[0, 0], "n", "flops", "FLOPs", 1),
              (axes[0, 1], "n", "cpu_time_s", "CPU time (ms)", 1e3),
              (axes[0, 2], "n", "peak_bytes", "peak tensor memory (MiB)", 2.0 ** -20),
              (axes[1, 0], "d", "flops", "FLOPs", 1),
              (axes[1, 1], "d", "cpu_time_s", "CPU time (ms)", 1e3)]
    fit_key = {"flops": "flops", "cpu_time_s": "time", "peak_bytes": "memory"}
    for ax, var, key, ylabel, scale in panels:
        xs = sw[var]["values"]
        for kind, r in sw[var]["results"].items():
            e = fit[kind][f"{fit_key[key]}_{var}"]
            ax.plot(xs, [v * scale for v in r[key]], marker="o", color=colors[kind],
                    label=f"{labels[kind]}: slope {e:.2f}")
        fixed = ", ".join(f"{k} = {v}" for k, v in sw[var]["fixed"].items())
        ax.set(xscale="log", yscale="log", xlabel=var, ylabel=ylabel,
               title=f"{ylabel} vs {var} ({fixed})")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax = axes[1, 2]
    cr = sw["crossover"]
    for i, (d, c) in enumerate(sorted(cr["time"].items(), key=lambda t: int(t[0]))):
        ratio = [a / r for a, r in zip(c["cpu_time_s"]["attention"], c["cpu_time_s"]["rnn"])]
        ax.plot(cr["time_n_grid"], ratio, marker="o", color=f"C{i + 4}",
                label=f"CPU time, d = {d}")
    for i, d in enumerate(sorted(cr["flops"], key=int)):
        f = cr["flops"][d]
        ax.plot(cr["n_grid"][d], [a / r for a, r in zip(f["attention"], f["rnn"])], "--",
                color=f"C{i + 6}", label=f"FLOPs, d = {d} (n* = {cr['flops_n_star'][d]:.0f})")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="n", ylabel="self-attention / GRU",
           title="Self-attention over GRU: FLOPs and time ratios")
    lo, hi = ax.get_ylim()
    ticks = [t for t in (0.03, 0.1, 0.3, 1, 3, 10, 30) if lo <= t <= hi]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    m = results["machine"]
    fig.suptitle(f"Conv1d, GRU and single-head self-attention on the CPU, batch 1, float32; "
                 f"{m['cpu_capability']}, {m['threads']} thread(s), torch {m['torch']}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 2 repeats (smoke test)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--refit", action="store_true",
                   help="measure nothing: refit the exponents and claims of the JSON already "
                        "in --out, rewrite it and redraw the PNG")
    args = p.parse_args(argv)
    if args.refit:
        path = args.out / "complexity_cpu.json"
        results = json.loads(path.read_text())
        results["fits"] = fits(results["sweeps"])
        results["claims"] = claims(results["sweeps"], results["fits"])
        results["config"]["time_claims"] = TIME_CLAIMS
        path.write_text(json.dumps(results, indent=1))
        plot(results, args.out / "complexity_cpu.png")
        report(results, args.out)
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    cfg = QUICK if args.quick else FULL
    repeats = 2 if args.quick else args.repeats
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs: timings are noisy")
    started = time.perf_counter()
    try:
        res = run(cfg, repeats)
    finally:
        torch.set_num_threads(threads)
    fit = fits(res)
    results = {
        "machine": {"torch": torch.__version__, "python": platform.python_version(),
                    "platform": platform.platform(), "threads": args.threads,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "cpu_count": os.cpu_count(), "load_average_before": [load],
                    "load_average_after": list(os.getloadavg()),
                    "wall_s": time.perf_counter() - started},
        "config": {**{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                   "kernel_size": KERNEL, "repeats": repeats, "dtype": "float32",
                   "batch_size": 1, "quick": args.quick,
                   "time_fit": "the 3 largest sizes of each sweep", "time_claims": TIME_CLAIMS},
        "textbook": TEXTBOOK,
        "sweeps": res,
        "fits": fit,
    }
    results["claims"] = claims(res, fit)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "complexity_cpu.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "complexity_cpu.png")
    report(results, args.out)


def report(results, out):
    print("== fitted exponents")
    for kind in LAYER_KINDS:
        print(f"  {kind:10s} " + "  ".join(f"{k} {v:.2f}"
                                           for k, v in results["fits"][kind].items()))
    for name, c in results["claims"].items():
        print(f"  {name}: {c['measured']:.3f} (expected {c['expected']} +- {c['tolerance']}) "
              f"-> {'met' if c['met'] else 'MISSED'}")
    print(f"wrote {out / 'complexity_cpu.json'} and {out / 'complexity_cpu.png'}")


if __name__ == "__main__":
    main()
