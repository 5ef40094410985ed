"""The Transformer of Vaswani et al. (2017): encoder and decoder layers, stacks, and a small
encoder-decoder translation model that plugs into the Part I training and decoding code.

* :class:`TransformerEncoderLayer` -- self-attention + position-wise feed-forward network, each
  wrapped in a residual connection and a normalisation; post-norm (``norm_first=False``, the
  paper's ``LayerNorm(x + Sublayer(x))``, section 3.1) or pre-norm (``norm_first=True``,
  ``x + Sublayer(LayerNorm(x))``, Xiong et al. 2020). The maths of
  ``torch.nn.TransformerEncoderLayer(batch_first=True)``, and its parameter names apart from
  the attention's separate q/k/v projections (:func:`copy_from_torch` maps them).
* :class:`TransformerDecoderLayer` -- causal self-attention, cross-attention to the encoder's
  output (the "memory"), feed-forward network; as ``torch.nn.TransformerDecoderLayer``.
* :class:`TransformerEncoder`, :class:`TransformerDecoder` -- stacks of layers (with a final
  normalisation when ``norm_first=True``, as the pre-norm papers do).
* :class:`Transformer` -- token embeddings scaled by sqrt(d_model), sinusoidal positions,
  encoder, decoder and output projection. It is a :class:`attention_lib.seq2seq.Seq2Seq`:
  ``model(src, src_len, tgt_in) -> (logits, None)`` (``model.alignment`` gives the
  cross-attention), so
  :func:`~attention_lib.train.train_seq2seq`, :func:`~attention_lib.seq2seq.greedy_decode`,
  :func:`~attention_lib.seq2seq.beam_search`, :func:`~attention_lib.seq2seq.translate` and
  :func:`~attention_lib.seq2seq.teacher_forced_attention` work on it unchanged.
  Weights are computed only when asked: ``return_weights=True`` returns those of all three
  kinds of attention; otherwise attention runs on the fast path (SDPA).
* :class:`SequenceBatchNorm` -- BatchNorm over the features of ``(B, N, d)`` inputs, for
  ``norm="batch"``. Plain BatchNorm computes its statistics over every position of the
  batch, padding included; pass ``token_mask`` (True = real token) to exclude the padding.

Layout: modules take ``(B, N, d_model)``; attention weights come back per head,
``(B, H, Nq, Nk)``. Masks are bool, True = may attend, broadcastable to ``(B, H, Nq, Nk)``:
``attn_mask`` for a layer's self-attention, ``memory_attn_mask`` for the decoder's
cross-attention; a key mask is ``key_mask(lengths)`` of shape ``(B, 1, 1, Nk)``. Note the
polarity: torch's ``src_key_padding_mask`` is True where a key must be *ignored*.
The attention itself is :class:`attention_lib.layers.MultiHeadAttention`, and incremental
decoding keeps one :class:`attention_lib.multihead.KVCache` per decoder layer; nothing here
re-implements them.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ._validate import check_float, check_int, check_mask, check_seq, check_tensor, shape_str
from .layers import MultiHeadAttention
from .masks import key_mask, padding_mask
from .multihead import KVCache
from .position import PositionalEncoding
from .seq2seq import Seq2Seq, _check_batch, _check_tgt_in

Tensor = torch.Tensor

__all__ = ["SequenceBatchNorm", "TransformerEncoderLayer", "TransformerDecoderLayer",
           "TransformerEncoder", "TransformerDecoder", "Transformer", "copy_from_torch"]

_NORMS = ("layer", "batch")
_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


# --------------------------------------------------------------------------- helpers
def _check_common(d_model, num_heads, dim_feedforward, dropout, norm, activation) -> None:
    for name, val in (("d_model", d_model), ("num_heads", num_heads),
                      ("dim_feedforward", dim_feedforward)):
        check_int(name, val)
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
    check_float("dropout", dropout, maximum=1.0)
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    if not (callable(activation) or activation in _ACTIVATIONS):
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)} or a callable, "
                         f"got {activation!r}")


def _check_token_mask(token_mask: Optional[Tensor], x: Tensor) -> None:
    if token_mask is None:
        return
    if not isinstance(token_mask, torch.Tensor) or token_mask.dtype != torch.bool:
        got = token_mask.dtype if isinstance(token_mask, torch.Tensor) else \
            type(token_mask).__name__
        raise TypeError(f"token_mask must be a bool tensor (B, N), True = real token, got {got}")
    if token_mask.shape != x.shape[:2]:
        raise ValueError(f"token_mask must have shape (B, N) = {shape_str(x.shape[:2])}, got "
                         f"{shape_str(token_mask)}")


class SequenceBatchNorm(nn.Module):
    """Batch normalisation of the features of a sequence batch (Ioffe and Szegedy, 2015).

    x: (B, N, d) -> (B, N, d). Each feature is normalised with a mean and variance taken over
    the **B * N positions** of the batch in training, and over running averages of them in
    eval mode: ``nn.BatchNorm1d(d)`` applied to ``x.transpose(1, 2)``, with its parameters.

    token_mask: optional (B, N) bool, True = real token. Without it, padded positions count in
    the statistics like real ones, so the output for a sentence depends on how much padding
    its batch carries. With it, statistics (and the running averages) use the real
    positions only; the output then still depends on the other sentences in the batch, and
    in training differs from eval (batch statistics vs running averages): that is BatchNorm.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model, eps=eps, momentum=momentum)

    def forward(self, x: Tensor, token_mask: Optional[Tensor] = None) -> Tensor:
        check_seq("x", x, self.bn.num_features, "d_model", nonempty=True)
        _check_token_mask(token_mask, x)
        if token_mask is None:
            return self.bn(x.transpose(1, 2)).transpose(1, 2)  # (B, N, d)
        bn = self.bn
        if self.training:
            real = x[token_mask]  # (M, d): the real positions only
            if real.shape[0] < 2:
                raise ValueError(f"token_mask marks {real.shape[0]} real position(s); batch "
                                 f"statistics need at least 2")
            mean, var = real.mean(0), real.var(0, unbiased=False)  # (d,)
            with torch.no_grad():
                m = bn.momentum
                n = real.shape[0]
                bn.running_mean.mul_(1 - m).add_(m * mean.detach().to(bn.running_mean.dtype))
                bn.running_var.mul_(1 - m).add_(m * var.detach().to(bn.running_var.dtype)
                                                * n / (n - 1))
                bn.num_batches_tracked.add_(1)
        else:
            mean, var = bn.running_mean.to(x.dtype), bn.running_var.to(x.dtype)
        y = (x - mean) / torch.sqrt(var + bn.eps)  # (B, N, d)
        return y * bn.weight + bn.bias


