"""Chapter 11's sparse-cost explorer (book/explorers/11_sparse_cost.json): its masks are the
library's builders and follow the patterns' rules written out by hand, its kept shares are
the masks' means and hand counts at the benchmark's lengths, and every time and memory
number is the committed benchmark's (benchmarks/results/efficient_cpu.json)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attention_lib import masks
from explorers import load

ROOT = Path(__file__).resolve().parents[1]
BENCH = json.loads((ROOT / "benchmarks" / "results" / "efficient_cpu.json").read_text())
DATA = load("11_sparse_cost")
PATTERNS = {p["id"]: p for p in DATA["patterns"]}
ROUND = 5e-4  # the file keeps 4 significant digits


def _mask(p) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in p["mask"]])


def _random_blocks(n: int, p: dict) -> torch.Tensor:
    return masks.random_blocks(n // p["block"], p["random_blocks"],
                               window_blocks=p["window_blocks"],
                               num_global_blocks=p["global_blocks"],
                               generator=torch.Generator().manual_seed(0))


def test_patterns_sizes_and_source():
    assert list(PATTERNS) == ["window", "causal", "dilated", "longformer", "bigbird"]
    cfg = BENCH["config"]
    assert DATA["sizes"] == cfg["sizes"]
    src = DATA["source"]
    assert (src["statistic"], src["repeats"], src["window"]) == \
        (cfg["time_statistic"], cfg["repeats"], cfg["window"])
    assert (src["D"], src["B"], src["H"], src["threads"]) == \
        (cfg["D"], cfg["B"], cfg["H"], BENCH["machine"]["threads"])
    # the full-size window is the benchmark's; the drawing divides every length by 32
    assert PATTERNS["window"]["params"]["window"] == cfg["window"]
    assert DATA["n_draw"] == 64 and DATA["scale"] == 32
    for p in PATTERNS.values():
        for k, v in p["params"].items():
            want = v // 32 if k in ("window", "globals", "block") else v
            assert p["draw_params"][k] == want, (p["id"], k)
    assert len(json.dumps(DATA)) < 150 * 1024


@pytest.mark.parametrize("pid", sorted(PATTERNS))
def test_drawn_mask_is_the_library_builder(pid):
    """Rebuilt here with attention_lib.masks, on the drawn parameters."""
    p, n = PATTERNS[pid], DATA["n_draw"]
    q = p["draw_params"]
    if pid in ("window", "causal"):
        want = masks.sliding_window_mask(n, q["window"], is_causal=pid == "causal")
    elif pid == "dilated":
        want = masks.dilated_window_mask(n, q["window"], q["dilation"])
    elif pid == "longformer":
        want = masks.longformer_mask(n, q["window"], q["globals"])
    else:
        want = masks.bigbird_mask(n, q["block"], _random_blocks(n, q),
                                  window_blocks=q["window_blocks"],
                                  num_global_blocks=q["global_blocks"])
    assert np.array_equal(_mask(p), want.numpy())


@pytest.mark.parametrize("pid", sorted(PATTERNS))
def test_drawn_mask_follows_the_rule_by_hand(pid):
    """Each pattern's rule written out with numpy, not with attention_lib (BigBird's random
    blocks aside: they are a draw, so only their number and placement are checked)."""
    p, n = PATTERNS[pid], DATA["n_draw"]
    q = p["draw_params"]
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    got = _mask(p)
    if pid in ("window", "causal"):
        want = np.abs(i - j) <= q["window"]
        if pid == "causal":
            want &= j <= i
    elif pid == "dilated":
        want = (np.abs(i - j) <= q["window"] * q["dilation"]) & ((i - j) % q["dilation"] == 0)
    elif pid == "longformer":
        want = (np.abs(i - j) <= q["window"]) | (i < q["globals"]) | (j < q["globals"])
    else:
        b, nb = q["block"], n // q["block"]
        bi, bj = i // b, j // b
        fixed = (np.abs(bi - bj) <= q["window_blocks"]) | (bi < q["global_blocks"]) | \
            (bj < q["global_blocks"])
        assert (got[fixed]).all()
        extra = got & ~fixed
        # whole blocks only; every ordinary block row has exactly `random_blocks` more
        blocks = extra.reshape(nb, b, nb, b)
        assert (blocks.all(axis=(1, 3)) == blocks.any(axis=(1, 3))).all()
        per_row = blocks.any(axis=(1, 3)).sum(1)
        g = q["global_blocks"]
        assert (per_row[:g] == 0).all() and (per_row[g:] == q["random_blocks"]).all()
        want = got
    assert np.array_equal(got, want)
    assert p["draw_kept"] == pytest.approx(got.mean(), rel=ROUND)


def _pairs_by_hand(pid: str, p: dict, n: int) -> int:
    """How many of the n x n pairs the full-size pattern keeps, counted row by row."""
    i = np.arange(n)
    if pid in ("window", "causal", "longformer"):
        w = p["window"]
        lo, hi = np.maximum(i - w, 0), np.minimum(i + w, n - 1)
        if pid == "causal":
            hi = i
        rows = hi - lo + 1
        if pid == "longformer":
            g = p["globals"]
            rows = np.where(i < g, n, rows + np.minimum(g, lo))  # + globals left of the band
        return int(rows.sum())
    if pid == "dilated":
        w, d = p["window"], p["dilation"]
        t = np.arange(-w, w + 1)[None, :]
        return int(((i[:, None] + d * t >= 0) & (i[:, None] + d * t < n)).sum())
    b, nb, g = p["block"], n // p["block"], p["global_blocks"]
    total = 0
    for r in range(nb):
        if r < g:
            total += nb
            continue
        fixed = {c for c in range(nb) if abs(r - c) <= p["window_blocks"] or c < g}
        total += len(fixed) + min(p["random_blocks"], nb - len(fixed))
    return total * b * b


@pytest.mark.parametrize("pid", sorted(PATTERNS))
def test_kept_share_at_every_length_is_counted_by_hand(pid):
    p = PATTERNS[pid]
    for k, n in enumerate(DATA["sizes"]):
        pairs = _pairs_by_hand(pid, p["params"], n)
        assert p["pairs"][k] == pairs, (pid, n)
        assert p["kept"][k] == pytest.approx(pairs / n ** 2, rel=ROUND)
        assert p["keys_per_query"][k] == pytest.approx(pairs / n, rel=ROUND)


def test_kept_share_is_the_library_masks_mean_where_it_fits():
    """At the smallest length the full N x N masks are small: the library's builders give
    the same share as the file."""
    n = DATA["sizes"][0]
    p = {pid: PATTERNS[pid]["params"] for pid in PATTERNS}
    built = {
        "window": masks.sliding_window_mask(n, p["window"]["window"]),
        "causal": masks.sliding_window_mask(n, p["causal"]["window"], is_causal=True),
        "dilated": masks.dilated_window_mask(n, p["dilated"]["window"],
                                             p["dilated"]["dilation"]),
        "longformer": masks.longformer_mask(n, p["longformer"]["window"],
                                            p["longformer"]["globals"]),
        "bigbird": masks.bigbird_mask(n, p["bigbird"]["block"],
                                      _random_blocks(n, p["bigbird"]),
                                      window_blocks=p["bigbird"]["window_blocks"],
                                      num_global_blocks=p["bigbird"]["global_blocks"]),
    }
    for pid, m in built.items():
        assert PATTERNS[pid]["pairs"][0] == int(m.sum()), pid


def test_costs_are_the_committed_benchmark():
    """Every time and memory number, and every ratio, read back from the benchmark JSON."""
    key = "time_min_s" if BENCH["config"]["time_statistic"] == "min" else "time_s"
    for mode in ("non_causal", "causal"):
        sweep = BENCH[mode]["sweep"]
        assert sorted(DATA["cost"][mode]) == ["local", "naive", "sdpa"]
        for name, c in DATA["cost"][mode].items():
            for k, n in enumerate(DATA["sizes"]):
                r, s = sweep[str(n)][name], sweep[str(n)]["sdpa"]
                assert c["time_s"][k] == pytest.approx(r[key], rel=ROUND)
                assert c["peak_bytes"][k] == r["tracked_peak_bytes"]
                assert c["speedup_vs_sdpa"][k] == pytest.approx(s[key] / r[key], rel=ROUND)
                assert c["memory_vs_sdpa"][k] == pytest.approx(
                    r["tracked_peak_bytes"] / s["tracked_peak_bytes"], rel=ROUND)
                if name != "sdpa":
                    summary = BENCH[mode]["summary"][name]["speedup_vs_sdpa"][str(n)]
                    assert c["speedup_vs_sdpa"][k] == pytest.approx(summary, rel=ROUND)


def test_only_what_was_measured_is_claimed():
    """The sliding window is the benchmark's `local` (window 256, causal and not); the other
    patterns are in no sweep, so the file gives them no cost."""
    assert PATTERNS["window"]["measured"] == {"variant": "local", "mode": "non_causal"}
    assert PATTERNS["causal"]["measured"] == {"variant": "local", "mode": "causal"}
    for pid in ("dilated", "longformer", "bigbird"):
        assert PATTERNS[pid]["measured"] is None
    names = {v for mode in ("non_causal", "causal") for n in BENCH[mode]["sweep"]
             for v in BENCH[mode]["sweep"][n]}
    assert not any(w in v for v in names for w in ("dilated", "longformer", "bigbird"))
