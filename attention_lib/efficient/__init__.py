"""Efficient attention (Part III of the course): one module per family.

* :mod:`~attention_lib.efficient.flash` -- exact attention by tiles with the online softmax
  (FlashAttention), O(N) memory, with a recomputing backward pass            (chapter 16)
* :mod:`~attention_lib.efficient.sparse` -- fixed sparse patterns (sliding window, dilated,
  global tokens, BigBird random blocks): blocked implementations whose cost grows as O(N w);
  their dense masks, for the pictures, are in :mod:`attention_lib.masks`    (chapter 11)
* :mod:`~attention_lib.efficient.clustered` -- learned sparsity by bucketing: angular LSH with
  shared QK (Reformer), k-means routing (Routing Transformer), sorted and chunked   (chapter 12)
* :mod:`~attention_lib.efficient.sinkhorn` -- Sparse Sinkhorn attention: blocks sorted by a
  soft permutation from Sinkhorn normalisation                              (chapter 12)
* :mod:`~attention_lib.efficient.linear` -- linear attention with feature maps, causal as an
  RNN, gated (decaying) recurrences, the fast-weight-programmer view        (chapter 14)
* :mod:`~attention_lib.efficient.lowrank` -- attention spectra, the best rank-k matrix, and
  Linformer's projections of the sequence axis                              (chapter 13)
* :mod:`~attention_lib.efficient.random_features` -- random Fourier features, RFA (Gaussian,
  arc-cosine, gated), Performer FAVOR+ (positive, orthogonal, redraw)        (chapter 15)
* :mod:`~attention_lib.efficient.memory` -- ``peak_memory``: the tensor memory a call
  allocates, on any device (used by the chapters, the tests and ``benchmarks/``)
Multi-head attention with any family is :class:`attention_lib.layers.MultiHeadAttention` with
the family's function as ``attn_fn`` (batch first, the same projections), e.g.
``MultiHeadAttention(E, H, attn_fn=functools.partial(flash_attention, block_q=64, block_k=64))``
or ``attn_fn=functools.partial(sliding_window_attention, window=8)`` or
``attn_fn=linear_attention``; families with state of their own (centroids, a sorting network,
projections of the sequence axis, random features) give a small callable module for it.

* :mod:`~attention_lib.efficient.zoo` -- every variant behind one signature, with its target,
  and ``measure`` / ``sweep`` to compare time, memory and error on equal terms (chapter 17)
"""
from . import clustered, flash, linear, lowrank, memory, random_features, sinkhorn, sparse, zoo
from .clustered import *  # noqa: F401,F403
from .flash import (
                    OnlineSoftmaxState,
                    flash_attention,
                    flash_attention_lse,
                    online_softmax,
                    tile_schedule,
)
from .linear import *  # noqa: F401,F403
from .lowrank import *  # noqa: F401,F403
from .memory import MemoryStats, peak_memory
from .random_features import *  # noqa: F401,F403
from .sinkhorn import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403

__all__ = (["clustered", "flash", "linear", "lowrank", "memory", "random_features", "sinkhorn",
            "sparse", "zoo", "OnlineSoftmaxState",
            "flash_attention", "flash_attention_lse", "online_softmax", "tile_schedule",
            "MemoryStats", "peak_memory"]
           + clustered.__all__ + linear.__all__ + lowrank.__all__ + random_features.__all__
           + sinkhorn.__all__ + sparse.__all__)
