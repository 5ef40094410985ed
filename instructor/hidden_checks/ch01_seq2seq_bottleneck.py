# INSTRUCTOR ONLY -- hidden checks of exercises/01_seq2seq_bottleneck.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch01_seq2seq_bottleneck import _cp_case, _sum_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "encoder_summary": [
        output_check("a large padded batch, float32 [H1a]", "masks",
                     lambda: [_sum_case(931, f32, sizes=dict(B=16, N=40, H=32))]),
    ],
    "clipped_precision": [
        output_check("sixty-token sentences, n = 4 [H1b]", "values",
                     lambda: [_cp_case(932, nh=60, nr=55, n=4, vocab=3)]),
    ],
}
