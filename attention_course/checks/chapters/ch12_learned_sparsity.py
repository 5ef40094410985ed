"""Exercises of chapter 12, "Learned sparsity" (``exercises/12_learned_sparsity.ipynb``).

1. ``lsh_buckets`` -- angular LSH: the bucket ``argmax([x R, -x R])`` of every vector, for
   every round of given random rotations.
2. ``route_to_centroids`` -- k-means routing: the centroid of largest cosine similarity of
   every vector, with centroids shared by the heads or one set per head.
3. ``sinkhorn_log`` -- Sinkhorn normalisation in the log domain: rows, then columns, so that
   exp(result) is (nearly) doubly stochastic, without overflow at any temperature.
4. ``answer_collision_rounds`` -- predict: the probability that two vectors at 120 degrees
   share one of 2 buckets in at least one of 3 rounds.
5. ``my_lsh_rounds`` -- open-ended: how many hashing rounds for a target error of LSH
   attention?

The references are :mod:`attention_lib.efficient.clustered`'s ``lsh_hash`` and ``route``, and
:mod:`attention_lib.efficient.sinkhorn`'s ``sinkhorn_normalize``, in float64.
Kitaev, Kaiser and Levskaya (2020), "Reformer", section 2; Charikar (2002); Roy et al.
(2021), "Routing Transformer"; Tay et al. (2020), "Sparse Sinkhorn attention"; Sinkhorn
(1964).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from attention_lib.efficient.clustered import (
    hyperplane_collision_probability,
    lsh_attention,
    lsh_hash,
    random_rotations,
    route,
    shared_qk_keys,
)
from attention_lib.efficient.sinkhorn import sinkhorn_normalize
from attention_lib.functional import reference_attention

from ..cases import generator, integer, randn, uniform
from ..core import Assignment, Case, Check, Exercise, Mistake, Verdict, register
from ..kinds import answer_check, grad_check, measured_number, number_of, output_check, trace_check
from ._part3 import dtname

ASSIGNMENT_NAME = "12_learned_sparsity"


# =========================================================================== 1. LSH buckets
def _hash_ref(x, rotations):
    return lsh_hash(x, rotations)


def _hash_variant(how):
    def fn(x, rotations):
        proj = torch.einsum("bhnd,rdk->bhrnk", x, rotations)  # (B, H, R, N, b/2)
        if how == "no negation":
            return proj.argmax(-1)
        if how == "negated first":
            return torch.cat([-proj, proj], dim=-1).argmax(-1)
        return proj.abs().argmax(-1)  # "absolute value"
    return fn


HASH_MISTAKES = [
    Mistake("no negated half",
            "your buckets only go up to b/2 - 1: you took the argmax over x R alone. Angular "
            "LSH uses the argmax over the concatenation [x R, -x R] (b values), so that a "
            "vector pointing AWAY from a random direction gets a bucket of its own",
            _hash_variant("no negation")),
    Mistake("negated half first",
            "your buckets are shifted by b/2: concatenate [x R, -x R] in that order (x R "
            "first), so that bucket i < b/2 means 'closest to direction i'",
            _hash_variant("negated first")),
    Mistake("absolute value",
            "the argmax of |x R| cannot tell x from -x: opposite vectors share a bucket. Use "
            "the argmax over [x R, -x R], which has b entries, not b/2",
            _hash_variant("abs")),
]


def _hash_case(seed, dtype, *, sizes=None, n_buckets=None, rounds=None, scale=1.0):
    """x (B, H, N, D) and rotations (R, D, b/2) with N(0, 1) entries."""
    g = generator(seed)
    s = dict(sizes) if sizes else dict(B=integer(g, 1, 2), H=integer(g, 1, 3),
                                       N=integer(g, 1, 9), D=integer(g, 1, 6))
    b = n_buckets if n_buckets is not None else 2 * integer(g, 1, 4)
    r = rounds if rounds is not None else integer(g, 1, 3)
    x = randn(g, s["B"], s["H"], s["N"], s["D"], dtype=dtype, scale=scale)
    rot = randn(g, r, s["D"], b // 2, dtype=dtype)
    label = (f"x ({s['B']}, {s['H']}, {s['N']}, {s['D']}), {dtname(dtype)}; rotations "
             f"({r}, {s['D']}, {b // 2}): {r} round{'s' if r > 1 else ''} of {b} buckets")
    return Case((x, rot), label=label, meta=dict(s, dtype=torch.long, R=r, buckets=b))


def _hash_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, H, R, N), dtype torch.int64 (long)", "shape",
                     lambda: [_hash_case(1, f32, sizes=dict(B=2, H=3, N=5, D=4), n_buckets=8,
                                         rounds=2)], values=False),
        output_check("one round, random sizes and numbers of buckets, float64", "values",
                     lambda: [_hash_case(s, f64, rounds=1) for s in (11, 12, 13)]),
        output_check("several rounds, float32", "values",
                     lambda: [_hash_case(s, f32, rounds=3) for s in (21, 22)]),
        output_check("long vectors (the bucket depends only on the direction)", "values",
                     lambda: [_hash_case(23, f64, scale=100.0)]),
        output_check("two buckets (a sign test), and one bucket: rotations (R, D, 0) put every "
                     "vector in bucket 0", "edge cases",
                     lambda: [_hash_case(31, f64, n_buckets=2, rounds=4),
                              _hash_case(32, f64, n_buckets=1, rounds=2,
                                         sizes=dict(B=1, H=2, N=4, D=3))]),
        trace_check("built from torch operations, not the library's lsh_hash", "rules",
                    lambda: [_hash_case(41, f64)],
                    forbid=("attention_lib.efficient.clustered.lsh_hash",
                            "attention_lib.efficient.clustered.lsh_mask",
                            "attention_lib.efficient.clustered.lsh_attention")),
    ]


LSH_BUCKETS = Exercise(
    "lsh_buckets", "function",
    "Angular LSH buckets argmax([x R, -x R]) of every vector, one row per round.",
    _hash_checks(), signature="lsh_buckets(x, rotations)", reference=_hash_ref,
    mistakes=HASH_MISTAKES, forbid=("attention_lib.efficient.clustered.lsh_hash",))


# =========================================================================== 2. routing
def _route_ref(x, centroids):
    return route(x, centroids)


def _route_variant(how):
    def fn(x, centroids):
        mu = centroids if centroids.dim() == 2 else centroids.unsqueeze(0)  # (1, H, C, D)
        if how == "first head":
            mu = centroids[0] if centroids.dim() == 3 else centroids
        if how == "euclidean":
            return torch.cdist(x, mu.expand(*x.shape[:2], *mu.shape[-2:])).argmin(-1)
        sims = x @ mu.transpose(-2, -1)  # (B, H, N, C)
        if how == "raw dot":
            return sims.argmax(-1)
        sims = F.normalize(x, dim=-1) @ F.normalize(mu, dim=-1).transpose(-2, -1)
        return sims.argmin(-1) if how == "argmin" else sims.argmax(-1)
    return fn


def _per_head(case: Case) -> bool:
    return case.args[1].dim() == 3


ROUTE_MISTAKES = [
    Mistake("dot product, not cosine",
            "your routing prefers the LONGEST centroids: x . mu grows with the norm of mu. Route "
            "by cosine similarity, normalising x and the centroids to unit length first",
            _route_variant("raw dot")),
    Mistake("euclidean distance",
            "you route by Euclidean distance between the raw vectors; spherical k-means "
            "routes by the cosine similarity (the angle), whatever the lengths of x and mu",
            _route_variant("euclidean")),
    Mistake("argmin", "the nearest centroid is the one of LARGEST cosine similarity: argmax, "
                      "not argmin", _route_variant("argmin")),
    Mistake("first head's centroids for every head",
            "with centroids (H, C, D), head h must use its own centroids[h]: broadcast them as "
            "(1, H, C, D) against x (B, H, N, D)", _route_variant("first head"),
            applies=_per_head),
]


def _route_case(seed, dtype, *, sizes=None, per_head=False, clusters=None):
    """x (B, H, N, D) and centroids (C, D) or (H, C, D) of lengths between 0.2 and 3."""
    g = generator(seed)
    s = dict(sizes) if sizes else dict(B=integer(g, 1, 2), H=integer(g, 1, 3),
                                       N=integer(g, 1, 9), D=integer(g, 2, 6))
    c = clusters if clusters is not None else integer(g, 2, 5)
    x = randn(g, s["B"], s["H"], s["N"], s["D"], dtype=dtype, scale=2.0)
    lead = (s["H"],) if per_head else ()
    mu = randn(g, *lead, c, s["D"])
    mu = (F.normalize(mu, dim=-1) * uniform(g, *lead, c, 1, low=0.2, high=3.0)).to(dtype)
    where = f"({s['H']}, {c}, {s['D']}), one set per head" if per_head else f"({c}, {s['D']})"
    label = (f"x ({s['B']}, {s['H']}, {s['N']}, {s['D']}), centroids {where} of different "
             f"lengths, {dtname(dtype)}")
    return Case((x, mu), label=label, meta=dict(s, dtype=torch.long, C=c))


def _route_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (B, H, N), dtype torch.int64 (long)", "shape",
                     lambda: [_route_case(1, f32, sizes=dict(B=2, H=3, N=5, D=4), clusters=3)],
                     values=False),
        output_check("centroids (C, D) shared by the heads, float64", "values",
                     lambda: [_route_case(s, f64) for s in (11, 12, 13)]),
        output_check("centroids (H, C, D), one set per head, float32", "values",
                     lambda: [_route_case(s, f32, per_head=True,
                                          sizes=dict(B=2, H=3, N=8, D=4)) for s in (21, 22)]),
        output_check("one cluster (every vector in cluster 0), and one position (N = 1)",
                     "edge cases",
                     lambda: [_route_case(31, f64, clusters=1),
                              _route_case(32, f64, sizes=dict(B=2, H=2, N=1, D=3))]),
        trace_check("built from torch operations, not the library's route", "rules",
                    lambda: [_route_case(41, f64)],
                    forbid=("attention_lib.efficient.clustered.route",
                            "attention_lib.efficient.clustered.routing_topk",
                            "attention_lib.efficient.clustered.kmeans_update")),
    ]


ROUTE_TO_CENTROIDS = Exercise(
    "route_to_centroids", "function",
    "k-means routing: the index of the centroid of largest cosine similarity to every vector.",
    _route_checks(), signature="route_to_centroids(x, centroids)", reference=_route_ref,
    mistakes=ROUTE_MISTAKES, forbid=("attention_lib.efficient.clustered.route",))


# =========================================================================== 3. Sinkhorn
def _sk_ref(log_alpha, n_iters=20):
    return sinkhorn_normalize(log_alpha, n_iters)


def _sk_variant(how):
    def fn(log_alpha, n_iters=20):
        la = log_alpha
        if how == "linear":
            p = la.exp()
            for _ in range(n_iters):
                p = p / p.sum(-1, keepdim=True)
                p = p / p.sum(-2, keepdim=True)
            return p.log()
        if how == "rows only":
            return torch.log_softmax(la, dim=-1) if n_iters > 0 else la
        for _ in range(n_iters):
            if how == "columns first":
                la = la - torch.logsumexp(la, dim=-2, keepdim=True)
                la = la - torch.logsumexp(la, dim=-1, keepdim=True)
            else:
                la = la - torch.logsumexp(la, dim=-1, keepdim=True)
                la = la - torch.logsumexp(la, dim=-2, keepdim=True)
        return la.exp() if how == "exp" else la
    return fn


SK_MISTAKES = [
    Mistake("columns first",
            "you normalise the columns first and the rows second: each iteration must "
            "normalise the ROWS first (subtract the logsumexp over the last axis, dim=-1), "
            "then the COLUMNS (dim=-2), so that after it the columns sum to 1 exactly",
            _sk_variant("columns first")),
    Mistake("linear domain",
            "NaN or inf: you normalise exp(log_alpha) itself, and exp overflows for large "
            "logits (a low temperature). Stay in the log domain: subtract "
            "torch.logsumexp(..., dim=-1, keepdim=True), then the same over dim=-2",
            _sk_variant("linear")),
    Mistake("rows only",
            "your output is a softmax over the rows only (the columns do not sum to 1): "
            "ALTERNATE, n_iters times, a row normalisation and a column normalisation",
            _sk_variant("rows only")),
    Mistake("returns the matrix",
            "you return the doubly stochastic matrix P itself; the function returns its "
            "LOG (log P, entries <= 0), as the name says: leave out the final exp",
            _sk_variant("exp")),
]


def _sk_case(seed, dtype, *, shape=None, n_iters=None, scale=2.0, grad=False):
    g = generator(seed)
    if shape is None:
        n = integer(g, 2, 7)
        shape = (integer(g, 1, 3), n, n)
    it = n_iters if n_iters is not None else integer(g, 1, 8)
    la = randn(g, *shape, dtype=dtype, scale=scale)
    case = Case((la, it), label=f"log_alpha {tuple(shape)} with entries of size ~{scale:g}, "
                                f"{dtname(dtype)}, n_iters={it}")
    if grad:
        case.wrt, case.upstream = (0,), randn(g, *shape, dtype=dtype)
    return case


def _sk_checks():
    f64, f32 = torch.float64, torch.float32
    return [
        output_check("output shape (..., n, n) and dtype, like log_alpha", "shape",
                     lambda: [_sk_case(1, f32, shape=(3, 5, 5), n_iters=4)], values=False),
        output_check("values, float64, few and many iterations", "values",
                     lambda: [_sk_case(11, f64, n_iters=1), _sk_case(12, f64, n_iters=3),
                              _sk_case(13, f64, n_iters=20)]),
        output_check("values, float32, a 2-D matrix and a batch (B, H, n, n)", "values",
                     lambda: [_sk_case(21, f32, shape=(6, 6), n_iters=5),
                              _sk_case(22, f32, shape=(2, 2, 4, 4), n_iters=3)]),
        output_check("n_iters = 0 returns log_alpha; a 1 x 1 matrix becomes log 1 = 0",
                     "edge cases",
                     lambda: [_sk_case(31, f64, n_iters=0), _sk_case(32, f64, shape=(2, 1, 1),
                                                                       n_iters=3)]),
        output_check("a low temperature: logits of size ~1000 give finite results", "edge cases",
                     lambda: [_sk_case(33, f64, shape=(2, 5, 5), scale=1000.0, n_iters=10)]),
        grad_check("gradient of log_alpha (through every iteration)",
                   lambda: [_sk_case(41, f64, shape=(2, 4, 4), n_iters=3, grad=True)]),
        trace_check("built from torch operations, not the library's Sinkhorn", "rules",
                    lambda: [_sk_case(51, f64)],
                    forbid=("attention_lib.efficient.sinkhorn.sinkhorn_normalize",
                            "attention_lib.efficient.sinkhorn.soft_permutation")),
    ]


SINKHORN_LOG = Exercise(
    "sinkhorn_log", "function",
    "Sinkhorn normalisation in the log domain: n_iters times, rows then columns.",
    _sk_checks(), signature="sinkhorn_log(log_alpha, n_iters=20)", reference=_sk_ref,
    mistakes=SK_MISTAKES,
    forbid=("attention_lib.efficient.sinkhorn.sinkhorn_normalize",))


# =========================================================================== 4. answer
#: Two vectors at 120 degrees, 2 buckets, 3 independent rounds.
COLLISION_QUESTION = dict(angle=2 * math.pi / 3, rounds=3)


def collision_rounds_truth() -> float:
    q = COLLISION_QUESTION
    return float(hyperplane_collision_probability(torch.tensor(q["angle"], dtype=torch.float64),
                                                  q["rounds"]))


def _collision_wrong():
    t, r = COLLISION_QUESTION["angle"] / math.pi, COLLISION_QUESTION["rounds"]
    return [(1 - t, "that is the probability for ONE round; with several rounds the pair "
                    "only has to meet in one of them"),
            ((1 - t) ** r, "that is the probability to share a bucket in EVERY round; the "
                           "question is 'in at least one': 1 - P(separated in all rounds)"),
            (1 - (1 - t) ** r, "you raised the wrong probability to the power R: the rounds "
                               "must all SEPARATE the pair (probability theta / pi each) for "
                               "it never to meet"),
            (math.cos(COLLISION_QUESTION["angle"]), "that is cos(theta), the cosine "
                                                    "similarity, not a probability")]


ANSWER_COLLISION_ROUNDS = Exercise(
    "answer_collision_rounds", "answer",
    "Predict P(two vectors at 120 degrees share one of 2 buckets in at least one of 3 rounds).",
    [answer_check("your prediction matches the closed form (and the simulation)",
                  collision_rounds_truth, rtol=0.02, wrong=_collision_wrong())],
    signature="answer_collision_rounds = <number>")


# =========================================================================== 5. experiment
ROUNDS = (1, 2, 4, 8, 16, 32)
ROUNDS_TARGET = 0.3


def lsh_experiment(seed: int = 0):
    """The data of the experiment: 256 tokens around 32 directions (as in the chapter),
    shared QK (1, 1, 256, 16) float64, values, and full shared-QK attention without self."""
    g = generator(seed)
    n, d = 256, 16
    labels = torch.randint(0, 32, (n,), generator=g)
    dirs = F.normalize(randn(g, 32, d), dim=-1)
    qk = 20 * (dirs[labels] + 0.3 * randn(g, n, d)).view(1, 1, n, d)
    v = randn(g, 1, 1, n, d)
    full = reference_attention(qk, shared_qk_keys(qk), v, ~torch.eye(n, dtype=torch.bool))
    return qk, v, full, g


@functools.lru_cache(maxsize=None)
def lsh_error(rounds: int, draws: int = 3, seed: int = 1200) -> float:
    """Relative error of LSH attention (8 buckets, chunks of 32) against full attention,
    averaged over ``draws`` draws of the rotations (cached: deterministic)."""
    qk, v, full, g = lsh_experiment(seed)
    total = 0.0
    for _ in range(draws):
        rot = random_rotations(16, 8, n_hashes=rounds, generator=g, dtype=torch.float64)
        out = lsh_attention(qk, v, rot, chunk_size=32)
        total += float((out - full).norm() / full.norm())
    return total / draws


_ROUNDS = {}


def rounds_for_target() -> int:
    """The smallest number of rounds in :data:`ROUNDS` with error <= :data:`ROUNDS_TARGET`."""
    if "r" not in _ROUNDS:
        _ROUNDS["r"] = next((r for r in ROUNDS if lsh_error(r) <= ROUNDS_TARGET), ROUNDS[-1])
    return _ROUNDS["r"]


def _judge_rounds_form(ex, cases, outcomes):
    value, bad = measured_number(ex, outcomes, "the number of rounds")
    if bad:
        return bad
    if value not in ROUNDS:
        return Verdict(False, f"{value:g} is not one of the numbers of rounds of the experiment "
                              f"(1, 2, 4, ..., 32)")
    return Verdict(True, f"{int(value)} rounds")


def _judge_rounds_value(ex, cases, outcomes):
    v = _judge_rounds_form(ex, cases, outcomes)
    if not v.passed:
        return v
    value, _ = number_of(outcomes[0].get("output"))
    truth = rounds_for_target()
    if not truth / 2 <= value <= truth * 2:
        side = "too few" if value < truth else "too many"
        return Verdict(False, f"{int(value)} rounds is {side}: the measured error (averaged over "
                              f"several draws of the rotations) crosses {ROUNDS_TARGET} "
                              f"{'later' if value < truth else 'earlier'}",
                       hint="one draw of the rotations is noisy: average the error over "
                            "several draws, and take the SMALLEST number of rounds that reaches "
                            "the target")
    return Verdict(True, f"{int(value)} rounds agrees with the measurement (within a factor 2)")


_ONE = [Case(label="the value of my_lsh_rounds")]
MY_LSH_ROUNDS = Exercise(
    "my_lsh_rounds", "experiment",
    "Open-ended: how many hashing rounds does LSH attention need for a relative error of 0.3?",
    [Check("a number of rounds of the experiment (a power of 2)", "shape", _ONE,
           _judge_rounds_form, probe="value"),
     Check("agrees with the measurement within a factor 2", "values", _ONE, _judge_rounds_value,
           probe="value")],
    signature="my_lsh_rounds = <int>")


ASSIGNMENT = register(Assignment(
    ASSIGNMENT_NAME, "Exercises: learned sparsity",
    [LSH_BUCKETS, ROUTE_TO_CENTROIDS, SINKHORN_LOG, ANSWER_COLLISION_ROUNDS, MY_LSH_ROUNDS]))
