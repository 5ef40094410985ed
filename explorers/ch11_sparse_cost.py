"""Chapter 11's sparse patterns beside their measured cost (also linked from chapter 17).

For each fixed pattern of chapter 11 (sliding window, causal sliding window, dilated window,
Longformer's window plus global tokens, BigBird's window, global and random blocks):

* its mask, drawn on ``N_DRAW`` = 64 positions with every length divided by ``SCALE`` = 32
  (window 8 instead of 256, blocks of 2 instead of 64), built by the library's own builders
  in ``attention_lib.masks``: the shape of the pattern at N = 2048, shrunk;
* the share of the N x N query-key pairs it keeps at each length N of the committed
  benchmark, counted on the full-size pattern (window 256, blocks of 64) with the library's
  ``mask_mod`` functions, a block of rows at a time so that no N x N tensor is built;
* its time and peak memory from the committed benchmark ``benchmarks/results/
  efficient_cpu.json`` (``benchmarks/efficient.py``) beside torch SDPA and the naive N x N
  computation of the same run. The benchmark times one fixed pattern, the sliding window
  (its variant ``local``, causal and not); the others are marked not measured, never
  estimated.

The full-size parameters other than the benchmark's window are this figure's choice, made so
that every pattern gives a query about as many keys as the window (513): a dilation of 2,
64 global tokens, and BigBird's configuration (blocks of 64, one window block on each side,
2 global blocks, 3 random blocks).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from attention_lib import masks
from explorers import explorer, rounded

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "results" / "efficient_cpu.json"
N_DRAW = 64
SCALE = 32
SEED = 0  # BigBird's random blocks: torch.Generator().manual_seed(SEED)
DENSE = ("sdpa", "naive")  # the dense computations every pattern is compared with


def bench() -> dict:
    return json.loads(BENCH.read_text())


def patterns(window: int) -> list[dict]:
    """The patterns, with their full-size parameters (lengths in positions). ``measured``:
    the benchmark variant that computes this pattern, and in which of its sweeps."""
    return [
        {"id": "window", "label": "sliding window", "name": "sliding window", "kind": "window",
         "params": {"window": window}, "causal": False,
         "measured": {"variant": "local", "mode": "non_causal"}},
        {"id": "causal", "label": "causal window", "name": "causal sliding window",
         "kind": "window",
         "params": {"window": window}, "causal": True,
         "measured": {"variant": "local", "mode": "causal"}},
        {"id": "dilated", "label": "dilated window", "name": "dilated window", "kind": "dilated",
         "params": {"window": window, "dilation": 2}, "causal": False, "measured": None},
        {"id": "longformer", "label": "Longformer", "name": "Longformer window + global tokens",
         "kind": "longformer",
         "params": {"window": window, "globals": 64}, "causal": False, "measured": None},
        {"id": "bigbird", "label": "BigBird", "name": "BigBird window + global + random blocks",
         "kind": "bigbird", "params": {"block": 64, "window_blocks": 1, "global_blocks": 2,
                                       "random_blocks": 3}, "causal": False, "measured": None},
    ]


LENGTHS = ("window", "globals", "block")  # the parameters that are lengths (divided by SCALE)


def scaled(params: dict) -> dict:
    """The drawn pattern's parameters: lengths divided by SCALE, counts and ratios kept."""
    return {k: v // SCALE if k in LENGTHS else v for k, v in params.items()}


def rand_blocks(n: int, p: dict) -> torch.Tensor:
    """BigBird's random key blocks for length ``n``, drawn by the library from seed SEED."""
    nb = -(-n // p["block"])
    return masks.random_blocks(nb, p["random_blocks"], window_blocks=p["window_blocks"],
                               num_global_blocks=p["global_blocks"],
                               generator=torch.Generator().manual_seed(SEED))


def build(pattern: dict, params: dict, n: int) -> torch.Tensor:
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
        layout = masks.bigbird_layout(-(-n // p["block"]), rand_blocks(n, p),
                                      window_blocks=p["window_blocks"],
                                      num_global_blocks=p["global_blocks"])
        mod = masks.block_layout_mod(layout, p["block"])
    return masks.and_masks(mod, masks.causal_mod) if pattern["causal"] else mod


def kept_pairs(pattern: dict, params: dict, n: int, rows: int = 512) -> int:
    """How many of the n x n (query, key) pairs the pattern keeps, ``rows`` queries at a
    time (the full mask at N = 16384 would be 268 MB, its index arithmetic 2 GB)."""
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
    """One variant's measured time (the benchmark's statistic) and tracked peak memory, and
    their ratios to SDPA's in the same sweep, at every length."""
    sweep = b[mode]["sweep"]
    key = "time_min_s" if b["config"]["time_statistic"] == "min" else "time_s"
    t = [sweep[str(n)][variant][key] for n in sizes]
    m = [sweep[str(n)][variant]["tracked_peak_bytes"] for n in sizes]
    t0 = [sweep[str(n)]["sdpa"][key] for n in sizes]
    m0 = [sweep[str(n)]["sdpa"]["tracked_peak_bytes"] for n in sizes]
    return {"time_s": rounded(t, 4), "peak_bytes": m,
            "speedup_vs_sdpa": rounded([a / x for a, x in zip(t0, t)], 4),
            "memory_vs_sdpa": rounded([x / a for a, x in zip(m0, m)], 4)}


@explorer("11_sparse_cost")
def sparse_cost() -> dict:
    b = bench()
    cfg, machine = b["config"], b["machine"]
    sizes = [int(n) for n in cfg["sizes"]]
    out = []
    for pat in patterns(cfg["window"]):
        small = scaled(pat["params"])
        drawn = build(pat, small, N_DRAW)
        pairs = [kept_pairs(pat, pat["params"], n) for n in sizes]
        out.append({
            "id": pat["id"], "label": pat["label"], "name": pat["name"], "causal": pat["causal"],
            "params": pat["params"], "draw_params": small,
            "rule": describe(pat, pat["params"]), "draw_rule": describe(pat, small, short=True),
            "mask": ["".join("1" if v else "0" for v in row) for row in drawn.tolist()],
            "draw_kept": rounded(drawn.double().mean().item(), 4),
            "pairs": pairs,
            "kept": rounded([k / n ** 2 for k, n in zip(pairs, sizes)], 4),
            "keys_per_query": rounded([k / n for k, n in zip(pairs, sizes)], 4),
            "measured": pat["measured"],
        })
    modes = {mode: {v: costs(b, mode, v, sizes) for v in (*DENSE, "local")}
             for mode in ("non_causal", "causal")}
    return {
        "n_draw": N_DRAW, "scale": SCALE, "sizes": sizes, "patterns": out, "cost": modes,
        "source": {"file": "benchmarks/results/efficient_cpu.json",
                   "statistic": cfg["time_statistic"], "repeats": cfg["repeats"],
                   "D": cfg["D"], "B": cfg["B"], "H": cfg["H"], "dtype": cfg["dtype"],
                   "threads": machine["threads"], "torch": machine["torch"],
                   "window": cfg["window"]},
    }
