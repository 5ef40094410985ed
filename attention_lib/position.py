"""Positions: the sinusoidal encoding, rotary embeddings, and the sinusoidal shift map.

Self-attention is permutation equivariant: without position information, shuffling the
tokens shuffles the outputs the same way. Two ways to tell it where the tokens are:

* **add** a vector to each token, e.g. the sinusoidal encoding of Vaswani et al. (2017),
  :func:`sinusoidal_encoding` (and the module :class:`PositionalEncoding`). Its shift by ``k``
  positions is a fixed linear map, the same at every position: :func:`sinusoidal_shift_matrix`.
* **rotate** queries and keys by an angle proportional to their position (RoPE, Su et al.,
  2021): :func:`rotary_embedding` and :class:`RotaryEmbedding`. Then the score ``q_m . k_n``
  depends on the positions only through ``m - n``.

Both use the frequencies ``theta_i = base^(-2i/D)``, ``i = 0 .. D/2 - 1``, and act on pairs of
features. Rotary embeddings pair features ``(2i, 2i + 1)`` by default, as in the paper (the
"interleaved" layout); ``interleaved=False`` pairs ``(i, i + D/2)``, the layout of GPT-NeoX
and of many LLaMA ports. The two give the same scores up to a fixed permutation of features.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ._validate import broadcastable, check_int, check_seq, check_tensor, shape_str

Tensor = torch.Tensor

__all__ = ["sinusoidal_encoding", "PositionalEncoding", "rotary_frequencies",
           "rotary_embedding", "RotaryEmbedding", "sinusoidal_shift_matrix"]


def sinusoidal_encoding(num_positions: int, dim: int, *, base: float = 10000.0,
                        dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """Sinusoidal position encoding of Vaswani et al. (2017), section 3.5.

    Returns (num_positions, dim): ``P[p, 2i] = sin(p / base^(2i/dim))`` and
    ``P[p, 2i+1] = cos(p / base^(2i/dim))``. ``dim`` may be odd (the last sine has no cosine).
    """
    check_int("num_positions", num_positions)
    check_int("dim", dim)
    pos = torch.arange(num_positions, dtype=torch.float64, device=device)[:, None]  # (N, 1)
    freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)
    angles = pos * freq  # (N, ceil(dim/2))
    pe = torch.zeros(num_positions, dim, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return pe.to(dtype)


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal encoding of :func:`sinusoidal_encoding`.

    x: (B, N, d_model) -> dropout(x + P[:N]), same shape. ``max_len`` bounds N.
    """

    def __init__(self, d_model: int, max_len: int = 1024, dropout: float = 0.0,
                 base: float = 10000.0):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("P", sinusoidal_encoding(max_len, d_model, base=base),
                             persistent=False)  # (max_len, d_model)

    def forward(self, x: Tensor) -> Tensor:
        check_seq("x", x, self.d_model, "d_model")
        if x.shape[1] > self.max_len:
            raise ValueError(f"x with shape {shape_str(x)} has {x.shape[1]} positions, more than "
                             f"max_len={self.max_len}")
        return self.dropout(x + self.P[: x.shape[1]].to(x.dtype))  # (B, N, d_model)


def _check_even_dim(name: str, dim) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2 or dim % 2:
        raise ValueError(f"{name} must be an even int >= 2 (features are rotated in pairs), "
                         f"got {dim!r}")


def _check_base(base) -> None:
    if not isinstance(base, (int, float)) or isinstance(base, bool) or not base > 1:
        raise ValueError(f"base must be a number > 1, got {base!r}")


def _angle_dtype(dtype: torch.dtype) -> torch.dtype:
    """Angles p * theta lose precision fast in low precision: float64 stays, others use float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def rotary_frequencies(head_dim: int, *, base: float = 10000.0,
                       dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The rotation frequencies ``theta_i = base^(-2i / head_dim)``, ``i = 0 .. head_dim/2 - 1``.

    Returns (head_dim // 2,). The same frequencies as the sinusoidal encoding (Vaswani et al.,
    2017, section 3.5; Su et al., 2021, eq. 15).
    """
    _check_even_dim("head_dim", head_dim)
    _check_base(base)
    i = torch.arange(0, head_dim, 2, dtype=torch.float64, device=device)
    return (base ** (-i / head_dim)).to(dtype)  # (D/2,)


