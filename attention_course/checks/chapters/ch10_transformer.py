"""Exercises of chapter 10, "A tiny Transformer" (``exercises/10_transformer.ipynb``).

1. ``encoder_layer_forward`` -- one Transformer encoder layer, post-norm or pre-norm, from
   given weights; the reference is :class:`attention_lib.transformer.TransformerEncoderLayer`
   with the weights copied in (itself tested against ``torch.nn.TransformerEncoderLayer``).
2. ``masked_batch_norm`` -- batch normalisation of a padded batch in training mode, with
   statistics over the real tokens only; the reference is
   :class:`attention_lib.transformer.SequenceBatchNorm` with ``token_mask``.
3. ``answer_encoder_layer_params`` -- predict: the parameters of one encoder layer of the
   base Transformer (d_model = 512, 8 heads, d_ff = 2048).
4. ``my_bn_batch_size`` -- open-ended: how many sentences a batch needs before train-mode
   BatchNorm stops adding noise, and what goes wrong with one.

Vaswani et al. (2017), section 3.1-3.3; Ioffe and Szegedy (2015); Xiong et al. (2020).
"""
from __future__ import annotations

import torch
from torch import nn

from attention_lib.masks import causal_mask, key_mask
from attention_lib.transformer import SequenceBatchNorm, TransformerEncoderLayer

from ..cases import draw_sizes, generator, randn
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check

ASSIGNMENT_NAME = "10_transformer"

#: The keys of the ``weights`` dict of :func:`encoder_layer_forward`, with their shapes
#: (E = d_model, F = dim_feedforward). Matrices multiply from the right: ``x @ w_q``.
WEIGHT_SHAPES = {"w_q": "EE", "b_q": "E", "w_k": "EE", "b_k": "E", "w_v": "EE", "b_v": "E",
                 "w_o": "EE", "b_o": "E", "w_1": "EF", "b_1": "F", "w_2": "FE", "b_2": "E",
                 "ln1_weight": "E", "ln1_bias": "E", "ln2_weight": "E", "ln2_bias": "E"}


def _dtname(dtype) -> str:
    return str(dtype).replace("torch.", "")


# =========================================================================== 1. encoder layer
@torch.no_grad()
def _copy_into(layer: TransformerEncoderLayer, w: dict) -> TransformerEncoderLayer:
    att = layer.self_attn
    for name, lin in (("q", att.q_proj), ("k", att.k_proj), ("v", att.v_proj),
                      ("o", att.out_proj)):
        lin.weight.copy_(w[f"w_{name}"].T)  # nn.Linear stores (out, in)
        lin.bias.copy_(w[f"b_{name}"])
    layer.linear1.weight.copy_(w["w_1"].T)
    layer.linear1.bias.copy_(w["b_1"])
    layer.linear2.weight.copy_(w["w_2"].T)
    layer.linear2.bias.copy_(w["b_2"])
    for i, norm in ((1, layer.norm1), (2, layer.norm2)):
        norm.weight.copy_(w[f"ln{i}_weight"])
        norm.bias.copy_(w[f"ln{i}_bias"])
    return layer


def _enc_ref(x, weights, num_heads, mask=None, norm_first=False):
    e, f = weights["w_1"].shape
    layer = TransformerEncoderLayer(e, int(num_heads), f, norm_first=bool(norm_first))
    layer = _copy_into(layer.to(device=x.device, dtype=x.dtype).eval(), weights)
    return layer(x, attn_mask=mask)  # (B, N, E)


