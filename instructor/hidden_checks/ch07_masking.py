# INSTRUCTOR ONLY -- hidden checks of exercises/07_masking.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch07_masking import _lengths_case, _tp_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "key_mask_from_lengths": [
        output_check("a large batch of long sentences [H7a]", "values",
                     lambda: [_lengths_case(971, b=16, nk=40)]),
    ],
    "causal_padding_mask": [
        output_check("a large batch with empty sentences [H7b]", "masks",
                     lambda: [_lengths_case(972, lengths=[0, 9, 3, 12, 0, 1], nk=12)]),
    ],
    "attention_with_torch_padding": [
        output_check("long keys and many heads, float32 [H7c]", "values",
                     lambda: [_tp_case(973, f32, sizes=dict(B=3, H=4, Nq=9, Nk=33, D=16,
                                                            Dv=8))]),
    ],
}