def _make_norm(norm: str, d_model: int, eps: float) -> nn.Module:
    return nn.LayerNorm(d_model, eps=eps) if norm == "layer" else SequenceBatchNorm(d_model, eps)


def _apply_norm(norm: nn.Module, x: Tensor, token_mask: Optional[Tensor]) -> Tensor:
    """LayerNorm acts on each position alone and never needs ``token_mask``."""
    return norm(x, token_mask) if isinstance(norm, SequenceBatchNorm) else norm(x)


# --------------------------------------------------------------------------- layers
def _build_sublayers(layer: nn.Module, d_model: int, num_heads: int, dim_feedforward: int,
                     dropout: float, norm_first: bool, activation, norm: str, eps: float, *,
                     num_sublayers: int) -> None:
    """The parts encoder and decoder layers share, named as in ``torch.nn.Transformer*Layer``:
    ``self_attn`` (and, with three sublayers, the decoder's ``cross_attn``), the feed-forward
    ``linear1 -> activation -> dropout -> linear2``, and one ``norm{i}`` and ``dropout{i}``
    per sublayer (the last pair belongs to the feed-forward). The order of creation fixes the
    order of the random initial weights, so it must not change: seeded models (chapter 10, the
    shipped checkpoints' training runs) depend on it."""
    _check_common(d_model, num_heads, dim_feedforward, dropout, norm, activation)
    layer.d_model, layer.num_heads, layer.norm_first = d_model, num_heads, norm_first
    layer.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
    if num_sublayers == 3:
        layer.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
    layer.linear1 = nn.Linear(d_model, dim_feedforward)
    layer.dropout = nn.Dropout(dropout)
    layer.linear2 = nn.Linear(dim_feedforward, d_model)
    for i in range(1, num_sublayers + 1):
        setattr(layer, f"norm{i}", _make_norm(norm, d_model, eps))
        setattr(layer, f"dropout{i}", nn.Dropout(dropout))
    layer.ff_dropout = getattr(layer, f"dropout{num_sublayers}")
    layer.activation = _ACTIVATIONS[activation] if isinstance(activation, str) else activation


