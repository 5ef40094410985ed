# INSTRUCTOR ONLY -- hidden checks of exercises/14_linear_attention.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch14_linear_attention import _la_case, _rec_case, _x_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "elu_plus_one": [
        output_check("a 1-d input, float32 [H1401]", "values",
                     lambda: [_x_case(1941, f32, shape=(17,))]),
    ],
    "linear_attention_elu": [
        output_check("long keys and wide heads, padding mask, float32 [H1402]", "masks",
                     lambda: [_la_case(1942, f32, mask="padding",
                                       sizes=dict(B=3, H=2, N=9, Nk=65, D=16, Dv=8))]),
    ],
    "causal_linear_recurrence": [
        output_check("33 positions, wide heads, float32 [H1403]", "values",
                     lambda: [_rec_case(1943, f32, sizes=dict(B=2, H=2, N=33, D=16, Dv=4))]),
    ],
}
