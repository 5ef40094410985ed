"""Exercises of chapter 6, "Self-attention and position" (``exercises/06_self_attention.ipynb``).

1. ``sinusoidal_positions`` -- the sinusoidal encoding of any (float) positions.
2. ``apply_rotary`` -- rotary embedding: rotate feature pairs (2i, 2i+1) by p * theta_i.
3. ``self_attention_layer`` -- Q, K, V from one sequence with given matrices, scaled by 1/sqrt(Dk).
4. ``answer_distinct_rows`` -- predict: distinct outputs of "the cat sat on the mat" (no positions).
5. ``answer_rotary_shift`` -- predict: a rotary score after shifting both positions by 100.
6. ``my_rope_base`` -- open-ended: a rotary base that keeps near and middle offsets similar.

The references are :mod:`attention_lib.functional` and :mod:`attention_lib.position`,
computed in float64. Vaswani et al. (2017), section 3.5; Su et al. (2021), eq. 34.
"""
from __future__ import annotations

import math

import torch

from attention_lib.functional import masked_softmax, reference_attention
from attention_lib.position import rotary_embedding, rotary_frequencies

from ..cases import draw_sizes, generator, randn, uniform
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check

ASSIGNMENT_NAME = "06_self_attention"


def _dtname(dtype) -> str:
    return str(dtype).replace("torch.", "")


# =========================================================================== 1. sinusoidal
def _angles(positions, dim, exponent=lambda i, dim: -i / dim, base=10000.0):
    i = torch.arange(0, dim, 2, dtype=torch.float64)  # 2i = 0, 2, ..., dim - 2
    freq = base ** exponent(i, dim)  # (dim/2,)
    return positions[:, None].double() * freq  # (N, dim/2)


def _interleave(a, b):
    return torch.stack((a, b), dim=-1).flatten(-2)  # (..., 2 * n): a0 b0 a1 b1 ...


def _sin_ref(positions, dim):
    ang = _angles(positions, dim)
    return _interleave(ang.sin(), ang.cos())  # (N, dim)


def _sin_own_index(positions, dim):
    j = torch.arange(dim, dtype=torch.float64)  # each column its own exponent j / dim
    ang = positions[:, None].double() * 10000.0 ** (-j / dim)
    return torch.where(j % 2 == 0, ang.sin(), ang.cos())


SIN_MISTAKES = [
    Mistake("sin and cos swapped", "the even features (0, 2, ...) are the SINES and the odd "
                                   "features the cosines: P[p, 2i] = sin(p w_i), "
                                   "P[p, 2i+1] = cos(p w_i)",
            lambda positions, dim: (lambda a: _interleave(a.cos(), a.sin()))(
                _angles(positions, dim))),
    Mistake("halves", "the sines and cosines are interleaved, not in two halves: feature 2i is "
                      "sin(p w_i) and feature 2i+1 is cos(p w_i) of the SAME frequency w_i",
            lambda positions, dim: (lambda a: torch.cat((a.sin(), a.cos()), -1))(
                _angles(positions, dim))),
    Mistake("exponent without the 2", "the frequency of pair i is 10000^(-2i/dim): you used "
                                      "10000^(-i/dim), with i the pair's index",
            lambda positions, dim: (lambda a: _interleave(a.sin(), a.cos()))(
                _angles(positions, dim, exponent=lambda i, d: -i / 2 / d))),
    Mistake("exponent sign", "the frequencies DEcrease along the features: w_i = 10000^(-2i/dim),"
                             " a division by 10000^(2i/dim), not a multiplication",
            lambda positions, dim: (lambda a: _interleave(a.sin(), a.cos()))(
                _angles(positions, dim, exponent=lambda i, d: i / d))),
    Mistake("cosine at its own index", "the cosine of feature 2i+1 uses the SAME frequency as the "
                                       "sine of feature 2i (exponent 2i/dim, not (2i+1)/dim): "
                                       "each pair is one clock hand",
            _sin_own_index),
]