def _feed_forward(layer: nn.Module, x: Tensor) -> Tensor:
    return layer.ff_dropout(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))


class TransformerEncoderLayer(nn.Module):
    """One encoder layer: self-attention and a feed-forward network, each with a residual
    connection and a normalisation (Vaswani et al., 2017, section 3.1).

    Post-norm (``norm_first=False``, the paper):
        ``x = norm1(x + dropout1(SelfAttn(x)));  x = norm2(x + dropout2(FFN(x)))``
    Pre-norm (``norm_first=True``):
        ``x = x + dropout1(SelfAttn(norm1(x)));  x = x + dropout2(FFN(norm2(x)))``
    with ``FFN(x) = linear2(dropout(activation(linear1(x))))``.

    Parameters have the names of ``torch.nn.TransformerEncoderLayer`` except that the
    attention is :class:`~attention_lib.layers.MultiHeadAttention` (``q_proj``, ``k_proj``,
    ``v_proj``, ``out_proj`` instead of one stacked ``in_proj_weight``). norm: ``"layer"``
    (LayerNorm) or ``"batch"`` (:class:`SequenceBatchNorm`, for the comparison of chapter 10).

    forward(x, *, attn_mask=None, token_mask=None, return_weights=False)
        x: (B, N, d_model). attn_mask: bool broadcastable to (B, H, N, N), True = may attend;
        for key padding ``attn_mask = key_mask(lengths)``, (B, 1, 1, N). token_mask: (B, N)
        bool, True = real token, only used by ``norm="batch"`` (see
        :class:`SequenceBatchNorm`). Returns (B, N, d_model), or ``(out, weights)`` with
        weights (B, H, N, N) (computed only then; otherwise SDPA runs). Equals
        ``torch.nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout,
        batch_first=True, norm_first=...)`` with the same weights
        and ``src_key_padding_mask = ~padding_mask(lengths)``.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int,
                 dropout: float = 0.0, *, norm_first: bool = False, activation="relu",
                 norm: str = "layer", layer_norm_eps: float = 1e-5):
        super().__init__()
        _build_sublayers(self, d_model, num_heads, dim_feedforward, dropout, norm_first,
                         activation, norm, layer_norm_eps, num_sublayers=2)

    def _sa(self, x: Tensor, attn_mask: Optional[Tensor], weights: bool):
        res = self.self_attn(x, attn_mask=attn_mask, return_weights=weights)
        out, w = res if weights else (res, None)  # (B, N, E), (B, H, N, N)
        return self.dropout1(out), w

    def forward(self, x: Tensor, *, attn_mask: Optional[Tensor] = None,
                token_mask: Optional[Tensor] = None, return_weights: bool = False):
        check_seq("x", x, self.d_model, "d_model", nonempty=True)
        _check_token_mask(token_mask, x)
        tm = token_mask
        if self.norm_first:
            a, w = self._sa(_apply_norm(self.norm1, x, tm), attn_mask, return_weights)
            x = x + a
            x = x + _feed_forward(self, _apply_norm(self.norm2, x, tm))
        else:
            a, w = self._sa(x, attn_mask, return_weights)
            x = _apply_norm(self.norm1, x + a, tm)
            x = _apply_norm(self.norm2, x + _feed_forward(self, x), tm)
        return (x, w) if return_weights else x  # (B, N, d_model), (B, H, N, N)


class TransformerDecoderLayer(nn.Module):
    """One decoder layer: causal self-attention, cross-attention to the encoder output
    (``memory``) and a feed-forward network, each with residual + normalisation
    (Vaswani et al., 2017, section 3.1).

    Post-norm: ``x = norm1(x + SelfAttn(x)); x = norm2(x + CrossAttn(x, memory));
    x = norm3(x + FFN(x))``; pre-norm normalises each sublayer's input instead. Parameters as
    ``torch.nn.TransformerDecoderLayer`` (whose ``multihead_attn`` is ``cross_attn`` here).

    forward(x, memory, *, attn_mask=None, memory_attn_mask=None, is_causal=True, past=None,
            use_cache=False, token_mask=None, return_weights=False)
        x: (B, Nt, d_model) decoder inputs. memory: (B, Ns, d_model).
        attn_mask: extra bool mask for self-attention, broadcastable to (B, H, Nt, Nt') (e.g. a
        target key mask), combined with the causal mask when ``is_causal``.
        memory_attn_mask: bool broadcastable to (B, H, Nt, Ns), the cross-attention's mask,
        e.g. the source key mask ``key_mask(src_len)``, (B, 1, 1, Ns).
        past: a :class:`~attention_lib.multihead.KVCache` of this layer's self-attention keys
        and values at Np earlier positions (incremental decoding): x then holds positions
        Np .. Np+Nt-1 and attends to ``Nt' = Np + Nt`` keys, the causal mask shifted
        accordingly. use_cache: also return the cache extended by x's keys and values.
        Returns (B, Nt, d_model); with ``return_weights`` also ``self_weights (B, H, Nt, Nt')``
        and ``cross_weights (B, H, Nt, Ns)`` (computed only then); with ``use_cache`` also
        the new cache, in that order.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int,
                 dropout: float = 0.0, *, norm_first: bool = False, activation="relu",
                 norm: str = "layer", layer_norm_eps: float = 1e-5):
        super().__init__()
        _build_sublayers(self, d_model, num_heads, dim_feedforward, dropout, norm_first,
                         activation, norm, layer_norm_eps, num_sublayers=3)

    def forward(self, x: Tensor, memory: Tensor, *, attn_mask: Optional[Tensor] = None,
                memory_attn_mask: Optional[Tensor] = None, is_causal: bool = True,
                past: Optional[KVCache] = None, use_cache: bool = False,
                token_mask: Optional[Tensor] = None, return_weights: bool = False):
        check_seq("x", x, self.d_model, "d_model", n="Nt", nonempty=True)
        check_seq("memory", memory, self.d_model, "d_model", n="Ns", nonempty=True)
        _check_token_mask(token_mask, x)
        if memory.shape[0] != x.shape[0]:
            raise ValueError(f"memory {shape_str(memory)} and x {shape_str(x)} must have the "
                             f"same batch size")
        check_mask("memory_attn_mask", memory_attn_mask,
                   (x.shape[0], self.num_heads, x.shape[1], memory.shape[1]),
                   layout="(B, H, Nt, Ns)")

        def self_block(h: Tensor):
            out, *w, new_cache = self.self_attn(h, attn_mask=attn_mask, is_causal=is_causal,
                                                past=past, use_cache=True,
                                                return_weights=return_weights)
            return self.dropout1(out), (w or [None])[0], new_cache  # (B, Nt, E), (B, H, Nt, Nt')

        def cross_block(h: Tensor):
            res = self.cross_attn(h, memory, memory, memory_attn_mask,
                                  return_weights=return_weights)
            out, w = res if return_weights else (res, None)  # (B, Nt, E), (B, H, Nt, Ns)
            return self.dropout2(out), w

        tm = token_mask
        if self.norm_first:
            a, w_self, cache = self_block(_apply_norm(self.norm1, x, tm))
            x = x + a
            a, w_cross = cross_block(_apply_norm(self.norm2, x, tm))
            x = x + a
            x = x + _feed_forward(self, _apply_norm(self.norm3, x, tm))
        else:
            a, w_self, cache = self_block(x)
            x = _apply_norm(self.norm1, x + a, tm)
            a, w_cross = cross_block(x)
            x = _apply_norm(self.norm2, x + a, tm)
            x = _apply_norm(self.norm3, x + _feed_forward(self, x), tm)
        res = (x,) + ((w_self, w_cross) if return_weights else ()) + ((cache,) if use_cache else ())
        return res[0] if len(res) == 1 else res


