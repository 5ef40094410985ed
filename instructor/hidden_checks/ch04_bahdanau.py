# INSTRUCTOR ONLY -- hidden checks of exercises/04_bahdanau.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch04_bahdanau import _aer_case, _bc_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "bahdanau_context": [
        output_check("long padded sources, float32 [H4a]", "masks",
                     lambda: [_bc_case(941, f32, sizes=dict(B=6, Ns=40, Hdec=16, Henc=24,
                                                            A=12))]),
    ],
    "hard_alignment_aer": [
        output_check("a forty-word sentence [H4b]", "values",
                     lambda: [_aer_case(942, f64, nt=44, ns=40)]),
    ],
}