def _ln(x, w, b):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def _enc_variant(*, swap_norm=False, res_att=True, res_ff=True, invert=False, scale=None,
                 view=False, final_norm=False, nan=False):
    """The layer written out by hand, with one thing changed (float64, small cases)."""
    def mha(x, w, h, mask):
        b, n, e = x.shape
        d = e // h

        def split(t):
            if view:
                return t.reshape(b, h, n, d)  # scrambles the heads
            return t.reshape(b, n, h, d).transpose(1, 2)  # (B, H, N, D)
        q, k, v = (split(x @ w[f"w_{c}"] + w[f"b_{c}"]) for c in "qkv")
        s = q @ k.transpose(-2, -1) * (d ** -0.5 if scale is None else scale(e, d))
        if mask is not None:
            m = ~mask if invert else mask
            s = s.masked_fill(~m, float("-inf"))
            if nan:
                a = s.softmax(-1)
            else:
                mx = s.amax(-1, keepdim=True)
                p = torch.exp(s - torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx)))
                tot = p.sum(-1, keepdim=True)
                a = p / torch.where(tot > 0, tot, torch.ones_like(tot))
        else:
            a = s.softmax(-1)
        o = a @ v  # (B, H, N, D)
        o = o.reshape(b, n, e) if view else o.transpose(1, 2).reshape(b, n, e)
        return o @ w["w_o"] + w["b_o"]

    def ffn(x, w):
        return torch.relu(x @ w["w_1"] + w["b_1"]) @ w["w_2"] + w["b_2"]

    def fn(x, weights, num_heads, mask=None, norm_first=False):
        w = weights
        pre = bool(norm_first) != swap_norm

        def ln1(t):
            return _ln(t, w["ln1_weight"], w["ln1_bias"])

        def ln2(t):
            return _ln(t, w["ln2_weight"], w["ln2_bias"])

        if pre:
            a = mha(ln1(x), w, num_heads, mask)
            x = x + a if res_att else a
            f = ffn(ln2(x), w)
            x = x + f if res_ff else f
            return ln2(x) if final_norm else x
        a = mha(x, w, num_heads, mask)
        x = ln1(x + a if res_att else a)
        f = ffn(x, w)
        return ln2(x + f if res_ff else f)
    return fn


def _has_mask(case: Case) -> bool:
    return len(case.args) > 3 and case.args[3] is not None


def _several_heads(case: Case) -> bool:
    return case.args[2] > 1 and case.args[0].shape[1] > 1


def _pre_norm(case: Case) -> bool:
    return len(case.args) > 4 and bool(case.args[4])


def _empty_row(case: Case) -> bool:
    if not _has_mask(case):
        return False
    m = case.args[3]
    return bool((~m.expand(m.shape[0], 1, m.shape[-1], m.shape[-1])).all(-1).any())


ENC_MISTAKES = [
    Mistake("layer norm in the wrong place",
            "your output matches the OTHER placement of the layer norms. Post-norm "
            "(norm_first=False, the paper): x = LN1(x + MHA(x)), then LN2(x + FFN(x)). "
            "Pre-norm (norm_first=True): x = x + MHA(LN1(x)), then x + FFN(LN2(x)), with no "
            "norm on the residual path",
            _enc_variant(swap_norm=True)),
    Mistake("residual missing around attention",
            "the attention sublayer has no residual connection: ADD its output to its input "
            "(x + MHA(...)) before (post-norm) or instead of (pre-norm) normalising",
            _enc_variant(res_att=False)),
    Mistake("residual missing around the feed-forward network",
            "the feed-forward sublayer has no residual connection: add its input back, "
            "x + FFN(...)",
            _enc_variant(res_ff=False)),
    Mistake("inverted mask",
            "your output matches an INVERTED mask: here True means 'may attend' (the "
            "library's and SDPA's convention); torch's src_key_padding_mask is the opposite",
            _enc_variant(invert=True), applies=_has_mask),
    Mistake("NaN on fully masked rows",
            "NaN where a query has no key to attend to: softmax of a row of -inf is "
            "0/0. Such a row must give attention output zeros (before the output projection)",
            _enc_variant(nan=True), applies=_empty_row),
    Mistake("no scale", "the scores are not scaled: divide q k^T by sqrt(D), D = E / H the "
                        "width of one head",
            _enc_variant(scale=lambda e, d: 1.0)),
    Mistake("scaled by the model width", "the scale is 1/sqrt(D) with D = E / H, the width of "
                                         "ONE head, not of the model",
            _enc_variant(scale=lambda e, d: e ** -0.5), applies=lambda c: c.args[2] > 1),
    Mistake("view without transpose",
            "the heads are scrambled: x @ w_q is (B, N, E); reshape it to (B, N, H, D) and "
            "THEN transpose to (B, H, N, D) (a plain view/reshape to (B, H, N, D) mixes "
            "positions and heads). Merge back the same way",
            _enc_variant(view=True), applies=_several_heads),
    Mistake("final norm in pre-norm",
            "a pre-norm LAYER ends with the residual addition x + FFN(LN2(x)): the final "
            "normalisation of a pre-norm model belongs to the stack, after the last layer",
            _enc_variant(final_norm=True), applies=_pre_norm),
]


