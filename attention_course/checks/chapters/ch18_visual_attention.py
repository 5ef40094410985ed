"""Exercises of chapter 18, "Attention beyond text" (``exercises/18_visual_attention.ipynb``).

1. ``spatial_softmax`` -- a decoder's scores over a (B, C, H, W) grid turned into attention
   maps: a softmax over the H x W positions of each map, with an optional mask.
2. ``se_block`` -- the forward pass of a squeeze-and-excitation block from given weights.
3. ``pointing_score`` -- pointing accuracy: the fraction of attention maps whose peak cell
   overlaps the gold region of the object the word names.
4. ``answer_uniform_pointing`` -- predict: the expected pointing accuracy of uniform attention
   for an object that covers a given set of grid cells.
5. ``my_receptive_cells`` -- open-ended: how many grid cells one pixel reaches, in the
   chapter's encoder and in one with a larger receptive field.

The references are :func:`attention_lib.functional.masked_softmax` over the flattened
positions, :class:`attention_lib.vision.SqueezeExcitation`'s equations and
:func:`attention_lib.vision.pointing_hits`, in float64. Xu et al. (2015), Show, Attend and
Tell; Hu et al. (2018), Squeeze-and-Excitation Networks; Zhang et al. (2016), the pointing
game.
"""
from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.nn.functional as F

from attention_lib.functional import masked_softmax
from attention_lib.vision import pointing_hits, uniform_pointing_accuracy

from ..cases import draw_sizes, generator, integer, randn, random_mask, uniform
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, number_of, output_check, status_problem, trace_check
from ._part3 import AFTER_HINT, dtname

ASSIGNMENT_NAME = "18_visual_attention"


# =========================================================================== 1. spatial softmax
def _flat_softmax(scores, mask=None, *, dim=-1, fill=None, after=False):
    """Softmax of (B, C, H, W) scores over the flattened H*W positions (the library's
    masked_softmax: zeros on fully masked maps), or a known-wrong variant of it."""
    b, c, h, w = scores.shape
    s = scores.reshape(b, c, h * w)  # (B, C, HW)
    m = None if mask is None else mask.expand(b, c, h, w).reshape(b, c, h * w)
    if after:
        return (s.softmax(-1) * m).reshape(b, c, h, w)
    if fill is not None:
        return s.masked_fill(~m, fill).softmax(-1).reshape(b, c, h, w)
    return masked_softmax(s, m).reshape(b, c, h, w)


def _ss_ref(scores, mask=None):
    return _flat_softmax(scores, mask)


def _has_mask(case: Case) -> bool:
    return len(case.args) > 1 and case.args[1] is not None


def _over(dims):
    def fn(scores, mask=None):
        s = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(s, dims)
    return fn


def _unstable(scores, mask=None):
    b, c, h, w = scores.shape
    e = torch.exp(scores.reshape(b, c, h * w))  # no max subtracted: overflows
    if mask is not None:
        e = e * mask.expand(b, c, h, w).reshape(b, c, h * w)
    return (e / e.sum(-1, keepdim=True)).reshape(b, c, h, w)


def _is_large(case: Case) -> bool:
    return bool(case.meta.get("large"))


SS_MISTAKES = [
    Mistake("over channels", "softmax over the CHANNELS (dim=1): each map must be a "
                             "distribution over its H x W positions. Flatten the positions, "
                             "scores.flatten(2) (B, C, H*W), and take the softmax over the "
                             "last axis", _over(1)),
    Mistake("over width only", "softmax over the last axis only (each ROW of the grid sums to "
                               "1): the positions are H*W cells, so flatten H and W together "
                               "before the softmax", _over(-1)),
    Mistake("over height only", "softmax over the height only (each COLUMN of the grid sums to "
                                "1): flatten H and W together before the softmax", _over(-2)),
    Mistake("inverted mask", "your output matches an INVERTED mask: True means 'may attend', so "
                             "the positions where the mask is False get weight 0",
            lambda scores, mask=None: _flat_softmax(scores, ~mask), applies=_has_mask),
    Mistake("mask after softmax", AFTER_HINT,
            lambda scores, mask=None: _flat_softmax(scores, mask, after=True),
            applies=_has_mask),
    Mistake("NaN on fully masked maps", "NaN where a whole map is masked: the softmax of a row "
                                        "of -inf is 0/0. A map with no position to attend to "
                                        "must be all zeros",
            lambda scores, mask=None: _flat_softmax(scores, mask, fill=float("-inf")),
            applies=_has_mask),
    Mistake("no max subtracted", "inf or NaN for large scores: exp(1000) overflows. Subtract "
                                 "each map's maximum before exp (torch.softmax does it for you)",
            _unstable, applies=_is_large),
]


