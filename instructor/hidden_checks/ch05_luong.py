# INSTRUCTOR ONLY -- hidden checks of exercises/05_luong.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch05_luong import _lp_case, _ls_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "luong_attentional_state": [
        output_check("long padded sources, float32 [H5a]", "masks",
                     lambda: [_ls_case(951, f32, sizes=dict(B=5, Ns=40, Hdec=16, Henc=24,
                                                            Hout=12))]),
    ],
    "local_p_weights": [
        output_check("a sixty-word source, wide window [H5b]", "values",
                     lambda: [_lp_case(952, f64, sizes=dict(B=4, Ns=60), d=10)]),
    ],
}
