"""Chapter 11's sparse patterns beside their measured cost (also linked from chapter 17).

For each fixed pattern of chapter 11 (sliding window, causal sliding window, dilated window,
Longformer's window plus global tokens, BigBird's window, global and random blocks):

* its mask, drawn on ``N_DRAW`` = 64 positions with every length divided by ``SCALE`` = 32
  (window 8 instead of 256, blocks of 2 instead of 64), built by the library's own builders
  in ``attention_lib.masks``: the shape of the pattern at N = 2048, shrunk;
* the share of the N x N query-key pairs it keeps at each length N of the benchmark,
  counted on the full-size pattern with the library's ``mask_mod`` functions, a block of
  rows at a time so that no N x N tensor is built;
* its time and tracked peak memory from the committed run of
  ``benchmarks/sparse_patterns.py`` (``benchmarks/results/sparse_patterns_cpu.json``),
  which times the library's implementation of every pattern and torch SDPA in the same run;
  the ratios are to that run's SDPA at the same N and in the same mode (causal or not);
* naive attention (the N x N scores written out) for scale, from another run, the committed
  ``benchmarks/results/efficient_cpu.json`` (``benchmarks/efficient.py``), and labelled so.

The full-size parameters are the benchmark's (``benchmarks.sparse_patterns.PATTERNS``,
imported, so that the figure draws what was timed): a window of 256 on each side (that of
``efficient.py``), a dilation of 2, 64 global tokens, and BigBird's blocks of 64 with one
window block on each side, 2 global blocks and 3 random blocks, chosen so that every pattern
gives a query about as many keys as the window (513).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from attention_lib import masks
from benchmarks import sparse_patterns as sp
from explorers import explorer, rounded

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "results" / sp.OUT_NAME
NAIVE = ROOT / "benchmarks" / "results" / "efficient_cpu.json"
N_DRAW = 64
SCALE = 32
#: How the figure names each of the benchmark's patterns: (menu label, name in the text,
#: label of its line in the charts).
NAMES = {
    "window": ("sliding window", "sliding window", "window"),
    "causal": ("causal window", "causal sliding window", "causal"),
    "dilated": ("dilated window", "dilated window", "dilated"),
    "longformer": ("Longformer", "Longformer window + global tokens", "Longformer"),
    "bigbird": ("BigBird", "BigBird window + global + random blocks", "BigBird"),
}


def bench() -> dict:
    return json.loads(BENCH.read_text())


def naive_run() -> dict:
    return json.loads(NAIVE.read_text())


def mode_of(pattern: dict) -> str:
    return "causal" if pattern["causal"] else "non_causal"


def patterns() -> list[dict]:
    """The benchmark's patterns with the figure's names; ``measured``: the sweep (mode) and
    the variant of ``sparse_patterns_cpu.json`` that timed it."""
    return [{"id": pid, "label": NAMES[pid][0], "name": NAMES[pid][1], "short": NAMES[pid][2],
             "kind": pat["kind"],
             "params": pat["params"], "causal": pat["causal"],
             "measured": {"variant": pid, "mode": mode_of(pat)}}
            for pid, pat in sp.PATTERNS.items()]


LENGTHS = ("window", "globals", "block")  # the parameters that are lengths (divided by SCALE)


def scaled(params: dict) -> dict:
    """The drawn pattern's parameters: lengths divided by SCALE, counts and ratios kept."""
    return {k: v // SCALE if k in LENGTHS else v for k, v in params.items()}


def build(pattern: dict, params: dict, n: int) -> torch.Tensor:
    """The (n, n) bool mask of ``pattern`` with ``params``: the benchmark's, that is the
    library's builders (BigBird's random blocks from the benchmark's seed)."""
    return sp.mask(pattern, params, n)


def mask_mod(pattern: dict, params: dict, n: int):
    """The same pattern as a library ``mask_mod`` (what each builder evaluates on the grid)."""
    p = params
    if pattern["kind"] == "window":
        mod = masks.sliding_window_mod(p["window"])
    elif pattern["kind"] == "dilated":
        mod = masks.dilated_window_mod(p["window"], p["dilation"])
    elif pattern["kind"] == "longformer":
        mod = masks.or_masks(masks.sliding_window_mod(p["window"]),
                             masks.global_tokens_mod(p["globals"]))
    else:
        layout = masks.bigbird_layout(-(-n // p["block"]), sp.rand_blocks(n, p),
                                      window_blocks=p["window_blocks"],
                                      num_global_blocks=p["global_blocks"])
        mod = masks.block_layout_mod(layout, p["block"])
    return masks.and_masks(mod, masks.causal_mod) if pattern["causal"] else mod


def kept_pairs(pattern: dict, params: dict, n: int, rows: int = 64) -> int:
    """How many of the n x n (query, key) pairs the pattern keeps, ``rows`` queries at a
    time (the full mask at N = 16384 would be 268 MB, its index arithmetic 2 GB; 64 rows
    keep each step's tensors in the cache, three times as fast as 512)."""
    mod, zero = mask_mod(pattern, params, n), torch.zeros((), dtype=torch.long)
    keys = torch.arange(n)[None, :]
    total = 0
    for start in range(0, n, rows):
        q = torch.arange(start, min(start + rows, n))[:, None]
        total += int(mod(zero, zero, q, keys).expand(q.shape[0], n).sum())
    return total


def describe(pattern: dict, p: dict, short: bool = False) -> str:
    """The parameters in words, as the figure prints them (``short``: above the drawing)."""
    if pattern["kind"] == "window":
        return f"|i − j| ≤ {p['window']}" + (", j ≤ i" if pattern["causal"] else "")
    if pattern["kind"] == "dilated":
        return f"j = i + {p['dilation']}t, |t| ≤ {p['window']}"
    if pattern["kind"] == "longformer":
        if short:
            return f"|i − j| ≤ {p['window']}, {p['globals']} global"
        return f"|i − j| ≤ {p['window']}, or i or j among the first {p['globals']}"
    if short:
        return f"blocks of {p['block']}"
    return (f"blocks of {p['block']}: {2 * p['window_blocks'] + 1} window, "
            f"{p['global_blocks']} global, {p['random_blocks']} random per block row")


def costs(b: dict, mode: str, variant: str, sizes: list[int]) -> dict:
    """One variant's measured time (the benchmark's statistic) and tracked peak memory, and,
    for a pattern, their ratios to SDPA's in the same run and mode, at every length."""
    sweep = b[mode]["sweep"]
    key = "time_min_s" if b["config"]["time_statistic"] == "min" else "time_s"
    t = [sweep[str(n)][variant][key] for n in sizes]
    m = [sweep[str(n)][variant]["tracked_peak_bytes"] for n in sizes]
    if variant == "sdpa":
        return {"time_s": rounded(t, 4), "peak_bytes": m}
    t0 = [sweep[str(n)]["sdpa"][key] for n in sizes]
    m0 = [sweep[str(n)]["sdpa"]["tracked_peak_bytes"] for n in sizes]
    return {"time_s": rounded(t, 4), "peak_bytes": m,
            "speedup_vs_sdpa": rounded([a / x for a, x in zip(t0, t)], 4),
            "memory_vs_sdpa": rounded([x / a for a, x in zip(m0, m)], 4)}


@explorer("11_sparse_cost")
def sparse_cost() -> dict:
    b, z = bench(), naive_run()
    cfg, machine = b["config"], b["machine"]
    sizes = [int(n) for n in cfg["sizes"]]
    out = []
    for pat in patterns():
        small = scaled(pat["params"])
        drawn = build(pat, small, N_DRAW)
        pairs = [kept_pairs(pat, pat["params"], n) for n in sizes]
        out.append({
            "id": pat["id"], "label": pat["label"], "name": pat["name"], "short": pat["short"],
            "causal": pat["causal"],
            "params": pat["params"], "draw_params": small,
            "rule": describe(pat, pat["params"]), "draw_rule": describe(pat, small, short=True),
            "mask": ["".join("1" if v else "0" for v in row) for row in drawn.tolist()],
            "draw_kept": rounded(drawn.double().mean().item(), 4),
            "pairs": pairs,
            "kept": rounded([k / n ** 2 for k, n in zip(pairs, sizes)], 4),
            "keys_per_query": rounded([k / n for k, n in zip(pairs, sizes)], 4),
            "measured": pat["measured"],
        })
    modes = {mode: {v: costs(b, mode, v, sizes) for v in names}
             for mode, names in cfg["modes"].items()}
    zkey = "time_min_s" if z["config"]["time_statistic"] == "min" else "time_s"
    naive = {mode: {"time_s": rounded([z[mode]["sweep"][str(n)]["naive"][zkey]
                                       for n in sizes], 4),
                    "peak_bytes": [z[mode]["sweep"][str(n)]["naive"]["tracked_peak_bytes"]
                                   for n in sizes]}
             for mode in cfg["modes"]}
    return {
        "n_draw": N_DRAW, "scale": SCALE, "sizes": sizes, "patterns": out, "cost": modes,
        "naive": naive,
        "source": {"file": f"benchmarks/results/{sp.OUT_NAME}", "command": cfg["command"],
                   "statistic": cfg["time_statistic"], "repeats": cfg["repeats"],
                   "D": cfg["D"], "B": cfg["B"], "H": cfg["H"], "dtype": cfg["dtype"],
                   "threads": machine["threads"], "torch": machine["torch"],
                   "cpu": machine["cpu"], "window": cfg["window"],
                   "check": {"n": b["correctness"]["n"],
                             "max_abs_diff": {k: float(f"{v:.2g}") for k, v in
                                              b["correctness"]["max_abs_diff"].items()}}},
        "naive_source": {"file": "benchmarks/results/efficient_cpu.json",
                         "statistic": z["config"]["time_statistic"],
                         "repeats": z["config"]["repeats"],
                         "threads": z["machine"]["threads"]},
    }
