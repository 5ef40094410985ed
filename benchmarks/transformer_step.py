"""Time chapter 10's training step: the live run's model, batch and seed, a few repeats.

    python benchmarks/transformer_step.py                      # this tree only
    python benchmarks/transformer_step.py --base /tmp/base     # and a copy of another tree

``--base`` names a directory holding another ``attention_lib`` (e.g. ``git archive <commit>
attention_lib | tar -x -C /tmp/base``). Each repeat runs every tree in a fresh process, in
turn, so both see the same machine; the result is the median milliseconds per step of each and
their ratio (base / this tree), written to ``benchmarks/results/transformer_step.json``.
The model is notebooks/10_transformer.ipynb's live run: d_model=64, 4 heads, 2 + 2 layers,
feed-forward 128, no dropout, pre-norm, batches of 64 pairs, Adam at 3e-3, gradients clipped to
norm 1, one CPU thread (as the notebook sets on a CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "transformer_step.json"


def worker(steps: int, warmup: int) -> float:
    """Milliseconds per training step of chapter 10's live model, after ``warmup`` steps."""
    import torch

    import attention_lib
    from attention_lib.data import make_corpus
    from attention_lib.train import masked_cross_entropy
    from attention_lib.transformer import Transformer

    torch.set_num_threads(1)
    attention_lib.seed_everything(0)
    corpus = make_corpus(30_000, seed=0, max_len=60)
    torch.manual_seed(0)
    model = Transformer(len(corpus.src_vocab), len(corpus.tgt_vocab), d_model=64, num_heads=4,
                        num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128,
                        dropout=0.0, norm_first=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = iter(corpus.batches("train", 64, generator=torch.Generator().manual_seed(0)))
    model.train()

    def step():
        src, src_len, tgt_in, tgt_out, _ = next(batches)
        logits, _ = model(src, src_len, tgt_in)
        loss = masked_cross_entropy(logits, tgt_out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - t0) / steps


def run_tree(tree: Path, steps: int, warmup: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(steps),
                          "--warmup", str(warmup)], env=env, cwd=tree, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, help="directory with another attention_lib")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(worker(args.steps, args.warmup))
        return {}
    trees = {"this": ROOT} | ({"base": args.base.resolve()} if args.base else {})
    times = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            times[name].append(run_tree(tree, args.steps, args.warmup))
    result = {"steps": args.steps, "repeats": args.repeats, "ms_per_step": times,
              "median_ms_per_step": {k: statistics.median(v) for k, v in times.items()}}
    if args.base:
        med = result["median_ms_per_step"]
        result["speedup_base_over_this"] = med["base"] / med["this"]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
