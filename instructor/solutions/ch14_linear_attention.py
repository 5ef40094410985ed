# INSTRUCTOR ONLY -- reference solutions of exercises/14_linear_attention.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import torch


def elu_plus_one(x):
    """x: (..., D) -> (..., D), elu(x) + 1: x + 1 for x > 0, exp(x) for x <= 0."""
    return torch.where(x > 0, x + 1, torch.exp(torch.clamp(x, max=0.0)))


def linear_attention_elu(query, key, value, attn_mask=None):
    """query: (B, H, Nq, D)  key: (B, H, Nk, D)  value: (B, H, Nk, Dv)
    attn_mask: bool (B, 1, 1, Nk) or None, True = real key  ->  (B, H, Nq, Dv)."""
    phi_q = elu_plus_one(query)  # (B, H, Nq, F)
    phi_k = elu_plus_one(key)  # (B, H, Nk, F)
    if attn_mask is not None:
        keep = attn_mask.squeeze(-2).unsqueeze(-1)  # (B, 1, Nk, 1)
        phi_k = torch.where(keep, phi_k, torch.zeros_like(phi_k))
    kv = torch.einsum("bhnf,bhnv->bhfv", phi_k, value)  # (B, H, F, Dv): S
    z = phi_k.sum(dim=2)  # (B, H, F)
    numer = torch.einsum("bhqf,bhfv->bhqv", phi_q, kv)  # (B, H, Nq, Dv)
    denom = torch.einsum("bhqf,bhf->bhq", phi_q, z).unsqueeze(-1)  # (B, H, Nq, 1)
    return numer / torch.where(denom > 0, denom, torch.ones_like(denom))


def causal_linear_recurrence(query, key, value):
    """query, key: (B, H, N, D)  value: (B, H, N, Dv)  ->  (B, H, N, Dv), causal."""
    phi_q, phi_k = elu_plus_one(query), elu_plus_one(key)  # (B, H, N, F)
    b, h, n, f = phi_q.shape
    state = value.new_zeros(b, h, f, value.shape[-1])  # S_0: (B, H, F, Dv)
    norm = value.new_zeros(b, h, f)  # z_0: (B, H, F)
    outputs = []
    for t in range(n):
        k_t, q_t = phi_k[:, :, t], phi_q[:, :, t]  # (B, H, F)
        state = state + k_t.unsqueeze(-1) * value[:, :, t].unsqueeze(-2)  # += phi(k_t) v_t^T
        norm = norm + k_t
        top = (q_t.unsqueeze(-2) @ state).squeeze(-2)  # (B, H, Dv)
        bottom = (q_t * norm).sum(-1, keepdim=True)  # (B, H, 1)
        outputs.append(top / bottom)
    return torch.stack(outputs, dim=2)  # (B, H, N, Dv)


answer_flop_ratio = 24.0

my_linear_memory_n = 2048
