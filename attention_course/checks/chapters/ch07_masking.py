"""Exercises of chapter 7, "Masking" (``exercises/07_masking.ipynb``).

1. ``key_mask_from_lengths`` -- the (B, 1, 1, Nk) key padding mask of a right-padded batch.
2. ``causal_padding_mask`` -- causal AND padding, (B, 1, N, N), for a decoder's padded batch.
3. ``attention_with_torch_padding`` -- attention given ``nn.MultiheadAttention``'s
   ``key_padding_mask`` (True = padding): flip the polarity; empty rows give zeros.
4. ``answer_empty_rows`` -- predict: queries with nothing to attend to under left padding.
5. ``answer_float_mask_weight`` -- predict: the weight a 0/1 float mask leaves on padding.
6. ``my_lookahead`` -- open-ended: how far into the future does a suspect function look?

The references are :mod:`attention_lib.masks` and
:func:`attention_lib.functional.reference_attention`, computed in float64.
"""
from __future__ import annotations

import torch

from attention_lib.functional import masked_softmax, reference_attention
from attention_lib.masks import causal_mask, combine_masks, key_mask, padding_mask

from ...exercise_tools import LOOKAHEAD
from ..cases import draw_sizes, generator, randn
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check

ASSIGNMENT_NAME = "07_masking"

_INVERTED_HINT = ("your mask is INVERTED: here True means 'may attend' (the convention of "
                  "torch's scaled_dot_product_attention), so real tokens are True and padding "
                  "is False")
MASKS_FORBID = ("attention_lib.masks.padding_mask", "attention_lib.masks.key_mask",
                "attention_lib.masks.causal_mask", "attention_lib.masks.combine_masks",
                "attention_lib.masks.from_valid_lens")


def _lengths_case(seed, *, b=None, nk=None, lengths=None, label_extra=""):
    g = generator(seed)
    s = draw_sizes(g, B=(1, 4), Nk=(1, 8))
    b, nk = b or s["B"], nk or s["Nk"]
    if lengths is None:
        lengths = torch.randint(1, nk + 1, (b,), generator=g)
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    label = f"lengths {lengths.tolist()}, num_keys={nk}" + label_extra
    return Case((lengths, nk), label=label, meta=dict(dtype=torch.bool))


# =========================================================================== 1. key mask
def _km_ref(lengths, num_keys):
    return key_mask(lengths, num_keys)  # (B, 1, 1, Nk)


def _km_positions(lengths, num_keys):
    return torch.arange(num_keys)[None, :], lengths[:, None]  # (1, Nk), (B, 1)


KM_MISTAKES = [
    Mistake("inverted mask", _INVERTED_HINT,
            lambda lengths, num_keys: ~key_mask(lengths, num_keys)),
    Mistake("off by one", "key j of a sentence of length L is real for j = 0 .. L-1: use "
                          "j < L, not j <= L",
            lambda lengths, num_keys: (lambda j, n: (j <= n))(*_km_positions(lengths, num_keys))
            [:, None, None, :]),
    Mistake("left padding", "this batch is padded on the RIGHT: the real tokens are the first L "
                            "keys, and the padding comes after them",
            lambda lengths, num_keys: (lambda j, n: (j >= num_keys - n))(
                *_km_positions(lengths, num_keys))[:, None, None, :]),
]


def _km_checks():
    return [
        output_check("output shape (B, 1, 1, Nk), dtype bool", "shape",
                     lambda: [_lengths_case(1, lengths=[3, 1, 4], nk=5)], values=False),
        output_check("random lengths", "values",
                     lambda: [_lengths_case(s) for s in (11, 12, 13)]),
        output_check("num_keys longer than every sentence", "values",
                     lambda: [_lengths_case(14, lengths=[2, 3], nk=7)]),
        output_check("a sentence of length 0 (all padding) and a full one", "edge cases",
                     lambda: [_lengths_case(31, lengths=[0, 4, 2], nk=4)]),
        output_check("one key", "edge cases",
                     lambda: [_lengths_case(32, lengths=[1, 0], nk=1)]),
        trace_check("built from torch operations, not the library's masks", "rules",
                    lambda: [_lengths_case(51)], forbid=MASKS_FORBID),
    ]


