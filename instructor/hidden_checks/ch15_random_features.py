# INSTRUCTOR ONLY -- hidden checks of exercises/15_random_features.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch15_random_features import _ph_case, _x_w_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "random_fourier_features": [
        output_check("many frequencies in 16 dimensions [H1501]", "values",
                     lambda: [_x_w_case(1951, f64, sizes=dict(B=2, N=5, D=16, m=64))]),
    ],
    "positive_random_features": [
        output_check("many frequencies in 16 dimensions, float32 [H1502]", "values",
                     lambda: [_x_w_case(1952, f32, scale=0.3, sizes=dict(B=2, N=5, D=16,
                                                                         m=64))]),
    ],
    "performer_attention_per_head": [
        output_check("eight heads with 32 features each [H1503]", "values",
                     lambda: [_ph_case(1953, f64, m=32, sizes=dict(B=2, H=8, N=7, Nk=9, D=4,
                                                                    Dv=3))]),
    ],
}
