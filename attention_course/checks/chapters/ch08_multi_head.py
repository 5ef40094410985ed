"""Exercises of chapter 8, "Multi-head attention" (``exercises/08_multi_head.ipynb``).

1. ``concat_heads`` -- (B, H, N, D) -> (B, N, H*D): transpose, then reshape.
2. ``multi_head_forward`` -- a whole multi-head self-attention layer from its four matrices.
3. ``expand_kv_heads`` -- grouped-query attention: repeat each K/V head for its query heads.
4. ``answer_kv_cache_mib`` -- predict: the KV cache of a grouped-query model, in MiB.
5. ``answer_gqa_params`` -- predict: the parameters of a grouped-query attention layer.
6. ``my_flop_crossover`` -- open-ended: from which length on does attention dominate the FLOPs?

The references are :mod:`attention_lib.functional`, :mod:`attention_lib.layers` and
:mod:`attention_lib.multihead`, computed in float64. Vaswani et al. (2017), section 3.2.2;
Shazeer (2019); Ainslie et al. (2023).
"""
from __future__ import annotations

import torch

from attention_lib.functional import reference_attention
from attention_lib.layers import MultiHeadAttention
from attention_lib.masks import causal_mask, key_mask
from attention_lib.multihead import attention_cost, kv_cache_bytes, repeat_kv

from ..cases import draw_sizes, generator, randn
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check

ASSIGNMENT_NAME = "08_multi_head"

_VIEW_HINT = ("your heads are scrambled: reshaping (B, H, N, D) straight to (B, N, H*D) (or "
              "(B, N, H*D) straight to (B, H, N, D)) reinterprets the memory without moving the "
              "head axis, so rows no longer are tokens. Move the axis first: "
              "x.transpose(1, 2).reshape(B, N, H * D), and x.view(B, N, H, D).transpose(1, 2) "
              "the other way")


def _dtname(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _merge(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)  # (B, N, H*D)


def _split(x, h):
    b, n, e = x.shape
    return x.reshape(b, n, h, e // h).transpose(1, 2)  # (B, H, N, D)


# =========================================================================== 1. concat_heads
def _ch_ref(x):
    return _merge(x)


CH_MISTAKES = [
    Mistake("reshape without transpose", _VIEW_HINT,
            lambda x: x.reshape(x.shape[0], x.shape[2], -1)),
    Mistake("heads interleaved", "you ordered the features as (D, H): head h must become the "
                                 "contiguous block of features h*D ... (h+1)*D - 1, i.e. "
                                 "transpose to (B, N, H, D) before merging the last two axes",
            lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1)),
]


def _ch_case(seed, dtype, *, sizes=None, noncontig=False, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 3), H=(2, 4), N=(2, 6), D=(2, 5))
    b, h, n, d = s["B"], s["H"], s["N"], s["D"]
    if noncontig:  # as it comes out of split_heads: a transposed view
        x = randn(g, b, n, h, d, dtype=dtype).transpose(1, 2)
    else:
        x = randn(g, b, h, n, d, dtype=dtype)
    label = (f"x ({b}, {h}, {n}, {d}), {_dtname(dtype)}"
             + (", a transposed (non-contiguous) view" if noncontig else ""))
    case = Case((x,), label=label)
    if grad:
        case.wrt, case.upstream = (0,), randn(g, b, n, h * d, dtype=dtype)
    return case


CH_FORBID = ("attention_lib.layers.merge_heads",)


