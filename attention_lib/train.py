"""One training loop for every Part I model (and anything with the same call signature).

Teacher forcing, padding-aware cross-entropy, gradient clipping, a tqdm progress bar and a
loss history to plot. Deterministic on the CPU given the seed: the number of steps is fixed
(never a time budget), and batches come from a seeded iterator.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional

import torch
from torch import nn

from .utils import progress as progress_bar

__all__ = ["masked_cross_entropy", "train_seq2seq"]

Tensor = torch.Tensor


def masked_cross_entropy(logits: Tensor, target: Tensor, pad_id: int = 0) -> Tensor:
    """Mean cross-entropy over real (non-pad) target tokens.

    logits: (B, T, V) float; target: (B, T) int. Padding positions contribute nothing, so
    the loss of a batch does not depend on how much padding it carries.
    """
    if logits.dim() != 3 or target.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, T, V) and target (B, T); got logits "
                         f"{tuple(logits.shape)} and target {tuple(target.shape)}")
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                       target.reshape(-1), ignore_index=pad_id)


def _fit(model: nn.Module, batches: Iterable, loss_fn: Callable, *, steps: int, lr: float,
         clip: float, progress: bool, desc: str, weight_decay: float = 0.0,
         on_step: Optional[Callable[[int, float], None]] = None) -> dict:
    """The loop: ``steps`` Adam steps on ``loss_fn(batch)``, gradients clipped to norm ``clip``,
    ``batches`` cycled if it runs out. Returns ``{"loss": [per-step loss], "steps": steps}``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    history = []
    it: Iterator = iter(batches)
    bar = progress_bar(range(steps), desc=desc, enabled=progress)
    for step in bar:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(batches)
            batch = next(it)
        loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        history.append(loss.item())
        if on_step is not None:
            on_step(step, history[-1])
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{history[-1]:.3f}")
    model.eval()
    return {"loss": history, "steps": steps}


def train_seq2seq(model: nn.Module, batches: Iterable, *, steps: int, lr: float = 3e-3,
                  clip: float = 1.0, pad_id: int = 0, device=None, progress: bool = True,
                  desc: str = "training", weight_decay: float = 0.0,
                  on_step: Optional[Callable[[int, float], None]] = None) -> dict:
    """Train ``model(src, src_len, tgt_in) -> (logits, attn)`` for ``steps`` optimizer steps.

    batches: an iterable of ``(src, src_len, tgt_in, tgt_out, tgt_len)``; it is cycled if it
    runs out. Adam with learning rate ``lr``, gradients clipped to norm ``clip``.
    Returns ``{"loss": [per-step loss], "steps": steps}``.
    """
    device = device or next(model.parameters()).device

    def loss_fn(batch):
        src, src_len, tgt_in, tgt_out, _ = (t.to(device) for t in batch)
        logits, _ = model(src, src_len, tgt_in)
        return masked_cross_entropy(logits, tgt_out, pad_id)

    return _fit(model, batches, loss_fn, steps=steps, lr=lr, clip=clip, progress=progress,
                desc=desc, weight_decay=weight_decay, on_step=on_step)