def make_encoder_weights(g: torch.Generator, e: int, f: int, dtype=torch.float64) -> dict:
    """Random weights in the layout of :func:`encoder_layer_forward` (x @ w)."""
    sizes = {"E": e, "F": f}
    out = {}
    for name, shape in WEIGHT_SHAPES.items():
        dims = [sizes[c] for c in shape]
        if name.startswith("w_"):
            out[name] = randn(g, *dims, dtype=dtype, scale=dims[0] ** -0.5)
        elif name.endswith("_weight"):
            out[name] = (1.0 + randn(g, *dims, scale=0.2)).to(dtype)
        else:
            out[name] = randn(g, *dims, dtype=dtype, scale=0.2)
    return out


def _enc_case(seed, dtype, *, sizes=None, norm_first=False, mask=None, grad=False):
    """mask: None | 'padding' | 'causal' | 'empty' (batch element 0 has no real token)."""
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 3), N=(2, 6), H=(1, 3), D=(1, 3), F=(2, 12))
    b, n, h, d, f = s["B"], s["N"], s["H"], s["D"], s["F"]
    e = h * d
    x = randn(g, b, n, e, dtype=dtype)
    w = make_encoder_weights(g, e, f, dtype)
    label = (f"x ({b}, {n}, {e}), num_heads={h}, dim_feedforward={f}, "
             f"norm_first={norm_first}, {_dtname(dtype)}")
    m = None
    if mask == "causal":
        m = causal_mask(n)
        label += f", causal mask ({n}, {n})"
    elif mask in ("padding", "empty"):
        lengths = torch.randint(1, n + 1, (b,), generator=g)
        if mask == "empty":
            lengths[0] = 0
        m = key_mask(lengths, n)  # (B, 1, 1, N)
        label += f", key padding mask (B, 1, 1, N) for lengths {lengths.tolist()}"
    case = Case((x, w, h, m, norm_first), label=label)
    if grad:
        case.wrt, case.upstream = (0,), randn(g, b, n, e, dtype=dtype)
    return case


ENC_FORBID = ("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerEncoder",
              "attention_lib.transformer.TransformerEncoderLayer",
              "attention_lib.layers.MultiHeadAttention", "torch.nn.MultiheadAttention",
              "torch.nn.functional.multi_head_attention_forward",
              "op:multi_head_attention", "op:transformer_encoder_layer")


def _enc_checks():
    f64, f32 = torch.float64, torch.float32
    fixed = dict(B=2, N=5, H=2, D=3, F=10)
    return [
        output_check("output shape (B, N, E) and dtype", "shape",
                     lambda: [_enc_case(1, f32, sizes=fixed)], values=False),
        output_check("post-norm (the paper), float64", "values",
                     lambda: [_enc_case(s, f64) for s in (11, 12, 13)]),
        output_check("pre-norm, float64", "values",
                     lambda: [_enc_case(s, f64, norm_first=True) for s in (14, 15, 16)]),
        output_check("post-norm and pre-norm, float32", "values",
                     lambda: [_enc_case(21, f32), _enc_case(22, f32, norm_first=True)]),
        output_check("key padding mask (B, 1, 1, N), True = real token", "masks",
                     lambda: [_enc_case(31, f64, sizes=dict(B=3, N=6, H=2, D=2, F=8),
                                        mask="padding"),
                              _enc_case(32, f64, mask="padding", norm_first=True)]),
        output_check("causal mask (N, N)", "masks",
                     lambda: [_enc_case(33, f64, sizes=fixed, mask="causal")]),
        output_check("one token (N = 1)", "edge cases",
                     lambda: [_enc_case(41, f64, sizes=dict(B=2, N=1, H=2, D=2, F=5))]),
        output_check("a sentence with no real token: finite output, no NaN", "edge cases",
                     lambda: [_enc_case(42, f64, sizes=dict(B=2, N=4, H=2, D=2, F=6),
                                        mask="empty")]),
        grad_check("gradient with respect to x, pre-norm, with a padding mask",
                   lambda: [_enc_case(51, f64, sizes=dict(B=2, N=4, H=2, D=2, F=6),
                                      mask="padding", norm_first=True, grad=True)]),
        trace_check("built from torch operations, not a ready-made layer or attention",
                    "rules", lambda: [_enc_case(61, f64, mask="padding")], forbid=ENC_FORBID),
    ]


