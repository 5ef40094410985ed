"""Smoke test of benchmarks/visual_gates.py: a tiny run writes the statistics chapter 18 reads,
for the trained and the untrained classifiers of every seed. No value asserted beyond ranges."""
from __future__ import annotations

import json

from helpers import load_benchmark


def test_tiny_run_writes_every_seed_before_and_after_training(tmp_path):
    bench = load_benchmark("visual_gates")
    bench.main(["--seeds", "0", "1", "--steps", "2", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "visual_gates.json").read_text())
    assert set(data["seeds"]) == {"0", "1"} and data["steps"] == 2
    for run in data["seeds"].values():
        for when in ("trained", "untrained"):
            se, cbam = run["se"][when], run["cbam"][when]
            assert len(se["se_gate_change"]) == 4
            assert all(0 <= x <= 1 for x in se["se_gate_change"])
            assert 0 <= cbam["cbam_on"] <= 1 and 0 <= cbam["cbam_off"] <= 1
            assert 0 <= cbam["cbam_on_above_off"] <= 1