def _ch_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, N, H*D) and dtype", "shape",
                     lambda: [_ch_case(1, f32, sizes=dict(B=2, H=3, N=5, D=4))], values=False),
        output_check("one head: only the axes move", "values",
                     lambda: [_ch_case(11, f64, sizes=dict(B=2, H=1, N=4, D=3))]),
        output_check("several heads, float64", "values",
                     lambda: [_ch_case(s, f64) for s in (12, 13, 14)]),
        output_check("several heads, float32", "values",
                     lambda: [_ch_case(s, f32) for s in (21, 22)]),
        output_check("a non-contiguous input (straight from split heads)", "edge cases",
                     lambda: [_ch_case(31, f64, noncontig=True)]),
        grad_check("gradient with respect to x",
                   lambda: [_ch_case(41, f64, grad=True, sizes=dict(B=2, H=3, N=2, D=2))]),
        trace_check("built from torch operations, not the library's merge_heads", "rules",
                    lambda: [_ch_case(51, f64)], forbid=CH_FORBID),
    ]


CONCAT_HEADS = Exercise(
    "concat_heads", "function",
    "Concatenate the heads: (B, H, N, D) -> (B, N, H*D), head h in features h*D .. (h+1)*D-1.",
    _ch_checks(), signature="concat_heads(x)", reference=_ch_ref, mistakes=CH_MISTAKES,
    forbid=CH_FORBID)


# =========================================================================== 2. forward
def _mh_ref(x, w_q, w_k, w_v, w_o, num_heads, attn_mask=None):
    q, k, v = (_split(x @ w, num_heads) for w in (w_q, w_k, w_v))  # (B, H, N, D)
    return _merge(reference_attention(q, k, v, attn_mask)) @ w_o  # (B, N, E)


def _mh_variant(*, split=_split, merge=_merge, scale=None, out=True, t=False, invert=False):
    def fn(x, w_q, w_k, w_v, w_o, num_heads, attn_mask=None):
        tr = (lambda w: w.T) if t else (lambda w: w)
        q, k, v = (split(x @ tr(w), num_heads) for w in (w_q, w_k, w_v))
        d = q.shape[-1]
        sc = d ** -0.5 if scale is None else scale(x.shape[-1], d)
        m = attn_mask
        if m is not None and invert:
            m = ~m
        s = q @ k.transpose(-2, -1) * sc
        if m is not None:
            s = s.masked_fill(~m, float("-inf"))
        y = merge(s.softmax(-1) @ v)
        return y @ tr(w_o) if out else y
    return fn


def _view_split(x, h):
    b, n, e = x.shape
    return x.reshape(b, h, n, e // h)


def _view_merge(x):
    b, h, n, d = x.shape
    return x.reshape(b, n, h * d)


def _several_heads(case: Case) -> bool:
    return case.args[5] > 1


def _masked(case: Case) -> bool:
    return len(case.args) > 6 and case.args[6] is not None


MH_MISTAKES = [
    Mistake("view without transpose", _VIEW_HINT,
            _mh_variant(split=_view_split, merge=_view_merge), applies=_several_heads),
    Mistake("scaled by the model width", "the scale is 1/sqrt(D) with D = E / H, the size of ONE "
                                         "head, not of the model",
            _mh_variant(scale=lambda e, d: e ** -0.5), applies=_several_heads),
    Mistake("no scale", "the scores are not scaled: divide by sqrt(D), D = E / H the head size",
            _mh_variant(scale=lambda e, d: 1.0)),
    Mistake("output projection missing", "the concatenated heads go through the output "
                                         "matrix: multiply by w_o at the end",
            _mh_variant(out=False)),
    Mistake("weights transposed", "the equations multiply x by the matrices, x @ w_q (E, E); "
                                  "you used the transposes (that is nn.Linear's layout, not "
                                  "this exercise's)",
            _mh_variant(t=True)),
    Mistake("inverted mask", "your output matches an INVERTED mask: True means 'may attend'",
            _mh_variant(invert=True), applies=_masked),
]


def _mh_case(seed, dtype, *, sizes=None, mask=None, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 3), N=(2, 6), H=(2, 4), D=(2, 4))
    b, n, h, d = s["B"], s["N"], s["H"], s["D"]
    e = h * d
    x = randn(g, b, n, e, dtype=dtype)
    ws = [randn(g, e, e, dtype=dtype, scale=e ** -0.5) for _ in range(4)]
    label = f"x ({b}, {n}, {e}), four ({e}, {e}) matrices, num_heads={h}, {_dtname(dtype)}"
    args = (x, *ws, h)
    if mask == "causal":
        args += (causal_mask(n),)
        label += f", causal mask ({n}, {n})"
    elif mask == "padding":
        lengths = torch.randint(1, n + 1, (b,), generator=g)
        args += (key_mask(lengths, n),)
        label += f", key padding mask for lengths {lengths.tolist()}"
    case = Case(args, label=label)
    if grad:
        case.wrt, case.upstream = (0, 1, 2, 3, 4), randn(g, b, n, e, dtype=dtype)
    return case


