"""Sparse Sinkhorn attention: learn to sort blocks, then attend locally in the sorted order.

Local attention (chapter 11) only sees neighbours. Tay et al. (2020) keep its O(N b) cost but
let each block of b positions also attend to *one other block*, chosen by a learned sorting
network:

1. **block summaries**: the mean of each block's vectors, (B, H, nb, D);
2. **scores**: a small network gives a (nb, nb) matrix of logits, row a = "which block should
   come to block a";
3. **Sinkhorn normalisation**: alternately normalising the rows and the columns of
   exp(logits / temperature) (in the log domain, ``n_iters`` times) converges to a *doubly
   stochastic* matrix P, a soft permutation (Sinkhorn, 1964; Mena et al., 2018); as the
   temperature falls, P approaches a hard permutation;
4. **sorted attention**: block a's queries attend to its own block and to the *sorted* block
   sum_c P[a, c] K_c (with values sum_c P[a, c] V_c): (B, H, nb, b, 2b) scores, O(N b)
   memory, plus O(nb^2 b D) for the sorting -- never an (N, N) tensor.

With a hard permutation P (0/1) the pattern is a block layout -- own block plus partner block
-- and :func:`sinkhorn_attention` equals ``reference_attention`` with :func:`sinkhorn_mask`
(when no block is its own partner; a block that is sees its keys twice, as in the paper).

Causal variant: a block may only be sorted with strictly earlier blocks, and only the rows of
P are normalised (column normalisation would mix in the logits of later blocks and leak the
future), so P is row-stochastic, not doubly stochastic; block 0 has no partner. The module
also computes the logits of block a from the summary of block a - 1, so that nothing in
block a decides what its first position sees.

Reference: Tay, Bahri, Yang, Metzler & Juan (2020), "Sparse Sinkhorn Attention", ICML.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_int, check_qkv, check_scale, check_tensor, shape_str
from ..functional import masked_softmax, work_dtype
from ..masks import block_layout_mod, causal_mask, create_mask

Tensor = torch.Tensor

__all__ = ["block_summaries", "sinkhorn_normalize", "soft_permutation", "sinkhorn_layout",
           "sinkhorn_mask", "sinkhorn_attention", "SinkhornSorting"]
# (the normalisation is not called plain ``sinkhorn``: that name is this module's)


def _check_blocks(name: str, x: Tensor, block_size: int) -> int:
    check_int("block_size", block_size, 1)
    n = x.shape[-2]
    if n % block_size:
        raise ValueError(f"the length N = {n} of {name} {shape_str(x)} must be a multiple of "
                         f"block_size = {block_size} (pad the sequence first)")
    return n // block_size


def block_summaries(x: Tensor, block_size: int) -> Tensor:
    """Mean of each block of ``block_size`` positions: (..., N, D) -> (..., N / block_size, D).

    Tay et al. (2020) summarise a block by pooling its token vectors.
    """
    check_tensor("x", x, ndim=(3, 4), layout="(..., N, D)")
    nb = _check_blocks("x", x, block_size)
    return x.reshape(*x.shape[:-2], nb, block_size, x.shape[-1]).mean(-2)  # (..., nb, D)


def sinkhorn_normalize(log_alpha: Tensor, n_iters: int = 20) -> Tensor:
    """Sinkhorn normalisation in the log domain: log of a (nearly) doubly stochastic matrix.

    log_alpha: (..., n, n) float. Each iteration subtracts the row logsumexp, then the column
    logsumexp, so after it every column of exp(result) sums to 1 exactly and the rows sum to
    1 up to an error that shrinks geometrically with ``n_iters`` (Sinkhorn, 1964). Working
    with logsumexp never overflows, whatever the temperature. ``n_iters = 0`` returns the
    input. Returns (..., n, n).
    """
    check_tensor("log_alpha", log_alpha, layout="(..., n, n)")
    if log_alpha.dim() < 2 or log_alpha.shape[-1] != log_alpha.shape[-2]:
        raise ValueError(f"log_alpha must be (..., n, n), got {shape_str(log_alpha)}")
    check_int("n_iters", n_iters, 0)
    la = log_alpha
    for _ in range(n_iters):
        la = la - torch.logsumexp(la, dim=-1, keepdim=True)  # rows sum to 1
        la = la - torch.logsumexp(la, dim=-2, keepdim=True)  # columns sum to 1
    return la


def soft_permutation(logits: Tensor, *, n_iters: int = 20, temperature: float = 1.0,
                     is_causal: bool = False) -> Tensor:
    """The soft permutation P = exp(sinkhorn_normalize(logits / temperature)): (..., nb, nb).

    Rows and columns of P sum to 1 (up to the Sinkhorn error); as ``temperature`` -> 0 it
    approaches the permutation matrix that maximises sum_a logits[a, sigma(a)].
    is_causal: entries c >= a are excluded and only the rows are normalised (a softmax over
    the earlier blocks; ``n_iters`` is not used): row 0 is all zeros, the others sum to 1.
    Tay et al. (2020) (Sinkhorn balancing; causal Sinkhorn attention).
    """
    check_tensor("logits", logits, layout="(..., nb, nb)")
    if logits.dim() < 2 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"logits must be (..., nb, nb), got {shape_str(logits)}")
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"temperature must be a float > 0, got {temperature!r}")
    check_int("n_iters", n_iters, 0)
    la = logits / temperature
    if is_causal:
        earlier = causal_mask(la.shape[-1], offset=-1, device=la.device)  # block c < a
        return masked_softmax(la, earlier)
    return sinkhorn_normalize(la, n_iters).exp()


def sinkhorn_layout(permutation: Tensor) -> Tensor:
    """Block layout of the hardened permutation: (..., nb, nb) bool, for pictures.

    Block a sees itself and its partner argmax_c P[a, c] (rows of P that are all zero, as row 0
    in the causal case, have no partner).
    """
    check_tensor("permutation", permutation, layout="(..., nb, nb)")
    nb = permutation.shape[-1]
    partner = F.one_hot(permutation.argmax(-1), nb).bool()
    partner &= (permutation > 0).any(-1, keepdim=True)
    return partner | torch.eye(nb, dtype=torch.bool, device=permutation.device)


def sinkhorn_mask(permutation: Tensor, block_size: int, *, is_causal: bool = False) -> Tensor:
    """(N, N) bool token mask of :func:`sinkhorn_layout` (a 2-D ``permutation`` (nb, nb)):
    query i sees key j when j's block is i's block or its partner (and j <= i if causal)."""
    check_tensor("permutation", permutation, ndim=2, layout="(nb, nb)")
    check_int("block_size", block_size, 1)
    nb = permutation.shape[-1]
    mask = create_mask(block_layout_mod(sinkhorn_layout(permutation), block_size),
                       nb * block_size, device=permutation.device)
    if is_causal:
        mask &= causal_mask(mask.shape[-1], device=mask.device)
    return mask


def sinkhorn_attention(query: Tensor, key: Tensor, value: Tensor, permutation: Tensor,
                       block_size: int, *, is_causal: bool = False,
                       scale: Optional[float] = None) -> Tensor:
    """Each block attends to itself and to its sorted partner block, in O(N block_size).

    query, key: (B, H, N, D)   value: (B, H, N, Dv), N a multiple of ``block_size``.
    permutation: (nb, nb), (H, nb, nb) or (B, H, nb, nb), nb = N / block_size: usually
        :func:`soft_permutation`; row a mixes the key/value blocks sum_c P[a, c] K_c, V_c
        that block a attends to besides its own.
    Scores: (B, H, nb, block_size, 2 block_size). is_causal: inside the own block j <= i;
    entries P[a, c] with c >= a are ignored, and a block whose row is then empty has no
    partner.
    Returns (B, H, N, Dv). With one block (nb = 1) this is full attention (the own block
    counted twice changes nothing); with a hard permutation without fixed points it equals
    ``reference_attention(q, k, v, sinkhorn_mask(P, block_size))``.
    Tay et al. (2020), "Sparse Sinkhorn attention" (local + sorted keys).
    """
    check_qkv(query, key, value, self_attention="Sinkhorn attention")
    nb = _check_blocks("query", query, block_size)
    check_tensor("permutation", permutation, ndim=(2, 3, 4), layout="(..., nb, nb)")
    if permutation.shape[-2:] != (nb, nb):
        raise ValueError(f"permutation must be (..., nb, nb) with nb = N / block_size = {nb}, "
                         f"got {shape_str(permutation)}")
    check_scale(scale)
    work = work_dtype(query.dtype)
    q, k, v = query.to(work), key.to(work), value.to(work)
    p = permutation.to(device=q.device, dtype=work)
    bs = block_size
    s = q.shape[-1] ** -0.5 if scale is None else float(scale)
    lead = torch.broadcast_shapes(q.shape[:2], k.shape[:2], v.shape[:2])
    qb = (q * s).reshape(*q.shape[:2], nb, bs, q.shape[-1])  # (B, H, nb, bs, D)
    kb = k.reshape(*k.shape[:2], nb, bs, k.shape[-1])  # (B, H, nb, bs, D)
    vb = v.reshape(*v.shape[:2], nb, bs, v.shape[-1])  # (B, H, nb, bs, Dv)
    if is_causal:
        p = p * causal_mask(nb, offset=-1, device=q.device)  # only blocks c < a
    # sorted blocks: K~_a = sum_c P[a, c] K_c -- (B, H, nb, bs, D), O(nb^2 bs D) work
    ks = torch.einsum("...ac,...ctd->...atd", p, kb)
    vs = torch.einsum("...ac,...ctd->...atd", p, vb)
    keys = torch.cat([ks.expand(*lead, *ks.shape[-3:]), kb.expand(*lead, *kb.shape[-3:])], -2)
    vals = torch.cat([vs.expand(*lead, *vs.shape[-3:]), vb.expand(*lead, *vb.shape[-3:])], -2)
    scores = qb @ keys.transpose(-2, -1)  # (B, H, nb, bs, 2 bs)
    if is_causal:
        own = causal_mask(bs, device=q.device)  # (bs, bs) causal inside the block
        has_partner = (p > 0).any(-1)  # (..., nb)
        sorted_ok = has_partner[..., :, None, None].expand(*has_partner.shape, bs, bs)
        keep = torch.cat([sorted_ok, own.expand(*sorted_ok.shape)], dim=-1)  # (..., nb, bs, 2bs)
        scores = scores.masked_fill(~keep, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ vals  # (B, H, nb, bs, Dv)
    return out.reshape(*lead, nb * bs, v.shape[-1]).to(query.dtype)  # (B, H, N, Dv)


class SinkhornSorting(nn.Module):
    """Sparse Sinkhorn attention with a learned sorting network, as the ``attn_fn`` of
    :class:`attention_lib.layers.MultiHeadAttention`:
    ``MultiHeadAttention(E, H, attn_fn=SinkhornSorting(E // H, block_size))`` is the
    multi-head layer (self-attention, N a multiple of ``block_size``).

    The sorting network ``sort_proj`` (Dh -> Dh, shared by the heads) gives
    logits[a, c] = (W s^q_a) . s^k_c / sqrt(Dh) between the block summaries
    (:func:`block_summaries`) of queries and keys. This bilinear form works for any number of
    blocks (the paper's SortNet is a fixed-size dense layer). In the causal case row a uses
    the summary of block a - 1 (zeros for block 0).

    forward(query, key, value, attn_mask=None, *, is_causal=False): q, k, v (B, H, N, Dh)
    -> (B, H, N, Dh); no mask (the permutation decides what each block sees).
    :meth:`permutation` gives the soft permutation P (B, H, nb, nb) it uses.
    """

    def __init__(self, head_dim: int, block_size: int, *, n_iters: int = 8,
                 temperature: float = 0.75):
        super().__init__()
        check_int("head_dim", head_dim, 1)
        check_int("block_size", block_size, 1)
        check_int("n_iters", n_iters, 0)
        self.head_dim, self.block_size = head_dim, block_size
        self.n_iters, self.temperature = n_iters, temperature
        self.sort_proj = nn.Linear(head_dim, head_dim, bias=False)

    def permutation(self, query: Tensor, key: Tensor, *, is_causal: bool = False) -> Tensor:
        """query, key: (B, H, N, Dh) -> the soft permutation of their blocks, (B, H, nb, nb)."""
        _check_blocks("query", query, self.block_size)
        sq = block_summaries(query, self.block_size)  # (B, H, nb, Dh)
        sk = block_summaries(key, self.block_size)
        if is_causal:  # row a is decided by block a - 1, which every query of block a has seen
            sq = F.pad(sq, (0, 0, 1, 0))[..., :-1, :]
        logits = self.sort_proj(sq) @ sk.transpose(-2, -1) * self.head_dim ** -0.5
        return soft_permutation(logits, n_iters=self.n_iters, temperature=self.temperature,
                                is_causal=is_causal)  # (B, H, nb, nb)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                attn_mask: Optional[Tensor] = None, *, is_causal: bool = False) -> Tensor:
        if attn_mask is not None:
            raise ValueError("Sinkhorn attention takes no attn_mask: the sorted blocks decide "
                             "what each query sees")
        p = self.permutation(query, key, is_causal=is_causal)
        return sinkhorn_attention(query, key, value, p, self.block_size, is_causal=is_causal)

    def extra_repr(self) -> str:
        return (f"head_dim={self.head_dim}, block_size={self.block_size}, "
                f"n_iters={self.n_iters}, temperature={self.temperature}")
