"""Chapter 11's sparse-cost explorer (book/explorers/11_sparse_cost.json): its masks are the
library's builders and follow the patterns' rules written out by hand, its kept shares are
the masks' means and hand counts at the benchmark's lengths, every time and memory number of
a pattern and of SDPA is the committed run of benchmarks/sparse_patterns.py
(benchmarks/results/sparse_patterns_cpu.json), whose implementations were checked against
dense masked attention, and naive attention's is the committed efficient_cpu.json's."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attention_lib import masks
from benchmarks import sparse_patterns as sp
from explorers import load

ROOT = Path(__file__).resolve().parents[1]
BENCH = json.loads((ROOT / "benchmarks" / "results" / "sparse_patterns_cpu.json").read_text())
NAIVE = json.loads((ROOT / "benchmarks" / "results" / "efficient_cpu.json").read_text())
DATA = load("11_sparse_cost")
PATTERNS = {p["id"]: p for p in DATA["patterns"]}
ROUND = 5e-4  # the file keeps 4 significant digits


def _mask(p) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in p["mask"]])


def _random_blocks(n: int, p: dict) -> torch.Tensor:
    return masks.random_blocks(n // p["block"], p["random_blocks"],
                               window_blocks=p["window_blocks"],
                               num_global_blocks=p["global_blocks"],
                               generator=torch.Generator().manual_seed(BENCH["config"]["seed"]))


def test_patterns_sizes_and_source():
    assert list(PATTERNS) == ["window", "causal", "dilated", "longformer", "bigbird"]
    cfg = BENCH["config"]
    assert DATA["sizes"] == cfg["sizes"]
    src = DATA["source"]
    assert src["file"] == "benchmarks/results/sparse_patterns_cpu.json"
    assert (src["statistic"], src["repeats"], src["window"], src["command"]) == \
        (cfg["time_statistic"], cfg["repeats"], cfg["window"], cfg["command"])
    assert (src["D"], src["B"], src["H"], src["threads"], src["torch"]) == \
        (cfg["D"], cfg["B"], cfg["H"], BENCH["machine"]["threads"], BENCH["machine"]["torch"])
    # the same inputs as efficient.py's run
    assert (cfg["D"], cfg["B"], cfg["H"], cfg["dtype"]) == tuple(
        NAIVE["config"][k] for k in ("D", "B", "H", "dtype"))
    # the figure's full-size patterns are the ones timed (one definition, in the benchmark);
    # the window is efficient.py's; the drawing divides every length by 32
    for pid, p in PATTERNS.items():
        timed = cfg["patterns"][pid]
        assert p["params"] == timed["params"] == sp.PATTERNS[pid]["params"], pid
        assert p["causal"] == timed["causal"], pid
    assert PATTERNS["window"]["params"]["window"] == NAIVE["config"]["window"] == 256
    assert PATTERNS["dilated"]["params"]["dilation"] == 2
    assert PATTERNS["longformer"]["params"]["globals"] == 64
    assert PATTERNS["bigbird"]["params"] == {"block": 64, "window_blocks": 1,
                                             "global_blocks": 2, "random_blocks": 3}
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


def test_every_pattern_is_measured_in_its_mode():
    """Each pattern was timed under its own name, in the causal sweep if it is causal, and
    each sweep also timed SDPA (the baseline of the ratios)."""
    modes = BENCH["config"]["modes"]
    assert modes == {"non_causal": ["sdpa", "window", "dilated", "longformer", "bigbird"],
                     "causal": ["sdpa", "causal"]}
    for pid, p in PATTERNS.items():
        mode = "causal" if p["causal"] else "non_causal"
        assert p["measured"] == {"variant": pid, "mode": mode}
        for n in DATA["sizes"]:
            assert set(BENCH[mode]["sweep"][str(n)]) == set(modes[mode])


def test_costs_are_the_committed_benchmark():
    """Every time and memory number, and every ratio, read back from sparse_patterns_cpu.json:
    the ratios are to the SDPA of the same run, N and mode, and equal the run's summary."""
    key = "time_min_s" if BENCH["config"]["time_statistic"] == "min" else "time_s"
    assert sorted(DATA["cost"]) == ["causal", "non_causal"]
    for mode, names in BENCH["config"]["modes"].items():
        sweep = BENCH[mode]["sweep"]
        assert sorted(DATA["cost"][mode]) == sorted(names)
        for name, c in DATA["cost"][mode].items():
            for k, n in enumerate(DATA["sizes"]):
                r, s = sweep[str(n)][name], sweep[str(n)]["sdpa"]
                assert c["time_s"][k] == pytest.approx(r[key], rel=ROUND)
                assert c["peak_bytes"][k] == r["tracked_peak_bytes"]
                if name == "sdpa":
                    assert "speedup_vs_sdpa" not in c
                    continue
                assert c["speedup_vs_sdpa"][k] == pytest.approx(s[key] / r[key], rel=ROUND)
                assert c["memory_vs_sdpa"][k] == pytest.approx(
                    r["tracked_peak_bytes"] / s["tracked_peak_bytes"], rel=ROUND)
                summary = BENCH[mode]["summary"][name]
                assert c["speedup_vs_sdpa"][k] == pytest.approx(
                    summary["speedup_vs_sdpa"][str(n)], rel=ROUND)
                assert c["memory_vs_sdpa"][k] == pytest.approx(
                    summary["tracked_memory_vs_sdpa"][str(n)], rel=ROUND)


