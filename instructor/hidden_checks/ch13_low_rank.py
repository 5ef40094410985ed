# INSTRUCTOR ONLY -- hidden checks of exercises/13_low_rank.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch13_low_rank import _lf_case, _rk_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "rank_k_error": [
        output_check("a batch of 64 x 48 matrices, k = 10 [H1301]", "values",
                     lambda: [_rk_case(1931, f64, lead=(2, 2), nq=64, nk=48, k=10)]),
    ],
    "linformer_forward": [
        output_check("long keys, wide heads, k = 8, float32 [H1302]", "values",
                     lambda: [_lf_case(1932, f32, sizes=dict(B=2, H=2, N=40, Nk=65, D=16,
                                                              Dv=8), kp=8)]),
    ],
}
