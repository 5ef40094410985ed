# INSTRUCTOR ONLY -- hidden checks of exercises/03_scoring_functions.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch03_scoring_functions import (
                                                                   _concat_case,
                                                                   _mh_case,
                                                                   _qkv_case,
                                                                   _scores_case,
)

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "masked_softmax": [
        output_check("full-shape random mask with empty rows, float32 [H5]", "masks",
                     lambda: [_scores_case(s, f32, mask="empty",
                                           sizes=dict(B=3, H=4, Nq=7, Nk=9)) for s in (911, 912)]),
    ],
    "scaled_dot_product_attention": [
        output_check("long keys and wide heads, float32 (Nk=257, D=64) [H6]", "values",
                     lambda: [_qkv_case(913, f32, mask="padding",
                                        sizes=dict(B=2, H=4, Nq=33, Nk=257, D=64, Dv=16))]),
        output_check("causal self-attention, float32 [H7]", "masks",
                     lambda: [_qkv_case(914, f32, mask="causal",
                                        sizes=dict(B=3, H=2, Nq=17, Nk=17, D=8, Dv=8))]),
    ],
    "concat_score": [
        output_check("hidden size larger than Dq + Dk [H8]", "values",
                     lambda: [_concat_case(915, f64, sizes=dict(B=2, Nq=5, Nk=6, Dq=2, Dk=3,
                                                                Hd=20))]),
    ],
    "multi_head_scores": [
        output_check("eight heads of size 8, float32 [H9]", "values",
                     lambda: [_mh_case(916, f32, sizes=dict(B=2, H=8, Nq=9, Nk=11, D=8))]),
        output_check("non-contiguous inputs, many heads [H10]", "edge cases",
                     lambda: [_mh_case(917, f64, noncontig=True,
                                       sizes=dict(B=2, H=6, Nq=4, Nk=5, D=2))]),
    ],
}