def _ss_case(seed, dtype, *, sizes=None, mask=None, offset=0.0, grad=False):
    """mask: None | 'random' (B, 1, H, W) | 'empty' (as random, map 0 fully masked)."""
    g = generator(seed)
    s = dict(sizes) if sizes else draw_sizes(g, B=(1, 3), C=(1, 4), H=(1, 5), W=(2, 5))
    b, c, h, w = s["B"], s["C"], s["H"], s["W"]
    x = (randn(g, b, c, h, w, scale=3.0) + offset).to(dtype)
    label = f"scores ({b}, {c}, {h}, {w}), {dtname(dtype)}"
    if offset:
        label += f", scores around {offset:g}"
        s["large"] = True
    args = (x,)
    if mask is not None:
        m = random_mask(g, b, 1, h * w, p=0.6).reshape(b, 1, h, w)
        if mask == "empty":
            m[0] = False
        args = (x, m)
        label += ", mask (B, 1, H, W)" + (" with batch element 0 fully masked"
                                           if mask == "empty" else "")
    case = Case(args, label=label, meta=s)
    if grad:
        case.wrt, case.upstream = (0,), randn(g, b, c, h, w, dtype=dtype)
    return case


def _ss_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, C, H, W) and dtype", "shape",
                     lambda: [_ss_case(1, f32, sizes=dict(B=2, C=3, H=4, W=5))], values=False),
        output_check("values, float64: every map sums to 1 over its H x W positions", "values",
                     lambda: [_ss_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, float32", "values", lambda: [_ss_case(21, f32)]),
        output_check("mask (B, 1, H, W), True = may attend: masked positions get exactly 0",
                     "masks", lambda: [_ss_case(s, f64, mask="random") for s in (31, 32)],
                     exact_zeros=True),
        output_check("a fully masked map gives zeros, not NaN", "edge cases",
                     lambda: [_ss_case(41, f64, mask="empty", sizes=dict(B=2, C=2, H=3, W=4))]),
        output_check("large scores (around 1000): no overflow", "edge cases",
                     lambda: [_ss_case(42, f64, offset=1000.0)]),
        grad_check("gradient of the scores, with a mask",
                   lambda: [_ss_case(51, f64, mask="random", grad=True,
                                     sizes=dict(B=2, C=2, H=3, W=3))]),
    ]


SPATIAL_SOFTMAX = Exercise(
    "spatial_softmax", "function",
    "Attention maps from a (B, C, H, W) grid of scores: softmax over the H x W positions of "
    "each map, with an optional mask.", _ss_checks(),
    signature="spatial_softmax(scores, mask=None)", reference=_ss_ref, mistakes=SS_MISTAKES)


# =========================================================================== 2. SE block
def _se(x, w1, b1, w2, b2, *, pool="mean", act="sigmoid", relu=True):
    if pool == "mean":
        z = x.mean(dim=(2, 3))  # (B, C)
    elif pool == "max":
        z = x.amax(dim=(2, 3))
    else:  # averaged over the batch too: one gate for every image
        z = x.mean(dim=(0, 2, 3)).expand(x.shape[0], -1)
    hidden = F.linear(z, w1, b1)  # (B, C/r)
    if relu:
        hidden = F.relu(hidden)
    e = F.linear(hidden, w2, b2)  # (B, C)
    s = {"sigmoid": torch.sigmoid, "softmax": lambda t: t.softmax(-1),
         "none": lambda t: t}[act](e)
    return x * s[:, :, None, None]  # (B, C, H, W)


def _se_ref(x, w1, b1, w2, b2):
    return _se(x, w1, b1, w2, b2)


def _batch_gt1(case: Case) -> bool:
    return case.args[0].shape[0] > 1


SE_MISTAKES = [
    Mistake("no sigmoid", "the gate is not squashed: s = sigmoid(W2 relu(W1 z + b1) + b2) lies "
                          "in (0, 1), one factor per channel; without the sigmoid it can be "
                          "negative or huge",
            lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, act="none")),
    Mistake("softmax gate", "a softmax over the channels makes the gates compete (they sum to "
                            "1); SE gives each channel its own sigmoid gate in (0, 1)",
            lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, act="softmax")),
    Mistake("max pooling", "you squeezed with the MAXIMUM: SE squeezes each channel to its "
                           "spatial MEAN, z = x.mean(dim=(2, 3)) (the max is CBAM's second "
                           "descriptor)",
            lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, pool="max")),
    Mistake("pooled over the batch", "you pooled over the wrong axes: averaging over the batch "
                                     "(dim 0) too gives every image the same gate. Squeeze "
                                     "over the spatial axes only, dim=(2, 3), to get z (B, C)",
            lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, pool="batch"),
            applies=_batch_gt1),
    Mistake("no relu", "the ReLU between the two layers is missing: "
                       "s = sigmoid(W2 relu(W1 z + b1) + b2)",
            lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, relu=False)),
]


