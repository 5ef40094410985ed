"""Every exact attention function against the float64 reference, on every device and dtype.

On the CPU this runs float32, float16 and bfloat16; on a CUDA machine (``make test-gpu``)
the same table runs on CUDA as well, where SDPA picks its flash / memory-efficient kernels.
The reference is always ``reference_attention`` in float64 on the CPU, computed from the same
(already rounded) low-precision inputs, so the comparison measures only the function's own
error. Tolerances come from ``tests/tolerances.py``; nothing here loosens them.

Exact variants added to the library register themselves in ``EXACT`` below.
"""
from __future__ import annotations

import pytest
import torch
from tolerances import DEVICES, assert_close

import attention_lib as al

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _attention(q, k, v, mask, causal):
    return al.attention(q, k, v, mask, is_causal=causal)


def _reference_lowp(q, k, v, mask, causal):
    return al.reference_attention(q, k, v, mask, is_causal=causal)


def _dot_product_module(q, k, v, mask, causal):
    b, h, nq, d = q.shape
    m = None if mask is None else mask.expand(b, h, nq, k.shape[-2]).reshape(b * h, nq, -1)
    out = al.DotProductAttention()(q.reshape(b * h, nq, d), k.reshape(b * h, -1, d),
                                   v.reshape(b * h, -1, v.shape[-1]), m, is_causal=causal)
    return out.reshape(b, h, nq, -1)


def _flash(q, k, v, mask, causal):
    from attention_lib.efficient import flash_attention
    return flash_attention(q, k, v, mask, is_causal=causal, block_q=16, block_k=16)


#: name -> fn(q, k, v, mask, is_causal) -> (B, H, Nq, Dv); all must equal reference_attention.
EXACT = {
    "attention": _attention,
    "reference_attention(low precision)": _reference_lowp,
    "DotProductAttention": _dot_product_module,
    "efficient.flash_attention": _flash,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_sliding_window_matches_masked_reference(dtype, device, causal):
    from attention_lib.efficient import sliding_window_attention
    from attention_lib.masks import sliding_window_mask
    q, k, v, _ = _inputs(device, dtype, nq=45, nk=45)
    out = sliding_window_attention(q, k, v, 7, is_causal=causal, block_size=8)
    mask = sliding_window_mask(45, 7, is_causal=causal)
    expected = al.reference_attention(*(t.cpu().double() for t in (q, k, v)), mask)
    assert out.dtype == dtype
    assert_close(out.cpu().double(), expected, dtype=dtype)


def _inputs(device, dtype, b=2, h=3, nq=37, nk=45, d=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=g) for n in (nq, nk, nk))
    mask = torch.rand(b, 1, nq, nk, generator=g) > 0.3
    mask[0, 0, 3] = False  # one fully masked row
    return [t.to(device=device, dtype=dtype) for t in (q, k, v)] + [mask.to(device)]


@pytest.mark.parametrize("name", list(EXACT))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("masked,causal", [(False, False), (True, False), (False, True),
                                           (True, True)], ids=["plain", "mask", "causal",
                                                               "mask+causal"])
def test_matches_float64_reference(name, dtype, device, masked, causal):
    q, k, v, mask = _inputs(device, dtype)
    mask = mask if masked else None
    out = EXACT[name](q, k, v, mask, causal)
    assert out.dtype == dtype and out.device.type == torch.device(device).type
    expected = al.reference_attention(*(t.cpu().double() for t in (q, k, v)),
                                      None if mask is None else mask.cpu(), is_causal=causal)
    assert_close(out.cpu().double(), expected, dtype=dtype, msg=f"{name} {dtype} {device}")
    if masked:  # the fully masked row is exactly zero on every backend
        assert torch.all(out[0, :, 3] == 0), f"{name}: fully masked row is not zero on {device}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_multihead_module_on_device(dtype, device):
    """The module in low precision on ``device`` vs float64 from the same rounded weights."""
    import copy
    torch.manual_seed(0)
    mha = al.MultiHeadAttention(32, 4).eval().to(dtype)  # weights rounded to dtype
    x = torch.randn(2, 19, 32).to(dtype)
    mask = al.key_mask(torch.tensor([19, 7]))
    expected = copy.deepcopy(mha).double()(x.double(), attn_mask=mask).detach()
    out = mha.to(device)(x.to(device), attn_mask=mask.to(device))
    assert out.dtype == dtype and out.device.type == torch.device(device).type
    assert_close(out.detach().cpu().double(), expected, dtype=dtype)