MH_FORBID = ("attention_lib.layers.MultiHeadAttention", "attention_lib.layers.split_heads",
             "attention_lib.layers.merge_heads",
             "attention_lib.multihead.multi_head_attention_loop",
             "torch.nn.functional.multi_head_attention_forward", "op:multi_head_attention",
             "torch.nn.MultiheadAttention")


def _mh_checks():
    f64, f32 = torch.float64, torch.float32
    fixed = dict(B=2, N=5, H=3, D=2)
    return [
        output_check("output shape (B, N, E) and dtype", "shape",
                     lambda: [_mh_case(1, f32, sizes=fixed)], values=False),
        output_check("one head", "values",
                     lambda: [_mh_case(11, f64, sizes=dict(B=2, N=4, H=1, D=3))]),
        output_check("several heads, float64", "values",
                     lambda: [_mh_case(s, f64, sizes=dict(B=2, N=5, H=h, D=2))
                              for s, h in ((12, 2), (13, 4))]
                     + [_mh_case(14, f64)]),
        output_check("several heads, float32", "values",
                     lambda: [_mh_case(s, f32) for s in (21, 22)]),
        output_check("causal mask (N, N)", "masks",
                     lambda: [_mh_case(31, f64, sizes=fixed, mask="causal")]),
        output_check("key padding mask (B, 1, 1, N)", "masks",
                     lambda: [_mh_case(32, f64, sizes=dict(B=3, N=6, H=2, D=3),
                                       mask="padding")]),
        output_check("one token", "edge cases",
                     lambda: [_mh_case(41, f64, sizes=dict(B=2, N=1, H=2, D=2))]),
        grad_check("gradients of x and of the four matrices",
                   lambda: [_mh_case(51, f64, sizes=dict(B=2, N=3, H=2, D=2), mask="causal",
                                     grad=True)]),
        trace_check("the heads are split and merged here, not by the library or torch",
                    "rules", lambda: [_mh_case(61, f64)], forbid=MH_FORBID),
    ]


MULTI_HEAD_FORWARD = Exercise(
    "multi_head_forward", "function",
    "Multi-head self-attention with given matrices: split, attend per head, merge, project.",
    _mh_checks(),
    signature="multi_head_forward(x, w_q, w_k, w_v, w_o, num_heads, attn_mask=None)",
    reference=_mh_ref, mistakes=MH_MISTAKES, forbid=MH_FORBID)


# =========================================================================== 3. expand_kv_heads
def _kv_ref(x, num_groups):
    return repeat_kv(x, num_groups)


KV_MISTAKES = [
    Mistake("heads tiled", "query head h reads K/V head h // num_groups (consecutive query heads "
                           "share one K/V head: kv0 kv0 kv1 kv1); you tiled them (kv0 kv1 kv0 "
                           "kv1), which is what x.repeat(...) does. Use repeat_interleave, or "
                           "expand a new axis after the head axis",
            lambda x, num_groups: x.repeat(1, num_groups, 1, 1)),
]