def _sin_case(seed, dtype, *, n=None, dim=None, low=0.0, high=50.0, arange=False, grad=False):
    g = generator(seed)
    s = draw_sizes(g, N=(1, 12), half=(2, 8))
    n, dim = n or s["N"], dim or 2 * s["half"]
    if arange:
        positions = torch.arange(n, dtype=dtype)
        label = f"positions arange({n}), dim={dim}, {_dtname(dtype)}"
    else:
        positions = uniform(g, n, low=low, high=high, dtype=dtype)
        label = f"{n} random positions in [{low:g}, {high:g}], dim={dim}, {_dtname(dtype)}"
    case = Case((positions, dim), label=label)
    if grad:
        case.wrt, case.upstream = (0,), randn(g, n, dim, dtype=dtype)
    return case


SIN_FORBID = ("attention_lib.position.sinusoidal_encoding",
              "attention_lib.position.PositionalEncoding",
              "attention_lib.position.sinusoidal_shift_matrix")


def _sin_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (N, dim) and dtype", "shape",
                     lambda: [_sin_case(1, f32, n=7, dim=10)], values=False),
        output_check("positions 0 .. N-1, float64", "values",
                     lambda: [_sin_case(s, f64, arange=True) for s in (11, 12)]),
        output_check("random real positions, float64", "values",
                     lambda: [_sin_case(s, f64) for s in (13, 14, 15)]),
        output_check("random positions, float32", "values",
                     lambda: [_sin_case(s, f32, high=20.0) for s in (21, 22)]),
        output_check("dim = 2: a single pair, frequency 1", "edge cases",
                     lambda: [_sin_case(31, f64, dim=2, n=5)]),
        output_check("far positions (around 5000), float64", "edge cases",
                     lambda: [_sin_case(32, f64, dim=16, low=4900.0, high=5100.0)]),
        grad_check("gradient with respect to the positions",
                   lambda: [_sin_case(41, f64, n=6, dim=8, grad=True)]),
        trace_check("computed with torch operations, not the library's encoding", "rules",
                    lambda: [_sin_case(51, f64)], forbid=SIN_FORBID),
    ]


SINUSOIDAL_POSITIONS = Exercise(
    "sinusoidal_positions", "function",
    "The sinusoidal position encoding of Vaswani et al. for any positions: sin/cos pairs.",
    _sin_checks(), signature="sinusoidal_positions(positions, dim)", reference=_sin_ref,
    mistakes=SIN_MISTAKES, forbid=SIN_FORBID)


# =========================================================================== 2. rotary
def _rot_ref(x, positions):
    return rotary_embedding(x, positions)


def _rot_variant(*, sign=1.0, interleaved=True, exponent=None, out_halves=False, pos=True):
    def fn(x, positions):
        d, n = x.shape[-1], x.shape[-2]
        p = positions if pos else torch.arange(n)
        i = torch.arange(0, d, 2, dtype=torch.float64)
        theta = 10000.0 ** (exponent(i, d) if exponent else -i / d)  # (D/2,)
        ang = p.double()[:, None] * theta * sign  # (N, D/2)
        if interleaved:
            x1, x2 = x[..., 0::2], x[..., 1::2]
        else:
            x1, x2 = x[..., : d // 2], x[..., d // 2:]
        r1 = x1 * ang.cos() - x2 * ang.sin()
        r2 = x1 * ang.sin() + x2 * ang.cos()
        if interleaved and not out_halves:
            return _interleave(r1, r2)
        return torch.cat((r1, r2), -1)
    return fn


def _not_arange(case: Case) -> bool:
    x, p = case.args
    return not torch.equal(p.double(), torch.arange(x.shape[-2], dtype=torch.float64))


ROT_MISTAKES = [
    Mistake("rotated the wrong way", "you rotated by -p*theta: the pair (x1, x2) becomes "
                                     "(x1 cos - x2 sin, x1 sin + x2 cos), the complex number "
                                     "x1 + i x2 multiplied by exp(+i p theta)",
            _rot_variant(sign=-1.0)),
    Mistake("pairs (i, i + D/2)", "this exercise pairs features (2i, 2i+1), as in the RoFormer "
                                  "paper; you paired feature i with feature i + D/2 (the "
                                  "'rotate_half' layout of GPT-NeoX)",
            _rot_variant(interleaved=False)),
    Mistake("pairs written back as halves", "you rotated the right pairs (2i, 2i+1) but wrote the "
                                            "results back as two halves: put the rotated pair "
                                            "back into features 2i and 2i+1 (torch.stack(..., "
                                            "dim=-1).flatten(-2))",
            _rot_variant(out_halves=True)),
    Mistake("exponent without the 2", "theta_i = 10000^(-2i/D) for pair i: you used "
                                      "10000^(-i/D)",
            _rot_variant(exponent=lambda i, d: -i / 2 / d)),
    Mistake("positions ignored", "you rotated row n by n * theta: use the given `positions` "
                                 "(e.g. offset by the length of a KV cache), not arange(N)",
            _rot_variant(pos=False), applies=_not_arange),
]


def _rot_case(seed, dtype, *, sizes=None, offset=None, grad=False, ints=True):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 2), H=(1, 3), N=(2, 7), half=(2, 6))
    b, h, n, d = s["B"], s["H"], s["N"], 2 * s["half"]
    x = randn(g, b, h, n, d, dtype=dtype)
    if offset is not None:
        positions = torch.arange(n) + offset
        plabel = f"positions {offset} + arange({n})"
    elif ints:
        positions = torch.randint(0, 50, (n,), generator=g)
        plabel = "random int positions in [0, 50)"
    else:
        positions = uniform(g, n, low=0.0, high=30.0, dtype=dtype)
        plabel = "random real positions in [0, 30)"
    label = f"x ({b}, {h}, {n}, {d}), {plabel}, {_dtname(dtype)}"
    case = Case((x, positions), label=label)
    if grad:
        case.wrt, case.upstream = (0,), randn(g, b, h, n, d, dtype=dtype)
    return case