def test_naive_is_efficient_py_run_and_labelled():
    """Naive attention comes from another run (efficient_cpu.json), and the file says so."""
    key = "time_min_s" if NAIVE["config"]["time_statistic"] == "min" else "time_s"
    assert DATA["naive_source"] == {"file": "benchmarks/results/efficient_cpu.json",
                                    "statistic": NAIVE["config"]["time_statistic"],
                                    "repeats": NAIVE["config"]["repeats"],
                                    "threads": NAIVE["machine"]["threads"]}
    for mode in ("non_causal", "causal"):
        c = DATA["naive"][mode]
        for k, n in enumerate(DATA["sizes"]):
            r = NAIVE[mode]["sweep"][str(n)]["naive"]
            assert c["time_s"][k] == pytest.approx(r[key], rel=ROUND)
            assert c["peak_bytes"][k] == r["tracked_peak_bytes"]


def test_timed_implementations_equal_dense_masked_attention():
    """The run checked every pattern against dense masked attention before timing it (max
    abs difference <= 1e-5, recorded in the results and in the figure's data); redone here
    with the benchmark's own check, same N, same masks."""
    check = BENCH["correctness"]
    assert check["n"] == 1024 and check["tolerance"] == 1e-5
    assert sorted(check["max_abs_diff"]) == sorted(PATTERNS)
    assert all(0 <= v <= 1e-5 for v in check["max_abs_diff"].values())
    assert DATA["source"]["check"]["n"] == check["n"]
    for pid, v in DATA["source"]["check"]["max_abs_diff"].items():
        assert v == pytest.approx(check["max_abs_diff"][pid], rel=0.05)
    again = sp.check_correctness(check["n"])
    assert sorted(again) == sorted(PATTERNS)
    assert all(v <= 1e-5 for v in again.values()), again


def test_benchmark_runs_end_to_end(tmp_path):
    """A tiny run of benchmarks/sparse_patterns.py writes the schema the explorer reads."""
    sp.main(["--sizes", "128", "256", "--repeats", "1", "--out", str(tmp_path)])
    out = json.loads((tmp_path / "sparse_patterns_cpu.json").read_text())
    assert out["config"]["sizes"] == [128, 256] and out["config"]["repeats"] == 1
    assert "--repeats 1" in out["config"]["command"]
    assert out["config"]["modes"] == BENCH["config"]["modes"]
    assert all(v <= 1e-5 for v in out["correctness"]["max_abs_diff"].values())
    for mode, names in out["config"]["modes"].items():
        for n in ("128", "256"):
            for name in names:
                r = out[mode]["sweep"][n][name]
                assert r["time_min_s"] > 0 and r["tracked_peak_bytes"] > 0
            assert set(out[mode]["summary"]) == set(names)
