"""attention_lib: the tested library behind the course "Attention, from seq2seq to random features".

Where things live (the modules follow the book's parts):

* :mod:`~attention_lib.functional` -- scores, ``masked_softmax`` (with its log-sum-exp),
  ``merge_by_lse``, ``reference_attention``, ``attention`` (SDPA signature)  (Parts I-II)
* :mod:`~attention_lib.masks` -- every mask builder and converter: padding / causal masks,
  combining, converting, and the ``mask_mod`` patterns of the sparse chapter (Parts II-III)
* :mod:`~attention_lib.layers` -- ``nn.Module`` wrappers: dot-product, additive and the one
  multi-head attention (MHA/GQA/MQA, rotary, KV cache, any family as ``attn_fn``) (Parts I-II)
* :mod:`~attention_lib.pooling` -- attention pooling as Nadaraya-Watson kernel regression:
  kernels, ``nadaraya_watson``, a learnable-bandwidth module, toy data        (Part I, ch. 2)
* :mod:`~attention_lib.lexicon`, :mod:`~attention_lib.grammar` -- an English/French lexicon
  and a grammar that generates sentence pairs with gold word alignments     (Part I)
* :mod:`~attention_lib.data` -- the corpus made of them: tokens, vocab, padding, length
  buckets, splits                                                           (Part I)
* :mod:`~attention_lib.metrics` -- corpus BLEU (= sacrebleu), BLEU by length, alignment
  error rate of attention against gold alignments                           (Part I)
* :mod:`~attention_lib.seq2seq`, :mod:`~attention_lib.train` -- GRU encoder-decoders (plain,
  Bahdanau, Luong), greedy and beam decoding, one training loop             (Part I)
* :mod:`~attention_lib.pretrained` -- small trained Part I models shipped as package data
* :mod:`~attention_lib.position` -- the sinusoidal encoding, rotary embeddings, the
  sinusoidal shift map                                                      (Part II, ch. 6)
* :mod:`~attention_lib.multihead` -- the KV cache, ``repeat_kv`` for grouped-query / multi-query
  attention, the per-head loop, parameter and FLOP counts                   (Part II, ch. 8)
* :mod:`~attention_lib.diagnostics` -- ``causal_leakage`` for any attention function  (ch. 7)
* :mod:`~attention_lib.complexity` -- Conv1d, GRU and self-attention layers measured: FLOPs,
  sequential steps, path length from gradients, fitted exponents       (Part II, ch. 9)
* :mod:`~attention_lib.efficient` -- Part III, one module per family: ``flash``, ``sparse``,
  ``linear``, ``random_features`` (and ``memory.peak_memory`` to measure them)
* :mod:`~attention_lib.transformer` -- encoder and decoder layers (pre- and post-norm,
  LayerNorm or padding-aware BatchNorm), stacks, and an encoder-decoder ``Transformer`` that
  trains and decodes with the Part I tools                                  (Part II, ch. 10)
* :mod:`~attention_lib.scenes` -- synthetic scenes with captions and a gold region per word
* :mod:`~attention_lib.vision` -- a captioner that attends over a CNN grid, pointing accuracy,
  squeeze-and-excitation, CBAM, a tiny ViT                                  (Part IV, ch. 18)
* :mod:`~attention_lib.plot` -- heatmaps and curves
* :mod:`~attention_lib.utils` -- seeding, device choice, importing d2l offline

The exercises' checks and the grader are a separate package, ``attention_course``, which
imports this one; nothing here imports it.

Conventions: layout (B, H, N, D); masks are bool with True = may attend; fully masked rows
give zeros, never NaN. Each module lists its public names in ``__all__``; all of them are
re-exported here.
"""
__version__ = "0.1.0"

from . import (
               complexity,
               data,
               diagnostics,
               efficient,
               functional,
               grammar,
               layers,
               lexicon,
               masks,
               metrics,
               multihead,
               plot,
               pooling,
               position,
               pretrained,
               scenes,
               seq2seq,
               train,
               transformer,
               utils,
               vision,
)
from .complexity import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .diagnostics import *  # noqa: F401,F403
from .functional import *  # noqa: F401,F403
from .grammar import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .lexicon import *  # noqa: F401,F403
from .masks import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .multihead import *  # noqa: F401,F403
from .plot import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .position import *  # noqa: F401,F403
from .pretrained import *  # noqa: F401,F403
from .scenes import *  # noqa: F401,F403
from .seq2seq import *  # noqa: F401,F403
from .train import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403
from .vision import *  # noqa: F401,F403

_MODULES = (complexity, data, diagnostics, functional, grammar, layers, lexicon, masks, metrics,
            multihead, plot, pooling, position, pretrained, scenes, seq2seq, train, transformer,
            utils, vision)
__all__ = (["__version__", "efficient"] + [m.__name__.rsplit(".", 1)[1] for m in _MODULES]
           + sorted({name for m in _MODULES for name in m.__all__}))
