"""What the exercise notebooks use besides ``check``: small objects an exercise studies.

Kept apart from the checks, so that the grader's sandbox can offer this module (and a
``check`` that does nothing) to a submission without offering the checks, their references
or their hidden inputs.
"""
from __future__ import annotations

import torch

from attention_lib.functional import attention

__all__ = ["suspect_attention"]

#: How many future positions :func:`suspect_attention` sees (exercise 7 measures it).
LOOKAHEAD = 2


def suspect_attention(x: torch.Tensor) -> torch.Tensor:
    """A "causal" self-attention from someone else's code: (B, N, E) -> (B, N, E).

    Treat it as a black box: the exercise is to find out, by experiment, whether and how
    far it looks into the future.
    """
    n = x.shape[1]
    band = torch.ones(n, n, dtype=torch.bool, device=x.device).tril(diagonal=LOOKAHEAD)
    q = x[:, None]  # (B, 1, N, E)
    return attention(q, q, q, band)[:, 0]