ROT_FORBID = ("attention_lib.position.rotary_embedding", "attention_lib.position._rotate",
              "attention_lib.position.RotaryEmbedding")


def _rot_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, H, N, D), the shape and dtype of x", "shape",
                     lambda: [_rot_case(1, f32, sizes=dict(B=2, H=3, N=5, half=4))],
                     values=False),
        output_check("values, int positions, float64", "values",
                     lambda: [_rot_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, real positions, float64", "values",
                     lambda: [_rot_case(14, f64, ints=False)]),
        output_check("values, float32", "values", lambda: [_rot_case(s, f32) for s in (21, 22)]),
        output_check("D = 2: one pair, rotated by p radians", "edge cases",
                     lambda: [_rot_case(31, f64, sizes=dict(B=1, H=2, N=4, half=1))]),
        output_check("positions offset by 1000 (decoding after a cache), float64", "edge cases",
                     lambda: [_rot_case(32, f64, offset=1000)]),
        grad_check("gradient with respect to x",
                   lambda: [_rot_case(41, f64, grad=True, sizes=dict(B=1, H=2, N=4, half=3))]),
        trace_check("computed with torch operations, not the library's rotary embedding",
                    "rules", lambda: [_rot_case(51, f64)], forbid=ROT_FORBID),
    ]


APPLY_ROTARY = Exercise(
    "apply_rotary", "function",
    "Rotary position embedding: rotate each feature pair (2i, 2i+1) by position * theta_i.",
    _rot_checks(), signature="apply_rotary(x, positions)", reference=_rot_ref,
    mistakes=ROT_MISTAKES, forbid=ROT_FORBID)


# =========================================================================== 3. self-attention
def _sa_ref(x, w_q, w_k, w_v):
    q, k, v = (x @ w_q)[:, None], (x @ w_k)[:, None], (x @ w_v)[:, None]  # (B, 1, N, .)
    return reference_attention(q, k, v)[:, 0]  # (B, N, Dv)


def _sa_variant(*, scale=None, dim=-1, transpose=False):
    def fn(x, w_q, w_k, w_v):
        t = (lambda w: w.T) if transpose else (lambda w: w)
        q, k, v = x @ t(w_q), x @ t(w_k), x @ t(w_v)
        s = q @ k.transpose(-2, -1)  # (B, N, N)
        s = s * (scale(x.shape[-1], q.shape[-1]) if scale else q.shape[-1] ** -0.5)
        return masked_softmax(s, dim=dim) @ v
    return fn


def _square(case: Case) -> bool:
    x, w_q, w_k, w_v = case.args
    return w_q.shape[0] == w_q.shape[1] and w_v.shape[0] == w_v.shape[1]