def _se_case(seed, dtype, *, sizes=None, scale=1.0, grad=False):
    g = generator(seed)
    s = dict(sizes) if sizes else draw_sizes(g, B=(2, 3), C=(2, 8), R=(1, 4), H=(1, 5),
                                             W=(1, 5))
    b, c, r, h, w = (s[k] for k in ("B", "C", "R", "H", "W"))
    x = randn(g, b, c, h, w, dtype=dtype, scale=scale)
    w1, b1 = randn(g, r, c, dtype=dtype), randn(g, r, dtype=dtype, scale=0.5)
    w2, b2 = randn(g, c, r, dtype=dtype), randn(g, c, dtype=dtype, scale=0.5)
    label = (f"x ({b}, {c}, {h}, {w}), w1 ({r}, {c}), w2 ({c}, {r}), {dtname(dtype)}"
             + (f", entries of x up to ~{3 * scale:g}" if scale > 1 else ""))
    case = Case((x, w1, b1, w2, b2), label=label, meta=s)
    if grad:
        case.wrt, case.upstream = (0, 1, 2, 3, 4), randn(g, b, c, h, w, dtype=dtype)
    return case


def _se_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, C, H, W) and dtype", "shape",
                     lambda: [_se_case(1, f32, sizes=dict(B=2, C=6, R=3, H=4, W=5))],
                     values=False),
        output_check("values, float64", "values", lambda: [_se_case(s, f64) for s in (11, 12, 13)]),
        output_check("values, float32", "values", lambda: [_se_case(21, f32)]),
        output_check("one image, a 1 x 1 map (the mean is the pixel)", "edge cases",
                     lambda: [_se_case(31, f64, sizes=dict(B=1, C=4, R=2, H=1, W=1))]),
        output_check("large inputs (~150): saturated gates, no inf or NaN", "edge cases",
                     lambda: [_se_case(32, f64, scale=50.0)]),
        grad_check("gradients of x and of every weight and bias",
                   lambda: [_se_case(41, f64, grad=True, sizes=dict(B=2, C=4, R=2, H=3, W=2))]),
        trace_check("built from torch operations, not the library's block", "rules",
                    lambda: [_se_case(51, f64)],
                    forbid=("attention_lib.vision.SqueezeExcitation.forward",)),
    ]


SE_BLOCK = Exercise(
    "se_block", "function",
    "The forward pass of a squeeze-and-excitation block from given weights: "
    "x * sigmoid(W2 relu(W1 avgpool(x) + b1) + b2).", _se_checks(),
    signature="se_block(x, w1, b1, w2, b2)", reference=_se_ref, mistakes=SE_MISTAKES)


