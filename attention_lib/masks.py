"""Masks: which keys each query may attend to.

One convention everywhere, the one of ``torch.nn.functional.scaled_dot_product_attention``:
a mask is a **bool** tensor, **True = may attend**, broadcastable to the scores' shape
``(B, H, Nq, Nk)``. Other libraries spell the same idea differently (see the notation page of
the book); the converters at the bottom of this module translate.

Additive float biases (0 where allowed, ``-inf`` where not, or any learned bias) are a
separate thing, passed as ``bias=`` to the attention functions; :func:`mask_to_bias` converts.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._validate import check_tensor, shape_str

Tensor = torch.Tensor

__all__ = [
    "padding_mask", "key_padding_mask", "causal_mask", "combine_masks", "mask_to_bias",
    "from_torch_key_padding_mask", "from_valid_lens",
]


def _check_lengths(lengths: Tensor, max_len: Optional[int]) -> int:
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"lengths must be an integer torch.Tensor of shape (B,), got "
                        f"{type(lengths).__name__}")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
        raise TypeError(f"lengths must have an integer dtype, got {lengths.dtype} with shape "
                        f"{shape_str(lengths)}")
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {shape_str(lengths)}")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be >= 0, got min {int(lengths.min())} in lengths of "
                         f"shape {shape_str(lengths)}")
    longest = int(lengths.max()) if lengths.numel() else 0
    if max_len is None:
        return longest
    if max_len < longest:
        raise ValueError(f"lengths has a length {longest} longer than max_len={max_len}")
    return int(max_len)


def padding_mask(lengths: Tensor, max_len: Optional[int] = None) -> Tensor:
    """Token mask of a padded batch: ``mask[b, i]`` is True when position i is a real token.

    lengths: (B,) integer, each in [0, max_len].  Returns (B, N) bool with N = max_len
    (default: the longest length), on ``lengths.device``.

    Equivalent code: ``torch.arange(N) < lengths[:, None]``.
    """
    n = _check_lengths(lengths, max_len)
    return torch.arange(n, device=lengths.device) < lengths[:, None]  # (B, N)


def key_padding_mask(lengths: Tensor, max_len: Optional[int] = None) -> Tensor:
    """Attention mask that hides padded keys: (B, 1, 1, Nk) bool, True = real key.

    Broadcasts against scores of shape (B, H, Nq, Nk). ``lengths``: (B,) integer.
    """
    return padding_mask(lengths, max_len)[:, None, None, :]  # (B, 1, 1, Nk)


def causal_mask(nq: int, nk: Optional[int] = None, *, device=None) -> Tensor:
    """Lower-triangular mask: query i may attend to keys j <= i.

    Returns (Nq, Nk) bool. Aligned top-left, exactly like SDPA's ``is_causal=True``: when
    Nq != Nk, query i still sees keys 0..i (not the last Nq keys, as a KV-cache decoder would
    want; for that, slice the rows of a square mask).
    """
    nk = nq if nk is None else nk
    for name, v in (("nq", nq), ("nk", nk)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    return torch.ones(nq, nk, dtype=torch.bool, device=device).tril()  # (Nq, Nk)


def combine_masks(*masks: Optional[Tensor]) -> Optional[Tensor]:
    """Logical AND of bool masks, broadcasting; ``None`` entries are ignored.

    A position may be attended only if every mask allows it. Returns None if all are None.
    """
    out = None
    for i, m in enumerate(masks):
        if m is None:
            continue
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            got = m.dtype if isinstance(m, torch.Tensor) else type(m).__name__
            raise TypeError(f"masks[{i}] must be a bool tensor (True = may attend), got {got}")
        if out is None:
            out = m
        else:
            try:
                out = out & m
            except RuntimeError:
                raise ValueError(f"masks[{i}] with shape {shape_str(m)} does not broadcast "
                                 f"with the earlier masks' shape {shape_str(out)}") from None
    return out


def mask_to_bias(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Bool mask (True = may attend) -> additive bias: 0 where allowed, ``-inf`` where not.

    Adding the bias to the scores before the softmax is equivalent to masking, except for
    rows with nothing allowed: there a plain softmax returns NaN (``-inf - -inf``). Prefer
    passing the bool mask; this exists for APIs that only take additive masks.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a bool tensor (True = may attend), got {got}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill(~mask, float("-inf"))


def from_torch_key_padding_mask(key_padding_mask: Tensor) -> Tensor:
    """Translate ``nn.MultiheadAttention``'s ``key_padding_mask`` into this library's mask.

    ``nn.MultiheadAttention`` uses the **opposite polarity**: there, a bool
    ``key_padding_mask`` of shape (B, Nk) is True where the key is *padding* (must be
    ignored). Here True means *may attend*. Returns (B, 1, 1, Nk) bool.
    """
    check_tensor("key_padding_mask", key_padding_mask, ndim=2, floating=False, layout="(B, Nk)")
    if key_padding_mask.dtype != torch.bool:
        raise TypeError(f"key_padding_mask must be bool (True = padding, torch's polarity), "
                        f"got {key_padding_mask.dtype}")
    return (~key_padding_mask)[:, None, None, :]  # (B, 1, 1, Nk)


def from_valid_lens(valid_lens: Tensor, nq: int, nk: int) -> Tensor:
    """Translate d2l's ``valid_lens`` into a bool mask of shape (B, 1, Nq, Nk).

    d2l's ``masked_softmax`` accepts valid lengths either per example (B,) or per query
    (B, Nq); the first Nk' keys are kept. Positions beyond a valid length are masked.
    """
    if not isinstance(valid_lens, torch.Tensor):
        raise TypeError(f"valid_lens must be a torch.Tensor, got {type(valid_lens).__name__}")
    if valid_lens.dim() == 1:
        valid_lens = valid_lens[:, None].expand(-1, nq)  # (B, Nq)
    if valid_lens.dim() != 2 or valid_lens.shape[1] != nq:
        raise ValueError(f"valid_lens must be (B,) or (B, Nq={nq}), got {shape_str(valid_lens)}")
    keys = torch.arange(nk, device=valid_lens.device)
    return (keys < valid_lens[..., None])[:, None]  # (B, 1, Nq, Nk)
key_mask = key_padding_mask  # renamed in the masks change
