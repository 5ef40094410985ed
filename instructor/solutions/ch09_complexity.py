# INSTRUCTOR ONLY -- reference solutions of exercises/09_complexity.ipynb.
# Not part of the student bundle or of the attention_lib package. Each top-level definition
# replaces the exercise cell of the same name (see attention_course.grading.bundle.solve_notebook).
import torch


def layer_flop_counts(seq_len, d_model, kernel_size):
    """seq_len, d_model, kernel_size: (M,) int64  ->  (M, 3) int64: conv, GRU, attention."""
    n, d, k = seq_len, d_model, kernel_size
    conv = 2 * k * n * d * d  # a (d, k d) matrix times each window of k inputs
    gru = 6 * (2 * n * d * d)  # 3 gates x (input product + state product)
    attention = 4 * (2 * n * d * d) + 2 * (2 * n * n * d)  # 4 projections + Q K^T + A V
    return torch.stack((conv, gru, attention), dim=-1)  # (M, 3)


def conv_path_lengths(seq_len, kernel_size):
    """ints -> (N, N) int64: ceil(|i - j| / (k // 2)), at least 1; -1 when never connected."""
    reach = kernel_size // 2  # positions gained on each side per layer
    pos = torch.arange(seq_len)
    gap = (pos[:, None] - pos[None, :]).abs()  # (N, N)
    if reach == 0:
        return torch.where(gap == 0, torch.ones_like(gap), -torch.ones_like(gap))
    layers = torch.div(gap + reach - 1, reach, rounding_mode="floor")  # ceil(gap / reach)
    return layers.clamp(min=1)


answer_attention_conv_crossover = 160

my_attention_time_exponent = 1.7
