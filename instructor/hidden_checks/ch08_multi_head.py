# INSTRUCTOR ONLY -- hidden checks of exercises/08_multi_head.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch08_multi_head import _ch_case, _kv_case, _mh_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "concat_heads": [
        output_check("eight heads of size 16, float32 [H8a]", "values",
                     lambda: [_ch_case(981, f32, sizes=dict(B=2, H=8, N=9, D=16))]),
    ],
    "multi_head_forward": [
        output_check("eight heads, a longer sequence, float32 [H8b]", "values",
                     lambda: [_mh_case(982, f32, sizes=dict(B=2, N=24, H=8, D=4))]),
        output_check("padding mask with many heads [H8c]", "masks",
                     lambda: [_mh_case(983, f64, sizes=dict(B=4, N=7, H=4, D=2),
                                       mask="padding")]),
    ],
    "expand_kv_heads": [
        output_check("four K/V heads for sixteen query heads, float32 [H8d]", "values",
                     lambda: [_kv_case(984, f32, sizes=dict(B=2, Hkv=4, G=4, N=6, D=8))]),
    ],
}