KEY_MASK_FROM_LENGTHS = Exercise(
    "key_mask_from_lengths", "function",
    "The key padding mask of a right-padded batch, (B, 1, 1, Nk) bool, True = real token.",
    _km_checks(), signature="key_mask_from_lengths(lengths, num_keys)", reference=_km_ref,
    mistakes=KM_MISTAKES, forbid=MASKS_FORBID)


# =========================================================================== 2. causal + padding
def _cp_ref(lengths, num_keys):
    return combine_masks(key_mask(lengths, num_keys),
                         causal_mask(num_keys))  # (B, 1, N, N)


def _cp_variant(tri):
    def fn(lengths, num_keys):
        i = torch.arange(num_keys)[:, None]  # (N, 1): query
        j = torch.arange(num_keys)[None, :]  # (1, N): key
        pad = key_mask(lengths, num_keys)  # (B, 1, 1, N)
        if tri is None:
            return pad.expand(len(lengths), 1, num_keys, num_keys)
        return pad & tri(i, j)
    return fn


CP_MISTAKES = [
    Mistake("inverted mask", _INVERTED_HINT,
            lambda lengths, num_keys: ~_cp_ref(lengths, num_keys)),
    Mistake("upper triangle", "query i may attend to keys j <= i (the past and itself): a LOWER "
                              "triangle (tril), not the upper one",
            _cp_variant(lambda i, j: j >= i)),
    Mistake("diagonal excluded", "query i may also attend to itself (j <= i, not j < i); "
                                 "otherwise query 0 has nothing to attend to",
            _cp_variant(lambda i, j: j < i)),
    Mistake("one step into the future", "query i sees key i + 1: the causal mask is j <= i "
                                        "(tril with diagonal=0, not diagonal=1)",
            _cp_variant(lambda i, j: j <= i + 1)),
    Mistake("causal part missing", "the padding is masked but the future is not: AND the "
                                   "padding mask with the causal mask j <= i",
            _cp_variant(None)),
    Mistake("padding part missing", "the future is masked but the padding is not: AND the "
                                    "causal mask with the key padding mask",
            lambda lengths, num_keys: causal_mask(num_keys).expand(len(lengths), 1, num_keys,
                                                                   num_keys)),
]


def _cp_checks():
    return [
        output_check("output shape (B, 1, N, N), dtype bool", "shape",
                     lambda: [_lengths_case(1, lengths=[3, 1, 4], nk=5)], values=False),
        output_check("random lengths", "values",
                     lambda: [_lengths_case(s) for s in (11, 12, 13)]),
        output_check("every sentence full (no padding): a plain causal mask", "masks",
                     lambda: [_lengths_case(21, lengths=[6, 6], nk=6)]),
        output_check("short sentences in a long batch", "masks",
                     lambda: [_lengths_case(22, lengths=[1, 2, 7], nk=7)]),
        output_check("a sentence of length 0, and N = 1", "edge cases",
                     lambda: [_lengths_case(31, lengths=[0, 3], nk=3),
                              _lengths_case(32, lengths=[1, 0], nk=1)]),
        trace_check("built from torch operations, not the library's masks", "rules",
                    lambda: [_lengths_case(51)], forbid=MASKS_FORBID),
    ]


CAUSAL_PADDING_MASK = Exercise(
    "causal_padding_mask", "function",
    "Causal AND key padding for a right-padded decoder batch: (B, 1, N, N) bool.",
    _cp_checks(), signature="causal_padding_mask(lengths, num_keys)", reference=_cp_ref,
    mistakes=CP_MISTAKES, forbid=MASKS_FORBID)


# =========================================================================== 3. torch polarity
def _tp_ref(query, key, value, key_padding_mask):
    return reference_attention(query, key, value, (~key_padding_mask)[:, None, None, :])


def _tp_variant(*, keep=lambda kpm: ~kpm, weights=None, scale=None):
    def fn(query, key, value, key_padding_mask):
        d = query.shape[-1]
        s = query @ key.transpose(-2, -1) * (d ** -0.5 if scale is None else scale(d))
        m = keep(key_padding_mask)[:, None, None, :]  # (B, 1, 1, Nk)
        w = weights(s, m) if weights else masked_softmax(s, m)
        return w @ value
    return fn


def _has_empty(case: Case) -> bool:
    return bool(case.args[3].all(-1).any())


