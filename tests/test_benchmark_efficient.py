"""Smoke test of ``benchmarks/efficient.py``: it runs end to end on tiny sizes and writes a
JSON whose numbers are consistent (no timing assertions: speed targets live in the benchmark's
own output, not in unit tests)."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import load_benchmark


def test_benchmark_runs_and_writes_consistent_results(tmp_path):
    bench = load_benchmark("efficient")
    bench.main(["--sizes", "128", "256", "--repeats", "1", "--no-rss", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "efficient_cpu.json").read_text())
    assert (tmp_path / "efficient_cpu.png").stat().st_size > 0
    for mode in ("non_causal", "causal"):
        errors = results[mode]["max_abs_error"]
        assert {"naive", "sdpa", "flash", "local"} <= set(errors)
        assert all(e < 1e-4 for e in errors.values()), errors  # the exact variants are exact
        summary = results[mode]["summary"]
        assert {"naive", "sdpa", "flash", "local", "linear", "rfa", "performer"} <= set(summary)
        sweep = results[mode]["sweep"]
        for n in ("128", "256"):
            at = sweep[n]
            # the naive path materialises (H, N, N) float32 scores; the tracker must see them
            assert at["naive"]["tracked_largest_bytes"] >= bench.H * int(n) ** 2 * 4
            for name in ("naive", "sdpa", "flash"):
                assert at[name]["relative_error_vs_full"] < 1e-5, (name, at[name])
            # exact for its own pattern, but not full attention once N > window + 1
            assert at["local"]["relative_error_vs_own_target"] < 1e-5
            assert (at["local"]["relative_error_vs_full"] > 1e-3) == (int(n) > bench.WINDOW + 1)
            # approximations: a real, finite error; RFA's own target is the normalised softmax
            for name in ("linear", "rfa", "performer"):
                assert 1e-3 < at[name]["relative_error_vs_full"] < 10, (name, at[name])
            assert at["rfa"]["relative_error_vs_own_target"] < at["rfa"]["relative_error_vs_full"]
    assert results["targets"] == {}  # targets are only evaluated when N = 8192 was run


def test_slope_recovers_a_power_law():
    bench = load_benchmark("efficient")
    ns = [512, 1024, 2048, 4096]
    assert abs(bench.slope(ns, [3.0 * n**1.5 for n in ns]) - 1.5) < 1e-12


def test_rss_measurement_runs_each_variant_in_a_fresh_process():
    """The subprocess path builds the variant for its own N (Linformer's projections depend on
    N, after a warm-up on a small input) and reports a non-negative number of bytes."""
    bench = load_benchmark("efficient")
    out = bench.rss_sweep([512], ["linformer", "routing", "sdpa"], False)
    assert set(out[512]) == {"linformer", "routing", "sdpa"} and min(out[512].values()) >= 0


def test_replot_recomputes_the_summary_with_the_chosen_statistic(tmp_path):
    bench = load_benchmark("efficient")
    bench.main(["--sizes", "64", "128", "--repeats", "2", "--no-rss", "--out", str(tmp_path)])
    first = json.loads((tmp_path / "efficient_cpu.json").read_text())
    assert first["config"]["time_statistic"] == "min"
    bench.main(["--replot", "--statistic", "median", "--out", str(tmp_path)])
    again = json.loads((tmp_path / "efficient_cpu.json").read_text())
    sweep = again["non_causal"]["sweep"]
    s = again["non_causal"]["summary"]["flash"]
    assert again["config"]["time_statistic"] == "median" and s["time_statistic"] == "median"
    assert s["speedup_vs_sdpa"]["128"] == (sweep["128"]["sdpa"]["time_s"]
                                           / sweep["128"]["flash"]["time_s"])
    assert again["non_causal"]["sweep"] == first["non_causal"]["sweep"]  # nothing re-measured


def test_another_dtype_has_its_own_results_and_no_cpu_targets(tmp_path):
    """--dtype runs every variant in that dtype and writes efficient_<device>_<dtype>.json; the
    exact variants stay within bfloat16's rounding of the float64 reference."""
    bench = load_benchmark("efficient")
    try:
        bench.main(["--sizes", "128", "256", "--repeats", "1", "--dtype", "bfloat16", "--no-rss",
                    "--out", str(tmp_path)])
    finally:
        bench.DEVICE, bench.DTYPE = torch.device("cpu"), torch.float32
    assert not (tmp_path / "efficient_cpu.json").exists()
    results = json.loads((tmp_path / "efficient_cpu_bfloat16.json").read_text())
    assert (tmp_path / "efficient_cpu_bfloat16.png").stat().st_size > 0
    assert (results["config"]["device"], results["config"]["dtype"]) == ("cpu", "bfloat16")
    assert results["targets"] == {} and isinstance(results["skipped"], dict)
    for mode in ("non_causal", "causal"):
        errors = results[mode]["max_abs_error"]
        assert {"naive", "sdpa", "flash", "local"} <= set(errors)
        assert all(e < 5e-2 for e in errors.values()), errors
        at = results[mode]["sweep"]["256"]
        for name in ("naive", "sdpa", "flash"):  # bfloat16 keeps 8 bits of mantissa
            assert 1e-4 < at[name]["relative_error_vs_full"] < 2e-2, (name, at[name])
        assert "cuda_peak_bytes" not in at["sdpa"]  # only on a GPU