ENCODER_LAYER_FORWARD = Exercise(
    "encoder_layer_forward", "function",
    "One Transformer encoder layer, post-norm or pre-norm, from given weights and a bool mask.",
    _enc_checks(),
    signature="encoder_layer_forward(x, weights, num_heads, mask=None, norm_first=False)",
    reference=_enc_ref, mistakes=ENC_MISTAKES, forbid=ENC_FORBID)


# =========================================================================== 2. batch norm
def _bn_ref(x, token_mask, weight, bias, eps=1e-5):
    bn = SequenceBatchNorm(x.shape[-1], eps=eps).to(device=x.device, dtype=x.dtype).train()
    with torch.no_grad():
        bn.bn.weight.copy_(weight)
        bn.bn.bias.copy_(bias)
    return bn(x, token_mask)  # (B, N, d)


def _bn_variant(stats):
    def fn(x, token_mask, weight, bias, eps=1e-5):
        mean, var = stats(x, token_mask)
        return (x - mean) / torch.sqrt(var + eps) * weight + bias
    return fn


def _real(x, token_mask):
    return x[token_mask]  # (M, d)


def _all_positions(x, token_mask):
    flat = x.reshape(-1, x.shape[-1])
    return flat.mean(0), flat.var(0, unbiased=False)


def _unbiased(x, token_mask):
    r = _real(x, token_mask)
    return r.mean(0), r.var(0, unbiased=True)


def _per_sentence(x, token_mask):
    w = token_mask[..., None].to(x.dtype)  # (B, N, 1)
    cnt = w.sum(1, keepdim=True).clamp_min(1)
    mean = (x * w).sum(1, keepdim=True) / cnt  # (B, 1, d)
    var = (((x - mean) ** 2) * w).sum(1, keepdim=True) / cnt
    return mean, var


def _per_position(x, token_mask):
    return x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)


def _mean_over_all(x, token_mask):
    w = token_mask[..., None].to(x.dtype)
    flat_n = x.shape[0] * x.shape[1]
    mean = (x * w).sum((0, 1)) / flat_n  # divided by every position, padding included
    var = (((x - mean) ** 2) * w).sum((0, 1)) / flat_n
    return mean, var


def _has_padding(case: Case) -> bool:
    return not bool(case.args[1].all())


BN_MISTAKES = [
    Mistake("padding included in the statistics",
            "your output matches BatchNorm over EVERY position, padding included: the mean and "
            "variance must be taken over the real tokens only (x[token_mask])",
            _bn_variant(_all_positions), applies=_has_padding),
    Mistake("masked sum divided by all positions",
            "you zeroed the padding but then divided by the number of ALL positions: divide "
            "the sums by the number of real tokens, token_mask.sum()",
            _bn_variant(_mean_over_all), applies=_has_padding),
    Mistake("unbiased variance",
            "BatchNorm normalises with the biased variance (divide by M, not M - 1): "
            "var(unbiased=False)",
            _bn_variant(_unbiased)),
    Mistake("statistics per sentence",
            "the statistics are over the real tokens of the WHOLE batch, one mean per feature, "
            "not one per sentence",
            _bn_variant(_per_sentence)),
    Mistake("statistics over the features",
            "that is layer normalisation (statistics over the features of each position): "
            "batch normalisation takes each feature's statistics over the batch's tokens",
            _bn_variant(_per_position)),
]