TP_MISTAKES = [
    Mistake("polarity not flipped", "nn.MultiheadAttention's key_padding_mask is True where the "
                                    "key is PADDING: the keys you may attend to are "
                                    "~key_padding_mask. Your output attends to the padding only",
            _tp_variant(keep=lambda kpm: kpm)),
    Mistake("no scale", "your output matches attention WITHOUT the 1/sqrt(D) scale",
            _tp_variant(scale=lambda d: 1.0)),
    Mistake("mask after softmax", "the mask is applied AFTER the softmax: the kept weights no "
                                  "longer sum to 1. Mask the scores (-inf) BEFORE normalising",
            _tp_variant(weights=lambda s, m: s.softmax(-1) * m)),
    Mistake("NaN on fully masked rows", "NaN for a sentence that is all padding: every score of "
                                        "its rows is -inf and softmax computes 0/0. Such a query "
                                        "must get zeros: use 0 instead of a row max of -inf, "
                                        "and divide only where the sum is > 0",
            _tp_variant(weights=lambda s, m: s.masked_fill(~m, float("-inf")).softmax(-1)),
            applies=_has_empty),
    Mistake("large negative fill", "a sentence that is all padding gets the average of its "
                                   "padding values: filling with -1e9 (or -1e6) instead of "
                                   "-inf makes every score of an empty row equal. Such a row "
                                   "must be zeros",
            _tp_variant(weights=lambda s, m: s.masked_fill(~m, -1e9).softmax(-1)),
            applies=_has_empty),
]


def _tp_case(seed, dtype, *, sizes=None, lengths=None, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 3), H=(1, 3), Nq=(1, 5), Nk=(2, 7), D=(2, 6), Dv=(1, 4))
    b, h, nq, nk, d, dv = (s[k] for k in ("B", "H", "Nq", "Nk", "D", "Dv"))
    if lengths is None:
        lengths = torch.randint(1, nk + 1, (b,), generator=g)
    lengths = torch.as_tensor(lengths)
    kpm = ~padding_mask(lengths, nk)  # (B, Nk): True = padding, torch's polarity
    q, k = randn(g, b, h, nq, d, dtype=dtype), randn(g, b, h, nk, d, dtype=dtype)
    v = randn(g, b, h, nk, dv, dtype=dtype)
    label = (f"query ({b}, {h}, {nq}, {d}), key ({b}, {h}, {nk}, {d}), value ({b}, {h}, {nk}, "
             f"{dv}), lengths {lengths.tolist()}, {str(dtype).replace('torch.', '')}")
    case = Case((q, k, v, kpm), label=label)
    if grad:
        case.wrt, case.upstream = (0, 1, 2), randn(g, b, h, nq, dv, dtype=dtype)
    return case


TP_FORBID = ("torch.nn.functional.scaled_dot_product_attention", "op:scaled_dot_product",
             "attention_lib.functional.attention", "attention_lib.functional.reference_attention",
             "attention_lib.functional.masked_softmax",
             "attention_lib.masks.from_torch_key_padding_mask")


def _tp_checks():
    f64, f32 = torch.float64, torch.float32
    fixed = dict(B=2, H=3, Nq=4, Nk=6, D=5, Dv=3)
    return [
        output_check("output shape (B, H, Nq, Dv) and dtype", "shape",
                     lambda: [_tp_case(1, f32, sizes=fixed)], values=False),
        output_check("values, float64", "values", lambda: [_tp_case(s, f64) for s in (11, 12)]),
        output_check("values, float32", "values", lambda: [_tp_case(s, f32) for s in (21, 22)]),
        output_check("padding keys get no weight", "masks",
                     lambda: [_tp_case(31, f64, sizes=fixed, lengths=[2, 5])]),
        output_check("a sentence that is all padding gives zeros, not NaN", "edge cases",
                     lambda: [_tp_case(41, f64, sizes=fixed, lengths=[0, 3])]),
        grad_check("gradients of query, key and value, with an all-padding sentence",
                   lambda: [_tp_case(51, f64, sizes=dict(B=2, H=2, Nq=3, Nk=4, D=3, Dv=2),
                                     lengths=[0, 3], grad=True)]),
        trace_check("built from torch operations, not an attention function or converter",
                    "rules", lambda: [_tp_case(61, f64)], forbid=TP_FORBID),
    ]


