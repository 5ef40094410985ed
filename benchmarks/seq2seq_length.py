"""BLEU by source length, and alignment error rate, of the Part I models at one training budget.

    python benchmarks/seq2seq_length.py --kinds plain bahdanau      # one process per kind is fine
    python benchmarks/seq2seq_length.py --kinds luong --steps 2400
    python benchmarks/seq2seq_length.py --plot-only                 # redraw from the JSON

The longer run behind the headline figure of Part I (Bahdanau et al. 2014, Fig. 2, on the
synthetic corpus of ``attention_lib.data``): the plain encoder-decoder (the decoder sees one
fixed-length vector) against Bahdanau (additive) and Luong (general score, input feeding)
attention, all with the same bidirectional-GRU encoder and sizes, trained for the **same
budget: the same number of optimizer steps on batches of the same size** (``--steps`` x
``--batch-size`` sentence pairs, drawn from the same seeded sequence of batches). Wall time
and seconds per step are recorded too; they differ between the models (the attention
decoders run a Python loop over target steps) and depend on the machine's load.

Measured on the **test** split (never seen in training):

* corpus BLEU (``attention_lib.metrics``) of greedy translations, by source-length bucket
  1-10, 11-20, 21-30, 31-45, 46-60 tokens (full stop included);
* AER (Och & Ney 2003) of the attention weights from a **teacher-forced** pass over the
  reference translation (row j of the weights belongs to gold target word j; argmax over the
  real source words), against the gold alignments, beside the uniform-attention (expected)
  and diagonal baselines.

Several seeds (``--seeds 0 1 2``; each seed draws both the initial weights and the order of
the batches) give the mean and the spread (min to max) of every figure; runs of different
seeds may be made in separate processes, since results are merged into the JSON under a lock::

    python benchmarks/seq2seq_length.py --seeds 1 &  python benchmarks/seq2seq_length.py --seeds 2

Writes ``attention_lib/pretrained/seq2seq_length.json`` (package data: chapters 4, 5 and 10
read it, in Colab too) and the figure ``benchmarks/results/seq2seq_length.png``: the
``models`` section holds the full record of seed 0 (the shipped model), ``seeds`` one compact
record per kind and seed, and ``summary`` the mean, minimum and maximum over the seeds there
are. The trained weights of seed 0 are saved, in float16, to
``attention_lib/pretrained/seq2seq_<kind>.pt`` (``seq2seq_<kind>_quick.pt`` with ``--quick``: the
quick-run configuration of the chapters, which chapter 4 loads instead of retraining the
plain model): a dict with ``state_dict``, ``kind``,
``model_kwargs`` (for :func:`attention_lib.seq2seq.build_seq2seq`) and ``corpus_kwargs``
(for :func:`attention_lib.data.make_corpus`), so that chapters can load a trained model::

    model, ckpt = attention_lib.pretrained.load_seq2seq("bahdanau", src_vocab_size, tgt_vocab_size)
    corpus = make_corpus(**ckpt["corpus_kwargs"])
    model = build_seq2seq(ckpt["kind"], len(corpus.src_vocab), len(corpus.tgt_vocab),
                          **ckpt["model_kwargs"])
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})

Training is deterministic on the CPU for a given thread count (``--threads``, default 1:
on a small model and a shared 2-core machine one thread is also the fastest).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attention_lib.data import make_corpus  # noqa: E402
from attention_lib.metrics import (  # noqa: E402
    attention_aer,
    bleu_by_length,
    diagonal_attention,
    uniform_baseline_aer,
)
from attention_lib.seq2seq import build_seq2seq, greedy_decode  # noqa: E402
from attention_lib.train import train_seq2seq  # noqa: E402

RESULTS = ROOT / "attention_lib" / "pretrained"  # shipped with the package (package data)
FIGURES = ROOT / "benchmarks" / "results"  # not shipped
BUCKETS = ((1, 10), (11, 20), (21, 30), (31, 45), (46, 60))
KIND_KWARGS = {"plain": {}, "bahdanau": {}, "luong": {"score": "general", "input_feeding": True},
               # the Luong variants of chapter 5 (build_seq2seq("luong", ...) with these)
               "luong_dot": {"score": "dot", "input_feeding": True},
               "luong_concat": {"score": "concat", "input_feeding": True},
               "luong_local_p": {"score": "general", "local": "p", "window": 5,
                                 "input_feeding": True},
               "luong_nofeed": {"score": "general", "input_feeding": False},
               # chapter 5's controls: every score without input feeding, and local-p
               # with the paper's window D = 10
               "luong_dot_nofeed": {"score": "dot", "input_feeding": False},
               "luong_concat_nofeed": {"score": "concat", "input_feeding": False},
               "luong_local_p10": {"score": "general", "local": "p", "window": 10,
                                   "input_feeding": True}}
LABELS = {"plain": "plain encoder-decoder", "bahdanau": "Bahdanau (additive)",
          "luong": "Luong (general, input feeding)", "luong_dot": "Luong (dot)",
          "luong_concat": "Luong (concat)", "luong_local_p": "Luong (local-p, general, D=5)",
          "luong_nofeed": "Luong (general, no input feeding)",
          "luong_dot_nofeed": "Luong (dot, no input feeding)",
          "luong_concat_nofeed": "Luong (concat, no input feeding)",
          "luong_local_p10": "Luong (local-p, general, D=10)"}


@torch.no_grad()
def evaluate(model, corpus, split="test", batch_size=250, max_extra=20):
    """Greedy BLEU by source-length bucket and teacher-forced AER on ``split``."""
    model.eval()
    index = sorted(corpus.splits[split], key=lambda i: len(corpus.pairs[i].src))
    hyps, refs, lens, weights, aligns, slens, tlens = [], [], [], [], [], [], []
    for k in range(0, len(index), batch_size):
        idx = index[k:k + batch_size]
        batch = corpus.batch(idx)
        pairs = [corpus.pairs[i] for i in idx]
        max_len = max(len(p.tgt) for p in pairs) + max_extra
        tokens, _ = greedy_decode(model, batch.src, batch.src_len, bos_id=corpus.tgt_vocab.bos_id,
                                  eos_id=corpus.tgt_vocab.eos_id, max_len=max_len)
        hyps += [corpus.tgt_vocab.decode(row) for row in tokens]
        refs += [list(p.tgt) for p in pairs]
        lens += [len(p.src) for p in pairs]
        if model.attends:
            attn = model.alignment(batch.src, batch.src_len, batch.tgt_in)  # teacher forced
            weights += [a for a in attn.float()]
            aligns += [p.alignment for p in pairs]
            slens += [len(p.src) for p in pairs]
            tlens += [len(p.tgt) for p in pairs]
    by_len = bleu_by_length(hyps, refs, lens, BUCKETS)
    from attention_lib.metrics import corpus_bleu
    out = {"bleu": float(corpus_bleu(hyps, refs)),
           "bleu_by_length": [{"bucket": b.label, "lo": b.lo, "hi": b.hi, "count": b.count,
                               "bleu": b.bleu} for b in by_len],
           "exact_match": sum(h == r for h, r in zip(hyps, refs)) / len(refs)}
    if model.attends:
        out["aer"] = attention_aer(weights, aligns, src_lens=slens, tgt_lens=tlens)
    return out


def baselines(corpus, split="test"):
    pairs = corpus.split(split)
    aligns = [p.alignment for p in pairs]
    sl, tl = [len(p.src) for p in pairs], [len(p.tgt) for p in pairs]
    diag = [diagonal_attention(s, t) for s, t in zip(sl, tl)]
    return {"uniform_aer": uniform_baseline_aer(aligns, sl, tl),
            "diagonal_aer": attention_aer(diag, aligns)}


def run(kind, args, seed=0):
    torch.set_num_threads(args.threads)
    corpus_kwargs = dict(n_pairs=args.n_pairs, seed=args.corpus_seed, min_len=3,
                         max_len=args.max_len)
    corpus = make_corpus(**corpus_kwargs)
    model_kwargs = dict(embed_dim=args.embed_dim, hidden_size=args.hidden_size,
                        **KIND_KWARGS[kind])
    torch.manual_seed(seed)
    base = kind.split("_")[0]  # luong_dot -> luong
    model = build_seq2seq(base, len(corpus.src_vocab), len(corpus.tgt_vocab), **model_kwargs)
    batches = corpus.batches("train", args.batch_size,
                             generator=torch.Generator().manual_seed(seed))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    hist = train_seq2seq(model, batches, steps=args.steps, lr=args.lr,
                         progress=not args.no_progress, desc=kind)
    train_s = time.perf_counter() - t0
    load1 = os.getloadavg()
    t0 = time.perf_counter()
    res = evaluate(model, corpus)
    eval_s = time.perf_counter() - t0
    path = RESULTS / f"seq2seq_{kind}{'_quick' if args.quick else ''}.pt"
    if seed == 0:  # the shipped model
        torch.save({"kind": base, "name": kind, "model_kwargs": model_kwargs,
                    "corpus_kwargs": corpus_kwargs, "steps": args.steps,
                    "batch_size": args.batch_size, "seed": seed, "lr": args.lr,
                    "state_dict": {k: v.detach().to(torch.float16)
                                   for k, v in model.state_dict().items()}}, path)
    loss = hist["loss"]
    every = max(1, len(loss) // 200)
    res.update({
        "kind": kind, "label": LABELS[kind], "model_kwargs": model_kwargs,
        "params": sum(p.numel() for p in model.parameters()),
        "steps": args.steps, "batch_size": args.batch_size,
        "pairs_seen": args.steps * args.batch_size, "lr": args.lr, "seed": seed,
        "train_seconds": round(train_s, 1), "seconds_per_step": round(train_s / args.steps, 4),
        "eval_seconds": round(eval_s, 1), "threads": args.threads,
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in load1],
        "final_loss": sum(loss[-50:]) / len(loss[-50:]),
        "loss_curve": {"every": every, "loss": [round(sum(loss[i:i + every]) / len(loss[i:i + every]), 4)
                                                for i in range(0, len(loss), every)]},
    })
    if seed == 0:
        res.update({"checkpoint": path.name, "checkpoint_bytes": path.stat().st_size})
    base = baselines(corpus)
    meta = {"corpus": {**corpus_kwargs, **{k: corpus.summary()[k] for k in
                                         ("n_train", "n_valid", "n_test", "src_vocab",
                                          "tgt_vocab")}},
            "buckets": [list(b) for b in BUCKETS], "split": "test",
            "decoding": "greedy", "aer": "teacher-forced attention, argmax over real source words",
            **base, "torch": torch.__version__, "machine": platform.machine(),
            "cpu_count": os.cpu_count()}
    merge(kind, res, meta, "quick" if args.quick else "models")
    return res


SEED_FIELDS = ("bleu", "bleu_by_length", "exact_match", "aer", "final_loss", "steps",
               "batch_size", "lr", "model_kwargs", "train_seconds", "seconds_per_step",
               "loadavg_before", "loadavg_after")


def merge(kind, res, meta, section="models"):
    """Add one run to the JSON: its compact record under ``seeds`` (``quick_seeds``), the full
    record under ``section`` if it is seed 0, and the summary over seeds recomputed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "seq2seq_length.json"
    prefix = "quick_" if section == "quick" else ""
    with open(Path(tempfile.gettempdir()) / "seq2seq_length.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(out.read_text()) if out.exists() else {}
        data["meta"] = meta
        if res["seed"] == 0:
            data.setdefault(section, {})[kind] = res
        runs = data.setdefault(prefix + "seeds", {}).setdefault(kind, {})
        runs[str(res["seed"])] = {k: res[k] for k in SEED_FIELDS if k in res}
        data.setdefault(prefix + "summary", {})[kind] = summarize(runs)
        out.write_text(json.dumps(data, indent=1) + "\n")
        plot(data)


def summarize(runs):
    """Mean, minimum and maximum over seeds of BLEU, BLEU by bucket and AER.

    Only runs with the same budget and model as seed 0's (or the first run's) count, so a
    stale run of another configuration never mixes into the figures."""
    ref = runs.get("0", next(iter(runs.values())))
    same = [r for r in runs.values()
            if all(r.get(k) == ref.get(k) for k in ("steps", "batch_size", "lr", "model_kwargs"))]
    seeds = sorted(int(s) for s, r in runs.items() if r in same)

    def stats(xs):
        return {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs)}

    out = {"seeds": seeds, "n": len(same), "bleu": stats([r["bleu"] for r in same]),
           "bleu_by_length": [{"bucket": b["bucket"],
                               **stats([r["bleu_by_length"][k]["bleu"] for r in same])}
                              for k, b in enumerate(ref["bleu_by_length"])],
           "final_loss": stats([r["final_loss"] for r in same])}
    if "aer" in ref:
        out["aer"] = stats([r["aer"] for r in same])
    return out


