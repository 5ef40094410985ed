"""Masks: which keys each query may attend to.

One convention everywhere, the one of ``torch.nn.functional.scaled_dot_product_attention``:
a mask is a **bool** tensor, **True = may attend**, broadcastable to the scores' shape
``(B, H, Nq, Nk)``. Other libraries spell the same idea differently (see the notation page of
the book); the converters at the bottom of this module translate.

Every mask builder of the library lives here, in two forms:

* **dense masks** for whole batches: :func:`padding_mask`, :func:`key_mask`,
  :func:`causal_mask` (also for a decoder whose queries start at an ``offset``);
* **patterns**, the vocabulary of ``torch.nn.attention.flex_attention``: a
  ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (True = may attend) describes which key each
  query sees (:func:`causal_mod`, sliding and dilated windows, global tokens, block layouts),
  :func:`and_masks` / :func:`or_masks` combine them, and :func:`create_mask` evaluates one on
  the grid. The sparse patterns of chapter 11 (:func:`sliding_window_mask`,
  :func:`longformer_mask`, :func:`bigbird_mask`, ...) are built that way, and so is
  :func:`causal_mask`.

Families that can only hide whole keys (linear attention, random features, Linformer) take
the same ``attn_mask`` and read it through :func:`per_key_mask`, which refuses a mask that
depends on the query.

Additive float biases (0 where allowed, ``-inf`` where not, or any learned bias) are a
separate thing, passed as ``bias=`` to the attention functions; :func:`mask_to_bias` converts.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch

from ._validate import check_device, check_int, check_mask, check_tensor, shape_str

Tensor = torch.Tensor
MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

__all__ = [
    "padding_mask", "key_mask", "causal_mask", "combine_masks", "per_key_mask", "mask_to_bias",
    "from_torch_key_padding_mask", "from_valid_lens",
    # flex_attention's mask_mods and the dense masks of the sparse patterns
    "causal_mod", "sliding_window_mod", "dilated_window_mod", "global_tokens_mod",
    "block_layout_mod", "and_masks", "or_masks", "create_mask",
    "sliding_window_mask", "dilated_window_mask", "longformer_mask", "random_blocks",
    "bigbird_layout", "bigbird_mask",
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


def key_mask(lengths: Tensor, max_len: Optional[int] = None) -> Tensor:
    """Attention mask that hides padded keys: (B, 1, 1, Nk) bool, True = real key.

    Broadcasts against scores of shape (B, H, Nq, Nk). ``lengths``: (B,) integer.
    """
    return padding_mask(lengths, max_len)[:, None, None, :]  # (B, 1, 1, Nk)


def causal_mask(nq: int, nk: Optional[int] = None, *, offset: int = 0, device=None) -> Tensor:
    """Lower-triangular mask: query i may attend to keys j <= i + offset.

    Returns (Nq, Nk) bool. With ``offset=0`` it is aligned top-left, exactly like SDPA's
    ``is_causal=True``: when Nq != Nk, query i still sees keys 0..i. A decoder with a KV
    cache holding ``offset`` earlier positions passes ``offset`` (= Nk - Nq for the new
    queries), so that its query i, at position offset + i, sees keys 0..offset + i.

    Equivalent code: ``create_mask(causal_mod, nq, nk)`` (query indices shifted by ``offset``),
    i.e. ``torch.ones(nq, nk, dtype=torch.bool).tril(offset)``.
    """
    mod = causal_mod
    if offset:
        check_int("offset", offset, minimum=-nq)  # -1: the diagonal is hidden too

        def mod(b, h, q_idx, kv_idx):
            return causal_mod(b, h, q_idx + offset, kv_idx)
    return create_mask(mod, nq, nk, device=device)  # (Nq, Nk)


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


def per_key_mask(attn_mask: Optional[Tensor], query: Tensor, key: Tensor) -> Optional[Tensor]:
    """An ``attn_mask`` that only hides keys, as a per-key mask: (B, H, Nk) bool, or None.

    For the families that never build the (Nq, Nk) scores (linear attention, random
    features, Linformer): they can drop a key for every query, not one (query, key) pair.
    attn_mask: bool (True = may attend), broadcastable to (B, H, 1, Nk), e.g. the (B, 1, 1, Nk)
    of :func:`key_mask`; size-1 axes stay size 1. A mask that depends on the query raises
    ``ValueError`` (use ``is_causal=True`` for the causal mask, or an exact family).
    query: (B, H, Nq, .)   key: (B, H, Nk, .), for the shapes and the device.
    """
    if attn_mask is None:
        return None
    bh = torch.broadcast_shapes(query.shape[:2], key.shape[:2])
    nq, nk = query.shape[-2], key.shape[-2]
    check_mask("attn_mask", attn_mask, (*bh, nq, nk))
    if attn_mask.dim() >= 2 and attn_mask.shape[-2] != 1:
        raise ValueError(f"attn_mask must hide whole keys, shape (B, H, 1, Nk) = "
                         f"{shape_str((*bh, 1, nk))} or broadcastable, got "
                         f"{shape_str(attn_mask)}: this attention never builds the (Nq, Nk) "
                         f"scores, so a mask that depends on the query cannot be applied "
                         f"(use is_causal=True for the causal mask, or an exact family)")
    check_device("attn_mask", attn_mask, "key", key)
    m = attn_mask.reshape((1,) * (4 - attn_mask.dim()) + tuple(attn_mask.shape))
    return m[:, :, 0].expand(*m.shape[:2], nk)  # (B, H, Nk)


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
    check_tensor("valid_lens", valid_lens, floating=False)
    if valid_lens.dim() == 1:
        valid_lens = valid_lens[:, None].expand(-1, nq)  # (B, Nq)
    if valid_lens.dim() != 2 or valid_lens.shape[1] != nq:
        raise ValueError(f"valid_lens must be (B,) or (B, Nq={nq}), got {shape_str(valid_lens)}")
    keys = torch.arange(nk, device=valid_lens.device)
    return (keys < valid_lens[..., None])[:, None]  # (B, 1, Nq, Nk)


# --------------------------------------------------------------------------- mask_mods
def _global_positions(global_idx: Union[int, Tensor], n: Optional[int], device) -> Tensor:
    """Sorted unique positions (G,) from an int g (= positions 0..g-1) or a 1-D int tensor."""
    if isinstance(global_idx, int) and not isinstance(global_idx, bool):
        if global_idx < 0:
            raise ValueError(f"global_idx must be >= 0 when an int, got {global_idx}")
        g = torch.arange(global_idx if n is None else min(global_idx, n), device=device)
    elif isinstance(global_idx, torch.Tensor):
        if global_idx.dtype.is_floating_point or global_idx.dtype == torch.bool \
                or global_idx.dim() != 1:
            raise TypeError(f"global_idx must be an int or a 1-D integer tensor of positions, "
                            f"got dtype {global_idx.dtype} with shape {shape_str(global_idx)}")
        g = torch.unique(global_idx.to(device=device, dtype=torch.long))  # sorted
        if g.numel() and (int(g.min()) < 0 or (n is not None and int(g.max()) >= n)):
            raise ValueError(f"global_idx positions must lie in [0, {n}), got min "
                             f"{int(g.min())} and max {int(g.max())}")
    else:
        raise TypeError(f"global_idx must be an int or a 1-D integer tensor, got "
                        f"{type(global_idx).__name__}")
    return g


def causal_mod(b, h, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    """Causal pattern: query i sees keys j <= i."""
    return kv_idx <= q_idx


def sliding_window_mod(window: int) -> MaskMod:
    """Sliding window (local attention): query i sees keys j with |i - j| <= window.

    ``window`` is the reach on each side: 2 window + 1 keys per query, or window + 1 with the
    causal pattern (Longformer's "window size w" is 2 window here; Mistral's causal
    ``sliding_window`` s is window = s - 1).
    """
    check_int("window", window, 0)

    def mod(b, h, q_idx, kv_idx):
        return (q_idx - kv_idx).abs() <= window
    return mod


def dilated_window_mod(window: int, dilation: int) -> MaskMod:
    """Dilated sliding window (Longformer, section 3.1): keys ``i + t * dilation`` for
    |t| <= window, i.e. every ``dilation``-th neighbour, reaching ``window * dilation`` away.

    With ``window >= N / dilation`` this is the "strided" pattern of Sparse Transformers
    (Child et al., 2019): all keys j with (i - j) divisible by the stride.
    """
    check_int("window", window, 0)
    check_int("dilation", dilation, 1)

    def mod(b, h, q_idx, kv_idx):
        d = q_idx - kv_idx
        return (d.abs() <= window * dilation) & (d % dilation == 0)
    return mod


def global_tokens_mod(global_idx: Union[int, Tensor]) -> MaskMod:
    """Global tokens (Longformer): a global position attends to every key, and every query
    attends to it. ``global_idx``: an int g (positions 0..g-1, e.g. a [CLS] token) or a 1-D
    integer tensor of positions. Combine with a local pattern using :func:`or_masks`."""
    g = _global_positions(global_idx, None, None)
    top = int(g.max()) + 1 if g.numel() else 1
    is_global = torch.zeros(top, dtype=torch.bool)
    is_global[g] = True

    def lookup(idx: Tensor) -> Tensor:
        table = is_global.to(idx.device)
        return (idx < top) & table[idx.clamp(0, top - 1)]

    def mod(b, h, q_idx, kv_idx):
        return lookup(q_idx) | lookup(kv_idx)
    return mod


def block_layout_mod(layout: Tensor, block_size: int) -> MaskMod:
    """Block-level pattern: query i sees key j when ``layout[i // block_size, j // block_size]``.

    layout: (num_q_blocks, num_k_blocks) bool. This is what flex_attention's ``BlockMask``
    stores; positions past the layout are not allowed.
    """
    check_tensor("layout", layout, ndim=2, floating=False, layout="(num_q_blocks, num_k_blocks)")
    if layout.dtype != torch.bool:
        raise TypeError(f"layout must be bool, got {layout.dtype}")
    check_int("block_size", block_size, 1)
    nbq, nbk = layout.shape

    def mod(b, h, q_idx, kv_idx):
        qb, kb = q_idx // block_size, kv_idx // block_size
        inside = (qb < nbq) & (kb < nbk)
        return inside & layout.to(q_idx.device)[qb.clamp(max=nbq - 1), kb.clamp(max=nbk - 1)]
    return mod


def and_masks(*mods: MaskMod) -> MaskMod:
    """The intersection of patterns (like ``flex_attention.and_masks``)."""
    def mod(b, h, q_idx, kv_idx):
        out = mods[0](b, h, q_idx, kv_idx)
        for m in mods[1:]:
            out = out & m(b, h, q_idx, kv_idx)
        return out
    return mod


def or_masks(*mods: MaskMod) -> MaskMod:
    """The union of patterns (like ``flex_attention.or_masks``)."""
    def mod(b, h, q_idx, kv_idx):
        out = mods[0](b, h, q_idx, kv_idx)
        for m in mods[1:]:
            out = out | m(b, h, q_idx, kv_idx)
        return out
    return mod


def create_mask(mask_mod: MaskMod, nq: int, nk: Optional[int] = None, *,
                device=None) -> Tensor:
    """Evaluate ``mask_mod`` on every (query, key) pair: the dense (Nq, Nk) bool mask.

    This allocates Nq x Nk booleans, as any dense mask does; the blocked implementations of
    :mod:`attention_lib.efficient.sparse` never build it.
    Equivalent to ``flex_attention.create_mask(mask_mod, None, None, nq, nk)`` without the
    batch and head axes.
    """
    nk = nq if nk is None else nk
    check_int("nq", nq, 1)
    check_int("nk", nk, 1)
    q_idx = torch.arange(nq, device=device)[:, None]  # (Nq, 1)
    kv_idx = torch.arange(nk, device=device)[None, :]  # (1, Nk)
    zero = torch.zeros((), dtype=torch.long, device=device)
    out = mask_mod(zero, zero, q_idx, kv_idx)
    return out.expand(nq, nk).clone()  # (Nq, Nk)


def _with_causal(mod: MaskMod, is_causal: bool) -> MaskMod:
    return and_masks(mod, causal_mod) if is_causal else mod


def sliding_window_mask(n: int, window: int, *, is_causal: bool = False,
                        device=None) -> Tensor:
    """(N, N) bool: query i sees keys j with |i - j| <= window (and j <= i if causal)."""
    return create_mask(_with_causal(sliding_window_mod(window), is_causal), n, device=device)


def dilated_window_mask(n: int, window: int, dilation: int, *, is_causal: bool = False,
                        device=None) -> Tensor:
    """(N, N) bool: query i sees keys i + t * dilation, |t| <= window (and j <= i if causal)."""
    return create_mask(_with_causal(dilated_window_mod(window, dilation), is_causal), n,
                       device=device)


def longformer_mask(n: int, window: int, global_idx: Union[int, Tensor], *,
                    is_causal: bool = False, device=None) -> Tensor:
    """(N, N) bool: Longformer's sliding window OR global tokens (and j <= i if causal)."""
    g = _global_positions(global_idx, n, device)
    mod = or_masks(sliding_window_mod(window), global_tokens_mod(g))
    return create_mask(_with_causal(mod, is_causal), n, device=device)


def random_blocks(num_blocks: int, num_random: int, *, window_blocks: int = 1,
                  num_global_blocks: int = 1, is_causal: bool = False,
                  generator: Optional[torch.Generator] = None, device=None) -> Tensor:
    """BigBird's random key blocks: (num_blocks, num_random) long, ``-1`` = no block.

    Query block b gets ``num_random`` distinct key blocks drawn uniformly among those its
    window (|b - c| <= window_blocks) and the global blocks (c < num_global_blocks) do not
    already cover, and with ``is_causal`` only among earlier blocks c < b. Rows with fewer
    candidates are padded with -1; global query blocks get none (they see everything).
    Randomness only from ``generator`` (drawn on the CPU, so it is the same on every device).
    Zaheer et al. (2020), BigBird, section 2 and appendix D.
    """
    check_int("num_blocks", num_blocks, 1)
    check_int("num_random", num_random, 0)
    check_int("window_blocks", window_blocks, 0)
    check_int("num_global_blocks", num_global_blocks, 0)
    b = torch.arange(num_blocks)[:, None]
    c = torch.arange(num_blocks)[None, :]
    cand = ((b - c).abs() > window_blocks) & (c >= num_global_blocks) & (b >= num_global_blocks)
    if is_causal:
        cand &= c < b
    u = torch.rand(num_blocks, num_blocks, generator=generator)
    u = torch.where(cand, u, torch.full_like(u, -1.0))
    r = min(num_random, num_blocks)
    top, idx = u.topk(r, dim=1)  # r distinct candidates with the largest uniforms
    idx = torch.where(top >= 0, idx, torch.full_like(idx, -1))
    if r < num_random:
        idx = torch.cat([idx, idx.new_full((num_blocks, num_random - r), -1)], dim=1)
    idx, _ = idx.sort(dim=1, descending=True)  # tidy: real blocks first
    return idx.to(device)


def bigbird_layout(num_blocks: int, rand_blocks: Tensor, *, window_blocks: int = 1,
                   num_global_blocks: int = 1) -> Tensor:
    """(num_blocks, num_blocks) bool block layout of BigBird: a band of 2 window_blocks + 1
    blocks, the first ``num_global_blocks`` block rows and columns, and the random blocks
    ``rand_blocks`` (num_blocks, r) from :func:`random_blocks` (``-1`` = none)."""
    check_int("num_blocks", num_blocks, 1)
    check_int("window_blocks", window_blocks, 0)
    check_int("num_global_blocks", num_global_blocks, 0)
    check_tensor("rand_blocks", rand_blocks, ndim=2, floating=False, layout="(num_blocks, r)")
    if rand_blocks.shape[0] != num_blocks:
        raise ValueError(f"rand_blocks must have num_blocks = {num_blocks} rows, got "
                         f"{shape_str(rand_blocks)}")
    if rand_blocks.numel() and int(rand_blocks.max()) >= num_blocks:
        raise ValueError(f"rand_blocks has a block index {int(rand_blocks.max())} >= "
                         f"num_blocks = {num_blocks}")
    dev = rand_blocks.device
    b = torch.arange(num_blocks, device=dev)[:, None]
    c = torch.arange(num_blocks, device=dev)[None, :]
    layout = ((b - c).abs() <= window_blocks) | (b < num_global_blocks) | (c < num_global_blocks)
    rows = b.expand_as(rand_blocks)
    valid = rand_blocks >= 0
    layout[rows[valid], rand_blocks[valid]] = True
    return layout  # (num_blocks, num_blocks)


def bigbird_mask(n: int, block_size: int, rand_blocks: Tensor, *, window_blocks: int = 1,
                 num_global_blocks: int = 1, is_causal: bool = False) -> Tensor:
    """(N, N) bool: the BigBird layout of :func:`bigbird_layout` expanded to tokens."""
    check_int("block_size", block_size, 1)
    layout = bigbird_layout(math.ceil(n / block_size), rand_blocks, window_blocks=window_blocks,
                            num_global_blocks=num_global_blocks)
    mod = _with_causal(block_layout_mod(layout, block_size), is_causal)
    return create_mask(mod, n, device=rand_blocks.device)
