"""Bad input fails at the public boundary with ``ValueError``/``TypeError`` whose message names
the argument and shows the offending shape or dtype (DESIGN.md §4.11).

Each case is ``(call, exception, pattern)``; the pattern is matched with ``re.search`` against
the message, so it pins both the argument's name and the shape/dtype that was given.
"""
from __future__ import annotations

import re

import pytest
import torch

from attention_lib import functional as AF
from attention_lib import layers as L
from attention_lib import masks as M
from attention_lib import plot, position


def f(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


def b(*shape):
    return torch.ones(*shape, dtype=torch.bool)


Q, K, V = f(2, 3, 4, 8), f(2, 3, 6, 8), f(2, 3, 6, 5)
MHA = L.MultiHeadAttention(16, 4)
ATTENTION_FNS = [AF.reference_attention, AF.attention]

CASES = {
    # ---- functional attention: rank, dims, dtypes, masks
    "wrong rank (query 3-D)": (
        lambda fn: fn(f(2, 4, 8), K, V), ValueError,
        r"query must be 4-D .*got 3-D with shape \(2, 4, 8\)"),
    "wrong rank (value 3-D)": (
        lambda fn: fn(Q, K, f(3, 6, 5)), ValueError,
        r"value must be 4-D .*got 3-D with shape \(3, 6, 5\)"),
    "head-dim mismatch": (
        lambda fn: fn(Q, f(2, 3, 6, 7), V), ValueError,
        r"query and key .*head dim.*query \(2, 3, 4, 8\) vs key \(2, 3, 6, 7\)"),
    "Nk mismatch between key and value": (
        lambda fn: fn(Q, K, f(2, 3, 5, 5)), ValueError,
        r"key and value .*Nk.*key \(2, 3, 6, 8\) vs value \(2, 3, 5, 5\)"),
    "batch axes do not broadcast": (
        lambda fn: fn(Q, f(3, 3, 6, 8), f(3, 3, 6, 5)), ValueError,
        r"\(B, H\) of query \(2, 3, 4, 8\), key \(3, 3, 6, 8\) and value \(3, 3, 6, 5\)"),
    "mask does not broadcast": (
        lambda fn: fn(Q, K, V, b(3, 6)), ValueError,
        r"attn_mask with shape \(3, 6\) does not broadcast .*\(2, 3, 4, 6\)"),
    "mask with more dims than the scores": (
        lambda fn: fn(Q, K, V, b(1, 2, 3, 4, 6)), ValueError,
        r"attn_mask with shape \(1, 2, 3, 4, 6\) does not broadcast"),
    "float mask passed as attn_mask": (
        lambda fn: fn(Q, K, V, f(4, 6)), TypeError,
        r"attn_mask must have dtype torch\.bool.*got torch\.float32 with shape \(4, 6\).*bias="),
    "0/1 integer mask passed as attn_mask": (
        lambda fn: fn(Q, K, V, b(4, 6).long()), TypeError,
        r"attn_mask must have dtype torch\.bool.*got torch\.int64 with shape \(4, 6\)"),
    "non-tensor mask": (
        lambda fn: fn(Q, K, V, [[True] * 6] * 4), TypeError,
        r"attn_mask must be a bool torch\.Tensor, got list"),
    "integer dtype inputs": (
        lambda fn: fn(Q.long(), K, V), TypeError,
        r"query must be a floating-point tensor, got dtype torch\.int64 with shape "
        r"\(2, 3, 4, 8\)"),
    "empty key sequence": (
        lambda fn: fn(Q, f(2, 3, 0, 8), f(2, 3, 0, 5)), ValueError,
        r"empty sequence.*key \(2, 3, 0, 8\)"),
    "empty query sequence": (
        lambda fn: fn(f(2, 3, 0, 8), K, V), ValueError,
        r"empty sequence: query \(2, 3, 0, 8\)"),
    "zero head dim": (
        lambda fn: fn(f(2, 3, 4, 0), f(2, 3, 6, 0), V), ValueError,
        r"query has head dim 0: \(2, 3, 4, 0\)"),
    "non-tensor input": (
        lambda fn: fn(Q.tolist(), K, V), TypeError,
        r"query must be a torch\.Tensor.*got list"),
    "mismatched dtypes": (
        lambda fn: fn(Q, K.double(), V), TypeError,
        r"query, key and value must share a dtype, got torch\.float32, torch\.float64 and "
        r"torch\.float32"),
    "bias does not broadcast": (
        lambda fn: fn(Q, K, V, bias=f(5, 6)), ValueError,
        r"bias with shape \(5, 6\) does not broadcast .*\(2, 3, 4, 6\)"),
    "integer bias": (
        lambda fn: fn(Q, K, V, bias=f(4, 6).long()), TypeError,
        r"bias must be a floating-point tensor, got dtype torch\.int64 with shape \(4, 6\)"),
    "dropout_p out of range": (
        lambda fn: fn(Q, K, V, dropout_p=1.5), ValueError,
        r"dropout_p must be a float in \[0, 1\), got 1\.5"),
    "scale of the wrong type": (
        lambda fn: fn(Q, K, V, scale="0.5"), TypeError, r"scale must be a float or None, got str"),
    "mask on another device": (
        lambda fn: fn(Q, K, V, b(4, 6).to("meta")), ValueError,
        r"attn_mask is on meta but query is on cpu"),
    "inputs on different devices": (
        lambda fn: fn(Q, K.to("meta"), V), ValueError,
        r"query, key and value must be on one device, got cpu, meta and cpu"),
}


@pytest.mark.parametrize("fn", ATTENTION_FNS, ids=["reference_attention", "attention"])
@pytest.mark.parametrize("case", list(CASES))
def test_attention_bad_input(fn, case):
    call, exc, pattern = CASES[case]
    with pytest.raises(exc, match=pattern):
        call(fn)


def test_attention_bad_input_with_return_weights():
    """return_weights takes the reference path: the same checks must apply."""
    with pytest.raises(ValueError, match=r"key and value .*key \(2, 3, 6, 8\) vs value "
                                         r"\(2, 3, 5, 5\)"):
        AF.attention(Q, K, f(2, 3, 5, 5), return_weights=True)


OTHER_CASES = {
    # ---- scores and softmax
    "score with a 1-D query": (
        lambda: AF.dot_score(f(4), f(5, 4)), ValueError,
        r"query and key need at least 2 dims.*query \(4,\) and key \(5, 4\)"),
    "score with leading axes that do not broadcast": (
        lambda: AF.dot_score(f(2, 3, 4), f(3, 5, 4)), ValueError,
        r"leading \(batch\) axes of query \(2, 3, 4\) and key \(3, 5, 4\) do not broadcast"),
    "scaled score feature mismatch": (
        lambda: AF.scaled_dot_score(f(2, 3, 4), f(2, 5, 6)), ValueError,
        r"same feature dim.*query \(2, 3, 4\) vs key \(2, 5, 6\)"),
    "general score with a transposed weight": (
        lambda: AF.general_score(f(2, 3, 4), f(2, 5, 6), f(6, 4)), ValueError,
        r"weight must be \(Dq, Dk\) = \(4, 6\), got \(6, 4\)"),
    "additive score w_query of the wrong width": (
        lambda: AF.additive_score(f(2, 3, 4), f(2, 5, 6), f(3, 5), f(3, 6), f(3)), ValueError,
        r"w_query must be \(Hd, Dq\) = \(3, 4\), got \(3, 5\)"),
    "additive score v of the wrong rank": (
        lambda: AF.additive_score(f(2, 3, 4), f(2, 5, 6), f(3, 4), f(3, 6), f(3, 1)), ValueError,
        r"v must be 1-D \(Hd,\), got 2-D with shape \(3, 1\)"),
    "concat score weight of the wrong width": (
        lambda: AF.concat_score(f(2, 3, 4), f(2, 5, 6), f(3, 9), f(3)), ValueError,
        r"weight must be \(Hd, Dq \+ Dk\) = \(Hd, 10\), got \(3, 9\)"),
    "masked_softmax mask does not broadcast": (
        lambda: AF.masked_softmax(f(3, 4), b(3, 5)), ValueError,
        r"mask with shape \(3, 5\) does not broadcast .*\(3, 4\)"),
    "masked_softmax float mask": (
        lambda: AF.masked_softmax(f(3, 4), f(3, 4)), TypeError,
        r"mask must have dtype torch\.bool.*got torch\.float32 with shape \(3, 4\)"),
    "masked_softmax integer scores": (
        lambda: AF.masked_softmax(f(3, 4).long()), TypeError,
        r"scores must be a floating-point tensor, got dtype torch\.int64 with shape \(3, 4\)"),
    "sinusoidal encoding of dim 0": (
        lambda: position.sinusoidal_encoding(4, 0), ValueError, r"dim must be an int >= 1, got 0"),
    "sinusoidal encoding of no positions": (
        lambda: position.sinusoidal_encoding(0, 4), ValueError,
        r"num_positions must be an int >= 1, got 0"),
    # ---- masks
    "negative lengths": (
        lambda: M.padding_mask(torch.tensor([3, -1])), ValueError,
        r"lengths must be >= 0, got min -1 in lengths of shape \(2,\)"),
    "lengths longer than max_len": (
        lambda: M.key_mask(torch.tensor([3, 5]), max_len=4), ValueError,
        r"lengths has a length 5 longer than max_len=4"),
    "float lengths": (
        lambda: M.padding_mask(torch.tensor([3.0, 5.0])), TypeError,
        r"lengths must have an integer dtype, got torch\.float32 with shape \(2,\)"),
    "bool lengths": (
        lambda: M.padding_mask(torch.tensor([True, False])), TypeError,
        r"lengths must have an integer dtype, got torch\.bool"),
    "2-D lengths": (
        lambda: M.padding_mask(torch.tensor([[3, 5]])), ValueError,
        r"lengths must be 1-D \(B,\), got shape \(1, 2\)"),
    "lengths as a list": (
        lambda: M.padding_mask([3, 5]), TypeError,
        r"lengths must be an integer torch\.Tensor.*got list"),
    "causal mask of size 0": (
        lambda: M.causal_mask(0), ValueError, r"nq must be an int >= 1, got 0"),
    "causal mask of float size": (
        lambda: M.causal_mask(3, 2.0), ValueError, r"nk must be an int >= 1, got 2\.0"),
    "combine a float mask": (
        lambda: M.combine_masks(b(2), f(2)), TypeError,
        r"masks\[1\] must be a bool tensor.*got torch\.float32"),
    "combine masks that do not broadcast": (
        lambda: M.combine_masks(b(2, 5), None, b(3, 4)), ValueError,
        r"masks\[2\] with shape \(3, 4\) does not broadcast with the earlier masks' shape "
        r"\(2, 5\)"),
    "mask_to_bias of a float mask": (
        lambda: M.mask_to_bias(f(2, 3)), TypeError,
        r"mask must be a bool tensor.*got torch\.float32"),
    "mask_to_bias to an integer dtype": (
        lambda: M.mask_to_bias(b(2, 3), torch.int32), TypeError,
        r"dtype must be a floating-point dtype, got torch\.int32"),
    "torch key_padding_mask given as float": (
        lambda: M.from_torch_key_padding_mask(f(2, 3)), TypeError,
        r"key_padding_mask must be bool.*got torch\.float32"),
    "torch key_padding_mask of the wrong rank": (
        lambda: M.from_torch_key_padding_mask(b(2, 1, 3)), ValueError,
        r"key_padding_mask must be 2-D \(B, Nk\), got 3-D with shape \(2, 1, 3\)"),
    "valid_lens of the wrong shape": (
        lambda: M.from_valid_lens(torch.tensor([[1, 2, 3]] * 2), 4, 5), ValueError,
        r"valid_lens must be \(B,\) or \(B, Nq=4\), got \(2, 3\)"),
    "valid_lens as a list": (
        lambda: M.from_valid_lens([1, 2], 4, 5), TypeError,
        r"valid_lens must be a torch\.Tensor, got list"),
    # ---- modules
    "module given the wrong embed dim": (
        lambda: MHA(f(2, 5, 12)), ValueError,
        r"query must have last dim E=16, got shape \(2, 5, 12\)"),
    "module given the wrong kdim": (
        lambda: L.MultiHeadAttention(16, 4, kdim=5)(f(2, 5, 16), f(2, 6, 6), f(2, 6, 16)),
        ValueError, r"key must have last dim kdim=5, got shape \(2, 6, 6\)"),
    "module given a 2-D input": (
        lambda: MHA(f(5, 16)), ValueError,
        r"query must be 3-D \(B, N, E\), got 2-D with shape \(5, 16\)"),
    "module given key and value of different lengths": (
        lambda: MHA(f(2, 5, 16), f(2, 6, 16), f(2, 7, 16)), ValueError,
        r"key and value must share \(B, Nk\): key \(2, 6, 16\) vs value \(2, 7, 16\)"),
    "module given query and key of different batch sizes": (
        lambda: MHA(f(2, 5, 16), f(3, 6, 16), f(3, 6, 16)), ValueError,
        r"query and key must share the batch size B: query \(2, 5, 16\) vs key \(3, 6, 16\)"),
    "module given a mask that does not broadcast": (
        lambda: MHA(f(2, 5, 16), attn_mask=b(2, 3, 5, 5)), ValueError,
        r"attn_mask with shape \(2, 3, 5, 5\) does not broadcast .*\(2, 4, 5, 5\)"),
    "module given a float mask": (
        lambda: MHA(f(2, 5, 16), attn_mask=f(5, 5)), TypeError,
        r"attn_mask must have dtype torch\.bool.*got torch\.float32 with shape \(5, 5\)"),
    "module given an integer input": (
        lambda: MHA(f(2, 5, 16).long()), TypeError,
        r"query must be a floating-point tensor, got dtype torch\.int64 with shape \(2, 5, 16\)"),
    "embed_dim not divisible by num_heads": (
        lambda: L.MultiHeadAttention(10, 3), ValueError,
        r"embed_dim=10 must be divisible by num_heads=3"),
    "num_heads of 0": (
        lambda: L.MultiHeadAttention(16, 0), ValueError,
        r"num_heads must be an int >= 1, got 0"),
    "dot-product module with mismatched key dim": (
        lambda: L.DotProductAttention()(f(2, 4, 8), f(2, 6, 7), f(2, 6, 5)), ValueError,
        r"key must have last dim D=8, got shape \(2, 6, 7\)"),
    "dot-product module with key and value of different lengths": (
        lambda: L.DotProductAttention()(f(2, 4, 8), f(2, 6, 8), f(2, 5, 5)), ValueError,
        r"key and value must share \(B, Nk\): key \(2, 6, 8\) vs value \(2, 5, 5\)"),
    "dot-product module with a mask that does not broadcast": (
        lambda: L.DotProductAttention()(f(2, 4, 8), f(2, 6, 8), f(2, 6, 5), b(2, 4, 5)),
        ValueError, r"attn_mask with shape \(2, 4, 5\) does not broadcast .*\(2, 4, 6\)"),
    "additive module with the wrong query size": (
        lambda: L.AdditiveAttention(4, 6, 8)(f(2, 3, 5), f(2, 5, 6), f(2, 5, 2)), ValueError,
        r"query must have last dim Dq=4, got shape \(2, 3, 5\)"),
    "additive module with key and value of different lengths": (
        lambda: L.AdditiveAttention(4, 6, 8)(f(2, 3, 4), f(2, 5, 6), f(2, 4, 2)), ValueError,
        r"key and value must share \(B, Nk\): key \(2, 5, 6\) vs value \(2, 4, 2\)"),
    "positional encoding longer than max_len": (
        lambda: position.PositionalEncoding(8, max_len=10)(f(2, 20, 8)), ValueError,
        r"x with shape \(2, 20, 8\) has 20 positions, more than max_len=10"),
    "positional encoding of the wrong width": (
        lambda: position.PositionalEncoding(8)(f(2, 20, 6)), ValueError,
        r"x must have last dim d_model=8, got shape \(2, 20, 6\)"),
    "split_heads with indivisible width": (
        lambda: L.split_heads(f(2, 5, 10), 3), ValueError,
        r"last dim 10 of \(2, 5, 10\) is not divisible by num_heads=3"),
    "split_heads of a 2-D tensor": (
        lambda: L.split_heads(f(2, 5), 1), ValueError,
        r"x must be 3-D \(B, N, H \* Dh\), got 2-D with shape \(2, 5\)"),
    "merge_heads of a 3-D tensor": (
        lambda: L.merge_heads(f(2, 5, 3)), ValueError,
        r"x must be 4-D \(B, H, N, Dh\), got 3-D with shape \(2, 5, 3\)"),
    # ---- plots
    "heatmap with too few row labels": (
        lambda: plot.show_heatmaps(f(3, 4), row_labels=list("ab")), ValueError,
        r"row_labels has 2 entries but the maps have 3 rows"),
    "heatmap with too many column labels": (
        lambda: plot.show_heatmaps(f(2, 3, 4), col_labels=list("abcde")), ValueError,
        r"col_labels has 5 entries but the maps have 4 columns"),
    "heatmap of a 5-D tensor": (
        lambda: plot.show_heatmaps(f(1, 2, 3, 4, 5)), ValueError,
        r"weights must be 2-D .* got shape \(1, 2, 3, 4, 5\)"),
}


@pytest.mark.parametrize("case", list(OTHER_CASES))
def test_bad_input(case):
    call, exc, pattern = OTHER_CASES[case]
    with pytest.raises(exc, match=pattern):
        call()


def test_every_pattern_names_something():
    """Guard against a pattern so loose that it would match any message."""
    for _call, exc, pattern in list(CASES.values()) + list(OTHER_CASES.values()):
        assert issubclass(exc, (ValueError, TypeError))
        assert re.search(r"[a-z_]{3,}", pattern), pattern
        assert not re.search(pattern, "some unrelated error message"), pattern
