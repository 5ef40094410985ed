"""Test helpers: reproducible random inputs, and copying weights between equivalent modules."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from attention_lib.layers import MultiHeadAttention


def randn(*shape: int, gen: torch.Generator, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Standard-normal tensor drawn on the CPU from ``gen`` (reproducible on any device)."""
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


def rand_mask(shape: Sequence[int], gen: torch.Generator, *, p: float = 0.5,
              keep_first: bool = True, device="cpu") -> torch.Tensor:
    """Random bool mask (True = may attend), True with probability ``p``.

    ``keep_first`` forces key 0 allowed, so that no row is empty even under a causal mask.
    """
    m = torch.rand(*shape, generator=gen) < p
    if keep_first:
        m[..., 0] = True
    return m.to(device)


@torch.no_grad()
def randomize_(module: nn.Module, gen: torch.Generator, std: float = 0.3) -> nn.Module:
    """Fill every parameter with N(0, std^2) (default inits leave biases at 0: copying them
    would then go untested)."""
    for p in module.parameters():
        p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * std)
    return module


@torch.no_grad()
def mha_from_torch(ref: nn.MultiheadAttention) -> MultiHeadAttention:
    """Our ``MultiHeadAttention`` holding the same weights as ``ref`` (same dtype).

    ``nn.MultiheadAttention`` stacks the q, k, v projections in ``in_proj_weight`` (3E, E) when
    kdim = vdim = E, and keeps ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` otherwise;
    the biases are always stacked in ``in_proj_bias`` (3E,).
    """
    e = ref.embed_dim
    has_bias = ref.in_proj_bias is not None
    ours = MultiHeadAttention(e, ref.num_heads, bias=has_bias, kdim=ref.kdim, vdim=ref.vdim)
    ours = ours.to(ref.out_proj.weight.dtype)
    if ref._qkv_same_embed_dim:
        wq, wk, wv = ref.in_proj_weight.split(e, dim=0)
    else:
        wq, wk, wv = ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight
    for lin, w in ((ours.q_proj, wq), (ours.k_proj, wk), (ours.v_proj, wv)):
        lin.weight.copy_(w)
    ours.out_proj.weight.copy_(ref.out_proj.weight)
    if has_bias:
        bq, bk, bv = ref.in_proj_bias.split(e)
        for lin, bb in ((ours.q_proj, bq), (ours.k_proj, bk), (ours.v_proj, bv)):
            lin.bias.copy_(bb)
        ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ours.eval()


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (not a package) as a module, for smoke tests."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_rejected(call, exc: type, pattern: str, case: str = "") -> None:
    """``call()`` raises ``exc`` whose message matches the regex ``pattern``."""
    import re

    import pytest

    with pytest.raises(exc) as info:
        call()
    assert re.search(pattern, str(info.value)), f"{case}: {info.value}"
