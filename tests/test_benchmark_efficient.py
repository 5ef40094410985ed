"""Smoke test of ``benchmarks/efficient.py``: it runs end to end on tiny sizes and writes a
JSON whose numbers are consistent (no timing assertions: speed targets live in the benchmark's
own output, not in unit tests)."""
from __future__ import annotations

import json

from helpers import load_benchmark


def test_benchmark_runs_and_writes_consistent_results(tmp_path):
    bench = load_benchmark("efficient")
    bench.main(["--sizes", "128", "256", "--repeats", "1", "--no-rss", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "efficient_cpu.json").read_text())
    assert (tmp_path / "efficient_cpu.png").stat().st_size > 0
    for mode in ("non_causal", "causal"):
        errors = results[mode]["max_abs_error"]
        assert all(e < 1e-4 for e in errors.values()), errors  # every variant is exact
        summary = results[mode]["summary"]
        assert {"naive", "sdpa", "flash", "local"} <= set(summary)
        sweep = results[mode]["sweep"]
        for n in ("128", "256"):
            # the naive path materialises (H, N, N) float32 scores; the tracker must see them
            assert sweep[n]["naive"]["tracked_largest_bytes"] >= bench.H * int(n) ** 2 * 4
    assert results["targets"] == {}  # targets are only evaluated when N = 8192 was run


def test_slope_recovers_a_power_law():
    bench = load_benchmark("efficient")
    ns = [512, 1024, 2048, 4096]
    assert abs(bench.slope(ns, [3.0 * n**1.5 for n in ns]) - 1.5) < 1e-12
