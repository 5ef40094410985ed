"""Chapter 18's channel and spatial gates over several seeds: how much is learned, how much
is the seed.

    python benchmarks/visual_gates.py                  # seeds 0-4, the chapter's settings
    python benchmarks/visual_gates.py --seeds 0 --steps 20 --out /tmp/x   # a smoke run

For each seed, trains the chapter's small CNN with squeeze-and-excitation blocks and with
CBAM blocks (:class:`attention_lib.vision.SceneClassifier`) on the chapter's scenes, labels,
batch size, learning rate and number of steps (``torch.manual_seed(seed)`` draws the initial
weights, ``seed`` the order of the batches; seed 0 is the chapter's own run), and measures on
its 500 test scenes, for the trained model and for the same model before training:

* ``se_gate_change``: per colour, the largest change of one channel's mean SE gate (after
  the second convolution) between test scenes with and without that colour;
* ``cbam_on``, ``cbam_off``, ``cbam_on_above_off``: the mean CBAM spatial gate (after the
  second convolution) on cells with an object and on background cells away from the
  zero-padded border, and the fraction of scenes where the first is higher;
* ``colour_accuracy``: the fraction of test scenes whose four colour labels are all right.

Writes ``attention_lib/pretrained/visual_gates.json``, which chapter 18 reads. One thread,
deterministic on the CPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attention_lib.scenes import (  # noqa: E402
    label_batches,
    make_scenes,
    scene_label_names,
    scene_labels,
)
from attention_lib.vision import (  # noqa: E402
    SceneClassifier,
    region_to_grid,
    train_classifier,
)

SCENE = dict(image_size=32, min_objects=1, max_objects=3, clutter=0.03)


def gate_stats(kind, model, images, labels, objects, is_colour) -> dict:
    """The chapter's statistics of one classifier's gates on the test scenes."""
    with torch.no_grad():
        logits, w = model(images, return_weights=True)
    res = {}
    ok = (logits > 0) == labels.bool()
    res["colour_accuracy"] = ok[:, is_colour].all(1).float().mean().item()
    if kind == "se":
        gates = w[0]  # (B, C): SE gates after conv 2
        has = labels.bool()[:, is_colour]
        diff = torch.stack([gates[has[:, c]].mean(0) - gates[~has[:, c]].mean(0)
                            for c in range(has.shape[1])])
        res["se_gate_change"] = diff.abs().amax(1).tolist()
    else:
        spatial = w[0][1].reshape(len(images), *w[0][1].shape[-2:])  # (B, 16, 16)
        cells = region_to_grid(objects, tuple(spatial.shape[-2:]))
        inner = torch.zeros(spatial.shape[-2:], dtype=torch.bool)
        inner[2:-2, 2:-2] = True  # away from the zero-padded border
        on = torch.stack([g[c].mean() for g, c in zip(spatial, cells)])
        off = torch.stack([g[~c & inner].mean() for g, c in zip(spatial, cells)])
        res.update(cbam_on=on.mean().item(), cbam_off=off.mean().item(),
                   cbam_on_above_off=(on > off).float().mean().item())
    return res


def run(seed: int, args) -> dict:
    torch.set_num_threads(1)
    train = make_scenes(4000, seed=0, **SCENE)
    test = make_scenes(500, seed=1, **SCENE)
    names = scene_label_names()
    is_colour = torch.tensor([n not in ("circle", "square", "triangle") for n in names])
    images = torch.stack([s.image for s in test])
    labels = scene_labels(test)
    objects = torch.stack([torch.stack([o.mask for o in s.objects]).any(0) for s in test])
    out = {}
    for kind in ("se", "cbam"):
        torch.manual_seed(seed)
        m = SceneClassifier(len(names), channels=32, attention=kind)
        before = gate_stats(kind, m.eval(), images, labels, objects, is_colour)
        m.train()
        batches = label_batches(train, args.batch_size,
                                generator=torch.Generator().manual_seed(seed))
        t0 = time.perf_counter()
        train_classifier(m, batches, steps=args.steps, lr=args.lr, progress=False)
        m.eval()
        out[kind] = {"trained": gate_stats(kind, m, images, labels, objects, is_colour),
                     "untrained": before,
                     "train_seconds": round(time.perf_counter() - t0, 1)}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--out", default=str(ROOT / "attention_lib" / "pretrained"))
    args = p.parse_args(argv)
    data = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "scene_kwargs": SCENE, "seeds": {}}
    for seed in args.seeds:
        data["seeds"][str(seed)] = run(seed, args)
        print(f"seed {seed}", json.dumps(data["seeds"][str(seed)]), flush=True)
    data["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": 1}
    path = Path(args.out) / "visual_gates.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


if __name__ == "__main__":
    main()
