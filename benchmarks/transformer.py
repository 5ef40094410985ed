"""BLEU by source length of a small encoder-decoder Transformer on the Part I corpus.

    python benchmarks/transformer.py                 # train, evaluate, write the results
    python benchmarks/transformer.py --plot-only     # redraw the figure from the JSON

The longer run behind chapter 10 (``notebooks/10_transformer.ipynb``). The model is
:class:`attention_lib.transformer.Transformer` (pre-norm, 2 encoder + 2 decoder layers,
d_model 96, 4 heads, feed-forward 192, dropout 0.1), trained on the corpus of
``benchmarks/seq2seq_length.py`` (``make_corpus(30_000, seed=0, max_len=60)``) for the
**same budget as the Part I models there: 2400 optimizer steps of 64 sentence pairs, drawn
from the same seeded sequence of batches**. The optimiser differs: Adam with
beta2 = 0.98, a linear warm-up over the first ``--warmup`` steps and an inverse-square-root
decay afterwards (the schedule of Vaswani et al. 2017, section 5.3), gradients clipped to
norm 1.

Evaluation is ``evaluate`` of ``benchmarks/seq2seq_length.py``, unchanged: greedy BLEU by
source-length bucket on the test split, and the alignment error rate of the teacher-forced
cross-attention (last decoder layer, averaged over heads) against the gold alignments.

Writes, into ``attention_lib/pretrained/`` (package data, loaded by
:func:`attention_lib.pretrained.load_transformer`):

* ``transformer.pt``: float16 weights and how to rebuild them (``config`` for
  ``Transformer(src_vocab_size, tgt_vocab_size, **config)``, ``corpus_kwargs``, budget);
* ``transformer_length.json``: the results, beside the Part I models' results copied from
  ``seq2seq_length.json`` for the comparison;
and, into ``benchmarks/results/`` (not shipped), ``transformer_length.png``: BLEU by length of
the Transformer, Bahdanau and the plain encoder-decoder, and the training loss.

Comparison runs (``--variant NAME``) change the normalisation (``--norm batch``) or train on
random instead of length-bucketed batches (``--no-bucket``, about 45% padding) and only add
their results to ``transformer_variants.json``::

    python benchmarks/transformer.py --variant layer_random --no-bucket
    python benchmarks/transformer.py --variant batch_random --no-bucket --norm batch

Other seeds (each draws the initial weights and the order of the batches) are comparison runs
too; chapter 10 reads them beside the Part I models' seeds::

    python benchmarks/transformer.py --variant seed1 --seed 1
    python benchmarks/transformer.py --variant seed2 --seed 2

Deterministic on the CPU for a given thread count (``--threads``, default 1).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from seq2seq_length import BUCKETS, baselines, evaluate  # noqa: E402

from attention_lib.data import make_corpus  # noqa: E402
from attention_lib.train import masked_cross_entropy  # noqa: E402
from attention_lib.transformer import Transformer  # noqa: E402

RESULTS = ROOT / "attention_lib" / "pretrained"  # shipped with the package (package data)
FIGURES = ROOT / "benchmarks" / "results"  # not shipped
CONFIG = dict(d_model=96, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
              dim_feedforward=192, dropout=0.1, norm_first=True, max_len=128)


def lr_at(step: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then peak * sqrt(warmup / step)."""
    step = step + 1
    return peak * min(step / warmup, (warmup / step) ** 0.5)


