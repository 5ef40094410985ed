"""Time and peak memory of chapter 11's fixed sparse patterns beside SDPA, in one run.

    python benchmarks/sparse_patterns.py              # N = 512 ... 8192, writes results/
    python benchmarks/sparse_patterns.py --with-16k   # adds N = 16384 (the committed run)
    python benchmarks/sparse_patterns.py --quick      # N = 512 ... 2048, 3 repeats (smoke test)

``benchmarks/efficient.py`` times one fixed pattern, the sliding window (its ``local``).
This script times every fixed pattern of chapter 11, as the library implements it in
``attention_lib.efficient.sparse``, at one full-size setting chosen so that a query sees
about as many keys in each (up to 513, the window's 2 x 256 + 1):

* ``window``      ``sliding_window_attention``, |i - j| <= 256;
* ``causal``      the same window, causal (j <= i as well: up to 257 keys);
* ``dilated``     ``dilated_window_attention``, keys i + 2t with |t| <= 256;
* ``longformer``  ``longformer_attention``, the window plus 64 global tokens (positions
                  0..63 attend to every key and every query attends to them);
* ``bigbird``     ``bigbird_attention``, blocks of 64: per block row 3 window blocks, 2
                  global blocks and 3 random blocks (``attention_lib.masks.random_blocks``
                  drawn from ``torch.Generator().manual_seed(0)`` for each N; the 2 global
                  block rows attend to every key);
* ``sdpa``        ``torch.nn.functional.scaled_dot_product_attention`` over all N keys, the
                  dense baseline (non-causal, and causal for the causal window).

These parameters live here only (:data:`PATTERNS`); chapter 11's explorer
(``explorers/ch11_sparse_cost.py``) imports them. The window is ``efficient.py``'s.

Everything else is ``efficient.py``'s, imported from it: the inputs (unit Gaussian q, k, v
of shape (B, H, N, D) = (1, 2, N, 64), float32, seed 0, on the CPU with torch's default
number of threads, one per core; ``--threads`` as there), and the measurement, its
``attention_lib.efficient.zoo.measure``: a warm-up, then ``--repeats`` calls of every
variant interleaved round-robin, the ratios taken from the fastest of them (``--statistic
min``, as there; the median is kept too), and the tracked peak memory of one call
(``attention_lib.efficient.memory.peak_memory``: the peak total size of the tensors the call
creates, deterministic; blind to the scratch buffers of a fused kernel such as SDPA's). The
speed-ups and memory ratios compare each pattern with the SDPA of the same run and the same
N (absolute times differ between runs and machines; ratios within a run are steadier).

Correctness first: at N = 1024 every implementation is compared with dense masked attention,
``attention_lib.reference_attention`` with the library's mask of the same pattern
(``attention_lib.masks``: ``sliding_window_mask``, ``dilated_window_mask``,
``longformer_mask``, ``bigbird_mask`` with the same random blocks); the largest absolute
difference of each is written to the JSON and must be <= 1e-5, or the script stops before
timing anything.

Writes ``results/sparse_patterns_cpu.json``: the machine (torch, Python, CPU, threads), the
configuration, the check, and per mode (``non_causal``, ``causal``) the sweep (every timing,
the tracked memory, the error against full softmax attention and, for the two windows,
against the window's softmax) and a summary (ratios to SDPA, fitted exponents). No date and
no load average: apart from the timings, a rerun on the same machine writes the same file.
The committed run (``--with-16k``, 5 repeats, 2 threads) takes about a minute.
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

from attention_lib import masks, reference_attention  # noqa: E402
from attention_lib.efficient import sparse, zoo  # noqa: E402
from benchmarks import efficient as be  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OUT_NAME = "sparse_patterns_cpu.json"
SEED = 0  # BigBird's random blocks: torch.Generator().manual_seed(SEED), for each N
#: The patterns at full size (lengths in positions), timed here and drawn by the explorer.
PATTERNS = {
    "window": {"kind": "window", "causal": False, "params": {"window": be.WINDOW}},
    "causal": {"kind": "window", "causal": True, "params": {"window": be.WINDOW}},
    "dilated": {"kind": "dilated", "causal": False,
                "params": {"window": be.WINDOW, "dilation": 2}},
    "longformer": {"kind": "longformer", "causal": False,
                   "params": {"window": be.WINDOW, "globals": 64}},
    "bigbird": {"kind": "bigbird", "causal": False,
                "params": {"block": 64, "window_blocks": 1, "global_blocks": 2,
                           "random_blocks": 3}},
}
MODES = {"non_causal": False, "causal": True}
CHECK_N, TOLERANCE = 1024, 1e-5


def rand_blocks(n: int, p: dict) -> torch.Tensor:
    """BigBird's random key blocks for length ``n`` with parameters ``p``, drawn by the
    library from seed SEED (the same blocks for the mask and for the computation)."""
    return masks.random_blocks(-(-n // p["block"]), p["random_blocks"],
                               window_blocks=p["window_blocks"],
                               num_global_blocks=p["global_blocks"],
                               generator=torch.Generator().manual_seed(SEED))


def mask(pattern: dict, params: dict, n: int) -> torch.Tensor:
    """The (n, n) bool mask of ``pattern`` with ``params``, from the library's builders."""
    p, causal = params, pattern["causal"]
    if pattern["kind"] == "window":
        return masks.sliding_window_mask(n, p["window"], is_causal=causal)
    if pattern["kind"] == "dilated":
        return masks.dilated_window_mask(n, p["window"], p["dilation"], is_causal=causal)
    if pattern["kind"] == "longformer":
        return masks.longformer_mask(n, p["window"], p["globals"], is_causal=causal)
    return masks.bigbird_mask(n, p["block"], rand_blocks(n, p), window_blocks=p["window_blocks"],
                              num_global_blocks=p["global_blocks"], is_causal=causal)