SA_MISTAKES = [
    Mistake("no scale", "your output matches self-attention WITHOUT the 1/sqrt(Dk) scale: divide "
                        "the scores Q K^T by sqrt(Dk), Dk = the width of a query",
            _sa_variant(scale=lambda e, dk: 1.0)),
    Mistake("scaled by the model width", "the scale is 1/sqrt(Dk), the width of the queries and "
                                         "keys (w_q.shape[1]), not of the input x",
            _sa_variant(scale=lambda e, dk: e ** -0.5)),
    Mistake("scale 1/Dk", "you divided by Dk: the scale is 1/sqrt(Dk)",
            _sa_variant(scale=lambda e, dk: 1.0 / dk)),
    Mistake("softmax over the queries", "softmax over the wrong axis: each query's weights must "
                                        "sum to 1 over the KEYS, the last axis of the scores",
            _sa_variant(dim=-2)),
    Mistake("weights transposed", "Q = X W_q with W_q of shape (E, Dk): multiply x by the "
                                  "matrix itself, not by its transpose (nn.Linear stores the "
                                  "transpose, the equations here do not)",
            _sa_variant(transpose=True), applies=_square),
]


def _sa_case(seed, dtype, *, sizes=None, square=False, grad=False):
    g = generator(seed)
    s = sizes or draw_sizes(g, B=(1, 3), N=(2, 7), E=(2, 8), Dk=(2, 6), Dv=(1, 5))
    b, n, e, dk, dv = s["B"], s["N"], s["E"], s["Dk"], s["Dv"]
    if square:
        dk = dv = e
    x = randn(g, b, n, e, dtype=dtype)
    w_q, w_k = randn(g, e, dk, dtype=dtype), randn(g, e, dk, dtype=dtype)
    w_v = randn(g, e, dv, dtype=dtype, scale=e ** -0.5)
    label = (f"x ({b}, {n}, {e}), w_q and w_k ({e}, {dk}), w_v ({e}, {dv}), {_dtname(dtype)}")
    case = Case((x, w_q, w_k, w_v), label=label)
    if grad:
        case.wrt, case.upstream = (0, 1, 2, 3), randn(g, b, n, dv, dtype=dtype)
    return case


SA_FORBID = ("torch.nn.functional.scaled_dot_product_attention", "op:scaled_dot_product",
             "attention_lib.functional.attention", "attention_lib.functional.reference_attention",
             "attention_lib.layers.MultiHeadAttention", "attention_lib.layers.DotProductAttention")


def _sa_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, N, Dv) and dtype (E, Dk, Dv all different)", "shape",
                     lambda: [_sa_case(1, f32, sizes=dict(B=2, N=5, E=6, Dk=4, Dv=3))],
                     values=False),
        output_check("values, float64, random sizes", "values",
                     lambda: [_sa_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, square matrices (E = Dk = Dv), float64", "values",
                     lambda: [_sa_case(14, f64, square=True,
                                       sizes=dict(B=2, N=5, E=4, Dk=4, Dv=4))]),
        output_check("values, float32", "values", lambda: [_sa_case(s, f32) for s in (21, 22)]),
        output_check("one token: its output is its own value", "edge cases",
                     lambda: [_sa_case(31, f64, sizes=dict(B=2, N=1, E=3, Dk=2, Dv=4))]),
        grad_check("gradients of x, w_q, w_k and w_v",
                   lambda: [_sa_case(41, f64, grad=True, sizes=dict(B=2, N=4, E=3, Dk=2, Dv=3))]),
        trace_check("built from torch operations, not torch's or the library's attention",
                    "rules", lambda: [_sa_case(51, f64)], forbid=SA_FORBID),
    ]


SELF_ATTENTION_LAYER = Exercise(
    "self_attention_layer", "function",
    "Self-attention of one sequence: Q = x W_q, K = x W_k, V = x W_v, softmax(Q K^T / sqrt(Dk)) V.",
    _sa_checks(), signature="self_attention_layer(x, w_q, w_k, w_v)", reference=_sa_ref,
    mistakes=SA_MISTAKES, forbid=SA_FORBID)


# =========================================================================== 4. distinct rows
SENTENCE = "the cat sat on the mat"

ANSWER_DISTINCT_ROWS = Exercise(
    "answer_distinct_rows", "answer",
    f"Predict how many different output vectors self-attention gives for {SENTENCE!r}.",
    [answer_check("your prediction matches the experiment",
                  lambda: float(len(set(SENTENCE.split()))), rtol=0.0, atol=0.01,
                  wrong=[(6.0, "two of the six tokens are the same word, and without positions "
                               "the same input row gives the same output row, wherever it is"),
                         (1.0, "the outputs are weighted averages with DIFFERENT weights: "
                               "each query scores the keys in its own way")])],
    signature="answer_distinct_rows = <number>")