def train(model, batches, *, steps, peak_lr, warmup, clip=1.0, progress=True):
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=peak_lr, betas=(0.9, 0.98), eps=1e-9)
    model.train()
    history, it = [], iter(batches)
    for step in tqdm(range(steps), disable=not progress, mininterval=5.0, desc="transformer"):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(batches)
            batch = next(it)
        src, src_len, tgt_in, tgt_out, _ = batch
        for g in opt.param_groups:
            g["lr"] = lr_at(step, peak_lr, warmup)
        logits, _ = model(src, src_len, tgt_in)
        loss = masked_cross_entropy(logits, tgt_out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        history.append(loss.item())
    model.eval()
    return history


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    corpus_kwargs = dict(n_pairs=args.n_pairs, seed=args.corpus_seed, min_len=3,
                         max_len=args.max_len)
    corpus = make_corpus(**corpus_kwargs)
    config = dict(CONFIG, d_model=args.d_model, dim_feedforward=2 * args.d_model,
                  norm=args.norm)
    torch.manual_seed(args.seed)
    model = Transformer(len(corpus.src_vocab), len(corpus.tgt_vocab), **config)
    batches = corpus.batches("train", args.batch_size, bucket=not args.no_bucket,
                             generator=torch.Generator().manual_seed(args.seed))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    loss = train(model, batches, steps=args.steps, peak_lr=args.lr, warmup=args.warmup,
                 progress=not args.no_progress)
    train_s = time.perf_counter() - t0
    load1 = os.getloadavg()
    t0 = time.perf_counter()
    res = evaluate(model, corpus)
    eval_s = time.perf_counter() - t0
    path = RESULTS / "transformer.pt"
    if args.variant:  # a comparison run: results only, no shipped checkpoint
        path = Path(tempfile.gettempdir()) / f"transformer_{args.variant}.pt"
    torch.save({"kind": "transformer", "config": model.config, "corpus_kwargs": corpus_kwargs,
                "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                "lr": args.lr, "warmup": args.warmup,
                "state_dict": {k: v.detach().to(torch.float16)
                               for k, v in model.state_dict().items()}}, path)
    every = max(1, len(loss) // 200)
    res.update({
        "kind": "transformer", "label": "Transformer (pre-norm, 2+2 layers)",
        "config": model.config,
        "params": sum(p.numel() for p in model.parameters()),
        "steps": args.steps, "batch_size": args.batch_size,
        "pairs_seen": args.steps * args.batch_size, "peak_lr": args.lr,
        "warmup": args.warmup, "seed": args.seed, "bucketed_batches": not args.no_bucket,
        "train_seconds": round(train_s, 1), "seconds_per_step": round(train_s / args.steps, 4),
        "eval_seconds": round(eval_s, 1), "threads": args.threads,
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in load1],
        "final_loss": sum(loss[-50:]) / len(loss[-50:]),
        "loss_curve": {"every": every,
                       "loss": [round(sum(loss[i:i + every]) / len(loss[i:i + every]), 4)
                                for i in range(0, len(loss), every)]},
        "checkpoint": path.name, "checkpoint_bytes": path.stat().st_size,
    })
    if args.variant:
        merge_variant(args.variant, res)
        return res
    part1 = {}
    p1 = RESULTS / "seq2seq_length.json"
    if p1.exists():
        part1 = {k: v for k, v in json.loads(p1.read_text()).get("models", {}).items()
                 if k in ("plain", "bahdanau", "luong")}
    data = {"meta": {"corpus": {**corpus_kwargs, **{k: corpus.summary()[k] for k in
                                                   ("n_train", "n_valid", "n_test",
                                                    "src_vocab", "tgt_vocab")}},
                     "buckets": [list(b) for b in BUCKETS], "split": "test",
                     "decoding": "greedy",
                     "aer": "teacher-forced cross-attention of the last decoder layer, "
                            "averaged over heads; argmax over real source words",
                     **baselines(corpus), "torch": torch.__version__,
                     "machine": platform.machine(), "cpu_count": os.cpu_count()},
            "transformer": res,
            "part1": {k: {f: v[f] for f in ("label", "bleu", "bleu_by_length", "aer", "steps",
                                             "batch_size", "params", "final_loss")
                          if f in v} for k, v in part1.items()}}
    (RESULTS / "transformer_length.json").write_text(json.dumps(data, indent=1) + "\n")
    plot(data)
    return res


def merge_variant(name, res):
    """Add one comparison run to ``transformer_variants.json`` (runs may be concurrent)."""
    out = RESULTS / "transformer_variants.json"
    with open(Path(tempfile.gettempdir()) / "transformer_variants.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(out.read_text()) if out.exists() else {}
        res = {k: v for k, v in res.items() if k not in ("checkpoint", "checkpoint_bytes")}
        data[name] = res
        out.write_text(json.dumps(data, indent=1) + "\n")


def plot(data):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    rows = [("Transformer", data["transformer"])] + [
        (r["label"], r) for k, r in data.get("part1", {}).items() if k in ("bahdanau", "plain")]
    for k, (label, r) in enumerate(rows):
        xs = [b["bucket"] for b in r["bleu_by_length"]]
        ax.plot(xs, [b["bleu"] for b in r["bleu_by_length"]], marker="o", label=label,
                ls="-" if k == 0 else "--", lw=2.5 if k == 0 else 1.5)
    r = data["transformer"]
    lc = r["loss_curve"]
    ax2.plot([i * lc["every"] for i in range(len(lc["loss"]))], lc["loss"], label="Transformer")
    ax.set_xlabel("source length (tokens)")
    ax.set_ylabel("test BLEU (greedy)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"same budget: {r['steps']} steps x {r['batch_size']} pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "transformer_length.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    global RESULTS, FIGURES
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1.2e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--d-model", type=int, default=96)
    p.add_argument("--n-pairs", type=int, default=30_000)
    p.add_argument("--max-len", type=int, default=60)
    p.add_argument("--corpus-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--norm", choices=["layer", "batch"], default="layer",
                   help="normalisation (batch: plain BatchNorm, padding included)")
    p.add_argument("--no-bucket", action="store_true",
                   help="random batches instead of batches of similar length")
    p.add_argument("--variant", default="",
                   help="name of a comparison run: its results go to "
                        "transformer_variants.json, and nothing else is written")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--out", default=str(ROOT / "attention_lib" / "pretrained"),
                   help="weights and the JSON results the chapters read, shipped with the "
                        "package (default: %(default)s)")
    p.add_argument("--figures", default=str(ROOT / "benchmarks" / "results"),
                   help="where the figure goes (default: %(default)s)")
    args = p.parse_args(argv)
    RESULTS = Path(args.out).resolve()
    FIGURES = Path(args.figures).resolve()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        plot(json.loads((RESULTS / "transformer_length.json").read_text()))
        return
    r = run(args)
    print(json.dumps({k: r[k] for k in ("bleu", "aer", "train_seconds", "seconds_per_step")}),
          [(b["bucket"], round(b["bleu"], 3)) for b in r["bleu_by_length"]], flush=True)


if __name__ == "__main__":
    main()
