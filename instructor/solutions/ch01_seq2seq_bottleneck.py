# INSTRUCTOR ONLY -- reference solutions of exercises/01_seq2seq_bottleneck.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import torch


def encoder_summary(states, lengths):
    """states: (B, N, 2H), forward half first, zeros at padding  lengths: (B,)  ->  (B, 2H)."""
    hidden = states.shape[-1] // 2
    batch = torch.arange(states.shape[0], device=states.device)
    forward_final = states[batch, lengths - 1, :hidden]  # after the last real word
    backward_final = states[:, 0, hidden:]  # the backward GRU ends at the first word
    return torch.cat([forward_final, backward_final], dim=-1)  # (B, 2H)


def clipped_precision(hypothesis, reference, n):
    """hypothesis: (Nh,) int  reference: (Nr,) int  n: int  ->  0-d float64 tensor."""
    from collections import Counter

    def grams(seq):
        seq = seq.tolist()
        return Counter(tuple(seq[i:i + n]) for i in range(len(seq) - n + 1))

    hyp, ref = grams(hypothesis), grams(reference)
    total = sum(hyp.values())
    matched = sum(min(count, ref[g]) for g, count in hyp.items())  # clipped counts
    return torch.tensor(matched / total if total else 0.0, dtype=torch.float64)


answer_summary_size = 64

my_gloss_bleu = 0.64
