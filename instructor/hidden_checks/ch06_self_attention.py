# INSTRUCTOR ONLY -- hidden checks of exercises/06_self_attention.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch06_self_attention import _rot_case, _sa_case, _sin_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "sinusoidal_positions": [
        output_check("a wide encoding, dim = 128, float64 [H6a]", "values",
                     lambda: [_sin_case(961, f64, n=40, dim=128, high=500.0)]),
    ],
    "apply_rotary": [
        output_check("long sequence and wide heads, float32 [H6b]", "values",
                     lambda: [_rot_case(962, f32, sizes=dict(B=2, H=4, N=33, half=16))]),
    ],
    "self_attention_layer": [
        output_check("a longer sequence, float32 [H6c]", "values",
                     lambda: [_sa_case(963, f32, sizes=dict(B=3, N=40, E=16, Dk=8, Dv=12))]),
    ],
}
