# INSTRUCTOR ONLY -- hidden checks of exercises/18_visual_attention.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch18_visual_attention import _point_case, _se_case, _ss_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "spatial_softmax": [
        output_check("an 8 x 8 grid of 5 maps, mask, float32 [H1801]", "masks",
                     lambda: [_ss_case(1981, f32, mask="random",
                                       sizes=dict(B=3, C=5, H=8, W=8))]),
    ],
    "se_block": [
        output_check("32 channels reduced to 8, float32 [H1802]", "values",
                     lambda: [_se_case(1982, f32, sizes=dict(B=3, C=32, R=8, H=6, W=7))]),
    ],
    "pointing_score": [
        output_check("200 words on an 8 x 8 grid of 4 x 4 cells [H1803]", "values",
                     lambda: [_point_case(1983, f64, sizes=dict(M=200, h=8, w=8, ch=4,
                                                                cw=4))]),
    ],
}