# --------------------------------------------------------------------------- stacks
class _LayerStack(nn.Module):
    """``num_layers`` layers of class ``layer_class`` and, when pre-norm, a final norm (built
    after the layers, so that a seed gives the same weights as before)."""

    layer_class: type

    def __init__(self, num_layers: int, d_model: int, num_heads: int, dim_feedforward: int,
                 dropout: float = 0.0, *, norm_first: bool = False, activation="relu",
                 norm: str = "layer", layer_norm_eps: float = 1e-5):
        super().__init__()
        check_int("num_layers", num_layers)
        self.layers = nn.ModuleList(
            self.layer_class(d_model, num_heads, dim_feedforward, dropout,
                             norm_first=norm_first, activation=activation, norm=norm,
                             layer_norm_eps=layer_norm_eps) for _ in range(num_layers))
        self.norm = _make_norm(norm, d_model, layer_norm_eps) if norm_first else None


class TransformerEncoder(_LayerStack):
    """``num_layers`` :class:`TransformerEncoderLayer` s; with ``norm_first=True`` a final
    normalisation (of kind ``norm``) after the last layer, as pre-norm models need (their
    residual stream is never normalised otherwise).

    forward(x, *, attn_mask=None, token_mask=None, return_weights=False)
        x: (B, N, d_model) -> (B, N, d_model), or ``(out, [weights (B, H, N, N) per layer])``.
        attn_mask, token_mask: as :class:`TransformerEncoderLayer`, the same for every layer.
    """

    layer_class = TransformerEncoderLayer

    def forward(self, x: Tensor, *, attn_mask: Optional[Tensor] = None,
                token_mask: Optional[Tensor] = None, return_weights: bool = False):
        weights = []
        for layer in self.layers:
            res = layer(x, attn_mask=attn_mask, token_mask=token_mask,
                        return_weights=return_weights)
            x, w = res if return_weights else (res, None)
            weights.append(w)
        if self.norm is not None:
            x = _apply_norm(self.norm, x, token_mask)
        return (x, weights) if return_weights else x