def test_a_variant_that_cannot_run_is_skipped_with_its_error(monkeypatch):
    bench = load_benchmark("efficient")

    def broken(n, is_causal):
        def fn(q, k, v):
            raise RuntimeError("no kernel for this dtype")
        return fn

    catalog = bench.all_variants()
    catalog["broken"] = bench.zoo.Variant("broken", "exact", "full", "16_flash_attention", True,
                                          "-", broken)
    monkeypatch.setattr(bench, "all_variants", lambda: catalog)
    monkeypatch.setattr(bench, "_USABLE", {})
    assert "broken" not in bench.usable_variants() and "sdpa" in bench.usable_variants()
    assert bench.skipped_variants() == {"broken": "RuntimeError: no kernel for this dtype"}


def test_sdpa_pinned_to_the_math_backend_is_exact():
    bench = load_benchmark("efficient")
    q, k, v = bench.inputs(96, seed=4)
    for causal in (False, True):
        out = bench.sdpa_backend("MATH")(96, causal)(q, k, v)
        ref = bench.reference_attention(q, k, v, is_causal=causal)
        assert (out - ref).abs().max() < 1e-5


def test_cuda_is_refused_clearly_where_there_is_none(capsys):
    bench = load_benchmark("efficient")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        bench.main(["--device", "cuda", "--quick"])
    assert "CUDA is not available" in capsys.readouterr().err
    assert bench.results_stem("cpu", torch.float32) == "efficient_cpu"
    assert bench.results_stem("cuda", torch.float16) == "efficient_cuda_float16"


def test_performer_peer_with_our_projection_and_no_eps_computes_our_output(tmp_path):
    """The diagnostics give performer-pytorch our projections: with its eps set to 0 it must
    reproduce our Performer, and its default eps must pull the output towards the uniform
    average once q and k are large. --diagnostics-only rewrites just that section."""
    pytest.importorskip("performer_pytorch")
    bench = load_benchmark("efficient")
    diag = bench.performer_peer_diagnostics(n=256, scales=(0.25, 1.0), draws=2)
    assert diag["peer_projection_is_ours"] and diag["draws"] == 2
    quarter, one = diag["rows"]
    for row in (quarter, one):
        assert row["max relative difference, package eps=0 vs ours"] < 1e-5, row
        assert abs(row["performer-pytorch eps=0"] - row["performer"]) < 1e-4 * row["performer"]
    assert (one["performer-pytorch eps=0.0001 distance to uniform"]
            < one["performer-pytorch eps=0 distance to uniform"])
    (tmp_path / "efficient_cpu.json").write_text(json.dumps({"targets": {"kept": 1}}))
    bench.main(["--diagnostics-only", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "efficient_cpu.json").read_text())
    assert written["targets"] == {"kept": 1}
    assert written["performer_peer_diagnostics"]["rows"][-1]["scale"] == 1.0
