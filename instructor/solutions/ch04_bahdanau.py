# INSTRUCTOR ONLY -- reference solutions of exercises/04_bahdanau.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import torch


def bahdanau_context(s_prev, enc, src_mask, w_s, w_h, v):
    """s_prev: (B, Hdec)  enc: (B, Ns, Henc)  src_mask: (B, Ns) bool  w_s: (A, Hdec)
    w_h: (A, Henc)  v: (A,)  ->  context (B, Henc)."""
    query_part = (s_prev @ w_s.T).unsqueeze(1)  # (B, 1, A): once per step
    key_part = enc @ w_h.T  # (B, Ns, A): once per source word
    scores = torch.tanh(query_part + key_part) @ v  # (B, Ns)
    scores = scores.masked_fill(~src_mask, float("-inf"))  # every source has a real word
    alpha = torch.softmax(scores, dim=-1)  # (B, Ns)
    return torch.einsum("bn,bnh->bh", alpha, enc)  # (B, Henc)


def hard_alignment_aer(weights, gold):
    """weights: (Nt, Ns) float  gold: (Nt, Ns) bool  ->  0-d tensor, the AER."""
    predicted = torch.zeros_like(gold)
    predicted[torch.arange(weights.shape[0]), weights.argmax(dim=1)] = True  # one per target
    hits = (predicted & gold).sum()
    total = predicted.sum() + gold.sum()
    return (1 - 2 * hits / total).to(weights.dtype)


answer_additive_scores = 1050

my_diagonal_aer = 0.378