# =========================================================================== 5. rotary shift
def rotary_demo_vectors():
    """The query and key of the predict-then-verify question: (1, 8) each, float64, seed 6."""
    g = torch.Generator().manual_seed(6)
    q, k = torch.randn(2, 1, 8, generator=g, dtype=torch.float64)
    return q, k


def rotary_demo_score(m: int, n: int) -> float:
    """The score of the demo query at position m with the demo key at position n."""
    q, k = rotary_demo_vectors()
    qm = rotary_embedding(q, torch.tensor([m]))
    kn = rotary_embedding(k, torch.tensor([n]))
    return float((qm @ kn.T).reshape(()))


def _unrotated() -> float:
    q, k = rotary_demo_vectors()
    return float((q @ k.T).reshape(()))


ANSWER_ROTARY_SHIFT = Exercise(
    "answer_rotary_shift", "answer",
    "Predict the rotary score of the query at 102 and the key at 105, from the one at (2, 5).",
    [answer_check("your prediction matches the experiment", lambda: rotary_demo_score(102, 105),
                  rtol=0.01, atol=0.01,
                  wrong=[(_unrotated(), "that is the score WITHOUT rotation (or with both at the "
                                        "same position): the offset m - n = -3 still rotates the "
                                        "query relative to the key")])],
    signature="answer_rotary_shift = <number>")


# =========================================================================== 6. my_rope_base
#: The experiment: D = 64; the mean rotary score of a vector with itself k positions apart,
#: normalised, is (2/D) sum_i cos(k theta_i). The base must keep it above 0.5 for k <= 256.
ROPE_DIM, ROPE_MAX_OFFSET, ROPE_LEVEL = 64, 256, 0.5


def rope_similarity(base: float, offsets=None) -> torch.Tensor:
    """(2/D) sum_i cos(k theta_i) for each offset k (default 1 .. 256), D = 64."""
    k = torch.arange(1, ROPE_MAX_OFFSET + 1, dtype=torch.float64) if offsets is None \
        else torch.as_tensor(offsets, dtype=torch.float64)
    theta = rotary_frequencies(ROPE_DIM, base=float(base), dtype=torch.float64)  # (D/2,)
    return torch.cos(k[:, None] * theta).mean(-1)  # (K,)


def _judge_base_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the base you found")
    if bad:
        return bad
    if not (math.isfinite(value) and 1.0 < value <= 1e30):
        return Verdict(False, f"{value:g} is not a base the experiment accepts (a number > 1 "
                              f"and <= 1e30)")
    return Verdict(True, f"base {value:g}")


def _judge_base_value(ex, cases, outcomes):
    v = _judge_base_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    sim = rope_similarity(value)
    worst = float(sim.min())
    if not worst > ROPE_LEVEL:
        k = int(sim.argmin()) + 1
        return Verdict(False, f"with base {value:g} the mean similarity falls to {worst:.3f} at "
                              f"offset {k} (it must stay above {ROPE_LEVEL} up to offset "
                              f"{ROPE_MAX_OFFSET})",
                       hint="a larger base slows every pair but the first (theta_0 = 1 always): "
                            "sweep the base over powers of 10")
    return Verdict(True, f"the similarity stays above {ROPE_LEVEL} (lowest {worst:.3f})")


_ONE = [Case(label="the value of my_rope_base")]
MY_ROPE_BASE = Exercise(
    "my_rope_base", "experiment",
    "Open-ended: a rotary base for which offsets up to 256 keep a mean similarity above 0.5.",
    [Check("a number > 1", "shape", _ONE, _judge_base_form, probe="value"),
     Check("the similarity stays above 0.5 for offsets 1 to 256", "values", _ONE,
           _judge_base_value, probe="value")],
    signature="my_rope_base = <number>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: self-attention and position",
    [SINUSOIDAL_POSITIONS, APPLY_ROTARY, SELF_ATTENTION_LAYER, ANSWER_DISTINCT_ROWS,
     ANSWER_ROTARY_SHIFT, MY_ROPE_BASE]))