# =========================================================================== 3. pointing
def _pointing_ref(attn, regions):
    return pointing_hits(attn, regions).to(attn.dtype).mean()


def _cells(regions, h, w, how=any):
    m, H, W = regions.shape
    r = regions.reshape(m, h, H // h, w, W // w)
    if how is any:
        return r.any(4).any(2)  # (M, h, w)
    return r.all(4).all(2)


def _point_variant(how):
    def fn(attn, regions):
        m, h, w = attn.shape
        peak = attn.reshape(m, h * w).argmax(-1)  # (M,)
        if how == "pixel index":  # the cell index used as a pixel index
            hits = regions.reshape(m, -1).gather(1, peak[:, None])[:, 0]
        elif how == "transposed":  # square grids: row and column swapped
            hits = _cells(regions, h, w)[torch.arange(m), peak % w, peak // w]
        elif how == "all pixels":
            hits = _cells(regions, h, w, all).reshape(m, -1).gather(1, peak[:, None])[:, 0]
        else:  # attention mass in the region
            inside = _cells(regions, h, w).to(attn.dtype)
            return (attn * inside).flatten(1).sum(1).div(attn.flatten(1).sum(1)).mean()
        return hits.to(attn.dtype).mean()
    return fn


POINT_MISTAKES = [
    Mistake("pixel index", "you used the peak's index in the (h, w) grid as a PIXEL index of the "
                           "(H, W) region: first pool the region onto the grid (a cell counts "
                           "when any of its pixels is in the region), then look up the peak "
                           "cell", _point_variant("pixel index")),
    Mistake("all pixels", "a cell counts as a hit when ANY of its pixels is in the region; you "
                          "required all of them (the object's edge cells then never count)",
            _point_variant("all pixels")),
    Mistake("transposed", "the peak's row and column are swapped: in a flattened (h, w) map, "
                          "index k is row k // w and column k % w",
            _point_variant("transposed"),
            applies=lambda case: case.meta["h"] == case.meta["w"]),
    Mistake("attention mass", "you measured the attention MASS inside the region; pointing "
                              "accuracy asks only whether the PEAK cell (the argmax) overlaps "
                              "the region, one yes/no per word",
            _point_variant("mass")),
]


def _regions(g, m, H, W, *, min_side=1):
    out = torch.zeros(m, H, W, dtype=torch.bool)
    for i in range(m):
        y0 = integer(g, 0, H - min_side)
        x0 = integer(g, 0, W - min_side)
        y1 = integer(g, y0 + min_side - 1, min(H - 1, y0 + H // 2))
        x1 = integer(g, x0 + min_side - 1, min(W - 1, x0 + W // 2))
        out[i, y0:y1 + 1, x0:x1 + 1] = True
    return out


def _point_case(seed, dtype, *, sizes=None, ties=False, peaked=True):
    """M attention maps (M, h, w) and M rectangular regions (M, h*ch, w*cw); each map is a
    softmax whose peak falls on its region about half of the time."""
    g = generator(seed)
    s = dict(sizes) if sizes else draw_sizes(g, M=(20, 40), h=(2, 6), w=(2, 6), ch=(2, 4),
                                             cw=(2, 4))
    m, h, w, ch, cw = (s[k] for k in ("M", "h", "w", "ch", "cw"))
    regions = _regions(g, m, h * ch, w * cw)
    scores = randn(g, m, h, w, scale=2.0)
    if peaked:  # push the peak onto the region for about half of the maps
        cells = _cells(regions, h, w).to(torch.float64)
        push = (uniform(g, m) < 0.5).to(torch.float64)[:, None, None]
        scores = scores + 4.0 * cells * push * uniform(g, m, h, w)
    attn = scores.reshape(m, -1).softmax(-1).reshape(m, h, w)
    if ties:
        attn[: m // 2] = 1.0 / (h * w)  # uniform maps: the peak is the first cell
    label = (f"attn ({m}, {h}, {w}), regions ({m}, {h * ch}, {w * cw}), {dtname(dtype)}"
             + (f", maps 0 ... {m // 2 - 1} uniform (ties: the first cell is the peak)"
                if ties else ""))
    return Case((attn.to(dtype), regions), label=label, meta=s)


def _point_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output is a 0-dim tensor of attn's dtype", "shape",
                     lambda: [_point_case(1, f32, sizes=dict(M=6, h=4, w=4, ch=4, cw=4))],
                     values=False),
        output_check("values, float64", "values",
                     lambda: [_point_case(11, f64), _point_case(12, f64),
                              _point_case(13, f64, sizes=dict(M=30, h=5, w=5, ch=3, cw=3))]),
        output_check("values, float32", "values", lambda: [_point_case(21, f32)]),
        output_check("a non-square grid of non-square cells", "edge cases",
                     lambda: [_point_case(31, f64, sizes=dict(M=30, h=3, w=7, ch=4, cw=2))]),
        output_check("uniform maps: on ties the first cell is the peak (as argmax)",
                     "edge cases", lambda: [_point_case(32, f64, ties=True,
                                                        sizes=dict(M=24, h=4, w=4, ch=2, cw=2))]),
        output_check("one word", "edge cases",
                     lambda: [_point_case(33, f64, sizes=dict(M=1, h=5, w=3, ch=2, cw=3))]),
        trace_check("built from torch operations, not the library's pointing functions",
                    "rules", lambda: [_point_case(41, f64)],
                    forbid=("attention_lib.vision.pointing_hits",
                            "attention_lib.vision.pointing_accuracy",
                            "attention_lib.vision.region_to_grid")),
    ]


POINTING_SCORE = Exercise(
    "pointing_score", "function",
    "Pointing accuracy: the fraction of attention maps whose peak cell overlaps the gold "
    "region of the word's object.", _point_checks(),
    signature="pointing_score(attn, regions)", reference=_pointing_ref, mistakes=POINT_MISTAKES)


# =========================================================================== 4. answer
#: The question's object: a 10 x 10-pixel square, rows 9 ... 18 and columns 6 ... 15, in a
#: 32 x 32 image attended over an 8 x 8 grid of 4 x 4-pixel cells.
UNIFORM_QUESTION = dict(image_size=32, grid=8, rows=(9, 18), cols=(6, 15))


def uniform_question_region() -> torch.Tensor:
    q = UNIFORM_QUESTION
    r = torch.zeros(1, q["image_size"], q["image_size"], dtype=torch.bool)
    r[0, q["rows"][0]:q["rows"][1] + 1, q["cols"][0]:q["cols"][1] + 1] = True
    return r


def uniform_pointing_truth() -> float:
    g = UNIFORM_QUESTION["grid"]
    return uniform_pointing_accuracy(uniform_question_region(), (g, g))


ANSWER_UNIFORM_POINTING = Exercise(
    "answer_uniform_pointing", "answer",
    "Predict uniform attention's expected pointing accuracy for a 10 x 10-pixel object at "
    "rows 9-18, columns 6-15 of a 32 x 32 image, 8 x 8 grid.",
    [answer_check("your prediction matches uniform_pointing_accuracy", uniform_pointing_truth,
                  rtol=0.01,
                  wrong=[(100 / 1024, "that is the fraction of PIXELS the object covers; the "
                                      "peak is a grid CELL, and a cell is a hit when any of its "
                                      "pixels is on the object"),
                         (2 / 64, "those are the cells that lie entirely inside the object; a "
                                  "cell is a hit when ANY of its pixels is on the object"),
                         (4 / 64, "count the cells the rows 9 ... 18 touch (rows of cells "
                                  "9 // 4 ... 18 // 4) and the columns 6 ... 15 touch"),
                         (1 / 64, "uniform attention's peak is ONE random cell, but the object "
                                  "touches several cells: the chance is (cells touched) / 64")])],
    signature="answer_uniform_pointing = <number>")


# =========================================================================== 5. experiment
RECEPTIVE_PIXEL = (16, 16)
_TRUTH: dict = {}


def cells_reached(encoder, pixel: Tuple[int, int] = RECEPTIVE_PIXEL, size: int = 32) -> int:
    """Grid cells whose feature vector changes when one pixel of a black image turns white."""
    x = torch.zeros(1, 3, size, size)
    y = x.clone()
    y[0, :, pixel[0], pixel[1]] = 1.0
    with torch.no_grad():
        changed = (encoder(y) - encoder(x)).abs().amax(1) > 0  # (1, h, w)
    return int(changed.sum())


def chapter_cells() -> int:
    """:func:`cells_reached` for the encoder of the chapter's pretrained attention captioner."""
    if "cells" not in _TRUTH:
        from attention_lib.vision import load_captioner
        _TRUTH["cells"] = cells_reached(load_captioner("attention")[0].encoder)
    return _TRUTH["cells"]


def _pair(oc: Any):
    out = oc.get("output")
    if out is None:
        return None, "not answered yet: replace None by (cells, cells with a larger field)"
    if not (isinstance(out, dict) and out.get("__type__") in ("tuple", "list")
            and out.get("len") == 2):
        return None, "expected a pair of whole numbers (chapter's encoder, larger field)"
    values = []
    for item in out["items"]:
        v, _ = number_of(item)
        if v is None or v != int(v):
            return None, "both items must be whole numbers of grid cells"
        values.append(int(v))
    return values, None


def _judge_rf_form(ex, cases, outcomes):
    oc = outcomes[0] if outcomes else None
    bad = status_problem(ex, oc)
    if bad:
        return bad
    pair, msg = _pair(oc)
    if msg:
        return Verdict(False, msg)
    if not all(1 <= v <= 64 for v in pair):
        return Verdict(False, "a count of cells of the 8 x 8 grid is between 1 and 64")
    return Verdict(True, f"{pair[0]} and {pair[1]} cells")


def _judge_rf_chapter(ex, cases, outcomes):
    v = _judge_rf_form(ex, cases, outcomes)
    if not v.passed:
        return v
    pair, _ = _pair(outcomes[0])
    if pair[0] != chapter_cells():
        side = "too few" if pair[0] < chapter_cells() else "too many"
        return Verdict(False, f"{pair[0]} cells is {side} for the chapter's encoder: change "
                              f"pixel {RECEPTIVE_PIXEL} of a black image and count the cells "
                              f"whose feature vector changes",
                       hint="each cell sees a 9 x 9-pixel window around its 4 x 4 patch: "
                            "count the windows that contain the pixel")
    return Verdict(True, f"{pair[0]} cells, as measured")


def _judge_rf_larger(ex, cases, outcomes):
    v = _judge_rf_form(ex, cases, outcomes)
    if not v.passed:
        return v
    pair, _ = _pair(outcomes[0])
    if not pair[1] > pair[0]:
        return Verdict(False, "a larger receptive field reaches MORE cells than the chapter's "
                              "encoder: add a layer that mixes neighbouring cells (e.g. a 3 x 3 "
                              "convolution on the grid) and measure again")
    return Verdict(True, f"{pair[1]} > {pair[0]} cells")


_ONE = [Case(label="the value of my_receptive_cells")]
MY_RECEPTIVE_CELLS = Exercise(
    "my_receptive_cells", "experiment",
    "Open-ended: how many grid cells one pixel reaches in the chapter's encoder and in one with "
    "a larger receptive field, and what that changes.",
    [Check("a pair of cell counts between 1 and 64", "shape", _ONE, _judge_rf_form,
           probe="value"),
     Check("the chapter's encoder: agrees with the measurement", "values", _ONE,
           _judge_rf_chapter, probe="value"),
     Check("the larger receptive field reaches more cells", "values", _ONE, _judge_rf_larger,
           probe="value")],
    signature="my_receptive_cells = <(int, int)>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: attention beyond text",
    [SPATIAL_SOFTMAX, SE_BLOCK, POINTING_SCORE, ANSWER_UNIFORM_POINTING, MY_RECEPTIVE_CELLS]))
