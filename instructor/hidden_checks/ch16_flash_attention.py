# INSTRUCTOR ONLY -- hidden checks of exercises/16_flash_attention.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch16_flash_attention import (
                                                                 _merge_case,
                                                                 _merge_check,
                                                                 _tiled_case,
)

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "merge_softmax_states": [
        _merge_check("wide outputs, some rows empty, float32 [H1601]", "edge cases",
                     lambda: [_merge_case(1961, f32, empty="rows",
                                          sizes=dict(B=2, H=4, Nq=6, Na=5, Nb=7, Dv=16))]),
    ],
    "tiled_attention": [
        output_check("causal, 45 positions, blocks of 8, float32 [H1602]", "masks",
                     lambda: [_tiled_case(1962, f32, 8, causal=True,
                                          sizes=dict(B=2, H=2, N=45, D=16, Dv=8))]),
        output_check("more keys than queries, blocks of 7 [H1603]", "values",
                     lambda: [_tiled_case(1963, f64, 7, sizes=dict(B=1, H=3, N=5, Nk=40, D=8,
                                                                   Dv=4))]),
    ],
}
