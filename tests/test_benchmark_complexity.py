"""``benchmarks/complexity.py``: a smoke test on tiny sizes, and the committed results file.

The committed ``benchmarks/results/complexity_cpu.json`` is checked for its schema, for
numbers that agree with the closed forms (FLOPs, path lengths), for fits that agree with its
own data, and for the claims of chapter 9: every FLOP, sequential-step, path-length and
crossover comparison with Table 1 is met. Its time claims are recorded with a met/missed flag
that must agree with the numbers, but are not required to be met (no wall-time assertions in
unit tests: timings depend on the machine and its load).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import load_benchmark

from attention_lib.complexity import LAYER_KINDS, fit_exponent, layer_flops

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "complexity_cpu.json"
TINY = dict(n_sweep=[16, 32], n_sweep_d=4, d_sweep=[4, 8], d_sweep_n=32, k_sweep=[3, 5],
            k_sweep_nd=(32, 4), steps_n=[4, 8], steps_d=2, path_n=[4, 6], path_d=2,
            cross_d=[4], time_cross_d=[4], time_cross_n=[4, 16])


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one torch thread (on a busy 2-core machine, every parallel region of a
    small op would wait for a core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check_results(results, bench, *, committed):
    assert {"machine", "config", "textbook", "sweeps", "fits", "claims"} <= set(results)
    sweeps = results["sweeps"]
    assert {"n", "d", "k", "sequential", "path", "crossover"} <= set(sweeps)
    k = results["config"]["kernel_size"]
    for var in ("n", "d", "k"):
        sw = sweeps[var]
        for kind, r in sw["results"].items():
            assert kind in LAYER_KINDS
            for key in ("flops", "cpu_time_s", "wall_time_s", "wall_time_min_s", "peak_bytes"):
                assert len(r[key]) == len(sw["values"]), (var, kind, key)
            for i, v in enumerate(sw["values"]):  # counted FLOPs = the closed form
                size = {"k": k, **sw["fixed"], var: v}
                assert r["flops"][i] == layer_flops(kind, size["n"], size["d"],
                                                    kernel_size=size["k"]), (var, kind, v)
            assert all(t > 0 for t in r["wall_time_s"]) and all(b > 0 for b in r["peak_bytes"])
            # the stored fits agree with the stored data
            assert math.isclose(results["fits"][kind][f"flops_{var}"],
                                fit_exponent(sw["values"], r["flops"]), abs_tol=1e-9)
    path = sweeps["path"]
    for kind, lengths in path["max_path_length"].items():
        expected = {"conv": [math.ceil((n - 1) / (k // 2)) for n in path["values"]],
                    "rnn": list(path["values"]), "attention": [1] * len(path["values"])}[kind]
        assert lengths == expected, kind
    steps = sweeps["sequential"]["steps"]
    assert len(set(steps["conv"])) == 1 and len(set(steps["attention"])) == 1
    assert all(b > a for a, b in zip(steps["rnn"], steps["rnn"][1:]))
    for name, c in results["claims"].items():
        assert c["met"] == (abs(c["measured"] - c["expected"]) <= c["tolerance"]), name
    names = set(results["claims"])
    for kind in LAYER_KINDS:
        for var in results["textbook"][kind]["flops_exponents"]:
            assert f"{kind} FLOPs exponent in {var}" in names
    if committed:
        missed = [n for n, c in results["claims"].items() if "time" not in n and not c["met"]]
        assert not missed, missed
        assert any("time exponent" in n for n in names)
        assert {"cpu_time_s", "n_star"} <= set(next(iter(sweeps["crossover"]["time"].values())))


def test_benchmark_runs_on_tiny_sizes(tmp_path):
    bench = load_benchmark("complexity")
    res = bench.run(TINY, repeats=1)
    fit = bench.fits(res)
    results = {"machine": {"cpu_capability": "test", "threads": 1, "torch": "test"},
               "config": {"kernel_size": bench.KERNEL}, "textbook": bench.TEXTBOOK,
               "sweeps": res, "fits": fit, "claims": bench.claims(res, fit)}
    results = json.loads(json.dumps(results))  # as the file stores it (string keys)
    _check_results(results, bench, committed=False)
    bench.plot(results, tmp_path / "complexity.png")
    assert (tmp_path / "complexity.png").stat().st_size > 0


def test_committed_results_meet_the_claims():
    if not RESULTS.exists():
        pytest.fail(f"{RESULTS} is missing: run `python benchmarks/complexity.py`")
    bench = load_benchmark("complexity")
    results = json.loads(RESULTS.read_text())
    _check_results(results, bench, committed=True)
    assert RESULTS.with_suffix(".png").stat().st_size > 0
