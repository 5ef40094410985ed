# INSTRUCTOR ONLY -- reference solutions of exercises/05_luong.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import torch


def luong_attentional_state(s, enc, src_mask, w_a, w_c):
    """s: (B, Hdec)  enc: (B, Ns, Henc)  src_mask: (B, Ns) bool  w_a: (Hdec, Henc)
    w_c: (Hout, Henc + Hdec)  ->  h~ (B, Hout)."""
    scores = torch.einsum("bd,de,bne->bn", s, w_a, enc)  # (B, Ns): s^T W_a h_j
    scores = scores.masked_fill(~src_mask, float("-inf"))  # every source has a real word
    alpha = torch.softmax(scores, dim=-1)  # (B, Ns)
    context = torch.einsum("bn,bne->be", alpha, enc)  # (B, Henc)
    return torch.tanh(torch.cat([context, s], dim=-1) @ w_c.T)  # (B, Hout)


def local_p_weights(scores, center, half_width):
    """scores: (B, Ns)  center: (B,) float  half_width: D  ->  weights (B, Ns)."""
    positions = torch.arange(scores.shape[-1], dtype=scores.dtype, device=scores.device)
    offset = positions[None, :] - center[:, None]  # (B, Ns): j - p_t
    window = offset.abs() <= half_width  # (B, Ns), never empty for p_t in [0, Ns - 1]
    alpha = torch.softmax(scores.masked_fill(~window, float("-inf")), dim=-1)
    sigma = half_width / 2
    return alpha * torch.exp(-offset**2 / (2 * sigma**2))  # (B, Ns)


answer_gaussian_edge = 0.135

my_half_width = 2
