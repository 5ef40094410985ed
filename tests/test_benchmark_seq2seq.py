"""Smoke test of benchmarks/seq2seq_length.py: a tiny run writes JSON, PNG and loadable
float16 checkpoints with the configuration needed to rebuild the model. No timing asserted."""
from __future__ import annotations

import json
import math

import torch
from helpers import load_benchmark

from attention_lib.data import make_corpus
from attention_lib.seq2seq import build_seq2seq


def test_tiny_run_writes_results_and_loadable_checkpoints(tmp_path):
    bench = load_benchmark("seq2seq_length")
    bench.main(["--kinds", "plain", "bahdanau", "--steps", "3", "--n-pairs", "120",
                "--max-len", "12", "--embed-dim", "8", "--hidden-size", "12", "--no-progress",
                "--seeds", "0", "1", "--out", str(tmp_path), "--figures", str(tmp_path)])
    data = json.loads((tmp_path / "seq2seq_length.json").read_text())
    assert set(data["models"]) == {"plain", "bahdanau"}
    assert (tmp_path / "seq2seq_length.png").stat().st_size > 0
    assert 0.5 < data["meta"]["uniform_aer"] <= 1.0
    for kind, r in data["models"].items():
        assert r["steps"] == 3 and r["batch_size"] == 64 and r["pairs_seen"] == 3 * 64
        assert [b["bucket"] for b in r["bleu_by_length"]] == ["1-10", "11-20", "21-30",
                                                               "31-45", "46-60"]
        assert ("aer" in r) == (kind == "bahdanau") and r["seed"] == 0
        # every seed has its record; only seed 0's weights are saved
        assert set(data["seeds"][kind]) == {"0", "1"}
        assert data["seeds"][kind]["0"]["bleu"] == r["bleu"]
        summary = data["summary"][kind]
        assert summary["seeds"] == [0, 1] and summary["n"] == 2
        bleus = [data["seeds"][kind][s]["bleu"] for s in ("0", "1")]
        assert summary["bleu"] == {"mean": sum(bleus) / 2, "min": min(bleus), "max": max(bleus)}
        filled = [b for b in summary["bleu_by_length"] if not math.isnan(b["mean"])]
        assert filled and all(b["min"] <= b["mean"] <= b["max"] for b in filled)
        ckpt = torch.load(tmp_path / r["checkpoint"])
        assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values()
                   if v.is_floating_point())
        corpus = make_corpus(**ckpt["corpus_kwargs"])
        model = build_seq2seq(ckpt["kind"], len(corpus.src_vocab), len(corpus.tgt_vocab),
                              **ckpt["model_kwargs"])
        model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
