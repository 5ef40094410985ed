"""Chapter 15's random features: trigonometric, positive and orthogonal positive features of
the softmax kernel, as the number of frequencies m and the length of the inputs grow.

Every number is a real run of ``attention_lib.efficient.random_features`` in float64:

- **kernel**: twelve pairs (x, y) with ``|x| = |y| = r`` at the angles
  ``theta_i = (2i + 1) pi / 24`` (so ``SM(x, y) = exp(r^2 cos theta)`` runs from
  ``exp(r^2)`` down to ``exp(-r^2)``), in D = 16. For each (m, r) and each feature type the
  estimates of ``softmax_kernel_estimate`` with the first projection (one draw, drawn in the
  figure) and the squared errors averaged over ``DRAWS`` projections (the measured MSE),
  next to Lemma 2's closed form ``softmax_kernel_mse`` (iid frequencies).
- **attention**: ``performer_attention`` of 64 queries and keys whose scaled versions
  ``q / D^(1/4)`` all have length r (random directions) and of unit-Gaussian values,
  against ``reference_attention``: the relative error of the output for the first
  ``ATTENTION_DRAWS`` projections, and the fraction of queries whose normaliser
  ``phi(q) . sum_j phi(k_j)`` is <= 0.

The projections depend on m and the draw only (iid: generator seeded ``1000 + m``,
orthogonal: ``2000 + m``, one ``random_projection`` call per draw, in order), so moving r
changes the inputs and keeps the frequencies. The trigonometric and the positive features
share the iid frequencies; the trigonometric map has 2m features (a sine and a cosine per
frequency).
"""
from __future__ import annotations

import math

import torch

from attention_lib import reference_attention
from attention_lib.efficient import random_features as RF
from explorers import explorer, rounded

D, N = 16, 64
MS = (4, 8, 16, 32, 64, 128, 256)
RADII = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # |x| = |y| = |q| / D^(1/4), as chapter 15's lengths
N_ANGLES = 12
DRAWS = 512  # projections per (m, draw kind) for the measured MSE
ATTENTION_DRAWS = 25  # the first 25 of them for the attention error (median of 25)
TYPES = (("trig", "trig", False), ("positive", "positive", False),
         ("orthogonal", "positive", True))  # (name, kind of feature, orthogonal draws)


def angles() -> torch.Tensor:
    """The twelve angles between x and y, (2i + 1) pi / 24: never 0 or pi, where one of the
    two estimators is exact (MSE 0, off a log axis)."""
    return (2 * torch.arange(N_ANGLES, dtype=torch.float64) + 1) * math.pi / (2 * N_ANGLES)


def directions() -> tuple[torch.Tensor, torch.Tensor]:
    """Two fixed orthonormal directions u1, u2 of R^D (the pairs live in their plane)."""
    g = torch.Generator().manual_seed(15)
    u1 = torch.randn(D, generator=g, dtype=torch.float64)
    u1 = u1 / u1.norm()
    u2 = torch.randn(D, generator=g, dtype=torch.float64)
    u2 = u2 - (u2 @ u1) * u1
    return u1, u2 / u2.norm()


def pairs(r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y), each (12, D): |x| = |y| = r, angle theta_i between x_i and y_i."""
    u1, u2 = directions()
    t = angles()[:, None]
    return (r * u1).expand(N_ANGLES, D), r * (torch.cos(t) * u1 + torch.sin(t) * u2)


def attention_inputs(r: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k (1, 1, N, D) in random directions with |q| / D^(1/4) = r, and v (1, 1, N, D)."""
    g = torch.Generator().manual_seed(16)
    q, k, v = (torch.randn(1, 1, N, D, generator=g, dtype=torch.float64) for _ in range(3))
    length = r * D ** 0.25
    q = q / q.norm(dim=-1, keepdim=True) * length
    k = k / k.norm(dim=-1, keepdim=True) * length
    return q, k, v


def projection(m: int, draw: int, orthogonal: bool) -> torch.Tensor:
    """The (m, D) projection of one draw, as :func:`projections` draws it."""
    return projections(m, orthogonal, draw + 1)[draw]


def projections(m: int, orthogonal: bool, count: int = DRAWS) -> torch.Tensor:
    """(count, m, D): ``count`` projections from the generator of (m, draw kind), in order."""
    g = torch.Generator().manual_seed((2000 if orthogonal else 1000) + m)
    return torch.stack([RF.random_projection(m, D, generator=g, orthogonal=orthogonal,
                                             dtype=torch.float64) for _ in range(count)])


def attention_run(inputs: tuple[torch.Tensor, ...], ref: torch.Tensor, w: torch.Tensor,
                  kind: str) -> tuple[float, float]:
    """(relative error of the output, fraction of queries with a normaliser <= 0) for
    ``inputs`` = (q, k, v) of :func:`attention_inputs` and their exact attention ``ref``."""
    q, k, v = inputs
    out = RF.performer_attention(q, k, v, w, kind=kind)
    s = D ** -0.25  # exp(q . k / sqrt(D)) = exp((s q) . (s k))
    phi_q, phi_k = RF.performer_features(q * s, k * s, w, kind=kind)
    normaliser = phi_q @ phi_k.sum(-2)[..., None]  # (1, 1, N, 1)
    return ((out - ref).norm() / ref.norm()).item(), (normaliser <= 0).double().mean().item()


@explorer("15_random_features")
def random_features() -> dict:
    proj = {(m, orth): projections(m, orth) for m in MS for orth in (False, True)}
    settings, radii = {}, {}
    for ri, r in enumerate(RADII):
        x, y = pairs(r)
        inputs = attention_inputs(r)
        ref = reference_attention(*inputs)  # the same for every m, feature type and draw
        exact = torch.exp((x * y).sum(-1))  # (12,)
        radii[str(ri)] = {"exact": rounded(exact, 5)}
        for mi, m in enumerate(MS):
            s = {"estimate": {}, "mse": {}, "lemma2": {}, "attention": {},
                 "attention_median": {}, "negative": {}}
            for name, kind, orth in TYPES:
                w = proj[m, orth]  # (DRAWS, m, D): one row of estimates per draw
                est = RF.softmax_kernel_estimate(x, y, w, kind=kind)  # (DRAWS, 12)
                s["estimate"][name] = rounded(est[0], 4)
                s["mse"][name] = rounded(((est - exact) ** 2).mean(0), 4)
                if not orth:  # Lemma 2 is about iid frequencies
                    s["lemma2"][name] = rounded(RF.softmax_kernel_mse(x, y, m, kind=kind), 4)
                runs = [attention_run(inputs, ref, w[i], kind)
                        for i in range(ATTENTION_DRAWS)]
                errors = [e for e, _ in runs]
                s["attention"][name] = rounded(errors, 4)
                s["attention_median"][name] = rounded(sorted(errors)[len(errors) // 2], 4)
                s["negative"][name] = rounded(sum(f for _, f in runs) / len(runs), 4)
            settings[f"{ri}_{mi}"] = s
    return {"d": D, "n": N, "ms": list(MS), "radii": list(RADII), "n_angles": N_ANGLES,
            "angles_over_pi": rounded(angles() / math.pi, 4), "draws": DRAWS,
            "attention_draws": ATTENTION_DRAWS, "types": [t[0] for t in TYPES],
            "radius": radii, "settings": settings}
