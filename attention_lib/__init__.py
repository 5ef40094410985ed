"""attention_lib: the tested library behind the course "Attention, from seq2seq to random features".

Where things live (the modules follow the book's parts):

* :mod:`~attention_lib.functional` -- scores, ``masked_softmax``, ``reference_attention``,
  ``attention`` (SDPA signature), sinusoidal encodings                      (Parts I-II)
* :mod:`~attention_lib.masks` -- padding / causal masks, combining, converting  (Part II)
* :mod:`~attention_lib.layers` -- ``nn.Module`` wrappers: dot-product, additive and
  multi-head attention, positional encoding                                 (Parts I-II)
* :mod:`~attention_lib.pooling` -- attention pooling as Nadaraya-Watson kernel regression:
  kernels, ``nadaraya_watson``, a learnable-bandwidth module, toy data        (Part I, ch. 2)
* :mod:`~attention_lib.plot` -- heatmaps and curves
* :mod:`~attention_lib.utils` -- seeding, device choice, importing d2l offline

Conventions: layout (B, H, N, D); masks are bool with True = may attend; fully masked rows
give zeros, never NaN.
"""
__version__ = "0.1.0"

from . import functional, layers, masks, plot, pooling, utils
from .functional import (additive_score, attention, concat_score, default_scale, dot_score,
                         general_score, masked_softmax, reference_attention, scaled_dot_score,
                         sinusoidal_encoding)
from .layers import (AdditiveAttention, DotProductAttention, MultiHeadAttention,
                     PositionalEncoding, merge_heads, split_heads)
from .masks import (causal_mask, combine_masks, from_torch_key_padding_mask, from_valid_lens,
                    key_padding_mask, mask_to_bias, padding_mask)
from .plot import plot_curves, show_heatmaps
from .pooling import (KERNELS, NadarayaWatson, boxcar_kernel, epanechnikov_kernel,
                      gaussian_kernel, kernel_scores, kernel_weights, leave_one_out_mask,
                      make_toy_data, nadaraya_watson, toy_function)
from .utils import get_device, import_d2l, seed_everything

__all__ = [
    "__version__", "functional", "layers", "masks", "plot", "pooling", "utils",
    "additive_score", "attention", "concat_score", "default_scale", "dot_score",
    "general_score", "masked_softmax", "reference_attention", "scaled_dot_score",
    "sinusoidal_encoding",
    "AdditiveAttention", "DotProductAttention", "MultiHeadAttention", "PositionalEncoding",
    "merge_heads", "split_heads",
    "causal_mask", "combine_masks", "from_torch_key_padding_mask", "from_valid_lens",
    "key_padding_mask", "mask_to_bias", "padding_mask",
    "plot_curves", "show_heatmaps",
    "KERNELS", "NadarayaWatson", "boxcar_kernel", "epanechnikov_kernel", "gaussian_kernel",
    "kernel_scores", "kernel_weights", "leave_one_out_mask", "make_toy_data",
    "nadaraya_watson", "toy_function",
    "get_device", "import_d2l", "seed_everything",
]