def plot(data):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    n_seeds = 1
    for kind in ("plain", "bahdanau", "luong"):
        r = data.get("models", {}).get(kind)
        if r is None:
            continue
        xs = [b["bucket"] for b in r["bleu_by_length"]]
        summ = data.get("summary", {}).get(kind)
        if summ and summ["n"] > 1:  # mean over seeds, with the min-max band
            n_seeds = max(n_seeds, summ["n"])
            line, = ax.plot(xs, [b["mean"] for b in summ["bleu_by_length"]], marker="o",
                            label=f"{r['label']}" + (f", AER {summ['aer']['mean']:.3f}"
                                                      if "aer" in summ else ""))
            ax.fill_between(xs, [b["min"] for b in summ["bleu_by_length"]],
                            [b["max"] for b in summ["bleu_by_length"]],
                            color=line.get_color(), alpha=0.2)
        else:
            ax.plot(xs, [b["bleu"] for b in r["bleu_by_length"]], marker="o",
                    label=f"{r['label']}" + (f", AER {r['aer']:.3f}" if "aer" in r else ""))
        lc = r["loss_curve"]
        ax2.plot([i * lc["every"] for i in range(len(lc["loss"]))], lc["loss"], label=r["label"])
    if not data.get("models"):
        plt.close(fig)
        return
    any_r = next(iter(data["models"].values()))
    ax.set_xlabel("source length (tokens)")
    ax.set_ylabel("test BLEU (greedy)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"same budget: {any_r['steps']} steps x {any_r['batch_size']} pairs"
                 + (f"; mean and range of {n_seeds} seeds" if n_seeds > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2.set_yscale("log")
    if n_seeds > 1:
        ax2.set_title("training loss of seed 0 (the shipped models)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "seq2seq_length.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kinds", nargs="+", default=["plain", "bahdanau", "luong"],
                   choices=sorted(KIND_KWARGS))
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--n-pairs", type=int, default=30_000)
    p.add_argument("--max-len", type=int, default=60)
    p.add_argument("--corpus-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="seeds to train (weights and batch order); seed 0's model is saved")
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=192)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--out", default=str(ROOT / "attention_lib" / "pretrained"),
                   help="weights and the JSON results the chapters read, shipped with the "
                        "package (default: %(default)s)")
    p.add_argument("--figures", default=str(ROOT / "benchmarks" / "results"),
                   help="where the figure goes (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="the chapters' quick runs instead: 32-dim embeddings, 64-dim "
                        "GRUs, 400 steps at lr 1e-2; writes seq2seq_<kind>_quick.pt and the "
                        "'quick' section of the JSON")
    args = p.parse_args(argv)
    global RESULTS, FIGURES
    RESULTS = Path(args.out).resolve()
    FIGURES = Path(args.figures).resolve()
    if args.quick:
        args.embed_dim, args.hidden_size, args.steps, args.lr = 32, 64, 400, 1e-2
    if args.plot_only:
        plot(json.loads((RESULTS / "seq2seq_length.json").read_text()))
        return
    for kind, seed in [(k, s) for k in args.kinds for s in args.seeds]:
        r = run(kind, args, seed)
        print(kind, f"seed {seed}",
              json.dumps({k: r[k] for k in ("bleu", "train_seconds", "seconds_per_step")}),
              [(b["bucket"], round(b["bleu"], 3)) for b in r["bleu_by_length"]],
              "AER", round(r.get("aer", math.nan), 3), flush=True)

if __name__ == "__main__":
    main()