def _kv_case(seed, dtype, *, sizes=None, noncontig=False, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 2), Hkv=(2, 4), G=(2, 4), N=(1, 5), D=(1, 4))
    b, hkv, grp, n, d = s["B"], s["Hkv"], s["G"], s["N"], s["D"]
    if noncontig:
        x = randn(g, b, n, hkv, d, dtype=dtype).transpose(1, 2)
    else:
        x = randn(g, b, hkv, n, d, dtype=dtype)
    label = (f"x ({b}, {hkv}, {n}, {d}), num_groups={grp}, {_dtname(dtype)}"
             + (", non-contiguous" if noncontig else ""))
    case = Case((x, grp), label=label)
    if grad:
        case.wrt, case.upstream = (0,), randn(g, b, hkv * grp, n, d, dtype=dtype)
    return case


KV_FORBID = ("attention_lib.multihead.repeat_kv",)


def _kv_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, Hkv * num_groups, N, D) and dtype", "shape",
                     lambda: [_kv_case(1, f32, sizes=dict(B=2, Hkv=3, G=2, N=4, D=5))],
                     values=False),
        output_check("values, float64", "values", lambda: [_kv_case(s, f64) for s in (11, 12)]),
        output_check("values, float32", "values", lambda: [_kv_case(21, f32)]),
        output_check("num_groups = 1: unchanged (multi-head attention)", "edge cases",
                     lambda: [_kv_case(31, f64, sizes=dict(B=2, Hkv=3, G=1, N=3, D=2))]),
        output_check("one K/V head for all (multi-query attention)", "edge cases",
                     lambda: [_kv_case(32, f64, sizes=dict(B=2, Hkv=1, G=4, N=3, D=2))]),
        output_check("a non-contiguous input", "edge cases",
                     lambda: [_kv_case(33, f64, noncontig=True)]),
        grad_check("gradient: each K/V head collects the gradients of its group",
                   lambda: [_kv_case(41, f64, grad=True, sizes=dict(B=1, Hkv=2, G=3, N=2, D=2))]),
        trace_check("built from torch operations, not the library's repeat_kv", "rules",
                    lambda: [_kv_case(51, f64)], forbid=KV_FORBID),
    ]


EXPAND_KV_HEADS = Exercise(
    "expand_kv_heads", "function",
    "Grouped-query attention: repeat each K/V head for the num_groups query heads that share it.",
    _kv_checks(), signature="expand_kv_heads(x, num_groups)", reference=_kv_ref,
    mistakes=KV_MISTAKES, forbid=KV_FORBID)


# =========================================================================== 4. KV cache
#: The model of the question: 24 layers, 32 query heads and 8 K/V heads of size 128, a batch
#: of 4 sequences of 2048 tokens, float16.
KV_MODEL = dict(num_layers=24, num_heads=32, num_kv_heads=8, head_dim=128, batch_size=4,
                seq_len=2048)
_MIB = 2**20


def _cache_mib(num_kv_heads=KV_MODEL["num_kv_heads"], dtype=torch.float16, factor=1) -> float:
    m = KV_MODEL
    return kv_cache_bytes(m["batch_size"], m["seq_len"], num_kv_heads, m["head_dim"],
                          num_layers=m["num_layers"], dtype=dtype) * factor / _MIB


ANSWER_KV_CACHE_MIB = Exercise(
    "answer_kv_cache_mib", "answer",
    "Predict the size in MiB of the KV cache of a grouped-query model.",
    [answer_check("your prediction matches the measurement", _cache_mib, rtol=0.01,
                  wrong=[(_cache_mib(KV_MODEL["num_heads"]),
                          "that is the cache of multi-head attention: with grouped-query "
                          "attention only the 8 K/V heads are cached, not the 32 query heads"),
                         (_cache_mib(factor=0.5), "the cache holds the keys AND the values: "
                                                  "count both"),
                         (_cache_mib(dtype=torch.float32), "float16 takes 2 bytes per number, "
                                                           "not 4"),
                         (_cache_mib(factor=1 / 24), "that is one layer: every layer keeps its "
                                                     "own keys and values")])],
    signature="answer_kv_cache_mib = <number>")


