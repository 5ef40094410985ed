"""The per-dtype tolerance table and the devices to run on.

The tolerance table is the one place where "close enough" is decided (DESIGN.md §4.6): a test
compares an exact variant against its reference with ``assert_close(actual, expected)`` and the
tolerance follows from the dtype. Nothing in the suite loosens it locally.
"""
from __future__ import annotations

from typing import Optional

import torch

# dtype -> (rtol, atol). float16/bfloat16 are a few units in the last place of their mantissa
# (10 and 7 bits): eps(float16) ~ 9.8e-4, eps(bfloat16) ~ 7.8e-3.
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}

#: Devices to parametrize over: always the CPU, plus CUDA when there is one.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

FLOAT_DTYPES = [torch.float64, torch.float32]


def tol(dtype: torch.dtype) -> dict:
    """``dict(rtol=..., atol=...)`` for ``dtype``, from :data:`TOLERANCES`."""
    return dict(TOLERANCES[dtype])


def assert_close(actual: torch.Tensor, expected: torch.Tensor,
                 dtype: Optional[torch.dtype] = None, msg: Optional[str] = None) -> None:
    """``torch.testing.assert_close`` with the tolerance of ``dtype`` (default: ``actual``'s).

    Shapes must match exactly and neither side may hold a NaN.
    """
    dtype = actual.dtype if dtype is None else dtype
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert not torch.isnan(actual).any(), "actual has NaN"
    assert not torch.isnan(expected).any(), "expected has NaN"
    torch.testing.assert_close(actual, expected.to(actual.dtype), check_device=True,
                               msg=msg, **tol(dtype))