def attention(pattern: dict, n: int):
    """``fn(q, k, v)``: the library's implementation of ``pattern`` at full size, for length
    ``n`` (BigBird's random blocks are drawn here, once, outside the timed call: they are
    part of the model's configuration, like a window)."""
    p, causal = pattern["params"], pattern["causal"]
    if pattern["kind"] == "window":
        return lambda q, k, v: sparse.sliding_window_attention(q, k, v, p["window"],
                                                               is_causal=causal)
    if pattern["kind"] == "dilated":
        return lambda q, k, v: sparse.dilated_window_attention(
            q, k, v, p["window"], p["dilation"], is_causal=causal)
    if pattern["kind"] == "longformer":
        return lambda q, k, v: sparse.longformer_attention(q, k, v, p["window"], p["globals"],
                                                           is_causal=causal)
    blocks = rand_blocks(n, p)
    return lambda q, k, v: sparse.bigbird_attention(
        q, k, v, p["block"], blocks, window_blocks=p["window_blocks"],
        num_global_blocks=p["global_blocks"], is_causal=causal)


def variants(is_causal: bool) -> dict:
    """name -> ``zoo.Variant`` of the mode: SDPA and the patterns of that mode. The windows'
    target is the window's softmax (``zoo.targets``), the other patterns have none here."""
    sdpa = zoo.catalog(head_dim=be.D, window=be.WINDOW)["sdpa"]
    out = {"sdpa": sdpa}
    for name, pat in PATTERNS.items():
        if pat["causal"] == is_causal:
            out[name] = zoo.Variant(
                name, "sparse", "window" if pat["kind"] == "window" else None,
                "11_sparse_attention", pat["causal"], "time N w, memory N w",
                lambda n, c, pat=pat: attention(pat, n))
    return out


def check_correctness(n: int = CHECK_N) -> dict:
    """Max abs difference of each pattern's implementation from dense masked attention
    (``reference_attention`` with the library's mask of the same pattern), float32."""
    q, k, v = be.inputs(n, seed=1)
    out = {}
    with torch.no_grad():
        for name, pat in PATTERNS.items():
            ref = reference_attention(q, k, v, mask(pat, pat["params"], n))
            out[name] = float((attention(pat, n)(q, k, v) - ref).abs().max())
    return out


def sweep(sizes: list[int], repeats: int, is_causal: bool) -> dict:
    """``zoo.measure`` (efficient.py's measurement) at every N, in efficient.py's records."""
    out = {}
    for n in sizes:
        q, k, v = be.inputs(n)
        res = zoo.measure(variants(is_causal), q, k, v, is_causal=is_causal, repeats=repeats,
                          window=be.WINDOW)
        out[n] = {name: be.record(r) for name, r in res.items()}
        print(f"  N={n:6d}  " + "  ".join(f"{name} {r['time_min_s'] * 1e3:.1f} ms"
                                         for name, r in out[n].items()), flush=True)
        del q, k, v
    return out