# =========================================================================== 5. GQA params
GQA_MODEL = dict(embed_dim=512, num_heads=16, num_kv_heads=4)


def _gqa_params(num_kv_heads=GQA_MODEL["num_kv_heads"], bias=True) -> float:
    m = GQA_MODEL
    layer = MultiHeadAttention(m["embed_dim"], m["num_heads"], num_kv_heads)
    n = sum(p.numel() for p in layer.parameters())
    if not bias:
        n -= sum(p.numel() for name, p in layer.named_parameters() if name.endswith("bias"))
    return float(n)


ANSWER_GQA_PARAMS = Exercise(
    "answer_gqa_params", "answer",
    "Predict the number of parameters of MultiHeadAttention(512, 16, num_kv_heads=4).",
    [answer_check("your prediction matches the count", _gqa_params, rtol=0.0, atol=0.5,
                  wrong=[(_gqa_params(GQA_MODEL["num_heads"]),
                          "that is multi-head attention: with 4 K/V heads of size 512/16 = 32, "
                          "the key and value projections output 4 * 32 = 128 features, not 512"),
                         (_gqa_params(bias=False), "each of the four nn.Linear projections also "
                                                   "has a bias, one number per output feature")])],
    signature="answer_gqa_params = <number>")


# =========================================================================== 6. crossover
CROSSOVER_E, CROSSOVER_H = 256, 8
CROSSOVER_LENGTHS = tuple(2**i for i in range(4, 14))  # 16 ... 8192


def attention_share(seq_len: int, embed_dim: int = CROSSOVER_E,
                    num_heads: int = CROSSOVER_H) -> float:
    """The fraction of a multi-head layer's forward FLOPs spent in Q K^T and A V."""
    c = attention_cost(1, seq_len, embed_dim, num_heads)
    return (c.flops["scores"] + c.flops["weighted_sum"]) / c.total_flops


def flop_crossover() -> int:
    """The smallest length of :data:`CROSSOVER_LENGTHS` where attention takes >= half."""
    return next(n for n in CROSSOVER_LENGTHS if attention_share(n) >= 0.5)


def _judge_cross_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the length you measured")
    if bad:
        return bad
    if value not in CROSSOVER_LENGTHS:
        return Verdict(False, f"{value:g} is not one of the lengths of the experiment "
                              f"(16, 32, ..., 8192)")
    return Verdict(True, f"N = {int(value)}")


def _judge_cross_value(ex, cases, outcomes):
    v = _judge_cross_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = flop_crossover()
    if int(value) != truth:
        side = "too short" if value < truth else "too long"
        return Verdict(False, f"N = {int(value)} is {side}: count the FLOPs of the projections "
                              f"and of the two attention products at each length",
                       hint="the projections cost 2 * 4 * N * E^2 FLOPs and Q K^T plus A V cost "
                            "2 * 2 * N^2 * E: measure both with FlopCounterMode, or compare them")
    return Verdict(True, f"N = {int(value)}, as counted")


_ONE = [Case(label="the value of my_flop_crossover")]
MY_FLOP_CROSSOVER = Exercise(
    "my_flop_crossover", "experiment",
    "Open-ended: from which length on do Q K^T and A V take at least half of the FLOPs?",
    [Check("a length of the experiment (a power of 2)", "shape", _ONE, _judge_cross_form,
           probe="value"),
     Check("agrees with the FLOP count", "values", _ONE, _judge_cross_value, probe="value")],
    signature="my_flop_crossover = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: multi-head attention",
    [CONCAT_HEADS, MULTI_HEAD_FORWARD, EXPAND_KV_HEADS, ANSWER_KV_CACHE_MIB, ANSWER_GQA_PARAMS,
     MY_FLOP_CROSSOVER]))
