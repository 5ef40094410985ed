# INSTRUCTOR ONLY -- reference solutions of exercises/12_learned_sparsity.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import torch


def lsh_buckets(x, rotations):
    """Angular LSH buckets, one row per round.

    x: (B, H, N, D)   rotations: (R, D, b/2), b = the number of buckets
    Returns (B, H, R, N) long in [0, b): argmax over [x R_r, -x R_r].
    """
    b, h, n, _ = x.shape
    n_rounds, half = rotations.shape[0], rotations.shape[-1]
    if half == 0:  # one bucket: nothing to compare
        return torch.zeros(b, h, n_rounds, n, dtype=torch.long, device=x.device)
    projected = torch.einsum("bhnd,rdc->bhrnc", x, rotations)  # (B, H, R, N, b/2)
    both = torch.cat((projected, projected.neg()), dim=-1)  # (B, H, R, N, b)
    return both.argmax(dim=-1)  # (B, H, R, N)


def route_to_centroids(x, centroids):
    """k-means routing: the nearest centroid by cosine similarity.

    x: (B, H, N, D)   centroids: (C, D) shared by the heads, or (H, C, D) one set per head
    Returns (B, H, N) long in [0, C).
    """
    unit_x = x / x.norm(dim=-1, keepdim=True)  # (B, H, N, D)
    unit_mu = centroids / centroids.norm(dim=-1, keepdim=True)  # (C, D) or (H, C, D)
    if unit_mu.dim() == 3:
        unit_mu = unit_mu[None]  # (1, H, C, D)
    cosines = unit_x @ unit_mu.transpose(-1, -2)  # (B, H, N, C)
    return cosines.argmax(dim=-1)


def sinkhorn_log(log_alpha, n_iters=20):
    """Sinkhorn normalisation in the log domain.

    log_alpha: (..., n, n)   Returns (..., n, n): log of a nearly doubly stochastic matrix;
    each iteration normalises the rows (dim=-1), then the columns (dim=-2).
    """
    out = log_alpha
    for _ in range(n_iters):
        out = out - out.logsumexp(dim=-1, keepdim=True)  # rows sum to 1
        out = out - out.logsumexp(dim=-2, keepdim=True)  # columns sum to 1
    return out


answer_collision_rounds = 19 / 27

my_lsh_rounds = 16
