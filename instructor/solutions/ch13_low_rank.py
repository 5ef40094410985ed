# INSTRUCTOR ONLY -- reference solutions of exercises/13_low_rank.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import torch


def rank_k_error(weights, k):
    """Relative Frobenius error of the best rank-k approximation (Eckart-Young).

    weights: (..., Nq, Nk)   k: int >= 0
    Returns (...): sqrt(sum_{i > k} s_i^2 / sum_i s_i^2), s = singular values, largest first.
    """
    energy = torch.linalg.svdvals(weights).pow(2)  # (..., R)
    lost = energy[..., k:].sum(dim=-1)  # (...)
    return torch.sqrt(lost / energy.sum(dim=-1))


def linformer_forward(query, key, value, E, F):
    """Linformer attention with given projections of the sequence axis.

    query: (B, H, Nq, D)   key: (B, H, Nk, D)   value: (B, H, Nk, Dv)   E, F: (k, Nk)
    Returns (B, H, Nq, Dv) = softmax(Q (E K)^T / sqrt(D)) (F V), in O(N k).
    """
    key_proj = torch.matmul(E, key)  # (B, H, k, D)
    value_proj = torch.matmul(F, value)  # (B, H, k, Dv)
    scores = torch.matmul(query, key_proj.transpose(-1, -2)) / query.shape[-1] ** 0.5
    return torch.matmul(scores.softmax(dim=-1), value_proj)  # (B, H, Nq, Dv)


answer_energy_rank = 13

my_rank_for_error = 58