def _check_positions(positions, n: int, x: Tensor) -> Tensor:
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be a torch.Tensor of shape (N,) or broadcastable to "
                        f"x's leading axes + (N,), got {type(positions).__name__}")
    if positions.dtype == torch.bool or positions.is_complex():
        raise TypeError(f"positions must be an integer or float tensor, got {positions.dtype}")
    if positions.dim() == 0 or positions.shape[-1] != n:
        raise ValueError(f"positions must have last axis N={n} (one position per row of x), "
                         f"got positions {shape_str(positions)} for x {shape_str(x)}")
    if not broadcastable(positions.shape, x.shape[:-1]):
        raise ValueError(f"positions {shape_str(positions)} does not broadcast to x's leading "
                         f"axes {shape_str(x.shape[:-1])} (for x (B, H, N, D) and one row of "
                         f"positions per example, pass (B, 1, N))")
    if positions.device != x.device:
        raise ValueError(f"positions is on {positions.device} but x is on {x.device}")
    return positions


def _rotate(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool) -> Tensor:
    """Rotate feature pairs of x (..., N, D) by angles with cos/sin of shape (..., N, D/2)."""
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., N, D/2) each
    else:
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]  # (..., N, D/2) each
    r1 = x1 * cos - x2 * sin
    r2 = x1 * sin + x2 * cos
    if interleaved:
        return torch.stack((r1, r2), dim=-1).flatten(-2)  # (..., N, D): r1_0 r2_0 r1_1 ...
    return torch.cat((r1, r2), dim=-1)  # (..., N, D)