def summarise(sw: dict, statistic: str) -> dict:
    """Per variant: ratios to the SDPA of the same N (speed-up: SDPA's time over the
    pattern's; memory: the pattern's over SDPA's) and the fitted exponents in N."""
    key, sizes = be.STATISTIC[statistic], sorted(sw)
    out = {}
    for name in sw[sizes[0]]:
        t = [sw[n][name][key] for n in sizes]
        m = [sw[n][name]["tracked_peak_bytes"] for n in sizes]
        out[name] = {
            "time_statistic": statistic,
            "time_exponent": be.slope(sizes, t), "time_exponent_tail": be.slope(sizes[-2:],
                                                                                t[-2:]),
            "tracked_memory_exponent": be.slope(sizes, m),
            "speedup_vs_sdpa": {n: sw[n]["sdpa"][key] / sw[n][name][key] for n in sizes},
            "tracked_memory_vs_sdpa": {n: sw[n][name]["tracked_peak_bytes"]
                                       / sw[n]["sdpa"]["tracked_peak_bytes"] for n in sizes}}
    return out


def cpu_name() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cells(results: dict, mode: str, n: str, what: str) -> list[str]:
    """One row of :func:`table`: every variant's time or memory at N = ``n``, and its ratio."""
    key = be.STATISTIC[results["config"]["time_statistic"]]
    row, s = results[mode]["sweep"][n], results[mode]["summary"]
    if what == "time":
        return [f"{r[key] * 1e3:.1f} ({s[x]['speedup_vs_sdpa'][n]:.2f}x)" for x, r in row.items()]
    return [f"{r['tracked_peak_bytes'] / 2**20:.2f} ({s[x]['tracked_memory_vs_sdpa'][n]:.1f}x)"
            for x, r in row.items()]


def table(results: dict) -> str:
    """The sweep as text, per mode: each variant's time (ms, the run's statistic) with its
    speed-up over SDPA, then its tracked peak memory (MiB) relative to SDPA's."""
    lines = []
    for mode in MODES:
        sw = results[mode]["sweep"]
        names = list(next(iter(sw.values())))
        for what, title in (("time", "time, ms (speed-up over SDPA)"),
                            ("memory", "tracked peak memory, MiB (x SDPA's)")):
            lines += [f"{mode}, {title}", f"{'N':>6}" + "".join(f"{x:>18}" for x in names)]
            lines += [f"{n:>6}" + "".join(f"{c:>18}" for c in _cells(results, mode, n, what))
                      for n in sw]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    be.add_sweep_arguments(p, quick_help="N = 512..2048, 3 repeats")
    p.set_defaults(out=RESULTS)
    args = p.parse_args(argv)
    sizes, repeats = be.sweep_settings(args)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads", flush=True)
    start = time.perf_counter()
    print(f"== correctness at N = {CHECK_N}: max abs difference from dense masked attention")
    errs = check_correctness()
    print("  " + "  ".join(f"{k} {v:.1e}" for k, v in errs.items()), flush=True)
    bad = {k: v for k, v in errs.items() if not v <= TOLERANCE}
    assert not bad, f"differ from dense masked attention by more than {TOLERANCE}: {bad}"
    results = {
        "machine": {"torch": torch.__version__, "python": platform.python_version(),
                    "platform": platform.platform(), "cpu": cpu_name(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "cpu_count": os.cpu_count(), "threads": torch.get_num_threads()},
        "config": {"D": be.D, "B": be.B, "H": be.H, "device": "cpu", "dtype": "float32",
                   "sizes": sizes, "repeats": repeats, "time_statistic": args.statistic,
                   "window": be.WINDOW, "seed": SEED, "patterns": PATTERNS,
                   "modes": {mode: [n for n in variants(c)] for mode, c in MODES.items()},
                   "measurement": "attention_lib.efficient.zoo.measure, as in "
                                  "benchmarks/efficient.py",
                   "memory": "tracked = attention_lib.efficient.memory.peak_memory",
                   "command": "python benchmarks/sparse_patterns.py"
                              + (" --with-16k" if 16384 in sizes else "")
                              + (f" --repeats {repeats}" if repeats != 5 else "")},
        "correctness": {"n": CHECK_N, "tolerance": TOLERANCE, "max_abs_diff": errs,
                        "reference": "attention_lib.reference_attention with the "
                                     "attention_lib.masks mask of the same pattern, float32"},
    }
    for mode, causal in MODES.items():
        print(f"== {mode}: time and tracked memory", flush=True)
        sw = sweep(sizes, repeats, causal)
        results[mode] = {"sweep": sw, "summary": summarise(sw, args.statistic)}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / OUT_NAME
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(table(json.loads(path.read_text())))
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
