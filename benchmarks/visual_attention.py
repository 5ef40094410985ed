"""The longer run of chapter 18: captioners trained on synthetic scenes, attention vs none.

    python benchmarks/visual_attention.py                          # both kinds, default budget
    python benchmarks/visual_attention.py --kinds attention --steps 3000
    python benchmarks/visual_attention.py --steps 20 --out /tmp/x  # a smoke run

Trains :class:`attention_lib.vision.AttentionCaptioner` (the Bahdanau decoder of chapter 4
attending over an 8x8 grid of CNN features) and :class:`attention_lib.vision.PlainCaptioner`
(the decoder of chapter 1, which sees only the grid's mean) on the same seeded sequence of
scene batches (``attention_lib.scenes``), for the same number of optimizer steps, and
measures on held-out scenes (a different seed):

* caption exact-match rate and corpus BLEU of greedy captions;
* pointing accuracy of the attention captioner's teacher-forced attention (the fraction of
  size, colour and shape words whose attention peak falls on their object), beside the
  expected pointing accuracy of uniform attention, which is what the plain captioner uses.

Several seeds (``--seeds 0 1 2``; each seed draws the initial weights and the order of the
batches; runs in separate processes merge their results under a lock)::

    python benchmarks/visual_attention.py --seeds 1 &  python benchmarks/visual_attention.py --seeds 2

Writes ``attention_lib/pretrained/visual_attention.json`` (merged with what is there: the
record of seed 0 under each kind, and every seed's under ``seeds``) and, for seed 0, the
float16 weights ``visual_captioner_<kind>.pt`` (a dict with ``state_dict``, ``kind``,
``model_kwargs``, ``scene_kwargs``, ``steps``, ``batch_size``, ``seed``), which chapter 18
loads with :func:`attention_lib.vision.load_captioner`. Deterministic on the CPU for a given
thread count (``--threads``, default 1).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attention_lib.metrics import corpus_bleu  # noqa: E402
from attention_lib.scenes import make_scenes, scene_batch, scene_batches, scene_vocab  # noqa: E402
from attention_lib.seq2seq import greedy_decode  # noqa: E402
from attention_lib.vision import (  # noqa: E402
    AttentionCaptioner,
    PlainCaptioner,
    object_word_attention,
    pointing_accuracy,
    train_captioner,
    uniform_pointing_accuracy,
)

KINDS = {"attention": AttentionCaptioner, "plain": PlainCaptioner}


def decode_captions(model, batch, vocab, max_len: int = 30):
    tokens, _ = greedy_decode(model, batch.images, None, bos_id=vocab.bos_id,
                              eos_id=vocab.eos_id, max_len=max_len)
    return [vocab.decode(row) for row in tokens]


def evaluate(model, test, vocab) -> dict:
    batch = scene_batch(test, vocab)
    hyps = decode_captions(model, batch, vocab)
    refs = [s.tokens for s in test]
    res = {"exact_match": sum(h == r for h, r in zip(hyps, refs)) / len(refs),
           "bleu": corpus_bleu(hyps, refs)}
    if model.attends:
        attn, regions, _ = object_word_attention(model, batch)
        res["pointing"] = pointing_accuracy(attn, regions)
        res["pointing_uniform"] = uniform_pointing_accuracy(regions, tuple(attn.shape[1:]))
    return res


def run(kind: str, args, seed: int = 0) -> dict:
    torch.set_num_threads(args.threads)
    scene_kwargs = dict(image_size=args.image_size, min_objects=1,
                        max_objects=args.max_objects, clutter=args.clutter)
    train = make_scenes(args.n_train, seed=args.scene_seed, **scene_kwargs)
    test = make_scenes(args.n_test, seed=args.scene_seed + 1, **scene_kwargs)
    vocab = scene_vocab()
    model_kwargs = dict(channels=args.channels, embed_dim=args.embed_dim,
                        hidden_size=args.hidden_size)
    torch.manual_seed(seed)
    model = KINDS[kind](len(vocab), **model_kwargs)
    batches = scene_batches(train, args.batch_size,
                            generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    hist = train_captioner(model, batches, steps=args.steps, lr=args.lr,
                           progress=not args.no_progress, desc=kind)["loss"]
    seconds = time.perf_counter() - t0
    res = {"seed": seed, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
           "train_seconds": round(seconds, 1), "seconds_per_step": round(seconds / args.steps, 4),
           "final_loss": sum(hist[-50:]) / len(hist[-50:]), "n_test": args.n_test,
           **evaluate(model, test, vocab)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if seed != 0:  # only seed 0's weights are shipped
        return res
    torch.save({"kind": kind, "model_kwargs": model_kwargs, "scene_kwargs": scene_kwargs,
                "scene_seed": args.scene_seed, "n_train": args.n_train, "steps": args.steps,
                "batch_size": args.batch_size, "lr": args.lr, "seed": seed,
                "state_dict": {k: v.half() for k, v in model.state_dict().items()}},
               out / f"visual_captioner_{kind}.pt")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--scene-seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--clutter", type=float, default=0.03)
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="seeds to train; seed 0's models are saved and shipped")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--hidden-size", type=int, default=96)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=str(ROOT / "attention_lib" / "pretrained"))
    args = p.parse_args(argv)
    for kind in args.kinds:
        for seed in args.seeds:
            res = run(kind, args, seed)
            print(kind, f"seed {seed}", json.dumps(res), flush=True)
            data = merge(Path(args.out) / "visual_attention.json", kind, res, args.threads)
    return data


def merge(path, kind, res, threads):
    """Add one run to the results: under ``seeds``, and as the kind's record if seed 0."""
    with open(Path(tempfile.gettempdir()) / "visual_attention.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        if res["seed"] == 0:
            data[kind] = res
        data.setdefault("seeds", {}).setdefault(kind, {})[str(res["seed"])] = res
        data["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                           "threads": threads}
        path.write_text(json.dumps(data, indent=1) + "\n")
    return data

if __name__ == "__main__":
    main()