class TransformerDecoder(_LayerStack):
    """``num_layers`` :class:`TransformerDecoderLayer` s (+ a final norm when pre-norm).

    forward(x, memory, *, attn_mask=None, memory_attn_mask=None, is_causal=True, past=None,
            use_cache=False, token_mask=None, return_weights=False)
        x: (B, Nt, d_model), memory: (B, Ns, d_model) -> (B, Nt, d_model); with
        ``return_weights`` also ``[self weights (B, H, Nt, Nt')], [cross weights (B, H, Nt,
        Ns)]`` per layer; with ``use_cache`` also the list of new caches, in that order.
        past: optional list with one :class:`~attention_lib.multihead.KVCache` per layer (see
        :meth:`TransformerDecoderLayer.forward` and incremental decoding in
        :class:`Transformer`).
    """

    layer_class = TransformerDecoderLayer

    def forward(self, x: Tensor, memory: Tensor, *, attn_mask: Optional[Tensor] = None,
                memory_attn_mask: Optional[Tensor] = None, is_causal: bool = True,
                past: Optional[list] = None, use_cache: bool = False,
                token_mask: Optional[Tensor] = None, return_weights: bool = False):
        if past is not None and len(past) != len(self.layers):
            raise ValueError(f"past must hold one KVCache per layer ({len(self.layers)}), got "
                             f"{len(past)}")
        w_self, w_cross, caches = [], [], []
        for i, layer in enumerate(self.layers):
            x, *w, cache = layer(x, memory, attn_mask=attn_mask,
                                 memory_attn_mask=memory_attn_mask, is_causal=is_causal,
                                 past=None if past is None else past[i], use_cache=True,
                                 token_mask=token_mask, return_weights=return_weights)
            if return_weights:
                w_self.append(w[0])
                w_cross.append(w[1])
            caches.append(cache)
        if self.norm is not None:
            x = _apply_norm(self.norm, x, token_mask)
        res = (x,) + ((w_self, w_cross) if return_weights else ()) + \
            ((caches,) if use_cache else ())
        return res[0] if len(res) == 1 else res