ATTENTION_WITH_TORCH_PADDING = Exercise(
    "attention_with_torch_padding", "function",
    "Scaled dot-product attention given a torch-style key_padding_mask (True = padding).",
    _tp_checks(), signature="attention_with_torch_padding(query, key, value, key_padding_mask)",
    reference=_tp_ref, mistakes=TP_MISTAKES, forbid=TP_FORBID)


# =========================================================================== 4. empty rows
EMPTY_ROWS_LENGTHS, EMPTY_ROWS_N = (7, 4, 1, 6), 7


def _empty_rows_truth() -> float:
    lengths = torch.tensor(EMPTY_ROWS_LENGTHS)
    n = EMPTY_ROWS_N
    real = torch.arange(n) >= (n - lengths)[:, None]  # (B, N): left padding
    keep = real[:, None, :] & causal_mask(n)  # (B, Nq, Nk)
    return float((~keep.any(-1)).sum())


ANSWER_EMPTY_ROWS = Exercise(
    "answer_empty_rows", "answer",
    "Predict the number of queries with nothing to attend to: left padding + causal mask.",
    [answer_check("your prediction matches the experiment", _empty_rows_truth, rtol=0.0,
                  atol=0.01,
                  wrong=[(0.0, "with RIGHT padding no row is empty (query 0 sees the first, real "
                               "token); with LEFT padding the first queries of a short "
                               "sentence see only padding"),
                         (3.0, "that is the number of sentences that have padding; count the "
                               "empty rows of each")])],
    signature="answer_empty_rows = <number>")


# =========================================================================== 5. float mask
FLOAT_MASK_REAL, FLOAT_MASK_KEYS = 2, 6


def _float_mask_truth() -> float:
    bias = (torch.arange(FLOAT_MASK_KEYS) < FLOAT_MASK_REAL).double()  # 1.0 real, 0.0 padding
    w = torch.softmax(torch.zeros(FLOAT_MASK_KEYS, dtype=torch.float64) + bias, dim=-1)
    return float(w[FLOAT_MASK_REAL:].sum())


ANSWER_FLOAT_MASK_WEIGHT = Exercise(
    "answer_float_mask_weight", "answer",
    "Predict the total weight on padding when a 0/1 float mask is passed as an additive bias.",
    [answer_check("your prediction matches the experiment", _float_mask_truth, rtol=0.02,
                  wrong=[(0.0, "a FLOAT mask is added to the scores, it does not hide anything: "
                               "+1 on the real keys and +0 on the padding"),
                         (4 / 6, "that is the weight with no mask at all; the +1 on the real "
                                 "keys multiplies their unnormalised weight by e")])],
    signature="answer_float_mask_weight = <number>")


# =========================================================================== 6. my_lookahead
def _judge_look_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the number you measured")
    if bad:
        return bad
    if not (value == int(value) and 0 <= value <= 16):
        return Verdict(False, f"{value:g} is not a number of positions (an integer from 0 to 16)")
    return Verdict(True, f"{int(value)} positions")


def _judge_look_value(ex, cases, outcomes):
    v = _judge_look_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    if int(value) != LOOKAHEAD:
        side = "too few" if value < LOOKAHEAD else "too many"
        return Verdict(False, f"{int(value)} is {side}: output i changes when some input j > i "
                              f"changes, for j up to a certain distance; measure that distance",
                       hint="change ONE input position j at a time and record the outputs that "
                            "move: the largest j - i is the answer")
    return Verdict(True, f"{int(value)} future positions, as measured")


_ONE = [Case(label="the value of my_lookahead")]
MYLOOKAHEAD = Exercise(
    "my_lookahead", "experiment",
    "Open-ended: measure how many future positions a suspect attention function can see.",
    [Check("a number of positions (an integer from 0 to 16)", "shape", _ONE, _judge_look_form,
           probe="value"),
     Check("agrees with the measurement", "values", _ONE, _judge_look_value, probe="value")],
    signature="my_lookahead = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: masking",
    [KEY_MASK_FROM_LENGTHS, CAUSAL_PADDING_MASK, ATTENTION_WITH_TORCH_PADDING, ANSWER_EMPTY_ROWS,
     ANSWER_FLOAT_MASK_WEIGHT, MYLOOKAHEAD]))