def _bn_case(seed, dtype, *, sizes=None, lengths=None, all_real=False, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 4), N=(2, 7), d=(1, 6))
    b, n, d = s["B"], s["N"], s["d"]
    x = (randn(g, b, n, d) * 2.0 + randn(g, 1, 1, d)).to(dtype)
    weight = (1.0 + randn(g, d, scale=0.3)).to(dtype)
    bias = randn(g, d, dtype=dtype, scale=0.3)
    if lengths is None:
        lengths = [n] * b if all_real else torch.randint(1, n + 1, (b,), generator=g).tolist()
        if not all_real and sum(lengths) < 2:
            lengths[0] = n
    token_mask = torch.arange(n) < torch.tensor(lengths)[:, None]  # (B, N)
    label = f"x ({b}, {n}, {d}) with lengths {list(lengths)}, {_dtname(dtype)}"
    case = Case((x, token_mask, weight, bias), label=label)
    if grad:
        case.wrt, case.upstream = (0, 2, 3), randn(g, b, n, d, dtype=dtype)
    return case


BN_FORBID = ("attention_lib.transformer.SequenceBatchNorm", "torch.nn.BatchNorm1d",
             "torch.nn.functional.batch_norm", "op:batch_norm")


def _bn_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, N, d) and dtype", "shape",
                     lambda: [_bn_case(1, f32, sizes=dict(B=3, N=5, d=4))], values=False),
        output_check("no padding: plain batch normalisation, float64", "values",
                     lambda: [_bn_case(11, f64, all_real=True)]),
        output_check("padded batches, float64", "masks",
                     lambda: [_bn_case(s, f64) for s in (21, 22, 23)]),
        output_check("padded batches, float32", "masks",
                     lambda: [_bn_case(s, f32) for s in (24, 25)]),
        output_check("a batch of one sentence", "edge cases",
                     lambda: [_bn_case(31, f64, sizes=dict(B=1, N=6, d=3), lengths=[4])]),
        output_check("a sentence with no real token in the batch", "edge cases",
                     lambda: [_bn_case(32, f64, sizes=dict(B=3, N=4, d=3),
                                       lengths=[0, 3, 2])]),
        grad_check("gradients of x, weight and bias",
                   lambda: [_bn_case(41, f64, sizes=dict(B=2, N=4, d=3), lengths=[4, 2],
                                     grad=True)]),
        trace_check("computed with torch operations, not a ready-made BatchNorm", "rules",
                    lambda: [_bn_case(51, f64)], forbid=BN_FORBID),
    ]


MASKED_BATCH_NORM = Exercise(
    "masked_batch_norm", "function",
    "Training-mode batch normalisation of a padded batch, statistics over the real tokens.",
    _bn_checks(), signature="masked_batch_norm(x, token_mask, weight, bias, eps=1e-05)",
    reference=_bn_ref, mistakes=BN_MISTAKES, forbid=BN_FORBID)


# =========================================================================== 3. parameters
PARAMS_QUESTION = dict(d_model=512, nhead=8, dim_feedforward=2048)


def encoder_layer_params(**sizes) -> int:
    """Parameters of ``torch.nn.TransformerEncoderLayer`` (built on the meta device)."""
    layer = nn.TransformerEncoderLayer(**(sizes or PARAMS_QUESTION), device="meta")
    return sum(p.numel() for p in layer.parameters())


def _params_wrong():
    e, h, f = (PARAMS_QUESTION[k] for k in ("d_model", "nhead", "dim_feedforward"))
    att, ffn, norms = 4 * (e * e + e), e * f + f + f * e + e, 2 * 2 * e
    return [(float(4 * e * e + 2 * e * f), "count the biases and the LayerNorms' scales and "
                                           "shifts too"),
            (float(att + ffn), "each of the two LayerNorms has a scale and a shift of size "
                               "d_model"),
            (float(h * att + ffn + norms), "the heads share the d_model x d_model projections "
                                           "(each head gets d_model / H of their columns): "
                                           "more heads do not mean more parameters"),
            (float(att + norms), "the feed-forward network has two layers, d_model -> d_ff -> "
                                 "d_model, with their biases: it holds most of the parameters")]