@torch.no_grad()
def copy_from_torch(ours: nn.Module, ref: nn.Module) -> nn.Module:
    """Copy the weights of a torch layer into the matching layer of this module, in place.

    ours: :class:`TransformerEncoderLayer` / :class:`TransformerDecoderLayer` (LayerNorm).
    ref: ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` of the same sizes.
    torch stacks the query, key and value projections in ``in_proj_weight`` (3E, E) and
    ``in_proj_bias`` (3E,); they are split here. Returns ``ours``.
    """
    pairs = [(ours.self_attn, ref.self_attn)]
    if isinstance(ours, TransformerDecoderLayer):
        pairs.append((ours.cross_attn, ref.multihead_attn))
    for mine, theirs in pairs:
        e = theirs.embed_dim
        if mine.embed_dim != e or theirs.in_proj_weight is None:
            raise ValueError(f"attention sizes differ: ours embed_dim={mine.embed_dim}, "
                             f"torch embed_dim={e} (kdim/vdim must equal embed_dim)")
        for lin, w, b in zip((mine.q_proj, mine.k_proj, mine.v_proj),
                             theirs.in_proj_weight.split(e), theirs.in_proj_bias.split(e)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        mine.out_proj.load_state_dict(theirs.out_proj.state_dict())
    names = ["linear1", "linear2", "norm1", "norm2"]
    names += ["norm3"] if isinstance(ours, TransformerDecoderLayer) else []
    for name in names:
        getattr(ours, name).load_state_dict(getattr(ref, name).state_dict())
    return ours


# --------------------------------------------------------------------------- model
def _embedding(vocab_size: int, d_model: int, pad_id: int) -> nn.Embedding:
    """Token embeddings drawn from N(0, 1/d_model): multiplied by sqrt(d_model) in forward,
    they have unit variance, the scale of the sinusoidal positions they are added to.
    (``nn.Embedding``'s default N(0, 1) would make them sqrt(d_model) times larger and drown
    the positions: the model then hardly knows where a word is.)"""
    emb = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
    with torch.no_grad():
        emb.weight.normal_(0.0, d_model ** -0.5)
        emb.weight[pad_id].zero_()
    return emb


class _SourceEncoder(nn.Module):
    """Source embedding * sqrt(d) + sinusoidal positions -> TransformerEncoder.

    forward(src (B, Ns), src_len (B,)) -> (memory (B, Ns, d_model), None): the
    ``(states, summary)`` pair of :class:`attention_lib.seq2seq.Encoder` (no summary: the
    decoder reads the whole memory).
    """

    def __init__(self, vocab_size: int, d_model: int, encoder: TransformerEncoder,
                 max_len: int, dropout: float, pad_id: int):
        super().__init__()
        self.embedding = _embedding(vocab_size, d_model, pad_id)
        self.pos = PositionalEncoding(d_model, max_len, dropout)
        self.encoder = encoder
        self.scale = math.sqrt(d_model)

    def forward(self, src: Tensor, src_len: Tensor, *, return_weights: bool = False):
        _check_batch(src, src_len)
        x = self.pos(self.embedding(src) * self.scale)  # (B, Ns, d_model)
        res = self.encoder(x, attn_mask=key_mask(src_len, src.shape[1]),
                           return_weights=return_weights)
        return (res[0], None, res[1]) if return_weights else (res, None)


class _TargetDecoder(nn.Module):
    """Target embedding + positions -> TransformerDecoder -> logits, with the Part I decoder
    interface: ``forward(tgt_in, states, summary, src_mask) -> (logits, attn)``,
    ``init_state(states, summary, src_mask)`` and ``step(y_prev, state)``, so that
    :func:`attention_lib.seq2seq.greedy_decode` and ``beam_search`` drive it.

    ``forward`` computes no weights (attn is None: the fast path, for training); ``_run`` with
    ``return_weights=True`` does. ``step`` returns the cross-attention of the last layer
    averaged over heads, (B, Ns), the one map a Part I chart can show. Decoding is incremental:
    the state keeps every layer's cached self-attention keys and values (``key_0``,
    ``value_0``, ``key_1``, ...; plain tensors, so that beam search can reorder them), so step t
    projects one position and attends to t + 1 keys.
    """

    attends = True

    def __init__(self, vocab_size: int, d_model: int, decoder: TransformerDecoder,
                 max_len: int, dropout: float, pad_id: int):
        super().__init__()
        self.embedding = _embedding(vocab_size, d_model, pad_id)
        self.pos = PositionalEncoding(d_model, max_len, dropout)
        self.decoder = decoder
        self.out = nn.Linear(d_model, vocab_size)
        self.scale = math.sqrt(d_model)
        self.d_model, self.max_len = d_model, max_len

    def _run(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, return_weights: bool):
        check_tensor("tgt_in", tgt_in, ndim=2, floating=False, layout="(B, Nt)")
        x = self.pos(self.embedding(tgt_in) * self.scale)  # (B, Nt, d_model)
        res = self.decoder(x, memory, memory_attn_mask=src_mask[:, None, None, :],
                           return_weights=return_weights)
        if not return_weights:
            return self.out(res), None, None  # (B, Nt, V)
        h, w_self, w_cross = res
        return self.out(h), w_self, w_cross  # (B, Nt, V)

    def forward(self, tgt_in: Tensor, states: Tensor, summary, src_mask: Tensor):
        return self._run(tgt_in, states, src_mask, False)[0], None  # (B, Nt, V), no weights

    def init_state(self, states: Tensor, summary, src_mask: Tensor) -> dict:
        state = {"memory": states, "mask": src_mask}
        for i, layer in enumerate(self.decoder.layers):
            cache = layer.self_attn.init_cache(states.shape[0], dtype=states.dtype,
                                               device=states.device)  # N = 0
            state.update({f"key_{i}": cache.key, f"value_{i}": cache.value})
        return state

    def step(self, y_prev: Tensor, state: dict):
        """One step. y_prev: (B,) -> logits (B, V), new state, attention (B, Ns)."""
        n = len(self.decoder.layers)
        past = [KVCache(state[f"key_{i}"], state[f"value_{i}"]) for i in range(n)]
        t = past[0].length
        if t >= self.max_len:
            raise ValueError(f"cannot decode beyond max_len={self.max_len} positions")
        x = self.embedding(y_prev)[:, None] * self.scale + self.pos.P[t].to(
            self.embedding.weight.dtype)  # (B, 1, d_model)
        h, _, w_cross, caches = self.decoder(
            x, state["memory"], memory_attn_mask=state["mask"][:, None, None, :], past=past,
            use_cache=True, return_weights=True)
        new = dict(state)
        for i, cache in enumerate(caches):
            new.update({f"key_{i}": cache.key, f"value_{i}": cache.value})  # (B, H, t + 1, Dh)
        return self.out(h[:, 0]), new, w_cross[-1][:, :, 0].mean(1)  # (B, V), (B, Ns)


class Transformer(Seq2Seq):
    """An encoder-decoder Transformer for translation (Vaswani et al., 2017, section 3).

    src_vocab_size, tgt_vocab_size: vocabularies; d_model, num_heads, num_encoder_layers,
    num_decoder_layers, dim_feedforward, dropout, norm_first, activation, norm: as
    ``torch.nn.Transformer`` (which has no embeddings; here token embeddings, scaled by
    sqrt(d_model), and sinusoidal positions are part of the model, as in the paper).
    max_len bounds the source and target lengths; pad_id is the padding token.
    Token embeddings are drawn from N(0, 1/d_model), so that after the sqrt(d_model) scaling
    they have the size of the positional encodings. ``norm="batch"`` uses plain BatchNorm
    over every position, padding included (:class:`SequenceBatchNorm` without ``token_mask``).

    forward(src, src_len, tgt_in, *, return_weights=False)
        src: (B, Ns) int, src_len: (B,) int, tgt_in: (B, Nt) int (<bos> + target).
        Returns ``(logits (B, Nt, V), None)``: no weights are computed, attention runs on the
        fast path (the Part I interface: ``train_seq2seq``, ``greedy_decode``, ``beam_search``,
        ``translate`` and ``teacher_forced_attention`` accept this model; the latter asks for
        :meth:`alignment`). With ``return_weights=True`` the second item is a dict of
        per-layer lists ``{"encoder": [(B, H, Ns, Ns)], "decoder_self": [(B, H, Nt, Nt)],
        "cross": [(B, H, Nt, Ns)]}``.

    Padded source keys are masked everywhere; padded target positions need no mask: they come
    after the real ones, and the causal mask already hides them from every real position.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int = 64,
                 num_heads: int = 4, num_encoder_layers: int = 2, num_decoder_layers: int = 2,
                 dim_feedforward: int = 256, dropout: float = 0.1, *, norm_first: bool = False,
                 activation: str = "relu", norm: str = "layer", max_len: int = 256,
                 pad_id: int = 0):
        for name, val in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size),
                          ("max_len", max_len)):
            check_int(name, val)
        kw = dict(norm_first=norm_first, activation=activation, norm=norm)
        enc = TransformerEncoder(num_encoder_layers, d_model, num_heads, dim_feedforward,
                                 dropout, **kw)
        dec = TransformerDecoder(num_decoder_layers, d_model, num_heads, dim_feedforward,
                                 dropout, **kw)
        super().__init__(_SourceEncoder(src_vocab_size, d_model, enc, max_len, dropout, pad_id),
                         _TargetDecoder(tgt_vocab_size, d_model, dec, max_len, dropout, pad_id))
        #: the keyword arguments that rebuild this model (beside the vocabulary sizes)
        self.config = dict(d_model=d_model, num_heads=num_heads,
                           num_encoder_layers=num_encoder_layers,
                           num_decoder_layers=num_decoder_layers,
                           dim_feedforward=dim_feedforward, dropout=dropout, max_len=max_len,
                           pad_id=pad_id, **kw)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, *,
                return_weights: bool = False):
        if not return_weights:
            return super().forward(src, src_len, tgt_in)
        _check_tgt_in(tgt_in, src)
        memory, _, w_enc = self.encoder(src, src_len, return_weights=True)
        mask = padding_mask(src_len, src.shape[1])  # (B, Ns)
        logits, w_self, w_cross = self.decoder._run(tgt_in, memory, mask, True)
        return logits, {"encoder": w_enc, "decoder_self": w_self, "cross": w_cross}

    def alignment(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """The last decoder layer's cross-attention averaged over heads, (B, Nt, Ns)."""
        return self(src, src_len, tgt_in, return_weights=True)[1]["cross"][-1].mean(1)