def rotary_embedding(x: Tensor, positions: Optional[Tensor] = None, *, base: float = 10000.0,
                     interleaved: bool = True) -> Tensor:
    """Rotary position embedding (RoPE): rotate each pair of features by ``position * theta_i``.

    x: (..., N, D) float with D even, e.g. queries or keys (B, H, N, D).
    positions: the position of each row, (N,) or broadcastable to ``x.shape[:-1]``, e.g.
    (B, 1, N) for x (B, H, N, D). Integer or float; may be offset, e.g.
    ``past_len + arange(N)`` while decoding with a KV cache. Default ``arange(N)``.
    Returns a tensor of x's shape and dtype. Angles are computed in float32 (float64 for
    float64 input). Pure: ``x`` is not modified.

    Feature pair ``(x[2i], x[2i+1])`` at position p is multiplied, as the complex number
    ``x[2i] + 1j x[2i+1]``, by ``exp(1j p theta_i)`` with ``theta_i = base^(-2i/D)``. Rotations
    preserve norms, and ``rotary(q, m) . rotary(k, n)`` depends on m, n only through m - n.

    Su et al. (2021), "RoFormer", eq. 34. Equivalent code (interleaved)::

        z = torch.view_as_complex(x.reshape(*x.shape[:-1], D // 2, 2))
        torch.view_as_real(z * torch.polar(ones, positions[:, None] * theta)).flatten(-2)

    ``interleaved=False`` pairs ``x[i]`` with ``x[i + D/2]`` (GPT-NeoX / "rotate_half" layout).
    """
    check_tensor("x", x, layout="(..., N, D)")
    if x.dim() < 2:
        raise ValueError(f"x must have at least 2 dims (..., N, D), got shape {shape_str(x)}")
    d, n = x.shape[-1], x.shape[-2]
    if d % 2:
        raise ValueError(f"x must have an even last dim D (features are rotated in pairs), got "
                         f"shape {shape_str(x)}")
    _check_base(base)
    adt = _angle_dtype(x.dtype)
    if positions is None:
        positions = torch.arange(n, device=x.device)
    else:
        _check_positions(positions, n, x)
    theta = rotary_frequencies(d, base=base, dtype=adt, device=x.device)  # (D/2,)
    angles = positions.to(adt)[..., None] * theta  # (..., N, D/2)
    return _rotate(x.to(adt), angles.cos(), angles.sin(), interleaved).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding with a cache of the cosines and sines.

    head_dim: D (even). max_len: positions cached at construction; longer inputs grow the
    cache (to the next power of two); it is rebuilt in float32 if ``.half()`` or ``.to()``
    changed it. base: 10000 as in the paper. interleaved: the feature pairing, see
    :func:`rotary_embedding`.

    forward(x, positions=None, *, offset=0): x (..., N, D), usually (B, H, N, D) queries or
    keys. Positions default to ``offset + arange(N)``; pass ``offset=past_len`` when
    decoding with a KV cache, or integer ``positions`` explicitly: (N,), or (B, 1, N) for
    x (B, H, N, D).
    Returns x's shape and dtype; the same numbers as :func:`rotary_embedding` (the cache
    holds float32 cos/sin; float64 inputs bypass it and get exact float64 angles).

    The cache is a pair of non-persistent buffers (it follows ``.to(device)``, is not saved
    in the ``state_dict``) and holds nothing that depends on the inputs. No parameters.
    Su et al. (2021), "RoFormer".
    """

    def __init__(self, head_dim: int, max_len: int = 2048, *, base: float = 10000.0,
                 interleaved: bool = True):
        super().__init__()
        _check_even_dim("head_dim", head_dim)
        _check_base(base)
        check_int("max_len", max_len, 1)
        self.head_dim, self.base, self.interleaved = head_dim, float(base), interleaved
        cos, sin = self._table(max_len, torch.float32, None)
        self.register_buffer("cos_cached", cos, persistent=False)  # (max_len, D/2)
        self.register_buffer("sin_cached", sin, persistent=False)  # (max_len, D/2)

    def _table(self, n: int, dtype: torch.dtype, device):
        theta = rotary_frequencies(self.head_dim, base=self.base, dtype=torch.float64,
                                   device=device)
        angles = torch.arange(n, dtype=torch.float64, device=device)[:, None] * theta
        return angles.cos().to(dtype), angles.sin().to(dtype)  # (n, D/2) each

    @property
    def max_len(self) -> int:
        """How many positions the cache holds now."""
        return self.cos_cached.shape[0]

    def _build(self, needed: int, device) -> None:
        n = 1 << (needed - 1).bit_length()  # next power of two
        self.cos_cached, self.sin_cached = self._table(n, torch.float32, device)

    def extra_repr(self) -> str:
        return (f"head_dim={self.head_dim}, max_len={self.max_len}, base={self.base:g}, "
                f"interleaved={self.interleaved}")

    def forward(self, x: Tensor, positions: Optional[Tensor] = None, *, offset: int = 0) -> Tensor:
        check_tensor("x", x, layout="(..., N, D)")
        if x.dim() < 2 or x.shape[-1] != self.head_dim:
            raise ValueError(f"x must be (..., N, D) with D=head_dim={self.head_dim}, got "
                             f"shape {shape_str(x)}")
        n = x.shape[-2]
        if positions is None:
            check_int("offset", offset, 0)
            positions = torch.arange(offset, offset + n, device=x.device)
        else:
            _check_positions(positions, n, x)
            if positions.is_floating_point():
                raise TypeError(f"RotaryEmbedding looks positions up in its cache: they must be "
                                f"integers, got {positions.dtype} (use rotary_embedding for "
                                f"fractional positions)")
            if positions.numel() and int(positions.min()) < 0:
                raise ValueError(f"positions must be >= 0, got min {int(positions.min())}")
        if x.dtype == torch.float64:  # exact angles, not the float32 cache
            return rotary_embedding(x, positions, base=self.base, interleaved=self.interleaved)
        needed = int(positions.max()) + 1 if positions.numel() else 0
        if (needed > self.max_len or self.cos_cached.dtype != torch.float32
                or self.cos_cached.device != x.device):
            # grow, or rebuild after .half() / .to(other device) changed the buffers
            self._build(max(needed, self.max_len), x.device)
        cos, sin = self.cos_cached[positions], self.sin_cached[positions]  # (..., N, D/2)
        return _rotate(x.float(), cos, sin, self.interleaved).to(x.dtype)


def sinusoidal_shift_matrix(offset: int | float, dim: int, *, base: float = 10000.0,
                            dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The linear map that moves the sinusoidal encoding ``offset`` positions along.

    Returns M (dim, dim), block diagonal with 2x2 rotation blocks, such that for every
    position p::

        P[p + offset] = M @ P[p]        (P = sinusoidal_encoding(..., dim, base=base))

    Block i acts on the pair ``(sin(p w_i), cos(p w_i))``, ``w_i = base^(-2i/dim)``, and is
    ``[[cos(k w_i), sin(k w_i)], [-sin(k w_i), cos(k w_i)]]`` with ``k = offset`` (the angle
    addition formulas). M depends on the offset only, not on p: this is why Vaswani et al.
    (2017, section 3.5) chose sinusoids, "since for any fixed offset k, PE_{pos+k} can be
    represented as a linear function of PE_{pos}". ``dim`` must be even (an odd last sine has
    no cosine partner, and then no such M exists).
    """
    _check_even_dim("dim", dim)
    _check_base(base)
    if not isinstance(offset, (int, float)) or isinstance(offset, bool):
        raise TypeError(f"offset must be an int or float, got {type(offset).__name__}")
    w = rotary_frequencies(dim, base=base, dtype=torch.float64, device=device)  # (dim/2,)
    c, s = torch.cos(offset * w), torch.sin(offset * w)
    blocks = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (dim/2, 2, 2)
    return torch.block_diag(*blocks).to(dtype)  # (dim, dim)