ANSWER_ENCODER_LAYER_PARAMS = Exercise(
    "answer_encoder_layer_params", "answer",
    "Predict the number of parameters of one encoder layer of the base Transformer.",
    [answer_check("your prediction matches nn.TransformerEncoderLayer", encoder_layer_params,
                  rtol=0.0, atol=0.5, wrong=_params_wrong())],
    signature="answer_encoder_layer_params = <number>")


# =========================================================================== 4. experiment
BN_EXPERIMENT = dict(d=16, length=4, trials=32, level=0.1)
BN_BATCH_SIZES = tuple(2**i for i in range(0, 9))  # 1 ... 256
_BN = {}


def bn_population(d: int = BN_EXPERIMENT["d"]):
    """The mean and standard deviation of each feature of the experiment's tokens."""
    g = generator(1010)
    return randn(g, d, scale=2.0), 0.5 + 1.5 * torch.rand(d, generator=g, dtype=torch.float64)


def bn_noise(batch_size: int, seed: int = 0) -> float:
    """Mean |train-mode BatchNorm - exact normalisation| of one sentence's tokens, over
    batches of ``batch_size`` sentences of 4 tokens, averaged over 32 batches."""
    d, length, trials = (BN_EXPERIMENT[k] for k in ("d", "length", "trials"))
    mu, sigma = bn_population(d)
    g = generator(seed + 7 * batch_size)
    gaps = []
    for _ in range(trials):
        x = mu + sigma * torch.randn(batch_size, length, d, generator=g, dtype=torch.float64)
        flat = x.reshape(-1, d)
        m, v = flat.mean(0), flat.var(0, unbiased=False)
        train = (x[0] - m) / torch.sqrt(v + 1e-5)  # (length, d)
        exact = (x[0] - mu) / sigma
        gaps.append(float((train - exact).abs().mean()))
    return sum(gaps) / len(gaps)


def quiet_batch_size() -> int:
    """The smallest batch size in :data:`BN_BATCH_SIZES` with ``bn_noise`` below 0.1."""
    if "b" not in _BN:
        _BN["b"] = next((b for b in BN_BATCH_SIZES if bn_noise(b) < BN_EXPERIMENT["level"]),
                        BN_BATCH_SIZES[-1])
    return _BN["b"]


def _judge_bn_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the batch size you found")
    if bad:
        return bad
    if value not in BN_BATCH_SIZES:
        return Verdict(False, f"{value:g} is not one of the batch sizes of the experiment "
                              f"(1, 2, 4, ..., 256)")
    return Verdict(True, f"batch size {int(value)}")


def _judge_bn_value(ex, cases, outcomes):
    v = _judge_bn_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = quiet_batch_size()
    if not truth / 2 <= value <= truth * 2:
        side = "too small" if value < truth else "too large"
        return Verdict(False, f"a batch of {int(value)} sentences is {side}: run bn_noise at "
                              f"every batch size of the list and take the first one below "
                              f"{BN_EXPERIMENT['level']}",
                       hint="the batch statistics are estimated from batch_size x 4 tokens: "
                            "their error shrinks like 1 / sqrt(number of tokens)")
    return Verdict(True, f"{int(value)} sentences agrees with the measurement (within a "
                         f"factor 2)")


_ONE = [Case(label="the value of my_bn_batch_size")]
MY_BN_BATCH_SIZE = Exercise(
    "my_bn_batch_size", "experiment",
    "Open-ended: how many sentences per batch before train-mode BatchNorm's noise falls "
    "below 0.1, and what goes wrong with one sentence?",
    [Check("a batch size of the experiment (a power of 2)", "shape", _ONE, _judge_bn_form,
           probe="value"),
     Check("agrees with the measurement within a factor 2", "values", _ONE, _judge_bn_value,
           probe="value")],
    signature="my_bn_batch_size = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: a tiny Transformer",
    [ENCODER_LAYER_FORWARD, MASKED_BATCH_NORM, ANSWER_ENCODER_LAYER_PARAMS, MY_BN_BATCH_SIZE]))
